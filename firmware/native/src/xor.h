// Parity arithmetic for the RAID layer (firmware/ts/storage/raid): XOR of equal-length
// buffers, and the split of whole stripes into per-member runs fused with their parity.
#pragma once

#include <cstddef>
#include <cstdint>

namespace twinblade {

// dst[i] ^= src[i] for i < n.
void XorInto(uint8_t* dst, const uint8_t* src, size_t n);

// out = parts[0] ^ parts[1] ^ ... ^ parts[count-1], each n bytes (out may not alias a part).
void XorAll(uint8_t* out, const uint8_t* const* parts, size_t count, size_t n);

// `data` holds `stripes` stripes of `memberCount` units of `unitBytes` each, unit m of stripe s
// at (s * memberCount + m) * unitBytes. Copies unit m of every stripe, consecutively, into
// members[m], and (when parity is not null) XORs the units of each stripe into parity.
void SplitStripes(const uint8_t* data, size_t unitBytes, size_t stripes, uint8_t* const* members, size_t memberCount,
                  uint8_t* parity);

// Like SplitStripes, with the data as separate blocks of `blockBytes` each: block i of the
// run is block (i mod unitBlocks) of unit ((i / unitBlocks) mod memberCount) of stripe
// i / (unitBlocks * memberCount). `blocks` holds stripes * unitBlocks * memberCount pointers.
void GatherStripes(const uint8_t* const* blocks, size_t blockBytes, size_t unitBlocks, size_t stripes, uint8_t* const* members,
                   size_t memberCount, uint8_t* parity);

// out = XOR over m < memberCount of member m's bytes, where member m's bytes are the
// concatenation of its `segCounts[m]` segments (segs[m][k], lens[m][k] bytes), each
// concatenation `n` bytes long. One pass: every source read once, out written once. The RAID
// layer's parity of a CP write whose data stays in the file system's pages (no gather).
void XorConcat(uint8_t* out, size_t n, const uint8_t* const* const* segs, const size_t* const* lens, const size_t* segCounts, size_t memberCount);

// Which XOR path was compiled in: "vector" (GCC vector extensions) or "scalar".
const char* XorImplementation();

}  // namespace twinblade
