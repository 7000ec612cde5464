// CRC32C (Castagnoli), the checksum of every on-disk, on-NVRAM and on-wire record.
// The portable implementation is slicing-by-8 in plain TypeScript; at start-up the blade
// installs the native addon's hardware implementation (SSE4.2 / ARMv8 CRC) with
// `installCrc32c`. Both give identical results, so the choice never changes behaviour.

const POLY = 0x82f63b78;
const TABLES: Uint32Array[] = (() => {
  const tables: Uint32Array[] = [];
  const t0 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[i] = c >>> 0;
  }
  tables.push(t0);
  for (let t = 1; t < 8; t++) {
    const prev = tables[t - 1] as Uint32Array;
    const cur = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      const p = prev[i] as number;
      cur[i] = ((p >>> 8) ^ (t0[p & 0xff] as number)) >>> 0;
    }
    tables.push(cur);
  }
  return tables;
})();

/** Portable CRC32C of `data`, continuing from `crc` (0 to start). */
export function crc32cPortable(data: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = ~crc >>> 0;
  let i = 0;
  const n = data.length;
  while (n - i >= 8) {
    const lo = (c ^ ((data[i] as number) | ((data[i + 1] as number) << 8) | ((data[i + 2] as number) << 16) | ((data[i + 3] as number) << 24))) >>> 0;
    c =
      (t7[lo & 0xff] as number) ^
      (t6[(lo >>> 8) & 0xff] as number) ^
      (t5[(lo >>> 16) & 0xff] as number) ^
      (t4[lo >>> 24] as number) ^
      (t3[data[i + 4] as number] as number) ^
      (t2[data[i + 5] as number] as number) ^
      (t1[data[i + 6] as number] as number) ^
      (t0[data[i + 7] as number] as number);
    i += 8;
  }
  while (i < n) {
    c = (t0[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8);
    i++;
  }
  return ~c >>> 0;
}

type Crc32cImpl = (data: Uint8Array, crc: number) => number;
let impl: Crc32cImpl = crc32cPortable;

/** CRC32C of `data`, continuing from `crc` (0 to start). Returns an unsigned 32-bit value. */
export function crc32c(data: Uint8Array, crc = 0): number {
  return impl(data, crc);
}

/**
 * Installs a faster implementation (the native addon's). It is checked against the portable
 * one on a test vector first; a wrong implementation is refused rather than trusted.
 */
export function installCrc32c(fast: Crc32cImpl): void {
  const probe = new Uint8Array(1027).map((_, i) => (i * 131 + 7) & 0xff);
  if (fast(probe, 0) !== crc32cPortable(probe, 0) || fast(probe, 0x1234) !== crc32cPortable(probe, 0x1234)) {
    throw new Error('installCrc32c: implementation disagrees with the portable CRC32C');
  }
  impl = fast;
}
