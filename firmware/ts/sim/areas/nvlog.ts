// Simulation area "nvlog": both blades' change logs with mirroring, consistency points,
// replay and state-machine logs under virtual time, a test operation set, and random faults
// inside the fault budget (one impaired blade, or the link, at a time): power cuts with torn
// writes, a failed battery then a cut, takeover and giveback, reboots, link cuts.
// Checkers: every acknowledged change applied exactly once after every recovery; no change
// ever applied twice; every client request eventually answered once faults heal.
import type { BladeId } from '../../nvlog/core/layout.ts';
import { PairSim, makeToken, type Request } from '../../nvlog/sim/pair.ts';
import { KernelScheduler } from '../../nvlog/sim/scheduler.ts';
import type { SimArea, SimOutcome } from '../area.ts';
import { Simulation } from '../kernel.ts';

const workloadMs = 600;
const settleMs = 1500;
const clientsPerFs = 2;
const retransmitMs = 30;

export const area: SimArea = {
  name: 'nvlog',
  description: 'change log in NVRAM: mirroring, torn writes, power cuts, battery failure, takeover replay, state-machine log',
  async runSeed(seed: number, log: (line: string) => void): Promise<SimOutcome> {
    // The project's simulation kernel: virtual time, random order of simultaneous events,
    // buggify() (the log delays a receiver's persist and ack at one site).
    const kernel = new Simulation({ seed });
    const prng = kernel.fork();
    const sched = new KernelScheduler(kernel);
    const sim = new PairSim({
      sched,
      prng: prng.fork(),
      limits: { replyRetentionMs: 300, mirrorAckTimeoutMs: 20, mirrorResyncRetryMs: 50, smRequestsMax: 64 },
      cpIntervalMs: 10 + prng.int(60),
      ...(prng.chance(0.02) ? { trace: log } : {}),
    });
    void sim.start();

    // Clients: each sends its requests one at a time and retransmits the same request
    // (same key) until it is answered.
    let xid = 0;
    const clients: Array<{ id: number; fs: BladeId; left: number; current: Request | undefined }> = [];
    for (const fs of [0, 1] as const) for (let c = 0; c < clientsPerFs; c++) clients.push({ id: clients.length + 1, fs, left: 5 + prng.int(40), current: undefined });
    const filler = prng.pick([0, 24, 200, 1000]);
    const drive = (cl: (typeof clients)[number]): void => {
      if (cl.current !== undefined && sim.clientAcked.has(cl.current.token)) cl.current = undefined;
      if (cl.current === undefined) {
        if (cl.left === 0 || sched.nowMs() > workloadMs) return;
        cl.left--;
        xid++;
        cl.current = { client: cl.id, xid, fs: cl.fs, token: makeToken(cl.fs, xid), filler: prng.int(filler + 1) };
      }
      sim.submit(cl.current);
      sched.at(retransmitMs * (0.5 + prng.float()), `client-${cl.id}`, () => drive(cl));
    };
    for (const cl of clients) sched.at(prng.float() * 5, `client-${cl.id}`, () => drive(cl));

    // Faults inside the budget.
    const faults: string[] = [];
    const faultCount = 1 + prng.int(8);
    for (let i = 0; i < faultCount; i++) {
      sched.at(20 + prng.float() * (workloadMs - 40), 'fault', () => {
        const [a, b] = sim.blades;
        const healthy = a.alive && b.alive && sim.linkUp && !a.batteryFailed && !b.batteryFailed;
        // A blade may also die while the link is cut: the partner then takes it over only if
        // it had not announced a degraded mirror (HA-8).
        const bladesUp = a.alive && b.alive && !a.batteryFailed && !b.batteryFailed;
        const x = prng.int(2) as BladeId;
        const bx = sim.blades[x];
        const kind = prng.pick(['cut', 'cut', 'battery-cut', 'link']);
        if (kind === 'link' && healthy) {
          faults.push('link');
          sim.cutLink();
          sched.at(5 + prng.float() * 80, 'heal-link', () => sim.healLink());
        } else if (kind === 'cut' && bladesUp) {
          const mode = prng.pick(['tear', 'drop', 'keep'] as const);
          const takeover = prng.chance(0.6);
          faults.push(`cut-${x}-${mode}${takeover ? '-takeover' : ''}`);
          sim.powerCut(x, mode, { takeover });
          sched.at(5 + prng.float() * 60, `reboot-${x}`, () => void sim.boot(x));
        } else if (kind === 'battery-cut' && healthy && bx.mirrorState === 'synced' && sim.blades[x === 0 ? 1 : 0].mirrorState === 'synced') {
          faults.push(`battery-${x}`);
          sim.failBattery(x);
          // Sometimes the cut comes before the gauge even reported the failure.
          sched.at(prng.float() * 20, `battery-cut-${x}`, () => {
            if (!bx.alive || !sim.linkUp || bx.mirrorState !== 'synced') return;
            sim.powerCut(x, 'tear', { takeover: prng.chance(0.5) });
            sched.at(5 + prng.float() * 60, `reboot-${x}`, () => {
              sim.healBattery(x);
              void sim.boot(x);
            });
          });
        }
      });
    }

    await kernel.runUntil(workloadMs + settleMs);
    for (const b of sim.blades) if (b.batteryFailed && b.alive) sim.healBattery(b.id);
    await kernel.runUntil(workloadMs + settleMs + 200);
    sim.checkFinal();
    const unanswered = clients.filter((c) => c.current !== undefined && !sim.clientAcked.has(c.current.token));
    const m0 = sim.blades[0].log?.metrics();
    log(`seed ${seed}: faults [${faults.join(' ')}] acked ${sim.acked.size} recoveries ${sim.recoveries} takeovers ${sim.takeovers} steps ${kernel.steps} lastSeq ${m0?.lastSeq ?? '-'} smHigh ${m0?.smRequestsHighWater ?? '-'} mirrorInFlightHigh ${m0?.mirrorInFlightHighWater ?? '-'}`);
    if (sim.violations.length > 0) return { ok: false, reason: sim.violations.slice(0, 5).join('; ') };
    if (unanswered.length > 0) return { ok: false, reason: `liveness: ${unanswered.length} client requests never answered (e.g. token ${unanswered[0]?.current?.token})` };
    return { ok: true };
  },
};
