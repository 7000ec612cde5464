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

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t HardwareRaw(const uint8_t* p, size_t n, uint32_t c) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c64);
  while (n > 0) {
    c32 = _mm_crc32_u8(c32, *p);
    p++;
    n--;
  }
  return c32;
}

bool HaveHardware() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}
const char* kHardwareName = "sse4.2";
#elif defined(__aarch64__)
__attribute__((target("+crc"))) uint32_t HardwareRaw(const uint8_t* p, size_t n, uint32_t c) {
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __crc32cd(c, v);
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = __crc32cb(c, *p);
    p++;
    n--;
  }
  return c;
}

bool HaveHardware() { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
const char* kHardwareName = "armv8-crc";
#else
uint32_t HardwareRaw(const uint8_t* p, size_t n, uint32_t c) { return PortableRaw(p, n, c); }
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
