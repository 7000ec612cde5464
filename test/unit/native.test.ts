// Unit tests of the native addon through its typed API: aligned buffers, O_DIRECT I/O,
// mmap/msync/munmap, openpty, CRC32C (hardware path equals the portable TypeScript one) and
// errno-shaped errors for bad input, which must never crash the process.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ReadStream } from 'node:tty';
import {
  allocAligned,
  blockDeviceInfo,
  crc32cImplementation,
  crc32cNative,
  crc32cNativePortable,
  fdatasync,
  isAligned,
  isSyscallError,
  mmap,
  msync,
  munmap,
  nativeVersion,
  openDirect,
  openPty,
  pageSizeBytes,
  pread,
  pwrite,
  storeFence,
  tuneDaemonMalloc,
  underReportToGc,
  adjustExternalMemory,
  tuneMalloc,
  uncheckedBindingForTests,
} from '../../firmware/ts/native/index.ts';
import { crc32c, crc32cPortable } from '../../firmware/ts/core/crc32c.ts';
import { utf8Encode } from '../../firmware/ts/core/bytes.ts';
import { directIoScratch } from '../contract/block-helpers.ts';

const { dir, makeFile } = directIoScratch('tb-native-');

describe('native addon: loading', () => {
  it('reports its version, page size and CRC path', () => {
    expect(nativeVersion).toBeGreaterThanOrEqual(2);
    expect(pageSizeBytes % 4096).toBe(0);
    expect(['sse4.2', 'armv8-crc', 'portable']).toContain(crc32cImplementation);
    if (process.arch === 'x64') expect(crc32cImplementation).toBe('sse4.2');
  });
});

describe('native addon: allocator tuning', () => {
  it('sets glibc thresholds and refuses bad values before calling the C library', () => {
    // Debian's C library is glibc: the settings take.
    expect(tuneDaemonMalloc()).toBe(true);
    expect(tuneMalloc(32 * 1024 * 1024, 1024 * 1024 * 1024)).toBe(true);
    expect(() => tuneMalloc(-1, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => tuneMalloc(0, 2 ** 31)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => tuneMalloc('1' as unknown as number, 0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    const raw = uncheckedBindingForTests['tuneMalloc'] as (...a: unknown[]) => unknown;
    expect(() => raw(1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => raw(-5, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => raw(Number.NaN, 0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });
});

describe('native addon: external memory accounting', () => {
  it('adjusts V8\'s count, and underReportToGc takes the given bytes off it', () => {
    // The buffer's own allocation counts too: read the count after it.
    const buf = new ArrayBuffer(1 << 20);
    const before = adjustExternalMemory(0);
    expect(adjustExternalMemory(4096)).toBe(before + 4096);
    expect(adjustExternalMemory(-4096)).toBe(before);
    underReportToGc(buf, 3 << 18);
    expect(adjustExternalMemory(0)).toBe(before - (3 << 18));
    underReportToGc(buf, 0);
    expect(adjustExternalMemory(0)).toBe(before - (3 << 18));
    // Balanced by hand here (the registry does it when the buffer is collected).
    adjustExternalMemory(3 << 18);
    expect(() => underReportToGc(buf, (1 << 20) + 1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => underReportToGc(buf, -1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => adjustExternalMemory(0.5)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => adjustExternalMemory('1' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    const raw = uncheckedBindingForTests['adjustExternalMemory'] as (...a: unknown[]) => unknown;
    expect(() => raw()).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => raw(Number.NaN)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => raw(2 ** 60)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(adjustExternalMemory(0)).toBe(before);
  });
});

describe('native addon: crc32c', () => {
  it('matches the standard check value on both paths', () => {
    expect(crc32cNative(utf8Encode('123456789'))).toBe(0xe3069283);
    expect(crc32cNativePortable(utf8Encode('123456789'))).toBe(0xe3069283);
    expect(crc32cNative(new Uint8Array(0), 0x1234)).toBe(0x1234);
  });
  it('equals core/crc32c.ts for any data, seed and view offset', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(7), fc.integer({ min: 0, max: 0xffffffff }), (data, skip, seed) => {
        const view = data.subarray(Math.min(skip, data.length));
        const expected = crc32cPortable(view, seed);
        expect(crc32cNative(view, seed)).toBe(expected);
        expect(crc32cNativePortable(view, seed)).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });
  it('joins its three interleaved streams exactly: lengths around 3 x 256 and 3 x 8192 bytes, any seed and offset', () => {
    // The hardware path runs three streams over three adjacent blocks (8 KiB, then 256 B) and
    // joins them with zero-append operators; the tail is one stream.
    const big = new Uint8Array(4 * 3 * 8192 + 64).map((_, i) => (i * 131 + (i >> 9)) & 0xff);
    const lengths = [0, 767, 768, 769, 775, 776, 1536, 1543, 24_575, 24_576, 24_577, 24_583, 25_344, 49_152, 49_159, 3 * 8192 + 3 * 256 + 7];
    fc.assert(
      fc.property(fc.constantFrom(...lengths), fc.nat(63), fc.integer({ min: 0, max: 0xffffffff }), (len, skip, seed) => {
        const view = big.subarray(skip, skip + len);
        expect(crc32cNative(view, seed)).toBe(crc32cPortable(view, seed));
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 700, maxLength: 60_000 }), (data) => {
        expect(crc32cNative(data, 7)).toBe(crc32cNativePortable(data, 7));
      }),
      { numRuns: 60 },
    );
  });
  it('is installed into core/crc32c.ts at import, for short and long inputs alike', () => {
    const big = new Uint8Array(10_000).map((_, i) => (i * 7) & 0xff);
    expect(crc32c(big, 5)).toBe(crc32cPortable(big, 5));
    expect(crc32c(big.subarray(0, 10), 5)).toBe(crc32cPortable(big.subarray(0, 10), 5));
  });
  it('rejects bad arguments with a TypeError or RangeError', () => {
    expect(() => crc32cNative('abc' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => crc32cNative(new Uint8Array(1), -1)).toThrow(RangeError);
    expect(() => crc32cNative(new Uint8Array(1), 2 ** 32)).toThrow(RangeError);
  });
});

describe('native addon: aligned buffers', () => {
  it('allocates zeroed buffers on the requested boundary', () => {
    for (const alignment of [512, 4096, 65536]) {
      const b = allocAligned(3 * 4096, alignment);
      expect(b.length).toBe(3 * 4096);
      expect(isAligned(b, alignment)).toBe(true);
      expect(b.every((x) => x === 0)).toBe(true);
    }
    expect(allocAligned(0).length).toBe(0);
    expect(isAligned(allocAligned(4096).subarray(1), 2)).toBe(false);
  });
  it('rejects bad sizes and alignments', () => {
    expect(() => allocAligned(-1)).toThrow(RangeError);
    expect(() => allocAligned(1.5)).toThrow(RangeError);
    expect(() => allocAligned(4096, 3000)).toThrow(RangeError);
    expect(() => allocAligned('x' as unknown as number)).toThrow(TypeError);
  });
});

describe('native addon: O_DIRECT I/O', () => {
  it('writes, reads back and syncs aligned buffers', async () => {
    const path = makeFile('direct.img', 1 << 20);
    const fd = openDirect(path, true);
    try {
      const w = allocAligned(8192);
      w.fill(0xab, 0, 4096);
      w.fill(0xcd, 4096);
      expect(await pwrite(fd, w, 65536)).toBe(8192);
      await fdatasync(fd);
      const r = allocAligned(8192);
      expect(await pread(fd, r, 65536)).toBe(8192);
      expect(Buffer.compare(r, w)).toBe(0);
      // Reading across end of file returns a short count rather than failing.
      expect(await pread(fd, allocAligned(8192), (1 << 20) - 4096)).toBe(4096);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(path)[65536]).toBe(0xab);
  });
  it('surfaces errno as code/errno/syscall', async () => {
    const path = makeFile('errs.img', 1 << 16);
    const fd = openDirect(path, true);
    try {
      const unaligned = Buffer.alloc(4097).subarray(1);
      const err: unknown = await pwrite(fd, unaligned, 1).catch((e: unknown) => e);
      expect(isSyscallError(err, 'EINVAL')).toBe(true);
      expect((err as { errno: number }).errno).toBe(-22);
      expect((err as { syscall: string }).syscall).toBe('pwrite');
      expect(() => blockDeviceInfo(fd)).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
    } finally {
      closeSync(fd);
    }
    expect(() => openDirect(join(dir(), 'missing'), false)).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'open' }));
    const ro = openDirect(path, false);
    try {
      const err: unknown = await pwrite(ro, allocAligned(4096), 0).catch((e: unknown) => e);
      expect(isSyscallError(err, 'EBADF')).toBe(true);
    } finally {
      closeSync(ro);
    }
    const err: unknown = await fdatasync(999_999).catch((e: unknown) => e);
    expect(isSyscallError(err, 'EBADF')).toBe(true);
  });
  it('checks arguments before queuing work', () => {
    expect(() => pread(-1, allocAligned(4096), 0)).toThrow(RangeError);
    expect(() => pread(3, {} as Uint8Array, 0)).toThrow(TypeError);
    expect(() => pwrite(3, allocAligned(4096), 0.5)).toThrow(RangeError);
    expect(() => openDirect(42 as unknown as string, true)).toThrow(TypeError);
    expect(() => openDirect('', true)).toThrow(TypeError);
  });
});

describe('native addon: C++-side argument checks (bypassing the TypeScript ones)', () => {
  type Fn = (...args: unknown[]) => unknown;
  const raw = (name: string): Fn => uncheckedBindingForTests[name] as Fn;
  const cases: [string, unknown[], typeof TypeError | typeof RangeError][] = [
    ['allocAligned', [-1], RangeError],
    ['allocAligned', [4096, 12], RangeError],
    ['allocAligned', [2 ** 33], RangeError],
    ['allocAligned', ['4096'], TypeError],
    ['isAligned', [42, 8], TypeError],
    ['openDirect', [1, true], TypeError],
    ['openDirect', ['/x', 'yes'], TypeError],
    ['blockDeviceInfo', [-3], RangeError],
    ['pread', [0, 'buffer', 0], TypeError],
    ['pread', [0, new Uint8Array(8), -1], RangeError],
    ['pwrite', [2 ** 40, new Uint8Array(8), 0], RangeError],
    ['pwrite', [0, new Uint8Array(8)], TypeError],
    ['fdatasync', [1.5], RangeError],
    ['mmap', [0, 0], RangeError],
    ['mmap', [0, 4096, 'rw'], TypeError],
    ['munmap', [new Uint8Array(8)], TypeError],
    ['msync', [new ArrayBuffer(8), 0, 1, true], TypeError],
    ['crc32c', [null], TypeError],
    ['crc32c', [new Uint8Array(1), 2 ** 32], RangeError],
    ['crc32cPortable', [new Uint8Array(1), -1], RangeError],
  ];
  for (const [name, args, cls] of cases) {
    it(`${name}(${args.map((a) => (ArrayBuffer.isView(a) ? 'view' : a instanceof ArrayBuffer ? 'ArrayBuffer' : JSON.stringify(a))).join(', ')}) throws ${cls.name}`, () => {
      let thrown: unknown;
      try {
        raw(name)(...args);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(cls);
      expect((thrown as { code: string }).code).toBe(cls === TypeError ? 'ERR_INVALID_ARG_TYPE' : 'ERR_OUT_OF_RANGE');
    });
  }
});

describe('native addon: mmap', () => {
  it('maps a file shared, msyncs it and unmaps it by detaching', async () => {
    const path = makeFile('map.img', 3 * pageSizeBytes);
    const fd = openSync(path, 'r+');
    try {
      const ab = mmap(fd, 3 * pageSizeBytes);
      const view = new Uint8Array(ab);
      view.set(utf8Encode('nvram'), pageSizeBytes + 10);
      storeFence();
      await msync(ab, pageSizeBytes + 10, 5, true);
      await msync(ab, 0, 3 * pageSizeBytes, false);
      expect(readFileSync(path).subarray(pageSizeBytes + 10, pageSizeBytes + 15).toString()).toBe('nvram');
      expect(() => msync(ab, 0, 4 * pageSizeBytes, true)).toThrow(RangeError);
      munmap(ab);
      expect(ab.byteLength).toBe(0);
      expect(view.length).toBe(0);
      expect(() => munmap(ab)).toThrow(TypeError);
      expect(() => msync(new ArrayBuffer(8), 0, 1, true)).toThrow(TypeError);
    } finally {
      closeSync(fd);
    }
  });
  it('reports mmap failures with errno', () => {
    expect(() => mmap(999_999, 4096)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'mmap' }));
    expect(() => mmap(0, 0)).toThrow(RangeError);
  });
});

describe('native addon: openpty', () => {
  it('gives a raw pair: bytes pass unchanged in both directions', async () => {
    const pty = openPty();
    expect(pty.slavePath).toMatch(/^\/dev\/pts\/\d+$/);
    const masterIn = new ReadStream(pty.master);
    try {
      // Raw mode: CR/LF and control bytes are not translated or echoed.
      const sent = Uint8Array.from([0x0d, 0x0a, 0x03, 0x04, 0x00, 0xff, 0x7f, 0x11, 0x13]);
      const got = new Promise<Buffer>((resolve) => masterIn.once('data', (d: Buffer) => resolve(d)));
      writeSync(pty.slave, sent);
      expect([...(await got)]).toEqual([...sent]);
      writeSync(pty.master, Uint8Array.from([0x0d, 0x00, 0xfe]));
      // A blocking read on the slave returns as soon as the line discipline has the bytes.
      const back = Buffer.alloc(3);
      let n = 0;
      while (n < 3) n += readSync(pty.slave, back, n, 3 - n, null);
      expect([...back]).toEqual([0x0d, 0x00, 0xfe]);
    } finally {
      masterIn.destroy();
      closeSync(pty.slave);
    }
  });

  it('gives a non-blocking master: a read of an empty queue fails with EAGAIN instead of blocking the event loop', async () => {
    const pty = openPty();
    try {
      expect(() => readSync(pty.master, Buffer.alloc(16), 0, 16, null)).toThrow(expect.objectContaining({ code: 'EAGAIN' }));
      writeSync(pty.slave, Uint8Array.from([1, 2, 3]));
      const got = Buffer.alloc(16);
      let n = 0;
      // The kernel hands the bytes to the master side from a work queue: poll for them.
      for (let i = 0; i < 2000 && n < 3; i++) {
        try {
          n += readSync(pty.master, got, n, 16 - n, null);
        } catch (e) {
          if ((e as { code?: string }).code !== 'EAGAIN') throw e;
          await new Promise((r) => setTimeout(r, 1));
        }
      }
      expect([...got.subarray(0, n)]).toEqual([1, 2, 3]);
    } finally {
      closeSync(pty.master);
      closeSync(pty.slave);
    }
  });
});
