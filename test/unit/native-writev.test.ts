// The addon's zero-copy CP write primitives: pwritev (parts written in place, misaligned runs
// bounced on the pool thread for O_DIRECT, more parts than IOV_MAX, errno errors), xorConcat
// (parity of members given as differently cut parts) and pwriteXor (that parity computed and
// written on the pool thread), against plain reference results, plus the Linux block driver's
// writev and writeXor built on them.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { allocAligned, directIoAlignmentBytes, openDirect, pwritev, pwriteXor, uncheckedBindingForTests, xorConcatNative } from '../../firmware/ts/native/index.ts';
import { coalesceViews, xorConcat, xorConcatPortable } from '../../firmware/ts/storage/raid/xor.ts';
import { LinuxBlockDevice } from '../../firmware/ts/hal/block/linux/linux-block-device.ts';
import { BlockErrorCode } from '../../firmware/ts/hal/block/block-device.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { directIoScratch } from '../contract/block-helpers.ts';
import { concatBytes } from '../../firmware/ts/core/bytes.ts';

const { dir, makeFile } = directIoScratch('tb-writev-');

/** 4 KiB pieces: aligned pages of one slab, pages of another, and misaligned copies, mixed. */
function mixedPages(p: Prng, count: number): Uint8Array[] {
  const slabA = allocAligned(8 * 4096);
  const slabB = allocAligned(8 * 4096);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const kind = p.int(3);
    let page: Uint8Array;
    if (kind === 0 && i < 8) page = new Uint8Array(slabA.buffer, slabA.byteOffset + i * 4096, 4096);
    else if (kind === 1 && i < 8) page = new Uint8Array(slabB.buffer, slabB.byteOffset + (7 - i) * 4096, 4096);
    else {
      const off = 8 + p.int(16);
      page = new Uint8Array(4096 + 24).subarray(off, off + 4096);
    }
    page.set(p.bytes(4096));
    out.push(page);
  }
  return out;
}

describe('native pwritev', () => {
  it('writes the parts end to end with O_DIRECT, aligned ones in place and misaligned runs bounced', async () => {
    const path = makeFile('direct.img', 1 << 20);
    const fd = openDirect(path, true);
    try {
      const p = new Prng(5);
      for (let round = 0; round < 6; round++) {
        const parts = mixedPages(p, 12);
        const at = round * 64 * 1024;
        expect(await pwritev(fd, parts, at, directIoAlignmentBytes)).toBe(12 * 4096);
        const back = readFileSync(path).subarray(at, at + 12 * 4096);
        expect(Buffer.from(back).equals(Buffer.from(concatBytes(parts)))).toBe(true);
      }
      // Runs of small misaligned parts whose sum is a whole number of sectors.
      const small = Array.from({ length: 16 }, (_, i) => new Uint8Array(512).fill(i + 1).subarray(i % 3));
      const tail = new Uint8Array(512 * 16 - small.reduce((n, s) => n + s.length, 0)).fill(0x77);
      expect(await pwritev(fd, [...small, tail], 512 * 1024, directIoAlignmentBytes)).toBe(8192);
      expect(Buffer.from(readFileSync(path).subarray(512 * 1024, 512 * 1024 + 8192)).equals(Buffer.from(concatBytes([...small, tail])))).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('bounces a misaligned run larger than a pool thread keeps for reuse', async () => {
    const path = makeFile('big.img', 12 << 20);
    const fd = openDirect(path, true);
    try {
      const big = new Uint8Array((9 << 20) + 16).map((_, i) => (i * 13 + 5) & 0xff).subarray(8, (9 << 20) + 8);
      const small = new Uint8Array(4096 + 8).fill(0x3c).subarray(8);
      // A big bounce (its own buffer), then a small one (the thread's), then the big one again.
      for (const parts of [[big], [small], [small, big.subarray(0, 8192)], [big]]) {
        const n = parts.reduce((k, q) => k + q.length, 0);
        expect(await pwritev(fd, parts, 4096, directIoAlignmentBytes)).toBe(n);
        expect(Buffer.from(readFileSync(path).subarray(4096, 4096 + n)).equals(Buffer.from(concatBytes(parts)))).toBe(true);
      }
    } finally {
      closeSync(fd);
    }
  });

  it('writes more parts than IOV_MAX in batches, merging parts adjacent in memory', async () => {
    const path = makeFile('many.img', 4 << 20);
    const fd = openSync(path, 'r+');
    try {
      const backing = new Uint8Array(3000 * 512).map((_, i) => (i * 7 + 1) & 0xff);
      // Every other part is a separate copy, so adjacent runs alternate with lone parts.
      const parts = Array.from({ length: 3000 }, (_, i) => (i % 2 === 0 ? backing.subarray(i * 512, (i + 1) * 512) : backing.slice(i * 512, (i + 1) * 512)));
      expect(await pwritev(fd, parts, 4096)).toBe(backing.length);
      expect(Buffer.from(readFileSync(path).subarray(4096, 4096 + backing.length)).equals(Buffer.from(backing))).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('rejects with an errno error from the syscall, and checks its arguments on both sides', async () => {
    const path = makeFile('ro.img', 8192);
    const fd = openSync(path, 'r');
    try {
      await expect(pwritev(fd, [new Uint8Array(512)], 0)).rejects.toMatchObject({ code: 'EBADF', syscall: 'pwritev' });
    } finally {
      closeSync(fd);
    }
    expect(() => pwritev(-1, [new Uint8Array(1)], 0)).toThrow(RangeError);
    expect(() => pwritev(1, [], 0)).toThrow(TypeError);
    expect(() => pwritev(1, [new Uint16Array(2) as unknown as Uint8Array], 0)).toThrow(TypeError);
    expect(() => pwritev(1, [new Uint8Array(1)], 0, 3000)).toThrow(RangeError);
    const raw = uncheckedBindingForTests['pwritev'] as (...a: unknown[]) => unknown;
    expect(() => raw(1, [], 0)).toThrow(TypeError);
    expect(() => raw(1, ['x'], 0)).toThrow(TypeError);
    expect(() => raw(1, [new Uint8Array(1)], -1)).toThrow(RangeError);
    expect(() => raw(1, [new Uint8Array(1)], 0, 12)).toThrow(RangeError);
  });
});

describe('native xorConcat', () => {
  it('equals the portable kernel for members cut into parts anywhere (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 40000 }), fc.integer(), (members, n, seed) => {
        const p = new Prng(seed);
        const cuts = Array.from({ length: members }, () => {
          const bytes = p.bytes(n + 16);
          const parts: Uint8Array[] = [];
          let at = 0;
          while (at < n) {
            const len = Math.min(n - at, p.int(3) === 0 ? 0 : 1 + p.int(20000));
            const off = p.int(16);
            parts.push(bytes.subarray(at + off, at + off + len).slice());
            at += len;
          }
          return parts;
        });
        const want = new Uint8Array(n);
        const got = new Uint8Array(n).fill(0x5a);
        xorConcatPortable(want, cuts);
        xorConcatNative(got, cuts);
        return Buffer.from(got).equals(Buffer.from(want));
      }),
      { numRuns: 60 },
    );
  });

  it('refuses members whose parts do not add up to the output, on both sides', () => {
    expect(() => xorConcatNative(new Uint8Array(8), [[new Uint8Array(4)]])).toThrow(RangeError);
    expect(() => xorConcatNative(new Uint8Array(8), [])).toThrow(TypeError);
    expect(() => xorConcat(new Uint8Array(8), [[new Uint8Array(8)], [new Uint8Array(7)]])).toThrow(RangeError);
    const raw = uncheckedBindingForTests['xorConcat'] as (...a: unknown[]) => unknown;
    expect(() => raw(new Uint8Array(8), [[new Uint8Array(4)]])).toThrow(RangeError);
    expect(() => raw(new Uint8Array(8), [new Uint8Array(8)])).toThrow(TypeError);
    expect(() => raw(new Uint8Array(8), [])).toThrow(TypeError);
  });
});

/** `members` members of `n` bytes each, every one cut into parts of random lengths (some misaligned copies). */
function cutMembers(p: Prng, members: number, n: number): Uint8Array[][] {
  return Array.from({ length: members }, () => {
    const bytes = p.bytes(n);
    const parts: Uint8Array[] = [];
    let at = 0;
    while (at < n) {
      const len = Math.min(n - at, 1 + p.int(3 * 4096));
      parts.push(p.int(2) === 0 ? bytes.subarray(at, at + len) : bytes.slice(at, at + len));
      at += len;
    }
    return parts;
  });
}

describe('native pwriteXor', () => {
  it('writes the XOR of the members with O_DIRECT, as xorConcat computes it (property)', async () => {
    const path = makeFile('xor.img', 4 << 20);
    const fd = openDirect(path, true);
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 255 }), fc.integer(), async (members, sectors, at, seed) => {
          const p = new Prng(seed);
          const n = sectors * 4096;
          const cuts = cutMembers(p, members, n);
          const want = new Uint8Array(n);
          xorConcat(want, cuts);
          expect(await pwriteXor(fd, cuts, at * 4096, directIoAlignmentBytes)).toBe(n);
          return Buffer.from(readFileSync(path).subarray(at * 4096, at * 4096 + n)).equals(Buffer.from(want));
        }),
        { numRuns: 25 },
      );
    } finally {
      closeSync(fd);
    }
  });

  it('writes a parity larger than a pool thread keeps, and one smaller after it', async () => {
    const path = makeFile('xor-big.img', 24 << 20);
    const fd = openDirect(path, true);
    try {
      const p = new Prng(3);
      for (const n of [9 << 20, 8192, 10 << 20]) {
        const cuts = cutMembers(p, 3, n);
        const want = new Uint8Array(n);
        xorConcat(want, cuts);
        expect(await pwriteXor(fd, cuts, 4096, directIoAlignmentBytes)).toBe(n);
        expect(Buffer.from(readFileSync(path).subarray(4096, 4096 + n)).equals(Buffer.from(want))).toBe(true);
      }
    } finally {
      closeSync(fd);
    }
  });

  it('rejects with an errno error from the syscall, and checks its arguments on both sides', async () => {
    const path = makeFile('xor-ro.img', 8192);
    const fd = openSync(path, 'r');
    try {
      await expect(pwriteXor(fd, [[new Uint8Array(512)]], 0)).rejects.toMatchObject({ code: 'EBADF', syscall: 'pwrite' });
    } finally {
      closeSync(fd);
    }
    expect(() => pwriteXor(-1, [[new Uint8Array(1)]], 0)).toThrow(RangeError);
    expect(() => pwriteXor(1, [], 0)).toThrow(TypeError);
    expect(() => pwriteXor(1, [[new Uint8Array(8)], [new Uint8Array(7)]], 0)).toThrow(RangeError);
    expect(() => pwriteXor(1, [[]], 0)).toThrow(RangeError);
    expect(() => pwriteXor(1, [[new Uint16Array(2) as unknown as Uint8Array]], 0)).toThrow(TypeError);
    expect(() => pwriteXor(1, [[new Uint8Array(8)]], 0, 3000)).toThrow(RangeError);
    const raw = uncheckedBindingForTests['pwriteXor'] as (...a: unknown[]) => unknown;
    expect(() => raw(1, [], 0)).toThrow(TypeError);
    expect(() => raw(1, [new Uint8Array(8)], 0)).toThrow(TypeError);
    expect(() => raw(1, [[new Uint8Array(8)], [new Uint8Array(4)]], 0)).toThrow(RangeError);
    expect(() => raw(1, [[]], 0)).toThrow(RangeError);
    expect(() => raw(1, [[new Uint8Array(8)]], -1)).toThrow(RangeError);
    expect(() => raw(1, [[new Uint8Array(8)]], 0, 12)).toThrow(RangeError);
  });
});

describe('coalesceViews', () => {
  it('merges views lying end to end in one buffer and keeps the bytes in order', () => {
    const a = new Uint8Array(64).map((_, i) => i);
    const b = new Uint8Array(16).fill(0xff);
    const parts = [a.subarray(0, 8), a.subarray(8, 16), b, a.subarray(16, 32), a.subarray(40, 48), a.subarray(48, 64)];
    const merged = coalesceViews(parts);
    expect(merged.map((v) => [v.byteOffset, v.length])).toEqual([
      [0, 16],
      [0, 16],
      [16, 16],
      [40, 24],
    ]);
    expect(merged[1]).toBe(b);
    expect(Buffer.from(concatBytes(merged)).equals(Buffer.from(concatBytes(parts)))).toBe(true);
    expect(coalesceViews([])).toEqual([]);
  });
});

describe('LinuxBlockDevice.writev', () => {
  it('writes parts like one write of their concatenation, and checks range and alignment of the total', async () => {
    const path = join(dir(), 'dev.img');
    const dev = await LinuxBlockDevice.open(path, { create: true, sizeBytes: 1 << 20, direct: 'prefer' });
    try {
      const parts = mixedPages(new Prng(9), 10);
      await dev.writev(8192, parts);
      expect(Buffer.from(await dev.read(8192, 10 * 4096)).equals(Buffer.from(concatBytes(parts)))).toBe(true);
      // Parts of any size, as long as the total is whole sectors.
      await dev.writev(0, [new Uint8Array(100).fill(1), new Uint8Array(3996).fill(2)]);
      const head = await dev.read(0, 4096);
      expect([head[99], head[100], head[4095]]).toEqual([1, 2, 2]);
      expect(() => dev.writev(0, [new Uint8Array(100)])).toThrow(expect.objectContaining({ code: BlockErrorCode.unaligned }));
      expect(() => dev.writev((1 << 20) - 4096, [new Uint8Array(8192)])).toThrow(expect.objectContaining({ code: BlockErrorCode.outOfRange }));
      await dev.writev(4096, []);
    } finally {
      await dev.close();
    }
    await expect(dev.writev(0, [new Uint8Array(4096)])).rejects.toMatchObject({ code: BlockErrorCode.closed });
  });
});

describe('LinuxBlockDevice.writeXor', () => {
  it('writes the XOR of the members like one write of it, and checks lengths, range and alignment', async () => {
    const path = join(dir(), 'dev-xor.img');
    const dev = await LinuxBlockDevice.open(path, { create: true, sizeBytes: 1 << 20, direct: 'prefer' });
    try {
      const cuts = cutMembers(new Prng(11), 3, 6 * 4096);
      const want = new Uint8Array(6 * 4096);
      xorConcat(want, cuts);
      await dev.writeXor(8192, cuts);
      expect(Buffer.from(await dev.read(8192, 6 * 4096)).equals(Buffer.from(want))).toBe(true);
      expect(() => dev.writeXor(0, [[new Uint8Array(100)]])).toThrow(expect.objectContaining({ code: BlockErrorCode.unaligned }));
      expect(() => dev.writeXor(0, [[new Uint8Array(4096)], [new Uint8Array(512)]])).toThrow(expect.objectContaining({ code: BlockErrorCode.unaligned }));
      expect(() => dev.writeXor(0, [])).toThrow(expect.objectContaining({ code: BlockErrorCode.unaligned }));
      expect(() => dev.writeXor((1 << 20) - 4096, [[new Uint8Array(8192)]])).toThrow(expect.objectContaining({ code: BlockErrorCode.outOfRange }));
      await dev.writeXor(4096, [[]]);
    } finally {
      await dev.close();
    }
    await expect(dev.writeXor(0, [[new Uint8Array(4096)]])).rejects.toMatchObject({ code: BlockErrorCode.closed });
  });
});
