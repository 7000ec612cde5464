// Unit tests of the simulation kernel: event order, determinism, guards, domains, buggify and the fault budget.
import { describe, expect, it } from 'vitest';
import { Simulation, SimErrorCode, SimulationError, completeAfter, drawLatencyMs } from '../../firmware/ts/sim/kernel.ts';
import { FaultBudget } from '../../firmware/ts/sim/fault-budget.ts';
import { buggify } from '../../firmware/ts/core/buggify.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';

async function trace(seed: number): Promise<string[]> {
  const sim = new Simulation({ seed });
  const out: string[] = [];
  for (let i = 0; i < 20; i++) {
    const prng = sim.fork();
    sim.spawn(`t${i}`, async () => {
      for (let k = 0; k < 5; k++) {
        await completeAfter({ timers: sim.timers, prng }, { minMs: 0, maxMs: 2 }, () => undefined);
        out.push(`${sim.nowMs.toFixed(3)} t${i}.${k}`);
      }
    });
  }
  // Same-time events: their order comes from the seed.
  for (let i = 0; i < 10; i++) sim.timers.after(1, () => out.push(`tie${i}`));
  await sim.runUntil(() => out.length === 110);
  return out;
}

describe('Simulation', () => {
  it('replays the same interleaving for the same seed', async () => {
    expect(await trace(7)).toEqual(await trace(7));
  });

  it('orders simultaneous events by the seed (different seeds, different orders)', async () => {
    const orders = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5]) orders.add((await trace(seed)).filter((l) => l.startsWith('tie')).join(','));
    expect(orders.size).toBeGreaterThan(1);
  });

  it('runs events in time order and never moves the clock back', async () => {
    const sim = new Simulation({ seed: 3 });
    const seen: number[] = [];
    const prng = new Prng(9);
    for (let i = 0; i < 200; i++) sim.timers.after(prng.int(1000), () => seen.push(sim.nowMs));
    await sim.runUntil(() => seen.length === 200);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
  });

  it('lets every microtask settle before the next event', async () => {
    const sim = new Simulation({ seed: 1 });
    const log: string[] = [];
    sim.timers.after(1, () => {
      void Promise.resolve()
        .then(() => Promise.resolve())
        .then(() => log.push('chain done'));
    });
    sim.timers.after(1, () => log.push('second event'));
    sim.timers.after(2, () => log.push('later event'));
    await sim.runUntil(5);
    expect(log.indexOf('chain done')).toBeLessThan(log.indexOf('later event'));
    expect(sim.nowMs).toBe(5);
  });

  it('runUntil(time) stops at that time and leaves later events pending', async () => {
    const sim = new Simulation({ seed: 1 });
    let fired = 0;
    sim.timers.after(10, () => fired++);
    sim.timers.after(30, () => fired++);
    await sim.runUntil(20);
    expect(fired).toBe(1);
    expect(sim.nowMs).toBe(20);
    expect(sim.pendingEvents).toBe(1);
  });

  it('run() returns the value of an async main', async () => {
    const sim = new Simulation({ seed: 1 });
    const v = await sim.run(async () => {
      await sim.timers.sleep(100);
      return sim.nowMs;
    });
    expect(v).toBe(100);
  });

  it('fails a livelocked run at the step guard instead of hanging', async () => {
    const sim = new Simulation({ seed: 1, stepCountMax: 1000 });
    const spin = (): void => void sim.timers.after(0, spin);
    spin();
    await expect(sim.runUntil(() => false)).rejects.toMatchObject({ code: SimErrorCode.stepLimit });
  });

  it('fails at the virtual-time guard', async () => {
    const sim = new Simulation({ seed: 1, virtualTimeMaxMs: 5000 });
    const tick = (): void => void sim.timers.after(1000, tick);
    tick();
    await expect(sim.runUntil(() => false)).rejects.toMatchObject({ code: SimErrorCode.timeLimit });
  });

  it('reports a stalled run with the waiting tasks', async () => {
    const sim = new Simulation({ seed: 1 });
    sim.spawn('waits-forever', () => new Promise(() => undefined));
    const err = await sim.runUntil(() => false).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SimulationError);
    expect((err as SimulationError).code).toBe(SimErrorCode.stalled);
    expect((err as SimulationError).message).toContain('waits-forever');
  });

  it('turns a task rejection or a throwing callback into a run failure', async () => {
    const sim = new Simulation({ seed: 1 });
    sim.spawn('bad', async () => {
      await sim.timers.sleep(1);
      throw new Error('checker: lost write');
    });
    await expect(sim.runUntil(10)).rejects.toMatchObject({ code: SimErrorCode.failed, message: expect.stringContaining('lost write') });
    const sim2 = new Simulation({ seed: 1 });
    sim2.timers.after(1, () => {
      throw new Error('boom');
    });
    await expect(sim2.runUntil(10)).rejects.toMatchObject({ code: SimErrorCode.failed });
  });

  it('refuses nested runs (buggify is process-global)', async () => {
    const sim = new Simulation({ seed: 1 });
    const other = new Simulation({ seed: 2 });
    let inner: unknown;
    sim.timers.after(1, () => {
      other.runUntil(1).catch((e: unknown) => (inner = e));
    });
    await sim.runUntil(2);
    expect(inner).toMatchObject({ code: SimErrorCode.busy });
  });

  it('a killed domain runs none of its timers and never resolves its sleeps', async () => {
    const sim = new Simulation({ seed: 1 });
    const blade = sim.domain('blade-a');
    let ticks = 0;
    let woke = false;
    const tick = (): void => {
      ticks++;
      blade.timers.after(10, tick);
    };
    blade.timers.after(10, tick);
    void blade.timers.sleep(100).then(() => (woke = true));
    await sim.runUntil(55);
    expect(ticks).toBe(5);
    blade.kill();
    expect(blade.alive).toBe(false);
    await sim.runUntil(500);
    expect(ticks).toBe(5);
    expect(woke).toBe(false);
    expect(sim.pendingEvents).toBe(0);
  });

  it('installs buggify only during a run, with per-site activation from the seed', async () => {
    expect(buggify('outside', 1)).toBe(false);
    const counts = async (seed: number): Promise<string> => {
      const sim = new Simulation({ seed, buggify: { activationProbability: 0.5 } });
      const fired: string[] = [];
      sim.timers.after(1, () => {
        for (let i = 0; i < 20; i++) for (const site of ['a', 'b', 'c', 'd']) if (buggify(`site.${site}`, 0.5)) fired.push(site);
      });
      await sim.runUntil(2);
      expect(buggify('outside', 1)).toBe(false);
      return fired.join('');
    };
    expect(await counts(11)).toBe(await counts(11));
    const sites = new Set<string>();
    for (let s = 1; s <= 8; s++) sites.add([...new Set(await counts(s))].sort().join(''));
    // Some runs enable some sites only: activation is per site, per run.
    expect(sites.size).toBeGreaterThan(1);
    const off = new Simulation({ seed: 1, buggify: false });
    let any = false;
    off.timers.after(1, () => (any = buggify('x', 1)));
    await off.runUntil(2);
    expect(any).toBe(false);
  });

  it('draws latencies inside the range', () => {
    const p = new Prng(5);
    for (let i = 0; i < 1000; i++) {
      const l = drawLatencyMs(p, { minMs: 0.5, maxMs: 2 });
      expect(l).toBeGreaterThanOrEqual(0.5);
      expect(l).toBeLessThanOrEqual(2);
    }
    expect(drawLatencyMs(p, { minMs: 3, maxMs: 3 })).toBe(3);
  });
});

describe('FaultBudget', () => {
  it('grants at most one blade down at once and returns the grant on release', () => {
    const b = new FaultBudget({ concurrentMax: { 'blade-down': 1, 'disk-fail': 2 } });
    const g = b.tryGrant('blade-down', 'a');
    expect(g).toBeDefined();
    expect(b.tryGrant('blade-down', 'b')).toBeUndefined();
    g?.release();
    g?.release();
    expect(b.tryGrant('blade-down', 'b')).toBeDefined();
    expect(b.refused).toBe(1);
  });
  it('refuses unknown kinds, the same target twice, exclusive pairs, and past the overall limits', () => {
    const b = new FaultBudget({ concurrentMax: { 'disk-fail': 3, 'link-cut': 1, 'blade-down': 1 }, totalConcurrentMax: 2, lifetimeMax: 4, exclusive: [['blade-down', 'link-cut']] });
    expect(b.tryGrant('meteor', 'x')).toBeUndefined();
    const d1 = b.tryGrant('disk-fail', 'd1');
    expect(b.tryGrant('disk-fail', 'd1')).toBeUndefined();
    const cut = b.tryGrant('link-cut', 'serial');
    expect(cut).toBeDefined();
    expect(b.tryGrant('disk-fail', 'd2')).toBeUndefined(); // totalConcurrentMax
    d1?.release();
    expect(b.tryGrant('blade-down', 'a')).toBeUndefined(); // exclusive with link-cut
    cut?.release();
    expect(b.tryGrant('blade-down', 'a')).toBeDefined();
    expect(b.activeTargets('blade-down')).toEqual(['a']);
    expect(b.tryGrant('disk-fail', 'd3')).toBeDefined();
    expect(b.granted).toBe(4);
    expect(b.tryGrant('disk-fail', 'd4')).toBeUndefined(); // lifetimeMax
  });
});
