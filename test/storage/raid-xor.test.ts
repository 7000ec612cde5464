// Parity kernels: the native addon's XOR, multi-part XOR and fused stripe split give exactly
// the portable TypeScript results (any length, any byte offset), arguments are checked on
// both sides, and installXorKernels refuses kernels that disagree with the portable ones.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { gatherStripesNative, splitStripesNative, uncheckedBindingForTests, xorAllNative, xorImplementation, xorIntoNative } from '../../firmware/ts/native/index.ts';
import {
  gatherStripes,
  gatherStripesPortable,
  installXorKernels,
  portableXorKernels,
  splitStripes,
  splitStripesPortable,
  xorAll,
  xorAllPortable,
  xorInto,
  xorIntoPortable,
  xorKernelName,
} from '../../firmware/ts/storage/raid/xor.ts';

/** `n` pseudo-random bytes at byte offset `offset` of a larger buffer (so views are unaligned too). */
function bytesAt(seed: number, n: number, offset: number): Uint8Array {
  const backing = new Uint8Array(n + offset + 8);
  let x = seed | 1;
  for (let i = 0; i < backing.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    backing[i] = x & 0xff;
  }
  return backing.subarray(offset, offset + n);
}

describe('RAID parity kernels: native equals portable', () => {
  it('importing the addon installed its kernels', () => {
    expect(xorKernelName()).toBe(`native-${xorImplementation}`);
  });

  it('xorInto and xorAll agree on any length and offset', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70000 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 1, max: 5 }), fc.integer(), (n, off, parts, seed) => {
        const src = bytesAt(seed, n, (off + 3) % 8);
        const a = bytesAt(seed + 1, n, off).slice();
        const b = a.slice();
        xorIntoPortable(a, src);
        xorIntoNative(b, src);
        expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
        const list = Array.from({ length: parts }, (_, i) => bytesAt(seed + 7 * i, n, (off + i) % 8));
        const want = new Uint8Array(n);
        const got = new Uint8Array(n);
        xorAllPortable(want, list);
        xorAllNative(got, list);
        expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
        expect(Buffer.from(xorAll(list)).equals(Buffer.from(want))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('splitStripes: per-member runs and parity agree, with and without parity', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 7 }), fc.integer(), (members, stripes, unitWords, off, seed) => {
        const unit = unitWords * 512 + (off % 2) * 3; // odd units exercise the tails
        const data = bytesAt(seed, unit * members * stripes, off);
        const want = Array.from({ length: members + 1 }, () => new Uint8Array(unit * stripes));
        const got = Array.from({ length: members + 1 }, () => new Uint8Array(unit * stripes));
        splitStripesPortable(data, unit, want.slice(0, members), want[members] as Uint8Array);
        splitStripesNative(data, unit, got.slice(0, members), got[members] as Uint8Array);
        for (let m = 0; m <= members; m++) expect(Buffer.from(got[m] as Uint8Array).equals(Buffer.from(want[m] as Uint8Array))).toBe(true);
        // Unit m of stripe s lands at s * unit in member m's run.
        const s = stripes - 1;
        const m = members - 1;
        expect(Buffer.from((want[m] as Uint8Array).subarray(s * unit, (s + 1) * unit)).equals(Buffer.from(data.subarray((s * members + m) * unit, (s * members + m + 1) * unit)))).toBe(true);
        // Parity is the XOR of the runs.
        const check = new Uint8Array(unit * stripes);
        xorAllPortable(check, want.slice(0, members));
        expect(Buffer.from(check).equals(Buffer.from(want[members] as Uint8Array))).toBe(true);
        const noParity = Array.from({ length: members }, () => new Uint8Array(unit * stripes));
        splitStripes(data, unit, noParity, null);
        for (let k = 0; k < members; k++) expect(Buffer.from(noParity[k] as Uint8Array).equals(Buffer.from(want[k] as Uint8Array))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });
});

describe('RAID parity kernels: gathering separate blocks', () => {
  it('gatherStripes equals splitStripes of the same blocks laid end to end, native and portable', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 9 }), fc.integer(), (members, stripes, unitBlocks, blockWords, seed) => {
        const bs = blockWords * 64;
        const n = members * stripes * unitBlocks;
        const whole = bytesAt(seed, n * bs, 0);
        // Each block in its own buffer, at an odd offset.
        const blocks = Array.from({ length: n }, (_, i) => {
          const b = bytesAt(0, bs, (i % 7) + 1).slice();
          b.set(whole.subarray(i * bs, (i + 1) * bs));
          return b;
        });
        const runBytes = stripes * unitBlocks * bs;
        const want = Array.from({ length: members + 1 }, () => new Uint8Array(runBytes));
        splitStripesPortable(whole, unitBlocks * bs, want.slice(0, members), want[members] as Uint8Array);
        for (const impl of [gatherStripesPortable, gatherStripesNative, gatherStripes]) {
          const got = Array.from({ length: members + 1 }, () => new Uint8Array(runBytes).fill(0xee));
          impl(blocks, unitBlocks, got.slice(0, members), got[members] as Uint8Array);
          for (let m = 0; m <= members; m++) expect(Buffer.from(got[m] as Uint8Array).equals(Buffer.from(want[m] as Uint8Array))).toBe(true);
        }
      }),
      { numRuns: 50 },
    );
  });

  it('rejects blocks of different sizes or not making whole stripes, on both sides', () => {
    const b = (n: number): Uint8Array => new Uint8Array(n);
    expect(() => gatherStripes([b(8), b(8), b(4)], 1, [b(8), b(8), b(8)], null)).toThrow(RangeError);
    expect(() => gatherStripes([b(8), b(8), b(8)], 2, [b(16)], null)).toThrow(RangeError);
    expect(() => gatherStripes([b(8), b(8)], 1, [b(8), b(8)], b(4))).toThrow(RangeError);
    expect(() => gatherStripesNative([], 1, [b(8)], null)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    const raw = uncheckedBindingForTests['gatherStripes'] as (...a: unknown[]) => unknown;
    expect(() => raw([b(8), b(4)], 1, [b(8), b(8)], null)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => raw([b(8), b(8), b(8)], 2, [b(16)], null)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => raw([b(8), b(8)], 1, [b(8), b(8)], b(3))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => raw([7], 1, [b(8)], null)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => raw([b(8)], 0, [b(8)], null)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });
});

describe('RAID parity kernels: argument checks', () => {
  it('the checked wrappers reject mismatched lengths and non-stripe data', () => {
    expect(() => xorInto(new Uint8Array(4), new Uint8Array(5))).toThrow(RangeError);
    expect(() => xorAll([new Uint8Array(4), new Uint8Array(5)])).toThrow(RangeError);
    expect(() => xorAll([])).toThrow(RangeError);
    expect(() => splitStripes(new Uint8Array(10), 4, [new Uint8Array(4), new Uint8Array(4)], null)).toThrow(RangeError);
    expect(() => splitStripes(new Uint8Array(16), 4, [new Uint8Array(8), new Uint8Array(4)], null)).toThrow(RangeError);
    expect(() => splitStripes(new Uint8Array(16), 4, [new Uint8Array(8), new Uint8Array(8)], new Uint8Array(4))).toThrow(RangeError);
    expect(() => xorIntoNative(new Uint8Array(4), new Uint8Array(5))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => xorAllNative(new Uint8Array(4), [])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => splitStripesNative(new Uint8Array(16), 0, [new Uint8Array(8)], null)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  it('the C++ side rejects bad input on its own, without crashing', () => {
    const raw = uncheckedBindingForTests as Record<string, (...a: unknown[]) => unknown>;
    const call = (name: string, ...a: unknown[]): unknown => (raw[name] as (...b: unknown[]) => unknown)(...a);
    expect(() => call('xorInto', new Uint8Array(4), new Uint8Array(8))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => call('xorInto', 'x', new Uint8Array(8))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => call('xorAll', new Uint8Array(4), [new Uint8Array(4), 7])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => call('xorAll', new Uint8Array(4), [new Uint8Array(3)])).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => call('xorAll', new Uint8Array(4), [])).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => call('splitStripes', new Uint8Array(16), 4, [new Uint8Array(8), new Uint8Array(8)], new Uint8Array(3))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => call('splitStripes', new Uint8Array(15), 4, [new Uint8Array(8), new Uint8Array(8)], null)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => call('splitStripes', new Uint8Array(16), 4, 'no', null)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => call('splitStripes', new Uint8Array(16), -1, [new Uint8Array(8)], null)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });

  it('installXorKernels refuses kernels that disagree with the portable ones and keeps the old ones', () => {
    const before = xorKernelName();
    const broken = { ...portableXorKernels, name: 'broken', xorInto: (d: Uint8Array): void => void d.fill(1) };
    expect(() => installXorKernels(broken)).toThrow(/disagrees/);
    expect(xorKernelName()).toBe(before);
  });
});
