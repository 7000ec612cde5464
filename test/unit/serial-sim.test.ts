// The simulated serial line: the SerialPort contract (on real timers, unlimited speed), and
// its line model under hand-driven timers: speed, delay, order, loss, duplication, corruption,
// cut and heal, reproducible from the seed.
import { describe, expect, it } from 'vitest';
import { serialContract, collect } from '../contract/serial.contract.ts';
import { ManualTimers } from '../contract/block-helpers.ts';
import { createSimSerialPair } from '../../firmware/ts/hal/serial/sim/sim-serial-port.ts';
import { SerialErrorCode } from '../../firmware/ts/hal/serial/serial-port.ts';
import { realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';

serialContract('sim', async () => {
  const { a, b } = createSimSerialPair({ timers: realTimers, prng: new Prng(1), baudRate: 0, delayMs: 0, chunkBytesMax: 8192, highWaterMark: 16 * 1024 });
  return { a, b, highWaterMark: 16 * 1024 };
});

async function openPair(options: Partial<Parameters<typeof createSimSerialPair>[0]> = {}, seed = 1) {
  const timers = new ManualTimers();
  const pair = createSimSerialPair({ timers, prng: new Prng(seed), ...options });
  await pair.a.open();
  await pair.b.open();
  return { timers, ...pair };
}

describe('sim serial line', () => {
  it('takes 10 bits per byte at the configured speed, plus the delay', async () => {
    const { timers, a, b } = await openPair({ baudRate: 9600, delayMs: 5, chunkBytesMax: 1000 });
    const atB = collect(b);
    a.write(new Uint8Array(96)); // 96 bytes at 960 bytes/s = 100 ms on the wire
    await timers.run(104);
    expect(atB.length()).toBe(0);
    await timers.run(106);
    expect(atB.length()).toBe(96);
  });

  it('preserves order under jitter and hands over arbitrary chunk sizes', async () => {
    const { timers, a, b } = await openPair({ baudRate: 0, jitterMs: 3, chunkBytesMax: 7 });
    const sizes: number[] = [];
    b.on('data', (c) => sizes.push(c.length));
    const atB = collect(b);
    const data = Uint8Array.from({ length: 500 }, (_, i) => i & 0xff);
    a.write(data);
    await timers.run();
    expect(atB.bytes()).toEqual(data);
    expect(new Set(sizes).size).toBeGreaterThan(3);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(7);
  });

  it('loses, duplicates and corrupts chunks at the configured rates, reproducibly from the seed', async () => {
    async function run(seed: number) {
      const { timers, a, b, link } = await openPair({ baudRate: 0, chunkBytesMax: 16, faults: { lossRate: 0.1, duplicateRate: 0.1, corruptRate: 0.1 } }, seed);
      const atB = collect(b);
      a.write(new Uint8Array(16 * 400).fill(0x55));
      await timers.run();
      return { stats: { ...link.stats }, received: atB.bytes() };
    }
    const r1 = await run(9);
    const r2 = await run(9);
    expect(r1).toEqual(r2);
    expect(r1.stats.chunksLost).toBeGreaterThan(0);
    expect(r1.stats.chunksDuplicated).toBeGreaterThan(0);
    expect(r1.stats.chunksCorrupted).toBeGreaterThan(0);
    const flipped = r1.received.filter((x) => x !== 0x55).length;
    expect(flipped).toBeGreaterThanOrEqual(r1.stats.chunksCorrupted);
  });

  it('drops bytes while the cable is cut and carries them again once healed', async () => {
    const { timers, a, b, link } = await openPair({ baudRate: 0 });
    const atB = collect(b);
    link.cut();
    expect(link.isCut).toBe(true);
    a.write(Uint8Array.of(1, 2, 3));
    await timers.run();
    expect(atB.length()).toBe(0);
    expect(link.stats.chunksDropped).toBeGreaterThan(0);
    link.heal();
    a.write(Uint8Array.of(4, 5));
    await timers.run();
    expect([...atB.bytes()]).toEqual([4, 5]);
  });

  it('drops bytes for an end that is not open, and reports a device that went away', async () => {
    const timers = new ManualTimers();
    const { a, b } = createSimSerialPair({ timers, prng: new Prng(2), baudRate: 0 });
    await a.open();
    a.write(Uint8Array.of(1));
    await timers.run();
    await b.open();
    const atB = collect(b);
    const errors: string[] = [];
    let closed = false;
    a.on('error', (e) => errors.push(e.kind));
    a.on('close', () => {
      closed = true;
    });
    a.simulateDisconnect();
    expect(errors).toEqual(['disconnected']);
    expect(closed).toBe(true);
    expect(() => a.write(Uint8Array.of(1))).toThrow(expect.objectContaining({ code: SerialErrorCode.closed }));
    await timers.run();
    expect(atB.length()).toBe(0);
  });

  it('changes speed and faults at run time and checks its settings', async () => {
    const { timers, a, b, link } = await openPair({ baudRate: 0, delayMs: 0 });
    const atB = collect(b);
    link.setTiming({ baudRate: 1000, delayMs: 1 });
    a.write(new Uint8Array(10)); // 100 ms at 100 bytes/s
    await timers.run(50);
    expect(atB.length()).toBeLessThan(10);
    await timers.run(200);
    expect(atB.length()).toBe(10);
    link.setFaults({ lossRate: 1 });
    a.write(new Uint8Array(10));
    await timers.run();
    expect(atB.length()).toBe(10);
    expect(() => link.setFaults({ lossRate: 2 })).toThrow(TwinbladeError);
    expect(() => createSimSerialPair({ timers, prng: new Prng(1), delayMs: -1 })).toThrow(TwinbladeError);
    expect(() => createSimSerialPair({ timers, prng: new Prng(1), chunkBytesMax: 0 })).toThrow(TwinbladeError);
  });

  it('emits drain once the transmit queue falls below the high-water mark', async () => {
    const { timers, a } = await openPair({ baudRate: 115_200, highWaterMark: 100 });
    let drained = 0;
    a.on('drain', () => drained++);
    expect(a.write(new Uint8Array(99))).toBe(true);
    expect(a.write(new Uint8Array(10))).toBe(false);
    expect(a.queuedBytes).toBe(109);
    await timers.run();
    expect(drained).toBe(1);
    expect(a.queuedBytes).toBe(0);
  });
});
