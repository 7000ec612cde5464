// The BlockDevice contract (hal/block/block-device.ts), run by test files against every
// driver: round trips, alignment and range checks, closed devices, buffer ownership,
// concurrency and a model-checked random workload.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { BlockDevice } from '../../firmware/ts/hal/block/block-device.ts';
import { BlockErrorCode } from '../../firmware/ts/hal/block/block-device.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';

export interface BlockDriverUnderTest {
  device: BlockDevice;
  /** Runs an operation to completion (sim drivers drive their manual timers here). */
  settle<T>(p: Promise<T>): Promise<T>;
  /** Releases files and handles; called after the device was closed. */
  teardown?(): Promise<void>;
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Byte equality; fast on large arrays (toEqual walks elements), with the full diff only on a mismatch. */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  if (actual.length === expected.length && Buffer.compare(actual, expected) === 0) return;
  expect(actual).toEqual(expected);
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

async function expectRejectCode(p: Promise<unknown>, code: string): Promise<void> {
  const e: unknown = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `expected a rejection with ${code}`).toBeInstanceOf(TwinbladeError);
  expect((e as TwinbladeError).code).toBe(code);
}

/** Registers the contract suite for one driver. `makeDriver` is called once per test. */
export function blockContract(name: string, makeDriver: () => Promise<BlockDriverUnderTest>): void {
  describe(`BlockDevice contract: ${name}`, () => {
    async function withDriver(fn: (d: BlockDriverUnderTest) => Promise<void>): Promise<void> {
      const d = await makeDriver();
      try {
        await fn(d);
      } finally {
        await d.settle(d.device.close());
        await d.teardown?.();
      }
    }

    it('describes itself: a name, a sector size of 512 or 4096, a size that is a multiple of it', () =>
      withDriver(async ({ device }) => {
        expect(device.name.length).toBeGreaterThan(0);
        expect([512, 4096]).toContain(device.sectorSize);
        expect(device.sizeBytes % device.sectorSize).toBe(0);
        expect(device.sizeBytes).toBeGreaterThanOrEqual(16 * device.sectorSize);
      }));

    it('reads back what was written, at the start, the middle and the last sector', () =>
      withDriver(async ({ device, settle }) => {
        const ss = device.sectorSize;
        const spots = [0, 5 * ss, device.sizeBytes - ss];
        for (const [i, off] of spots.entries()) await settle(device.write(off, pattern(ss, i + 1)));
        await settle(device.write(ss, pattern(3 * ss, 9)));
        for (const [i, off] of spots.entries()) expectBytes(await settle(device.read(off, ss)), pattern(ss, i + 1));
        expectBytes(await settle(device.read(ss, 3 * ss)), pattern(3 * ss, 9));
        await settle(device.flush());
        expectBytes(await settle(device.read(ss, 3 * ss)), pattern(3 * ss, 9));
      }));

    it('accepts zero-length operations inside the device, including at its end', () =>
      withDriver(async ({ device, settle }) => {
        expect((await settle(device.read(device.sizeBytes, 0))).length).toBe(0);
        await settle(device.write(0, new Uint8Array(0)));
      }));

    it('rejects unaligned offsets and lengths synchronously with ERR_BLOCK_UNALIGNED and changes nothing', () =>
      withDriver(async ({ device, settle }) => {
        const ss = device.sectorSize;
        await settle(device.write(0, pattern(2 * ss, 3)));
        expectCode(() => device.write(1, new Uint8Array(ss)), BlockErrorCode.unaligned);
        expectCode(() => device.write(0, new Uint8Array(ss - 1)), BlockErrorCode.unaligned);
        expectCode(() => device.write(ss / 2, new Uint8Array(ss)), BlockErrorCode.unaligned);
        expectCode(() => device.read(0, 100), BlockErrorCode.unaligned);
        expectCode(() => device.read(-ss, ss), BlockErrorCode.unaligned);
        expectCode(() => device.read(0.5, ss), BlockErrorCode.unaligned);
        expectCode(() => device.read(Number.NaN, ss), BlockErrorCode.unaligned);
        expectCode(() => device.read(0, -ss), BlockErrorCode.unaligned);
        expectCode(() => device.read(0, Number.POSITIVE_INFINITY), BlockErrorCode.unaligned);
        expectCode(() => device.read('0' as unknown as number, ss), BlockErrorCode.unaligned);
        expectBytes(await settle(device.read(0, 2 * ss)), pattern(2 * ss, 3));
      }));

    it('rejects ranges outside the device synchronously with ERR_BLOCK_OUT_OF_RANGE', () =>
      withDriver(async ({ device, settle }) => {
        const ss = device.sectorSize;
        expectCode(() => device.read(device.sizeBytes, ss), BlockErrorCode.outOfRange);
        expectCode(() => device.read(device.sizeBytes - ss, 2 * ss), BlockErrorCode.outOfRange);
        expectCode(() => device.write(device.sizeBytes + ss, new Uint8Array(0)), BlockErrorCode.outOfRange);
        expectCode(() => device.write(device.sizeBytes - ss, new Uint8Array(2 * ss)), BlockErrorCode.outOfRange);
        expectCode(() => device.read(2 ** 53 - ss, ss), BlockErrorCode.outOfRange);
        expect((await settle(device.read(device.sizeBytes - ss, ss))).length).toBe(ss);
      }));

    it('answers any offset and length with a result or one of the documented synchronous errors', () =>
      withDriver(async ({ device, settle }) => {
        const ss = device.sectorSize;
        const anyNumber = fc.oneof(
          fc.integer({ min: -4, max: 20 }).map((k) => k * ss),
          fc.integer({ min: -10 * ss, max: 10 * ss }),
          fc.double({ noNaN: false }),
          fc.constantFrom(device.sizeBytes, device.sizeBytes - ss, device.sizeBytes + ss, 2 ** 53, -0, Number.MAX_VALUE),
        );
        await fc.assert(
          fc.asyncProperty(anyNumber, anyNumber, fc.boolean(), async (offset, length, isWrite) => {
            let p: Promise<unknown>;
            try {
              p = isWrite ? device.write(offset, new Uint8Array(Number.isSafeInteger(length) && length >= 0 && length <= 64 * ss ? length : ss)) : device.read(offset, length);
            } catch (e) {
              expect(e).toBeInstanceOf(TwinbladeError);
              expect([BlockErrorCode.unaligned, BlockErrorCode.outOfRange]).toContain((e as TwinbladeError).code);
              return;
            }
            await settle(p);
          }),
          { numRuns: 150 },
        );
      }));

    it('rejects every operation with ERR_BLOCK_CLOSED once closed; close is idempotent', async () => {
      const d = await makeDriver();
      const { device, settle } = d;
      const ss = device.sectorSize;
      await settle(device.close());
      await settle(device.close());
      await expectRejectCode(settle(device.read(0, ss)), BlockErrorCode.closed);
      await expectRejectCode(settle(device.write(0, new Uint8Array(ss))), BlockErrorCode.closed);
      await expectRejectCode(settle(device.flush()), BlockErrorCode.closed);
      // Argument errors still win over the closed state: they are the caller's bug.
      expectCode(() => device.read(1, ss), BlockErrorCode.unaligned);
      await d.teardown?.();
    });

    it('lets operations in flight at close complete or reject ERR_BLOCK_CLOSED', async () => {
      const d = await makeDriver();
      const { device, settle } = d;
      const ss = device.sectorSize;
      const ops = [device.write(0, pattern(ss, 1)), device.read(ss, ss), device.flush()];
      const closing = device.close();
      const results = await settle(Promise.allSettled([...ops, closing]));
      for (const r of results) {
        if (r.status === 'rejected') expect((r.reason as TwinbladeError).code).toBe(BlockErrorCode.closed);
      }
      await d.teardown?.();
    });

    it('copies unaligned caller memory and lets the caller reuse its buffer once the write settles', () =>
      withDriver(async ({ device, settle }) => {
        const ss = device.sectorSize;
        const backing = new Uint8Array(4 * ss + 1);
        const data = backing.subarray(1, 1 + 2 * ss);
        data.set(pattern(2 * ss, 4));
        await settle(device.write(2 * ss, data));
        data.fill(0xee);
        expectBytes(await settle(device.read(2 * ss, 2 * ss)), pattern(2 * ss, 4));
      }));

    it('allocateBuffer, where offered, gives zeroed buffers of the size asked that write and read back', () =>
      withDriver(async ({ device, settle }) => {
        if (device.allocateBuffer === undefined) return;
        const ss = device.sectorSize;
        const buf = device.allocateBuffer(2 * ss);
        expect(buf.length).toBe(2 * ss);
        expect(buf.every((b) => b === 0)).toBe(true);
        buf.set(pattern(2 * ss, 6));
        await settle(device.write(ss, buf));
        expectBytes(await settle(device.read(ss, 2 * ss)), pattern(2 * ss, 6));
      }));

    it('returns reads that the caller owns', () =>
      withDriver(async ({ device, settle }) => {
        const ss = device.sectorSize;
        await settle(device.write(0, pattern(ss, 5)));
        const first = await settle(device.read(0, ss));
        first.fill(0);
        expectBytes(await settle(device.read(0, ss)), pattern(ss, 5));
      }));

    it('runs concurrent operations on disjoint ranges', () =>
      withDriver(async ({ device, settle }) => {
        const ss = device.sectorSize;
        const n = 12;
        await settle(Promise.all(Array.from({ length: n }, (_, i) => device.write(i * ss, pattern(ss, 100 + i)))));
        const reads = await settle(Promise.all(Array.from({ length: n }, (_, i) => device.read(i * ss, ss))));
        reads.forEach((r, i) => expectBytes(r, pattern(ss, 100 + i)));
        await settle(Promise.all([device.flush(), device.flush()]));
      }));

    it('agrees with a simple model under a random sequence of writes, reads and flushes', () =>
      withDriver(async ({ device, settle }) => {
        const ss = device.sectorSize;
        const sectors = Math.min(64, device.sizeBytes / ss);
        const model = new Map<number, number>(); // sector -> fill byte
        await settle(device.write(0, new Uint8Array(sectors * ss)));
        await fc.assert(
          fc.asyncProperty(
            fc.array(
              fc.oneof(
                fc.record({ kind: fc.constant('write' as const), at: fc.nat(sectors - 1), n: fc.integer({ min: 1, max: 4 }), fill: fc.integer({ min: 1, max: 255 }) }),
                fc.record({ kind: fc.constant('read' as const), at: fc.nat(sectors - 1), n: fc.integer({ min: 1, max: 4 }) }),
                fc.record({ kind: fc.constant('flush' as const) }),
              ),
              { maxLength: 20 },
            ),
            async (ops) => {
              for (const op of ops) {
                if (op.kind === 'flush') {
                  await settle(device.flush());
                  continue;
                }
                const n = Math.min(op.n, sectors - op.at);
                if (op.kind === 'write') {
                  await settle(device.write(op.at * ss, new Uint8Array(n * ss).fill(op.fill)));
                  for (let s = op.at; s < op.at + n; s++) model.set(s, op.fill);
                } else {
                  const got = await settle(device.read(op.at * ss, n * ss));
                  for (let s = 0; s < n; s++) {
                    const want = model.get(op.at + s) ?? 0;
                    expect(got[s * ss]).toBe(want);
                    expect(got[s * ss + ss - 1]).toBe(want);
                  }
                }
              }
            },
          ),
          { numRuns: 25 },
        );
      }));
  });
}
