// The simulated block driver: the BlockDevice contract under hand-driven timers, and its fault
// model (power cut keeping, dropping or tearing unflushed writes; injected errors; fencing).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { blockContract } from '../contract/block.contract.ts';
import { ManualTimers, drive } from '../contract/block-helpers.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { BlockErrorCode } from '../../firmware/ts/hal/block/block-device.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';

for (const sectorSize of [4096, 512]) {
  blockContract(`sim (${sectorSize}-byte sectors)`, async () => {
    const timers = new ManualTimers();
    const device = new SimBlockDevice({ timers, prng: new Prng(sectorSize), sizeBytes: 1 << 20, sectorSize, latency: { jitterMs: 0.5 } });
    return { device, settle: (p) => drive(timers, p) };
  });
}

function setup(seed = 1, sectorSize = 4096) {
  const timers = new ManualTimers();
  const dev = new SimBlockDevice({ timers, prng: new Prng(seed), sizeBytes: 1 << 20, sectorSize, name: 'd0' });
  const run = <T,>(p: Promise<T>) => drive(timers, p);
  return { timers, dev, run };
}

async function rejection(p: Promise<unknown>): Promise<TwinbladeError> {
  const e: unknown = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(TwinbladeError);
  return e as TwinbladeError;
}

describe('SimBlockDevice: power cut', () => {
  it('keeps every write covered by a completed flush', async () => {
    const { dev, run } = setup();
    await run(dev.write(0, new Uint8Array(8192).fill(1)));
    await run(dev.flush());
    const report = dev.powerCut({ keep: 0, drop: 1, tear: 0 });
    expect(report).toEqual({ kept: 0, dropped: 0, torn: 0 });
    expect((await run(dev.read(0, 8192))).every((b) => b === 1)).toBe(true);
  });

  it('drops unflushed writes back to the durable content', async () => {
    const { dev, run } = setup();
    await run(dev.write(0, new Uint8Array(4096).fill(1)));
    await run(dev.flush());
    await run(dev.write(0, new Uint8Array(4096).fill(2)));
    await run(dev.write(4096, new Uint8Array(4096).fill(3)));
    expect(dev.unflushedWriteCount).toBe(2);
    expect(dev.peekDurable(0, 1)[0]).toBe(1);
    expect(dev.powerCut({ keep: 0, drop: 1, tear: 0 })).toEqual({ kept: 0, dropped: 2, torn: 0 });
    expect((await run(dev.read(0, 4096))).every((b) => b === 1)).toBe(true);
    expect((await run(dev.read(4096, 4096))).every((b) => b === 0)).toBe(true);
    expect(dev.unflushedWriteCount).toBe(0);
    expect(dev.unflushedPageCount).toBe(0);
  });

  it('tears multi-sector writes only at sector boundaries, never inside a sector', async () => {
    for (const sectorSize of [512, 4096]) {
      const { dev, run } = setup(7, sectorSize);
      let torn = 0;
      for (let round = 0; round < 30; round++) {
        const fill = (round % 250) + 1;
        await run(dev.write(0, new Uint8Array(16 * sectorSize).fill(fill)));
        torn += dev.powerCut({ keep: 0, drop: 0, tear: 1 }).torn;
        const got = await run(dev.read(0, 16 * sectorSize));
        for (let s = 0; s < 16; s++) {
          const sector = got.subarray(s * sectorSize, (s + 1) * sectorSize);
          expect(new Set(sector).size).toBe(1);
        }
        await run(dev.flush());
      }
      expect(torn).toBe(30);
    }
  });

  it('keeps, drops or tears each unflushed write independently, reproducibly from the seed', async () => {
    async function scenario(seed: number) {
      const { dev, run } = setup(seed);
      await run(Promise.all(Array.from({ length: 40 }, (_, i) => dev.write(i * 8192, new Uint8Array(8192).fill(i + 1)))));
      const report = dev.powerCut();
      return { report, image: dev.peek(0, 40 * 8192) };
    }
    const a = await scenario(11);
    const b = await scenario(11);
    expect(a.report).toEqual(b.report);
    expect(Buffer.compare(a.image, b.image)).toBe(0);
    expect(a.report.kept + a.report.dropped + a.report.torn).toBe(40);
    expect(a.report.kept).toBeGreaterThan(0);
    expect(a.report.dropped).toBeGreaterThan(0);
    expect(a.report.torn).toBeGreaterThan(0);
    const c = await scenario(12);
    expect(Buffer.compare(c.image, a.image)).not.toBe(0);
  });

  it('lets a flush cover only the writes completed before it was called', async () => {
    const { dev, run, timers } = setup();
    await run(dev.write(0, new Uint8Array(4096).fill(1)));
    const flushing = dev.flush();
    const late = dev.write(4096, new Uint8Array(4096).fill(2));
    await run(Promise.all([flushing, late]));
    expect(timers.pendingCount).toBe(0);
    expect(dev.unflushedWriteCount).toBe(1);
    dev.powerCut({ keep: 0, drop: 1, tear: 0 });
    expect(dev.peek(0, 1)[0]).toBe(1);
    expect(dev.peek(4096, 1)[0]).toBe(0);
  });

  it('rejects operations in flight with ERR_BLOCK_IO, yet their writes may still reach the medium', async () => {
    const { dev, run } = setup();
    const w = dev.write(0, new Uint8Array(4096).fill(9));
    const r = dev.read(0, 4096);
    const f = dev.flush();
    expect(dev.powerCut({ keep: 1, drop: 0, tear: 0 })).toEqual({ kept: 1, dropped: 0, torn: 0 });
    for (const p of [w, r, f]) expect((await rejection(p)).code).toBe(BlockErrorCode.io);
    expect((await run(dev.read(0, 4096)))[0]).toBe(9);
  });

  it('replays overlapping unflushed writes in order', async () => {
    const { dev, run } = setup();
    await run(dev.write(0, new Uint8Array(8192).fill(1)));
    await run(dev.write(4096, new Uint8Array(4096).fill(2)));
    dev.powerCut({ keep: 1, drop: 0, tear: 0 });
    expect(dev.peek(0, 1)[0]).toBe(1);
    expect(dev.peek(4096, 1)[0]).toBe(2);
  });

  it('holds durable copies only for pages with unflushed writes (4 KiB maps)', async () => {
    const { dev, run } = setup();
    for (let i = 0; i < 100; i++) await run(dev.write((i % 10) * 4096, new Uint8Array(4096).fill(i)));
    expect(dev.unflushedWriteCount).toBe(100);
    expect(dev.unflushedPageCount).toBe(10);
    await run(dev.flush());
    expect(dev.unflushedWriteCount).toBe(0);
    expect(dev.unflushedPageCount).toBe(0);
    expect(dev.peekDurable(9 * 4096, 1)[0]).toBe(99);
  });
});

describe('SimBlockDevice: power-cut model check', () => {
  it('never loses a flushed write, never tears inside a sector, and leaves each sector at its durable value or one written since', async () => {
    const sectors = 16;
    const ss = 4096;
    type Op = { kind: 'write'; at: number; n: number; fill: number } | { kind: 'flush' } | { kind: 'cut' };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('write' as const), at: fc.nat(sectors - 1), n: fc.integer({ min: 1, max: 5 }), fill: fc.integer({ min: 1, max: 255 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('flush' as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const) }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), fc.array(opArb, { maxLength: 30 }), async (seed, ops) => {
        const timers = new ManualTimers();
        const dev = new SimBlockDevice({ timers, prng: new Prng(seed), sizeBytes: sectors * ss, sectorSize: ss });
        const durable = new Array<number>(sectors).fill(0);
        const latest = new Array<number>(sectors).fill(0);
        const since: Set<number>[] = Array.from({ length: sectors }, () => new Set<number>());
        for (const op of ops) {
          if (op.kind === 'write') {
            const n = Math.min(op.n, sectors - op.at);
            await drive(timers, dev.write(op.at * ss, new Uint8Array(n * ss).fill(op.fill)));
            for (let s = op.at; s < op.at + n; s++) {
              latest[s] = op.fill;
              since[s]?.add(op.fill);
            }
          } else if (op.kind === 'flush') {
            await drive(timers, dev.flush());
            for (let s = 0; s < sectors; s++) {
              durable[s] = latest[s] as number;
              since[s]?.clear();
            }
          } else {
            dev.powerCut();
            const image = dev.peek(0, sectors * ss);
            for (let s = 0; s < sectors; s++) {
              const sector = image.subarray(s * ss, (s + 1) * ss);
              const value = sector[0] as number;
              expect(sector.every((b) => b === value)).toBe(true);
              expect(value === durable[s] || (since[s]?.has(value) ?? false)).toBe(true);
              durable[s] = value;
              latest[s] = value;
              since[s]?.clear();
            }
          }
        }
        const image = dev.peek(0, sectors * ss);
        for (let s = 0; s < sectors; s++) expect(image[s * ss]).toBe(latest[s]);
      }),
      { numRuns: 60 },
    );
  });
});

describe('SimBlockDevice: injected faults', () => {
  it('fails operations overlapping an injected error range, then recovers when it is removed', async () => {
    const { dev, run } = setup();
    const bad = dev.injectError({ offset: 8192, length: 1, op: 'read' });
    expect((await rejection(run(dev.read(4096, 8192)))).code).toBe(BlockErrorCode.io);
    expect((await run(dev.read(0, 4096))).length).toBe(4096);
    await run(dev.write(8192, new Uint8Array(4096).fill(4)));
    bad.remove();
    expect((await run(dev.read(8192, 4096)))[0]).toBe(4);
    expect(dev.stats.errorsInjected).toBe(1);
  });

  it('counts down a limited injected error and can report a reservation conflict', async () => {
    const { dev, run } = setup();
    dev.injectError({ offset: 0, length: 4096, op: 'write', error: 'fenced', count: 2 });
    const data = new Uint8Array(4096).fill(1);
    expect((await rejection(run(dev.write(0, data)))).code).toBe(BlockErrorCode.fenced);
    expect((await rejection(run(dev.write(0, data)))).code).toBe(BlockErrorCode.fenced);
    await run(dev.write(0, data));
    expect(dev.peek(0, 1)[0]).toBe(1);
    expect(() => dev.injectError({ offset: -1, length: 1 })).toThrow(TwinbladeError);
  });

  it('fails the whole disk until healed, keeping its content', async () => {
    const { dev, run } = setup();
    await run(dev.write(0, new Uint8Array(4096).fill(5)));
    const inFlight = dev.read(0, 4096);
    dev.fail();
    expect(dev.failed).toBe(true);
    expect((await rejection(inFlight)).code).toBe(BlockErrorCode.io);
    expect((await rejection(run(dev.flush()))).code).toBe(BlockErrorCode.io);
    dev.heal();
    expect((await run(dev.read(0, 4096)))[0]).toBe(5);
  });

  it('fences writes per handle; other handles on the same disk still write', async () => {
    const { dev, run } = setup();
    const partner = dev.attach({ name: 'd0@b' });
    dev.setFenced(true);
    expect((await rejection(run(dev.write(0, new Uint8Array(4096))))).code).toBe(BlockErrorCode.fenced);
    await run(partner.write(0, new Uint8Array(4096).fill(8)));
    expect((await run(dev.read(0, 4096)))[0]).toBe(8);
    await run(partner.close());
    expect((await run(dev.read(0, 4096)))[0]).toBe(8);
    const ro = dev.attach({ readOnly: true });
    expect((await rejection(run(ro.write(0, new Uint8Array(4096))))).code).toBe(BlockErrorCode.readOnly);
  });

  it('lets a poke win over older unflushed writes at a power cut', async () => {
    for (let seed = 1; seed <= 10; seed++) {
      const { dev, run } = setup(seed);
      await run(dev.write(0, new Uint8Array(8192).fill(1)));
      dev.poke(4000, new Uint8Array(200).fill(9));
      dev.powerCut();
      expect(dev.peek(4000, 200).every((b) => b === 9)).toBe(true);
    }
  });

  it('has a back door that corrupts or seeds sectors durably', async () => {
    const { dev, run } = setup();
    dev.poke(100, Uint8Array.from([1, 2, 3]));
    dev.corrupt(4096, 16);
    dev.powerCut();
    expect([...(await run(dev.read(0, 4096))).subarray(100, 103)]).toEqual([1, 2, 3]);
    expect(dev.peek(4096, 16).some((b) => b !== 0)).toBe(true);
    expect(() => dev.peek(dev.sizeBytes, 1)).toThrow(TwinbladeError);
  });

  it('misdirects armed writes to another aligned offset, leaving their own range unchanged', async () => {
    for (let seed = 1; seed <= 10; seed++) await misdirectScenario(seed);
  });

  async function misdirectScenario(seed: number): Promise<void> {
    const { dev, run } = setup(seed, 512);
    await run(dev.write(0, new Uint8Array(1024).fill(1)));
    dev.misdirectWrites(1);
    await run(dev.write(0, new Uint8Array(1024).fill(2)));
    expect(dev.stats.misdirectedWrites).toBe(1);
    expect(dev.peek(0, 1024).every((b) => b === 1)).toBe(true);
    const image = dev.peek(0, dev.sizeBytes);
    const at = image.indexOf(2);
    expect(at).toBeGreaterThanOrEqual(1024);
    expect(at % 512).toBe(0);
    expect(image.subarray(at, at + 1024).every((b) => b === 2)).toBe(true);
    await run(dev.write(4096, new Uint8Array(512).fill(3)));
    expect(dev.peek(4096, 1)[0]).toBe(3);
    expect(() => dev.misdirectWrites(-1)).toThrow(TwinbladeError);
  }

  it('schedules a handle on its own timers when attached with them (a blade failure domain)', async () => {
    const { dev, run } = setup();
    const bladeTimers = new ManualTimers();
    const blade = dev.attach({ name: 'd0@a', timers: bladeTimers });
    let done = false;
    void blade.write(0, new Uint8Array(4096).fill(6)).then(() => {
      done = true;
    });
    await run(dev.flush());
    expect(done).toBe(false);
    await bladeTimers.run();
    expect(done).toBe(true);
    expect(dev.peek(0, 1)[0]).toBe(6);
  });

  it('changes latency at run time', async () => {
    const timers = new ManualTimers();
    const dev = new SimBlockDevice({ timers, prng: new Prng(3), sizeBytes: 1 << 16, latency: { readMs: 1, jitterMs: 0 } });
    dev.setLatency({ readMs: 50 });
    let done = false;
    void dev.read(0, 4096).then(() => {
      done = true;
    });
    await timers.run(49);
    expect(done).toBe(false);
    await timers.run(50);
    expect(done).toBe(true);
    expect(() => dev.setLatency({ flushMs: Number.NaN })).toThrow(TwinbladeError);
  });

  it('applies latency from the injected timers', async () => {
    const timers = new ManualTimers();
    const dev = new SimBlockDevice({ timers, prng: new Prng(3), sizeBytes: 1 << 16, latency: { readMs: 5, writeMs: 7, flushMs: 20, jitterMs: 0 } });
    let done = false;
    void dev.write(0, new Uint8Array(4096)).then(() => {
      done = true;
    });
    await timers.run(6.9);
    expect(done).toBe(false);
    await timers.run(7);
    expect(done).toBe(true);
    expect(() => new SimBlockDevice({ timers, prng: new Prng(1), latency: { readMs: -1 } })).toThrow(TwinbladeError);
    expect(() => new SimBlockDevice({ timers, prng: new Prng(1), sizeBytes: 1000 })).toThrow(TwinbladeError);
  });
});
