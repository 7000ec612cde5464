// CRC32C implementations. The instruction-set specific functions are compiled with a
// per-function target attribute, so the rest of the addon (and the portable path) still runs
// on CPUs without the instruction; the choice is made once, from CPUID / HWCAP.
#include "crc32c.h"

#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#elif defined(__aarch64__)
#include <arm_acle.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace twinblade {
namespace {

constexpr uint32_t kPoly = 0x82f63b78u;  // reflected Castagnoli polynomial

struct Tables {
  uint32_t t[8][256];
  Tables() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
      t[0][i] = c;
    }
    for (int s = 1; s < 8; s++) {
      for (uint32_t i = 0; i < 256; i++) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
  }
};

const Tables& GetTables() {
  static const Tables tables;
  return tables;
}

uint32_t PortableRaw(const uint8_t* p, size_t n, uint32_t c) {
  const Tables& tb = GetTables();
  while (n >= 8) {
    uint32_t lo;
    std::memcpy(&lo, p, 4);  // little-endian hosts only (x86-64, arm64 Linux)
    lo ^= c;
    c = tb.t[7][lo & 0xff] ^ tb.t[6][(lo >> 8) & 0xff] ^ tb.t[5][(lo >> 16) & 0xff] ^ tb.t[4][lo >> 24] ^
        tb.t[3][p[4]] ^ tb.t[2][p[5]] ^ tb.t[1][p[6]] ^ tb.t[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = tb.t[0][(c ^ *p) & 0xff] ^ (c >> 8);
    p++;
    n--;
  }
  return c;
}

// Operators that append kLong or kShort zero bytes to a raw CRC register, as four byte
// tables (Mark Adler's method for crc32c): the hardware paths run three independent streams
// over three adjacent blocks (the instruction's latency is three times its throughput, so one
// stream leaves two thirds of the unit idle) and join them with these.
constexpr size_t kLong = 8192;
constexpr size_t kShort = 256;

uint32_t Gf2MatrixTimes(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  while (vec != 0) {
    if (vec & 1) sum ^= *mat;
    vec >>= 1;
    mat++;
  }
  return sum;
}

void Gf2MatrixSquare(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; n++) square[n] = Gf2MatrixTimes(mat, mat[n]);
}

// The operator for `len` zero bytes (`len` a power of two) into `even`.
void ZerosOperator(uint32_t* even, size_t len) {
  uint32_t odd[32];
  odd[0] = kPoly;  // one zero bit
  uint32_t row = 1;
  for (int n = 1; n < 32; n++) {
    odd[n] = row;
    row <<= 1;
  }
  Gf2MatrixSquare(even, odd);  // two zero bits
  Gf2MatrixSquare(odd, even);  // four zero bits
  // Each square doubles: the first gives one zero byte in even, the next two in odd, ...
  do {
    Gf2MatrixSquare(even, odd);
    len >>= 1;
    if (len == 0) return;
    Gf2MatrixSquare(odd, even);
    len >>= 1;
  } while (len != 0);
  for (int n = 0; n < 32; n++) even[n] = odd[n];
}

struct ShiftTables {
  uint32_t longZeros[4][256];
  uint32_t shortZeros[4][256];
  static void Fill(uint32_t zeros[4][256], size_t len) {
    uint32_t op[32];
    ZerosOperator(op, len);
    for (uint32_t n = 0; n < 256; n++) {
      zeros[0][n] = Gf2MatrixTimes(op, n);
      zeros[1][n] = Gf2MatrixTimes(op, n << 8);
      zeros[2][n] = Gf2MatrixTimes(op, n << 16);
      zeros[3][n] = Gf2MatrixTimes(op, n << 24);
    }
  }
  ShiftTables() {
    Fill(longZeros, kLong);
    Fill(shortZeros, kShort);
  }
};

const ShiftTables& GetShiftTables() {
  static const ShiftTables tables;
  return tables;
}

inline uint32_t Shift(const uint32_t zeros[4][256], uint32_t crc) {
  return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

// The hardware CRC instruction per architecture: the register type, a step of 8 bytes and of
// one byte, compiled for the instruction only (CrcTarget), and how to tell the CPU has it.
#if defined(__x86_64__)
#define TWINBLADE_CRC_TARGET __attribute__((target("sse4.2")))
using CrcReg = uint64_t;
TWINBLADE_CRC_TARGET inline CrcReg CrcWord(CrcReg c, uint64_t v) { return _mm_crc32_u64(c, v); }
TWINBLADE_CRC_TARGET inline uint32_t CrcByte(uint32_t c, uint8_t b) { return _mm_crc32_u8(c, b); }
bool HaveHardware() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}
const char* kHardwareName = "sse4.2";
#elif defined(__aarch64__)
#define TWINBLADE_CRC_TARGET __attribute__((target("+crc")))
using CrcReg = uint32_t;
TWINBLADE_CRC_TARGET inline CrcReg CrcWord(CrcReg c, uint64_t v) { return __crc32cd(c, v); }
TWINBLADE_CRC_TARGET inline uint32_t CrcByte(uint32_t c, uint8_t b) { return __crc32cb(c, b); }
bool HaveHardware() { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
const char* kHardwareName = "armv8-crc";
#endif

#if defined(TWINBLADE_CRC_TARGET)
// Three streams over blocks of `block` bytes each, while three blocks remain.
TWINBLADE_CRC_TARGET inline void ThreeStreams(const uint8_t*& p, size_t& n, CrcReg& c0, size_t block, const uint32_t zeros[4][256]) {
  while (n >= 3 * block) {
    CrcReg c1 = 0;
    CrcReg c2 = 0;
    const uint8_t* end = p + block;
    do {
      uint64_t v0;
      uint64_t v1;
      uint64_t v2;
      std::memcpy(&v0, p, 8);
      std::memcpy(&v1, p + block, 8);
      std::memcpy(&v2, p + 2 * block, 8);
      c0 = CrcWord(c0, v0);
      c1 = CrcWord(c1, v1);
      c2 = CrcWord(c2, v2);
      p += 8;
    } while (p < end);
    c0 = Shift(zeros, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
    c0 = Shift(zeros, static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c2);
    p += 2 * block;
    n -= 3 * block;
  }
}

TWINBLADE_CRC_TARGET uint32_t HardwareRaw(const uint8_t* p, size_t n, uint32_t c) {
  CrcReg r = c;
  const ShiftTables& st = GetShiftTables();
  ThreeStreams(p, n, r, kLong, st.longZeros);
  ThreeStreams(p, n, r, kShort, st.shortZeros);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    r = CrcWord(r, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(r);
  while (n > 0) {
    c32 = CrcByte(c32, *p);
    p++;
    n--;
  }
  return c32;
}
#else
uint32_t HardwareRaw(const uint8_t* p, size_t n, uint32_t c) {
  (void)GetShiftTables;
  (void)Shift;
  return PortableRaw(p, n, c);
}
bool HaveHardware() { return false; }
const char* kHardwareName = "portable";
#endif

using RawFn = uint32_t (*)(const uint8_t*, size_t, uint32_t);

RawFn Select() { return HaveHardware() ? HardwareRaw : PortableRaw; }

const RawFn kRaw = Select();

}  // namespace

uint32_t Crc32c(const uint8_t* data, size_t len, uint32_t crc) { return ~kRaw(data, len, ~crc); }

uint32_t Crc32cPortable(const uint8_t* data, size_t len, uint32_t crc) { return ~PortableRaw(data, len, ~crc); }

const char* Crc32cImplementation() { return kRaw == PortableRaw ? "portable" : kHardwareName; }

}  // namespace twinblade
