// CRC32C (Castagnoli) for the addon: hardware paths (x86-64 SSE4.2, ARMv8 CRC) chosen at
// run time, and the portable slicing-by-8 fallback. All give core/crc32c.ts's results.
#pragma once

#include <cstddef>
#include <cstdint>

namespace twinblade {

// CRC32C of data[0, len) continuing from `crc` (0 to start), unsigned, like core/crc32c.ts.
uint32_t Crc32c(const uint8_t* data, size_t len, uint32_t crc);
// The same, always through the portable tables (for tests and CPUs without the instruction).
uint32_t Crc32cPortable(const uint8_t* data, size_t len, uint32_t crc);
// "sse4.2", "armv8-crc" or "portable": which path Crc32c takes on this CPU.
const char* Crc32cImplementation();

}  // namespace twinblade
