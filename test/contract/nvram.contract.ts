// The Nvram contract (hal/nvram/nvram.ts), run by test files against every driver: byte
// addressing, copies in and out, gather writes, range and argument checks, closed handles,
// persistence across a reopen, and a model-checked random workload.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Nvram } from '../../firmware/ts/hal/nvram/nvram.ts';
import { NvramErrorCode } from '../../firmware/ts/hal/nvram/nvram.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';

export interface NvramDriverUnderTest {
  nvram: Nvram;
  /**
   * Opens the same memory again after `nvram` was closed (a reboot): what was persisted must
   * be there. Omitted by drivers whose memory cannot outlive the handle.
   */
  reopen?(): Promise<Nvram>;
  teardown?(): Promise<void>;
}

function expectCode(fn: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected a synchronous ${code}`).toBeInstanceOf(TwinbladeError);
  expect((thrown as TwinbladeError).code).toBe(code);
}

function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + 1) & 0xff);
}

/** Registers the contract suite for one driver; `makeDriver` is called once per test. */
export function nvramContract(name: string, makeDriver: () => Promise<NvramDriverUnderTest>): void {
  describe(`Nvram contract: ${name}`, () => {
    async function withDriver(fn: (d: NvramDriverUnderTest) => Promise<void>): Promise<void> {
      const d = await makeDriver();
      try {
        await fn(d);
      } finally {
        await d.nvram.close();
        await d.teardown?.();
      }
    }

    it('is byte addressed: writes at any offset are readable at once', () =>
      withDriver(async ({ nvram }) => {
        expect(nvram.name.length).toBeGreaterThan(0);
        expect(nvram.sizeBytes).toBeGreaterThanOrEqual(1024);
        nvram.write(0, bytes(3, 1));
        nvram.write(13, bytes(100, 2));
        nvram.write(nvram.sizeBytes - 5, bytes(5, 3));
        nvram.write(8, Uint8Array.of(0xaa));
        expect(nvram.read(0, 3)).toEqual(bytes(3, 1));
        expect(nvram.read(13, 100)).toEqual(bytes(100, 2));
        expect(nvram.read(nvram.sizeBytes - 5, 5)).toEqual(bytes(5, 3));
        expect(nvram.read(8, 1)[0]).toBe(0xaa);
        expect(nvram.read(nvram.sizeBytes, 0).length).toBe(0);
        nvram.write(nvram.sizeBytes, new Uint8Array(0));
        await nvram.persist();
      }));

    it('copies in and out: neither the source nor a read result aliases the memory', () =>
      withDriver(async ({ nvram }) => {
        const src = bytes(16, 4);
        nvram.write(64, src);
        src.fill(0);
        const out = nvram.read(64, 16);
        expect(out).toEqual(bytes(16, 4));
        out.fill(1);
        expect(nvram.read(64, 16)).toEqual(bytes(16, 4));
      }));

    it('writeParts stores the joined parts, copying them, as write of the joined bytes would', () =>
      withDriver(async ({ nvram }) => {
        const a = bytes(5, 11);
        const b = bytes(300, 12);
        const c = bytes(3, 13);
        nvram.writeParts(40, [a, new Uint8Array(0), b, c]);
        a.fill(0);
        b.fill(0);
        const joined = new Uint8Array([...bytes(5, 11), ...bytes(300, 12), ...bytes(3, 13)]);
        expect(nvram.read(40, joined.length)).toEqual(joined);
        // Small gathers (inside one aligned word) and a single part.
        nvram.writeParts(8, [Uint8Array.of(1, 2), Uint8Array.of(3), Uint8Array.of(4, 5, 6, 7, 8)]);
        expect([...nvram.read(8, 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        nvram.writeParts(nvram.sizeBytes - 4, [bytes(4, 14)]);
        expect(nvram.read(nvram.sizeBytes - 4, 4)).toEqual(bytes(4, 14));
        nvram.writeParts(nvram.sizeBytes, []);
        await nvram.persist();
        expect(nvram.read(40, joined.length)).toEqual(joined);
      }));

    it('writeParts checks the joined range and every part before storing anything', () =>
      withDriver(async ({ nvram }) => {
        const end = nvram.sizeBytes;
        nvram.write(end - 8, bytes(8, 15));
        expectCode(() => nvram.writeParts(end - 8, [bytes(4, 16), bytes(5, 17)]), NvramErrorCode.outOfRange);
        expectCode(() => nvram.writeParts(end - 8, [bytes(4, 16), [1, 2] as unknown as Uint8Array]), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.writeParts(end - 8, bytes(4, 16) as unknown as Uint8Array[]), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.writeParts(-8, [bytes(4, 16)]), NvramErrorCode.invalidArgument);
        expect(nvram.read(end - 8, 8)).toEqual(bytes(8, 15));
      }));

    it('rejects ranges past the end with ERR_NVRAM_OUT_OF_RANGE and changes nothing', () =>
      withDriver(async ({ nvram }) => {
        const end = nvram.sizeBytes;
        nvram.write(end - 4, bytes(4, 5));
        expectCode(() => nvram.write(end - 3, bytes(4, 6)), NvramErrorCode.outOfRange);
        expectCode(() => nvram.write(end + 1, new Uint8Array(0)), NvramErrorCode.outOfRange);
        expectCode(() => nvram.read(end - 3, 4), NvramErrorCode.outOfRange);
        expectCode(() => nvram.read(0, end + 1), NvramErrorCode.outOfRange);
        expectCode(() => nvram.read(2 ** 53 - 1, 1), NvramErrorCode.outOfRange);
        expect(nvram.read(end - 4, 4)).toEqual(bytes(4, 5));
      }));

    it('rejects negative or non-integer arguments with ERR_NVRAM_INVALID_ARGUMENT', () =>
      withDriver(async ({ nvram }) => {
        expectCode(() => nvram.read(-1, 1), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.read(0, -1), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.read(1.5, 1), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.read(Number.NaN, 1), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.read('0' as unknown as number, 1), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.write(-8, bytes(1, 1)), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.write(0, [1, 2] as unknown as Uint8Array), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.persist(-1, 4), NvramErrorCode.invalidArgument);
        expectCode(() => nvram.persist(0, nvram.sizeBytes + 1), NvramErrorCode.outOfRange);
      }));

    it('answers any offset and length with a result or one of the documented synchronous errors', () =>
      withDriver(async ({ nvram }) => {
        const anyNumber = fc.oneof(
          fc.integer({ min: -16, max: nvram.sizeBytes + 16 }),
          fc.double({ noNaN: false }),
          fc.constantFrom(nvram.sizeBytes, 2 ** 53, -0, Number.MAX_VALUE, Number.NEGATIVE_INFINITY),
        );
        fc.assert(
          fc.property(anyNumber, anyNumber, fc.nat(3), (offset, length, which) => {
            try {
              if (which === 0) nvram.read(offset, length);
              else if (which === 1) nvram.write(offset, new Uint8Array(Number.isSafeInteger(length) && length >= 0 && length <= 4096 ? length : 1));
              else void nvram.persist(offset, length);
            } catch (e) {
              expect(e).toBeInstanceOf(TwinbladeError);
              expect([NvramErrorCode.invalidArgument, NvramErrorCode.outOfRange]).toContain((e as TwinbladeError).code);
            }
          }),
          { numRuns: 200 },
        );
        await nvram.persist();
      }));

    it('persists everything or a range', () =>
      withDriver(async ({ nvram }) => {
        nvram.write(100, bytes(50, 7));
        await nvram.persist(100, 50);
        await nvram.persist(0, 0);
        await nvram.persist();
        expect(nvram.read(100, 50)).toEqual(bytes(50, 7));
      }));

    it('throws ERR_NVRAM_CLOSED after close; close is idempotent', async () => {
      const d = await makeDriver();
      const { nvram } = d;
      await nvram.close();
      await nvram.close();
      expectCode(() => nvram.read(0, 1), NvramErrorCode.closed);
      expectCode(() => nvram.write(0, bytes(1, 1)), NvramErrorCode.closed);
      expectCode(() => nvram.writeParts(0, [bytes(1, 1), bytes(9, 2)]), NvramErrorCode.closed);
      const e: unknown = await nvram.persist().catch((err: unknown) => err);
      expect((e as TwinbladeError).code).toBe(NvramErrorCode.closed);
      await d.teardown?.();
    });

    it('keeps persisted content across close and reopen', async () => {
      const d = await makeDriver();
      if (d.reopen === undefined) {
        await d.nvram.close();
        await d.teardown?.();
        return;
      }
      d.nvram.write(200, bytes(300, 8));
      d.nvram.write(7, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
      await d.nvram.persist();
      await d.nvram.close();
      const again = await d.reopen();
      try {
        expect(again.sizeBytes).toBe(d.nvram.sizeBytes);
        expect(again.read(200, 300)).toEqual(bytes(300, 8));
        expect([...again.read(7, 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      } finally {
        await again.close();
        await d.teardown?.();
      }
    });

    it('agrees with a byte-array model under random writes and persists', () =>
      withDriver(async ({ nvram }) => {
        const span = Math.min(nvram.sizeBytes, 512);
        nvram.write(0, new Uint8Array(span));
        const model = new Uint8Array(span);
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.record({ at: fc.nat(span - 1), data: fc.uint8Array({ minLength: 0, maxLength: 40 }), cut: fc.nat(40), gather: fc.boolean(), persist: fc.boolean() }), { maxLength: 25 }),
            async (ops) => {
              for (const op of ops) {
                const data = op.data.subarray(0, span - op.at);
                if (op.gather) nvram.writeParts(op.at, [data.subarray(0, op.cut), data.subarray(op.cut)]);
                else nvram.write(op.at, data);
                model.set(data, op.at);
                if (op.persist) await nvram.persist();
              }
              await nvram.persist();
              expect(nvram.read(0, span)).toEqual(model);
            },
          ),
          { numRuns: 30 },
        );
      }));
  });
}
