// Simulation area `pair`: both complete blades (change log with mirroring, RAID + CoW file
// system on shared disks, the NFS change path with its state-machine-log reply cache) with
// model clients, under power cuts (with and without takeover), battery failures, interconnect
// cuts and disk failures inside a fault budget. Checkers: answered changes all present and
// none applied twice (model comparison, and every change answered OK); fsck clean at every
// mount; never two blades with one set open; once faults heal both exports are served by
// their owners again within `livenessBoundMs` and every request is answered.
import type { SimArea, SimOutcome } from '../area.ts';
import { Simulation } from '../kernel.ts';
import { FaultBudget } from '../fault-budget.ts';
import { PairSimWorld, type BladeId, type PlantedBugs } from '../pair/world.ts';
import { ModelClient, diffRoots, snapshotRoot } from '../pair/clients.ts';

/** Named limits of one seed (virtual ms). */
export const pairAreaLimits = {
  workloadMs: 600,
  /** After the last fault heals: both exports served by their owners and every request answered. */
  livenessBoundMs: 1500,
  faultCountMax: 6,
  opsPerClientMax: 40,
  /**
   * From a cut to the reboot (a giveback follows a takeover that soon: 15 ms once found a
   * change path that never applied again after it, docs/simulation-pair.md "Fixed findings").
   */
  rebootDelayMs: [15, 150] as const,
  /** Quiet time between settling and the final check. */
  finalQuietMs: 50,
  /** After settling, a failed disk must have been rebuilt onto its set's spare within this. */
  rebuildBoundMs: 3000,
  /**
   * End with both blades cut at once and recovered before comparing (else the live file
   * systems are compared after a CP): own recovery after serving the partner's set.
   */
  finalRecovery: true,
  /** Blade power cuts per seed (either blade, one at a time: second and third takeovers after givebacks). */
  bladeCutsMax: 3,
  /** Battery failure followed by a cut (NVRAM lost), with takeover. */
  batteryCut: true,
  /** Path faults: one interconnect path down for a while (the session stays on the other). */
  pathFaults: true,
} as const;

const traceTailMax = 80;

const budgetLimits = {
  concurrentMax: { blade: 1, link: 1, disk: 2, battery: 1 },
  // A failed battery and a dead blade at once are two impaired blades' worth of risk.
  exclusive: [['blade', 'battery']] as const,
};

/** The schedule knobs of one run (tests rerun old findings with the schedule that found them). */
export type PairAreaLimits = { -readonly [K in keyof typeof pairAreaLimits]: (typeof pairAreaLimits)[K] extends readonly [number, number] ? readonly [number, number] : (typeof pairAreaLimits)[K] extends boolean ? boolean : number };

export async function runPairSeed(seed: number, log: (line: string) => void, planted: PlantedBugs = {}, limits: Partial<PairAreaLimits> = {}): Promise<SimOutcome> {
  const L: PairAreaLimits = { ...pairAreaLimits, ...limits };
  const sim = new Simulation({ seed, buggify: false });
  const prng = sim.fork();
  const trace: string[] = [];
  const world = new PairSimWorld(
    sim,
    prng.fork(),
    (line) => {
      trace.push(line);
      if (trace.length > traceTailMax) trace.shift();
    },
    planted,
  );
  const budget = new FaultBudget(budgetLimits);
  const faults: string[] = [];
  const failedMember: [number | undefined, number | undefined] = [undefined, undefined];
  try {
    await sim.run(() => world.format());
    for (const id of [0, 1] as const) world.spawnBlade(world.blades[id], 'boot', `boot${id}`, () => world.boot(id));
    await sim.runUntil(() => world.blades[0].up && world.blades[1].up);
    const t0 = sim.clock.nowMs();
    const clients = ([0, 1] as const).map((set) => new ModelClient(world, set, prng.fork(), 5 + prng.int(L.opsPerClientMax), t0 + L.workloadMs));
    for (const c of clients) c.start();

    const reboot = (id: BladeId, grantRelease: () => void, after: () => void = () => undefined): void => {
      sim.timers.after(prng.range(L.rebootDelayMs[0], L.rebootDelayMs[1]), () => {
        after();
        world.spawnBlade(world.blades[id], 'boot', `boot${id}`, async () => {
          await world.boot(id);
          grantRelease();
        });
      });
    };
    let bladeCuts = 0;
    const faultCount = 1 + prng.int(L.faultCountMax);
    for (let i = 0; i < faultCount; i++) {
      sim.timers.after(20 + prng.float() * (L.workloadMs - 40), () => {
        const [a, b] = world.blades;
        const normal = a.up && b.up && world.server[0] === 0 && world.server[1] === 1;
        const x = prng.int(2) as BladeId;
        const kinds = ['cut', 'cut', 'battery-cut', 'battery', 'link', 'disk'] as const;
        switch (prng.pick(L.pathFaults ? [...kinds, 'path' as const] : kinds)) {
          case 'cut': {
            if (!normal || bladeCuts >= L.bladeCutsMax) return;
            bladeCuts++;
            const g = budget.tryGrant('blade', `${x}`);
            if (g === undefined) return;
            const takeover = prng.chance(0.6);
            faults.push(`cut${x}${takeover ? '+takeover' : ''}`);
            world.powerCut(x, takeover);
            reboot(x, () => g.release());
            return;
          }
          case 'battery-cut': {
            // The battery fails, then the power: NVRAM is lost, the partner's mirror holds the log.
            if (!L.batteryCut || !normal || bladeCuts >= L.bladeCutsMax || !world.linkUp || !world.takeoverAllowed[x]) return;
            bladeCuts++;
            const g = budget.tryGrant('blade', `${x}`);
            if (g === undefined) return;
            faults.push(`battery-cut${x}`);
            world.failBattery(x);
            sim.timers.after(prng.float() * 20, () => {
              const bx = world.blades[x];
              if (!bx.up || !world.takeoverAllowed[x]) {
                world.healBattery(x);
                g.release();
                return;
              }
              world.powerCut(x, true);
              reboot(x, () => g.release(), () => world.healBattery(x));
            });
            return;
          }
          case 'battery': {
            if (!world.blades[x].up) return;
            const g = budget.tryGrant('battery', `${x}`);
            if (g === undefined) return;
            faults.push(`battery${x}`);
            world.failBattery(x);
            sim.timers.after(prng.range(20, 200), () => {
              world.healBattery(x);
              g.release();
            });
            return;
          }
          case 'link': {
            const g = budget.tryGrant('link', 'interconnect');
            if (g === undefined) return;
            faults.push('link');
            world.cutLink();
            sim.timers.after(prng.range(5, 120), () => {
              world.healLink();
              g.release();
            });
            return;
          }
          case 'path': {
            const g = budget.tryGrant('link', 'interconnect');
            if (g === undefined) return;
            faults.push('path');
            world.setPathDown(true);
            sim.timers.after(prng.range(5, 150), () => {
              world.setPathDown(false);
              g.release();
            });
            return;
          }
          case 'disk': {
            // One member per set for the whole run, rebuilt onto the set's spare.
            if (failedMember[x] !== undefined) return;
            const g = budget.tryGrant('disk', `set${x}`);
            if (g === undefined) return;
            const m = prng.int(3);
            failedMember[x] = m;
            faults.push(`disk${x}.${m}`);
            world.failDisk(x, m);
            return;
          }
        }
      });
    }

    // Fault phase, then the liveness phase: faults heal (pending reboots happen), and both
    // exports must be served by their owners and every request answered within the bound.
    await sim.runUntil(t0 + L.workloadMs);
    const healedAt = sim.clock.nowMs() + prng.range(L.rebootDelayMs[0], L.rebootDelayMs[1]) + 200;
    const settled = (): boolean =>
      world.blades.every((b) => b.up) && world.server[0] === 0 && world.server[1] === 1 && clients.every((c) => c.done) && world.linkUp;
    await sim.runUntil(() => settled() || sim.clock.nowMs() > healedAt + L.livenessBoundMs);
    if (world.violations.length === 0 && !settled()) {
      const why = `servers ${world.server.join(',')} up ${world.blades.map((b) => b.up).join(',')} unanswered ${clients.filter((c) => !c.done).map((c) => `export ${c.set} xid ${c.current?.op.op ?? '-'}`).join(' ')}`;
      for (const b of world.blades) log(`  blade ${b.id} state: cpRunning ${b.cpRunning !== undefined} lastApplied ${b.changeLog?.lastAppliedSeq} metrics ${JSON.stringify(b.log?.metrics())} mirror ${b.log?.mirrorState}`);
      world.violations.push(`liveness: not settled ${L.livenessBoundMs} ms after the faults healed: ${why}`);
    }

    // Disk faults heal too: a failed member is rebuilt onto the set's spare.
    if (world.violations.length === 0) {
      const rebuildDeadline = sim.clock.nowMs() + L.rebuildBoundMs;
      await sim.runUntil(() => world.raidStates().every((st) => st === 'normal') || sim.clock.nowMs() > rebuildDeadline);
      const states = world.raidStates();
      if (!states.every((st) => st === 'normal')) world.violations.push(`rebuild: sets not rebuilt ${L.rebuildBoundMs} ms after settling: ${states.join(', ')}`);
    }

    // Final recovery: both blades lose power at once (no takeover), boot, replay; then each
    // file system must equal its model: every answered change present, once.
    if (world.violations.length === 0) {
      await sim.runUntil(sim.clock.nowMs() + L.finalQuietMs);
      if (L.finalRecovery) {
        for (const id of [0, 1] as const) world.powerCut(id, false);
        await sim.runUntil(sim.clock.nowMs() + 1);
        for (const id of [0, 1] as const) world.spawnBlade(world.blades[id], 'boot', `final-boot${id}`, () => world.boot(id));
        const finalDeadline = sim.clock.nowMs() + L.livenessBoundMs;
        await sim.runUntil(() => (world.blades[0].up && world.blades[1].up) || world.violations.length > 0 || sim.clock.nowMs() > finalDeadline);
        if (!world.blades[0].up || !world.blades[1].up) world.violations.push(`final recovery: blades up ${world.blades.map((b) => b.up).join(',')} after ${L.livenessBoundMs} ms`);
      } else {
        for (const b of world.blades) await sim.run(() => world.doCp(b));
      }
      for (const set of [0, 1] as const) {
        const fs = world.blades[set].filesystems.get(world.blades[set].sets.get(set)?.fs.fsid ?? -1n);
        const client = clients[set];
        if (fs === undefined || client === undefined) {
          world.violations.push(`final: set ${set} not mounted on its owner`);
          continue;
        }
        const actual = await sim.run(() => snapshotRoot(fs));
        const model = await sim.run(() => snapshotRoot(client.model));
        const d = diffRoots(actual, model);
        if (d !== undefined) world.violations.push(`final: export ${set} differs from the answered changes: ${d}`);
      }
    }
    const c = world.counters;
    log(
      `seed ${seed}: faults [${faults.join(' ')}] answered ${clients.map((x) => x.answered).join('+')} retransmits ${clients.map((x) => x.retransmits).join('+')} boots ${c.boots} takeovers ${c.takeovers} givebacks ${c.givebacks} replayed ${c.replayed} cps ${c.cps} fsck ${c.fsckRuns} raid ${world.raidStates().join(',')} t=${sim.clock.nowMs().toFixed(1)}`,
    );
    if (world.violations.length > 0) {
      for (const line of trace) log(`  ${line}`);
      return { ok: false, reason: world.violations.slice(0, 4).join('; ') };
    }
    return { ok: true };
  } catch (e) {
    for (const line of trace) log(`  ${line}`);
    return { ok: false, reason: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  }
}

export const area: SimArea = {
  name: 'pair',
  description: 'both blades end to end: change log + mirroring, RAID + CoW FS, NFS change path, model clients; power cuts, takeover/giveback, battery, link and disk faults',
  runSeed: runPairSeed,
};
