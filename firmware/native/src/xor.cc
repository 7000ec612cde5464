// XOR kernels for RAID parity. Memory bandwidth bound: GCC vector extensions give 32-byte
// lanes (two SSE2 or NEON registers on the baseline ISA) without per-CPU dispatch; loads and
// stores go through memcpy, so no alignment is assumed.
#include "xor.h"

#include <cstring>

namespace twinblade {

namespace {

#if defined(__GNUC__)
typedef uint8_t Lane __attribute__((vector_size(32)));
constexpr size_t kLane = 32;
#define TWINBLADE_XOR_VECTOR 1
#else
typedef uint64_t Lane;
constexpr size_t kLane = 8;
#endif

inline void XorSpan(uint8_t* __restrict dst, const uint8_t* __restrict src, size_t n) {
  size_t i = 0;
  for (; i + 4 * kLane <= n; i += 4 * kLane) {
    Lane a0, a1, a2, a3, b0, b1, b2, b3;
    std::memcpy(&a0, dst + i, kLane);
    std::memcpy(&a1, dst + i + kLane, kLane);
    std::memcpy(&a2, dst + i + 2 * kLane, kLane);
    std::memcpy(&a3, dst + i + 3 * kLane, kLane);
    std::memcpy(&b0, src + i, kLane);
    std::memcpy(&b1, src + i + kLane, kLane);
    std::memcpy(&b2, src + i + 2 * kLane, kLane);
    std::memcpy(&b3, src + i + 3 * kLane, kLane);
    a0 ^= b0;
    a1 ^= b1;
    a2 ^= b2;
    a3 ^= b3;
    std::memcpy(dst + i, &a0, kLane);
    std::memcpy(dst + i + kLane, &a1, kLane);
    std::memcpy(dst + i + 2 * kLane, &a2, kLane);
    std::memcpy(dst + i + 3 * kLane, &a3, kLane);
  }
  for (; i < n; i++) dst[i] ^= src[i];
}

// out = srcs[0] ^ ... ^ srcs[count-1] (count >= 1), reading every source once and writing out
// once: the CP's parity without a copy of the first source.
inline void XorManySpan(uint8_t* __restrict out, const uint8_t* const* srcs, size_t count, size_t n) {
  size_t i = 0;
  for (; i + 4 * kLane <= n; i += 4 * kLane) {
    Lane a0, a1, a2, a3;
    const uint8_t* s0 = srcs[0] + i;
    std::memcpy(&a0, s0, kLane);
    std::memcpy(&a1, s0 + kLane, kLane);
    std::memcpy(&a2, s0 + 2 * kLane, kLane);
    std::memcpy(&a3, s0 + 3 * kLane, kLane);
    for (size_t p = 1; p < count; p++) {
      Lane b0, b1, b2, b3;
      const uint8_t* sp = srcs[p] + i;
      std::memcpy(&b0, sp, kLane);
      std::memcpy(&b1, sp + kLane, kLane);
      std::memcpy(&b2, sp + 2 * kLane, kLane);
      std::memcpy(&b3, sp + 3 * kLane, kLane);
      a0 ^= b0;
      a1 ^= b1;
      a2 ^= b2;
      a3 ^= b3;
    }
    std::memcpy(out + i, &a0, kLane);
    std::memcpy(out + i + kLane, &a1, kLane);
    std::memcpy(out + i + 2 * kLane, &a2, kLane);
    std::memcpy(out + i + 3 * kLane, &a3, kLane);
  }
  for (; i < n; i++) {
    uint8_t v = srcs[0][i];
    for (size_t p = 1; p < count; p++) v ^= srcs[p][i];
    out[i] = v;
  }
}

// Work in blocks that stay in L1/L2 while every part is folded in.
constexpr size_t kBlock = 16 * 1024;

}  // namespace

void XorInto(uint8_t* dst, const uint8_t* src, size_t n) { XorSpan(dst, src, n); }

void XorAll(uint8_t* out, const uint8_t* const* parts, size_t count, size_t n) {
  if (count == 0) return;
  for (size_t at = 0; at < n; at += kBlock) {
    size_t len = n - at < kBlock ? n - at : kBlock;
    std::memcpy(out + at, parts[0] + at, len);
    for (size_t p = 1; p < count; p++) XorSpan(out + at, parts[p] + at, len);
  }
}

void SplitStripes(const uint8_t* data, size_t unitBytes, size_t stripes, uint8_t* const* members, size_t memberCount,
                  uint8_t* parity) {
  for (size_t s = 0; s < stripes; s++) {
    const uint8_t* stripe = data + s * memberCount * unitBytes;
    uint8_t* p = parity == nullptr ? nullptr : parity + s * unitBytes;
    for (size_t at = 0; at < unitBytes; at += kBlock) {
      size_t len = unitBytes - at < kBlock ? unitBytes - at : kBlock;
      for (size_t m = 0; m < memberCount; m++) {
        const uint8_t* unit = stripe + m * unitBytes + at;
        std::memcpy(members[m] + s * unitBytes + at, unit, len);
        if (p == nullptr) continue;
        if (m == 0) std::memcpy(p + at, unit, len);
        else XorSpan(p + at, unit, len);
      }
    }
  }
}

void GatherStripes(const uint8_t* const* blocks, size_t blockBytes, size_t unitBlocks, size_t stripes, uint8_t* const* members,
                   size_t memberCount, uint8_t* parity) {
  for (size_t s = 0; s < stripes; s++) {
    for (size_t o = 0; o < unitBlocks; o++) {
      size_t at = (s * unitBlocks + o) * blockBytes;
      uint8_t* p = parity == nullptr ? nullptr : parity + at;
      for (size_t m = 0; m < memberCount; m++) {
        const uint8_t* src = blocks[(s * memberCount + m) * unitBlocks + o];
        std::memcpy(members[m] + at, src, blockBytes);
        if (p == nullptr) continue;
        if (m == 0) std::memcpy(p, src, blockBytes);
        else XorSpan(p, src, blockBytes);
      }
    }
  }
}

void XorConcat(uint8_t* out, size_t n, const uint8_t* const* const* segs, const size_t* const* lens, const size_t* segCounts, size_t memberCount) {
  if (memberCount == 0) {
    std::memset(out, 0, n);
    return;
  }
  // Per member: the segment being read and the offset in it. Each step XORs the longest span
  // that lies inside the current segment of every member, at most one cache block.
  constexpr size_t kFan = 32;
  size_t seg[kFan];
  size_t off[kFan];
  const uint8_t* srcs[kFan];
  for (size_t m0 = 0; m0 < memberCount; m0 += kFan) {
    size_t count = memberCount - m0 < kFan ? memberCount - m0 : kFan;
    for (size_t k = 0; k < count; k++) {
      seg[k] = 0;
      off[k] = 0;
    }
    size_t at = 0;
    while (at < n) {
      size_t len = n - at < kBlock ? n - at : kBlock;
      for (size_t k = 0; k < count; k++) {
        size_t m = m0 + k;
        while (seg[k] < segCounts[m] && off[k] == lens[m][seg[k]]) {
          seg[k]++;
          off[k] = 0;
        }
        size_t left = lens[m][seg[k]] - off[k];
        if (left < len) len = left;
        srcs[k] = segs[m][seg[k]] + off[k];
      }
      if (m0 == 0) {
        XorManySpan(out + at, srcs, count, len);
      } else {
        for (size_t k = 0; k < count; k++) XorSpan(out + at, srcs[k], len);
      }
      for (size_t k = 0; k < count; k++) off[k] += len;
      at += len;
    }
  }
}

const char* XorImplementation() {
#ifdef TWINBLADE_XOR_VECTOR
  return "vector";
#else
  return "scalar";
#endif
}

}  // namespace twinblade
