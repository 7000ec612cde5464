// The SerialPort contract (hal/serial/serial-port.ts), run by test files against every driver
// on a connected pair: opening, bytes in both directions, back-pressure and drain, closed
// ports, cancellation of queued bytes at close, and argument checks.
import { describe, expect, it } from 'vitest';
import type { SerialPort } from '../../firmware/ts/hal/serial/serial-port.ts';
import { SerialErrorCode } from '../../firmware/ts/hal/serial/serial-port.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';

export interface SerialPairUnderTest {
  /** Two unopened ports joined by a line (or a pty). */
  a: SerialPort;
  b: SerialPort;
  /** The high-water mark both were made with. */
  highWaterMark: number;
  teardown?(): Promise<void>;
}

/** Waits (in real time; simulated pairs under test run on real timers) until `cond` holds. */
export async function waitUntil(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** Accumulates every byte a port receives. */
export function collect(port: SerialPort): { bytes: () => Uint8Array; length: () => number } {
  const chunks: Uint8Array[] = [];
  let n = 0;
  port.on('data', (c) => {
    chunks.push(c);
    n += c.length;
  });
  return {
    length: () => n,
    bytes: () => {
      const out = new Uint8Array(n);
      let off = 0;
      for (const c of chunks) {
        out.set(c, off);
        off += c.length;
      }
      return out;
    },
  };
}

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
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

/** Writes all of `data` in pieces, honouring back-pressure. */
async function writeAll(port: SerialPort, data: Uint8Array, piece: number): Promise<number> {
  let falses = 0;
  for (let off = 0; off < data.length; off += piece) {
    if (!port.write(data.subarray(off, off + piece))) {
      falses++;
      await new Promise<void>((resolve) => {
        const onDrain = (): void => {
          port.off('drain', onDrain);
          resolve();
        };
        port.on('drain', onDrain);
      });
    }
  }
  return falses;
}

/** Registers the contract suite for one driver; `makePair` is called once per test. */
export function serialContract(name: string, makePair: () => Promise<SerialPairUnderTest>): void {
  describe(`SerialPort contract: ${name}`, () => {
    async function withPair(fn: (p: SerialPairUnderTest) => Promise<void>): Promise<void> {
      const p = await makePair();
      try {
        await p.a.open();
        await p.b.open();
        await fn(p);
      } finally {
        await p.a.close();
        await p.b.close();
        await p.teardown?.();
      }
    }

    it('opens once; a second open rejects ERR_SERIAL_INVALID_ARGUMENT', () =>
      withPair(async ({ a, b }) => {
        expect(a.isOpen).toBe(true);
        expect(b.isOpen).toBe(true);
        expect(a.name.length).toBeGreaterThan(0);
        const e: unknown = await a.open().catch((err: unknown) => err);
        expect((e as TwinbladeError).code).toBe(SerialErrorCode.invalidArgument);
        expect(a.isOpen).toBe(true);
      }));

    it('carries bytes unchanged in both directions, including every byte value', () =>
      withPair(async ({ a, b }) => {
        const atB = collect(b);
        const atA = collect(a);
        const all = Uint8Array.from({ length: 256 }, (_, i) => i);
        expect(a.write(all)).toBe(true);
        expect(b.write(Uint8Array.of(0x0d, 0x0a, 0x03, 0x1a))).toBe(true);
        await waitUntil(() => atB.length() >= 256 && atA.length() >= 4, 'both directions');
        expect(atB.bytes()).toEqual(all);
        expect([...atA.bytes()]).toEqual([0x0d, 0x0a, 0x03, 0x1a]);
      }));

    it('delivers a large stream in order with back-pressure (write false, then drain)', () =>
      withPair(async ({ a, b, highWaterMark }) => {
        const atB = collect(b);
        const data = pattern(256 * 1024, 7);
        const falses = await writeAll(a, data, 4096);
        expect(falses).toBeGreaterThan(0);
        await waitUntil(() => atB.length() >= data.length, 'the whole stream');
        expect(atB.length()).toBe(data.length);
        expect(Buffer.compare(atB.bytes(), data)).toBe(0);
        expect(highWaterMark).toBeLessThan(data.length);
      }));

    it('returns false from a write above the high-water mark and emits drain later', () =>
      withPair(async ({ a, b, highWaterMark }) => {
        const atB = collect(b);
        let drains = 0;
        a.on('drain', () => drains++);
        expect(a.write(new Uint8Array(highWaterMark + 1))).toBe(false);
        await waitUntil(() => drains > 0, 'drain');
        await waitUntil(() => atB.length() === highWaterMark + 1, 'the bytes');
      }));

    it('copies written bytes: the caller may reuse its buffer at once', () =>
      withPair(async ({ a, b }) => {
        const atB = collect(b);
        const buf = pattern(1000, 3);
        a.write(buf);
        buf.fill(0);
        await waitUntil(() => atB.length() >= 1000, 'the bytes');
        expect(atB.bytes()).toEqual(pattern(1000, 3));
      }));

    it('throws ERR_SERIAL_CLOSED from write before open and after close; close is idempotent and emits close once', async () => {
      const p = await makePair();
      expectCode(() => p.a.write(Uint8Array.of(1)), SerialErrorCode.closed);
      await p.a.open();
      await p.b.open();
      let closes = 0;
      p.a.on('close', () => closes++);
      await p.a.close();
      await p.a.close();
      expect(p.a.isOpen).toBe(false);
      expect(closes).toBe(1);
      expectCode(() => p.a.write(Uint8Array.of(1)), SerialErrorCode.closed);
      const e: unknown = await p.a.open().catch((err: unknown) => err);
      expect((e as TwinbladeError).code).toBe(SerialErrorCode.invalidArgument);
      await p.b.close();
      await p.teardown?.();
    });

    it("cancels bytes still queued at close with one error of kind 'canceled'", async () => {
      const p = await makePair();
      await p.a.open();
      await p.b.open();
      const errors: { code: string; kind: string }[] = [];
      let closed = 0;
      p.a.on('error', (e) => errors.push(e));
      p.a.on('close', () => closed++);
      p.a.write(new Uint8Array(4 * 1024 * 1024));
      await p.a.close();
      expect(closed).toBe(1);
      expect(errors).toHaveLength(1);
      expect(errors[0]?.code).toBe(SerialErrorCode.canceled);
      expect(errors[0]?.kind).toBe('canceled');
      await p.b.close();
      await p.teardown?.();
    });

    it('rejects non-byte data with ERR_SERIAL_INVALID_ARGUMENT and stops calling removed listeners', () =>
      withPair(async ({ a, b }) => {
        expectCode(() => a.write('text' as unknown as Uint8Array), SerialErrorCode.invalidArgument);
        let calls = 0;
        const listener = (): void => {
          calls++;
        };
        const atB = collect(b);
        b.on('data', listener);
        b.off('data', listener);
        a.write(Uint8Array.of(1, 2, 3));
        await waitUntil(() => atB.length() >= 3, 'the bytes');
        expect(calls).toBe(0);
        expect(a.write(new Uint8Array(0))).toBe(true);
      }));
  });
}
