// Unit tests of the pure-core helpers every component shares.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32c, crc32cPortable } from '../../firmware/ts/core/crc32c.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { utf8Encode } from '../../firmware/ts/core/bytes.ts';

describe('crc32c', () => {
  it('matches the standard check value', () => {
    expect(crc32c(utf8Encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
  });
  it('continues across chunks', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(300), (data, cut) => {
        const k = Math.min(cut, data.length);
        expect(crc32cPortable(data.subarray(k), crc32cPortable(data.subarray(0, k)))).toBe(crc32cPortable(data));
      }),
    );
  });
});

describe('Prng', () => {
  it('is reproducible from its seed', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    for (let i = 0; i < 100; i++) expect(a.nextU32()).toBe(b.nextU32());
  });
  it('keeps int() in range', () => {
    const p = new Prng(7);
    for (let i = 0; i < 1000; i++) {
      const v = p.int(10);
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThan(10);
    }
  });
});
