// Unit tests of the simulated message network: delivery, loss, duplication, FIFO, cuts, partitions.
import { describe, expect, it } from 'vitest';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { SimNetwork } from '../../firmware/ts/sim/network.ts';

function setup(seed: number, profile: ConstructorParameters<typeof SimNetwork>[1] = {}) {
  const sim = new Simulation({ seed });
  const net = new SimNetwork({ timers: sim.timers, prng: sim.fork(), clock: sim.clock }, profile);
  const a = net.endpoint('a');
  const b = net.endpoint('b');
  const got: number[] = [];
  b.onMessage((from, data) => {
    expect(from).toBe('a');
    got.push(data[0] as number);
  });
  return { sim, net, a, b, got };
}

describe('SimNetwork', () => {
  it('delivers copies after the link latency', async () => {
    const { sim, a, got } = setup(1, { defaultProfile: { latency: { minMs: 5, maxMs: 5 } } });
    const msg = new Uint8Array([7]);
    a.send('b', msg);
    msg[0] = 9; // the sender may reuse its buffer at once
    await sim.runUntil(4);
    expect(got).toEqual([]);
    await sim.runUntil(6);
    expect(got).toEqual([7]);
  });

  it('keeps FIFO order on a fifo direction even with random latency', async () => {
    const { sim, a, got } = setup(2, { defaultProfile: { latency: { minMs: 0, maxMs: 10 }, fifo: true } });
    for (let i = 0; i < 100; i++) a.send('b', new Uint8Array([i]));
    await sim.runUntil(1000);
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('a stall on a fifo direction holds later messages behind it instead of reordering', async () => {
    const { sim, a, got } = setup(8, { defaultProfile: { latency: { minMs: 0, maxMs: 1 }, fifo: true, reorderProbability: 0.2, reorderDelay: { minMs: 5, maxMs: 20 } } });
    for (let i = 0; i < 100; i++) a.send('b', new Uint8Array([i]));
    await sim.runUntil(5000);
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('reorders on a non-fifo direction', async () => {
    const { sim, a, got } = setup(3, { defaultProfile: { latency: { minMs: 0, maxMs: 10 } } });
    for (let i = 0; i < 100; i++) a.send('b', new Uint8Array([i]));
    await sim.runUntil(1000);
    expect(got).toHaveLength(100);
    expect(got).not.toEqual([...got].sort((x, y) => x - y));
  });

  it('loses and duplicates messages at the configured rates', async () => {
    const { sim, net, a, got } = setup(4, { defaultProfile: { lossProbability: 0.3, duplicateProbability: 0.2 } });
    for (let i = 0; i < 1000; i++) a.send('b', new Uint8Array([i & 0xff]));
    await sim.runUntil(1000);
    expect(net.stats.dropped).toBeGreaterThan(200);
    expect(net.stats.dropped).toBeLessThan(400);
    expect(net.stats.duplicated).toBeGreaterThan(80);
    expect(got.length).toBe(net.stats.delivered);
    expect(net.stats.delivered).toBe(1000 - net.stats.dropped + net.stats.duplicated);
  });

  it('a cut drops new and in-flight messages until restored; one-way cuts are one-way', async () => {
    const { sim, net, a, b, got } = setup(5, { defaultProfile: { latency: { minMs: 5, maxMs: 5 } } });
    const back: number[] = [];
    a.onMessage((_f, d) => back.push(d[0] as number));
    a.send('b', new Uint8Array([1]));
    await sim.runUntil(1);
    net.cut('a', 'b');
    a.send('b', new Uint8Array([2]));
    await sim.runUntil(20);
    expect(got).toEqual([]);
    net.restore('a', 'b');
    net.cutOneWay('a', 'b');
    a.send('b', new Uint8Array([3]));
    b.send('a', new Uint8Array([4]));
    await sim.runUntil(40);
    expect(got).toEqual([]);
    expect(back).toEqual([4]);
    net.restore('a', 'b');
    a.send('b', new Uint8Array([5]));
    await sim.runUntil(60);
    expect(got).toEqual([5]);
  });

  it('partitions split groups, isolate unlisted endpoints, and heal', async () => {
    const { sim, net, a, got } = setup(6);
    const c = net.endpoint('c');
    const atC: string[] = [];
    c.onMessage((from) => atC.push(from));
    net.partition([['a', 'c'], ['b']]);
    a.send('b', new Uint8Array([1]));
    a.send('c', new Uint8Array([1]));
    net.endpoint('d').send('c', new Uint8Array([1]));
    await sim.runUntil(10);
    expect(got).toEqual([]);
    expect(atC).toEqual(['a']);
    expect(() => net.partition([['a'], ['a']])).toThrow(/two partition groups/);
    net.heal();
    a.send('b', new Uint8Array([2]));
    await sim.runUntil(20);
    expect(got).toEqual([2]);
  });

  it('a line rate queues messages for their transmission time', async () => {
    // 921600 baud 8N1 = 92.16 bytes/ms: a 9216-byte message takes 100 ms on the wire.
    const { sim, a, b, got } = setup(9, { defaultProfile: { latency: { minMs: 0, maxMs: 0 }, bytesPerMs: 92.16, fifo: true } });
    const at: number[] = [];
    b.onMessage(() => at.push(sim.nowMs));
    a.send('b', new Uint8Array(9216).fill(1));
    a.send('b', new Uint8Array(9216).fill(2));
    await sim.runUntil(() => got.length === 2);
    expect(got).toEqual([1, 2]);
    expect(at[0]).toBeCloseTo(100, 6);
    expect(at[1]).toBeCloseTo(200, 6);
  });

  it('corrupts delivered copies by one bit at the configured rate', async () => {
    const { sim, net, a, b } = setup(10, { defaultProfile: { corruptProbability: 0.5 } });
    const payload = new Uint8Array(64).fill(0x55);
    let flipped = 0;
    let bitsOff = 0;
    b.onMessage((_from, data) => {
      let diff = 0;
      for (let i = 0; i < data.length; i++) {
        let x = (data[i] as number) ^ 0x55;
        while (x !== 0) {
          diff += x & 1;
          x >>= 1;
        }
      }
      if (diff > 0) flipped++;
      bitsOff += diff;
    });
    for (let i = 0; i < 400; i++) a.send('b', payload);
    await sim.runUntil(100);
    expect(flipped).toBe(net.stats.corrupted);
    expect(bitsOff).toBe(flipped);
    expect(flipped).toBeGreaterThan(150);
    expect(flipped).toBeLessThan(250);
  });

  it('a down endpoint neither sends nor receives', async () => {
    const { sim, net, a, got } = setup(7);
    net.setUp('b', false);
    a.send('b', new Uint8Array([1]));
    await sim.runUntil(10);
    net.setUp('b', true);
    a.send('b', new Uint8Array([2]));
    await sim.runUntil(20);
    expect(got).toEqual([2]);
  });
});

describe('SimNetwork (property)', () => {
  it('never delivers over a path that is down at delivery time, and accounts for every message', async () => {
    const fc = (await import('fast-check')).default;
    const names = ['a', 'b', 'c'];
    const step = fc.oneof(
      fc.record({ kind: fc.constant('send' as const), from: fc.constantFrom(...names), to: fc.constantFrom(...names) }),
      fc.record({ kind: fc.constant('cut' as const), x: fc.constantFrom(...names), y: fc.constantFrom(...names) }),
      fc.record({ kind: fc.constant('restore' as const), x: fc.constantFrom(...names), y: fc.constantFrom(...names) }),
      fc.record({ kind: fc.constant('partition' as const), split: fc.integer({ min: 0, max: 2 }) }),
      fc.constant({ kind: 'heal' as const }),
      fc.record({ kind: fc.constant('down' as const), x: fc.constantFrom(...names), up: fc.boolean() }),
      fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 3 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1000 }), fc.array(step, { maxLength: 40 }), async (seed, steps) => {
        const sim = new Simulation({ seed, buggify: false });
        const net = new SimNetwork({ timers: sim.timers, prng: sim.fork(), clock: sim.clock }, { defaultProfile: { latency: { minMs: 0, maxMs: 2 }, lossProbability: 0.1, duplicateProbability: 0.1 } });
        let received = 0;
        for (const n of names) {
          net.endpoint(n).onMessage((from) => {
            received++;
            // The delivery check runs at delivery time, so the path must be up right now.
            expect(net.connected(from, n)).toBe(true);
          });
        }
        for (const s of steps) {
          if (s.kind === 'send') net.endpoint(s.from).send(s.to, new Uint8Array([1]));
          else if (s.kind === 'cut') net.cut(s.x, s.y);
          else if (s.kind === 'restore') net.restore(s.x, s.y);
          else if (s.kind === 'partition') net.partition([names.slice(0, s.split + 1), names.slice(s.split + 1)].filter((g) => g.length > 0));
          else if (s.kind === 'heal') net.heal();
          else if (s.kind === 'down') net.setUp(s.x, s.up);
          else await sim.runUntil(sim.nowMs + s.ms);
        }
        await sim.runUntil(sim.nowMs + 10);
        expect(received).toBe(net.stats.delivered);
        expect(net.stats.delivered + net.stats.dropped).toBe(net.stats.sent + net.stats.duplicated);
      }),
      { numRuns: 100 },
    );
  });
});
