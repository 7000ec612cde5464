// Crash-point enumeration (CrashMonkey style): for short workloads of one to three changes,
// cut power before every step of append → persist → mirror → partner persist → ack → apply,
// on either blade or both, with torn or clean last writes, with a good or a failed battery;
// then recover by own reboot or partner takeover and check that every acknowledged change is
// applied exactly once (NV-1, NV-2, NV-5, NV-6, SM-2).
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { BladeId } from '../../firmware/ts/nvlog/core/layout.ts';
import { PairSim, makeToken } from '../../firmware/ts/nvlog/sim/pair.ts';
import { StepScheduler } from '../../firmware/ts/nvlog/sim/scheduler.ts';
import type { NvLog } from '../../firmware/ts/nvlog/nvlog.ts';
import type { TearMode } from '../../firmware/ts/nvlog/sim/tearing-nvram.ts';

type Target = 'A' | 'B' | 'both';
type Recovery = 'own' | 'takeover';

interface Scenario {
  workload: readonly BladeId[];
  cutAt: number | undefined;
  target: Target;
  mode: TearMode;
  recovery: Recovery;
  batteryFailed: boolean;
}

const setupUntilMs = 5;
const workloadUntilMs = 20;

async function build(seed: number): Promise<{ sim: PairSim; sched: StepScheduler; baseSteps: number }> {
  const sched = new StepScheduler();
  const sim = new PairSim({ sched, prng: new Prng(seed), cpIntervalMs: 1e9, limits: { mirrorAckTimeoutMs: 1000, mirrorResyncRetryMs: 1000 } });
  void sim.start();
  await sched.runUntil(setupUntilMs);
  expect(sim.blades.every((b) => b.alive && b.mirrorState === 'synced')).toBe(true);
  return { sim, sched, baseSteps: sched.steps };
}

function submitWorkload(sim: PairSim, workload: readonly BladeId[]): void {
  workload.forEach((fs, i) => sim.submit({ client: 1 + i, xid: 100 + i, fs, token: makeToken(fs, 100 + i), filler: 40 * i }));
}

/** Runs one scenario; returns the violations and the label of the step the cut preceded. */
async function run(s: Scenario): Promise<{ violations: string[]; label: string; acked: number; steps: number }> {
  const { sim, sched, baseSteps } = await build(7);
  if (s.batteryFailed) for (const x of targets(s.target)) sim.failBattery(x, 0);
  await sched.runUntil(setupUntilMs + 0.001);
  let label = '(no cut)';
  if (s.cutAt !== undefined) {
    const at = baseSteps + s.cutAt;
    sched.stopBefore = (step, l) => {
      if (step < at) return false;
      label = l;
      return true;
    };
  }
  submitWorkload(sim, s.workload);
  const finished = await sched.runUntil(workloadUntilMs);
  sched.stopBefore = undefined;
  if (!finished) {
    const cut = targets(s.target);
    for (const x of cut) sim.powerCut(x, s.mode, { takeover: s.recovery === 'takeover' && cut.length === 1, detectMs: 1 });
    await sched.runUntil(sched.nowMs() + 10);
    for (const x of cut) {
      if (s.batteryFailed) sim.healBattery(x);
      void sim.boot(x);
      await sched.runUntil(sched.nowMs() + 10);
    }
  }
  await sched.runUntil(sched.nowMs() + 30);
  sim.checkFinal();
  return { violations: sim.violations, label, acked: sim.acked.size, steps: sched.steps - baseSteps };
}

function targets(t: Target): BladeId[] {
  return t === 'A' ? [0] : t === 'B' ? [1] : [0, 1];
}

const workloads: Array<{ name: string; changes: readonly BladeId[] }> = [
  { name: 'one change on A', changes: [0] },
  { name: 'two pipelined changes on A', changes: [0, 0] },
  { name: 'three changes, active-active on A and B', changes: [0, 1, 0] },
];

/**
 * The link is cut while changes are in flight on A; A notices, degrades, announces "no
 * takeover" and then answers from its local copy. A power cut of A at any step of that
 * sequence must never let B take over from a mirror that lacks an answered change (HA-8).
 */
async function runLinkCutThenDeath(cutAt: number | undefined): Promise<{ violations: string[]; steps: number; label: string; acked: number }> {
  const { sim, sched, baseSteps } = await build(11);
  sim.cutLink();
  submitWorkload(sim, [0, 0]);
  let label = '(no cut)';
  if (cutAt !== undefined) {
    sched.stopBefore = (step, l) => {
      if (step < baseSteps + cutAt) return false;
      label = l;
      return true;
    };
  }
  const finished = await sched.runUntil(workloadUntilMs);
  sched.stopBefore = undefined;
  if (!finished) {
    sim.powerCut(0, 'tear', { takeover: true, detectMs: 1 });
    await sched.runUntil(sched.nowMs() + 10);
    void sim.boot(0);
    await sched.runUntil(sched.nowMs() + 10);
  }
  sim.healLink();
  await sched.runUntil(sched.nowMs() + 30);
  sim.checkFinal();
  return { violations: sim.violations, steps: sched.steps - baseSteps, label, acked: sim.acked.size };
}

/**
 * Three 6 KiB changes on A with a consistency point after the first: the log switches halves,
 * the CP completes as its own step and releases a half (carrying replies forward), so crash
 * points also fall inside release and half reuse.
 */
async function runWithCp(
  cutAt: number | undefined,
  mode: TearMode,
  recovery: Recovery,
): Promise<{ violations: string[]; steps: number; label: string; acked: number; halfSwitches: number; released: number }> {
  const { sim, sched, baseSteps } = await build(23);
  let label = '(no cut)';
  if (cutAt !== undefined) {
    sched.stopBefore = (step, l) => {
      if (step < baseSteps + cutAt) return false;
      label = l;
      return true;
    };
  }
  sim.submit({ client: 1, xid: 1, fs: 0, token: makeToken(0, 1), filler: 6000 });
  sched.at(3, 'start-cp', () => sim.startCp(0));
  sched.at(3.5, 'more', () => {
    sim.submit({ client: 2, xid: 2, fs: 0, token: makeToken(0, 2), filler: 6000 });
    sim.submit({ client: 3, xid: 3, fs: 0, token: makeToken(0, 3), filler: 6000 });
  });
  // A second CP containing all three releases the first half (its reply is carried forward).
  sched.at(12, 'second-cp', () => sim.startCp(0));
  const finished = await sched.runUntil(workloadUntilMs);
  sched.stopBefore = undefined;
  if (!finished) {
    sim.powerCut(0, mode, { takeover: recovery === 'takeover', detectMs: 1 });
    await sched.runUntil(sched.nowMs() + 10);
    void sim.boot(0);
    await sched.runUntil(sched.nowMs() + 10);
  }
  const m = sim.blades[0].log?.metrics();
  const released = m === undefined ? 0 : m.appends - (sim.blades[0].log as NvLog)['live'].size;
  await sched.runUntil(sched.nowMs() + 30);
  sim.checkFinal();
  return { violations: sim.violations, steps: sched.steps - baseSteps, label, acked: sim.acked.size, halfSwitches: m?.halfSwitches ?? 0, released };
}

describe('crash-point enumeration', () => {
  for (const recovery of ['own', 'takeover'] as const) {
    it(`NV-4 NV-5 SM-3 a consistency point and a half switch between changes: power cut on A before every step, ${recovery === 'own' ? 'own reboot' : 'partner takeover'}`, async () => {
      const clean = await runWithCp(undefined, 'tear', recovery);
      expect(clean.violations).toEqual([]);
      expect(clean.acked).toBe(3);
      expect(clean.halfSwitches).toBe(1);
      expect(clean.released).toBeGreaterThan(0);
      for (let i = 0; i <= clean.steps; i++) {
        for (const mode of ['drop', 'tear'] as const) {
          const r = await runWithCp(i, mode, recovery);
          if (r.violations.length > 0) throw new Error(`cut before step ${i} (${r.label}), ${mode}: ${r.violations.join('; ')}`);
        }
      }
    });
  }


  it('HA-8 link cut, then a power cut of A at every step: B takes over only from a mirror holding every answered change', async () => {
    const clean = await runLinkCutThenDeath(undefined);
    expect(clean.violations).toEqual([]);
    expect(clean.acked).toBe(2);
    let tookOver = 0;
    for (let i = 0; i <= clean.steps; i++) {
      const r = await runLinkCutThenDeath(i);
      if (r.violations.length > 0) throw new Error(`cut before step ${i} (${r.label}): ${r.violations.join('; ')}`);
      tookOver++;
    }
    expect(tookOver).toBe(clean.steps + 1);
  });


  for (const w of workloads) {
    it(`NV-5 NV-6 ${w.name}: clean run acknowledges every change`, async () => {
      const r = await run({ workload: w.changes, cutAt: undefined, target: 'A', mode: 'tear', recovery: 'own', batteryFailed: false });
      expect(r.violations).toEqual([]);
      expect(r.acked).toBe(w.changes.length);
    });

    for (const target of ['A', 'B', 'both'] as const) {
      const recoveries: Recovery[] = target === 'both' ? ['own'] : ['own', 'takeover'];
      for (const recovery of recoveries) {
        it(`NV-1 NV-2 NV-5 ${w.name}: power cut on ${target} before every step, ${recovery === 'own' ? 'own reboot' : 'partner takeover'} recovers every acknowledged change exactly once`, async () => {
          const clean = await run({ workload: w.changes, cutAt: undefined, target, mode: 'tear', recovery, batteryFailed: false });
          expect(clean.steps).toBeGreaterThan(5);
          let cuts = 0;
          for (let i = 0; i <= clean.steps; i++) {
            for (const mode of ['drop', 'tear', 'keep'] as const) {
              const r = await run({ workload: w.changes, cutAt: i, target, mode, recovery, batteryFailed: false });
              if (r.violations.length > 0) throw new Error(`cut before step ${i} (${r.label}), ${mode}: ${r.violations.join('; ')}`);
              cuts++;
            }
          }
          expect(cuts).toBe(3 * (clean.steps + 1));
        });
      }
    }

    for (const recovery of ['own', 'takeover'] as const) {
      it(`NV-7 ${w.name}: battery failed then power cut on A before every step — its NVRAM is lost, the partner's mirror recovers every acknowledged change (${recovery})`, async () => {
        const clean = await run({ workload: w.changes, cutAt: undefined, target: 'A', mode: 'tear', recovery, batteryFailed: true });
        for (let i = 0; i <= clean.steps; i++) {
          const r = await run({ workload: w.changes, cutAt: i, target: 'A', mode: 'tear', recovery, batteryFailed: true });
          if (r.violations.length > 0) throw new Error(`cut before step ${i} (${r.label}): ${r.violations.join('; ')}`);
        }
      });
    }
  }
});
