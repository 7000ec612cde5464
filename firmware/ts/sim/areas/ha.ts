// Simulation area `ha`: both blades' HA layers (status protocol over every path, mailboxes,
// fencing, takeover, giveback, reboot recovery) under random path faults, power cuts,
// reboots, hangs, mailbox corruption, mirror trouble, operator commands and (with the
// partner-power sense lines most runs have) lying sense lines, within a fault budget.
// Checkers (firmware/ts/ha/sim/pair-world.ts): no two blades write one disk in one
// reservation epoch; a fenced blade stops at once; a dead partner is taken over within the
// documented bound; no takeover starts while the partner is reachable; after healing, both
// blades settle into NORMAL on their own disks.
import type { SimArea, SimOutcome } from '../area.ts';
import { Prng } from '../../core/prng.ts';
import { FaultBudget, type FaultGrant } from '../fault-budget.ts';
import { PairWorld, bladeNames, type BladeIndex } from '../../ha/sim/pair-world.ts';

/** Virtual time with faults, then time to heal and settle (giveback delay included). */
const faultPhaseMs = 40_000;
const settleMs = 15_000;
const traceTailMax = 150;

type FaultKind = 'power' | 'serial' | 'net' | 'mailbox' | 'partition' | 'corrupt' | 'mirror' | 'disable' | 'fence' | 'sense' | 'hang';

const budgetLimits = {
  // The design survives one blade down at a time; links, mailboxes and the rest may fail together.
  // A hang is a blade down as far as its partner can tell: it shares the power budget's rule.
  concurrentMax: { power: 1, serial: 1, net: 1, mailbox: 2, partition: 1, corrupt: 2, mirror: 1, disable: 1, fence: 1, sense: 1, hang: 1 },
  totalConcurrentMax: 3,
  // One blade down at a time, whether it lost its power or hangs.
  exclusive: [['power', 'hang']] as const,
};

export const area: SimArea = {
  name: 'ha',
  description: 'HA status protocol, takeover/giveback/reboot and fencing of both blades under path faults, power cuts and reboots',
  runSeed(seed: number, log: (line: string) => void): Promise<SimOutcome> {
    return Promise.resolve(runHaSeed(seed, log));
  },
};

interface ActiveFault {
  grant: FaultGrant;
  healAtMs: number;
  heal: () => void;
}

export function runHaSeed(seed: number, log: (line: string) => void): SimOutcome {
  const prng = new Prng(seed ^ 0x4a11ab1e);
  const tail: string[] = [];
  const world = new PairWorld({
    seed,
    timing: { givebackDelayMinMs: 3000, takeoverWindowMs: 60_000, takeoverCountMax: 4 },
    lossProbability: prng.pick([0, 0.01, 0.05]),
    consecutiveLossMax: 2,
    corruptProbability: prng.pick([0, 0.002]),
    // Most boards have the partner-power sense line; some runs keep the mailbox-only decision.
    powerSense: prng.chance(0.75),
    trace: (line) => {
      tail.push(line);
      if (tail.length > traceTailMax) tail.shift();
    },
  });
  // Some runs have no working reset line, so a taken-over blade that is alive but cut off
  // is stopped only by the fence refusing its writes.
  world.resetLineBroken = prng.chance(0.3);
  const budget = new FaultBudget(budgetLimits);
  const active: ActiveFault[] = [];
  const injected: Record<string, number> = {};

  const inject = (kind: FaultKind, target: string, apply: () => void, heal: () => void, durationMs: number): void => {
    const grant = budget.tryGrant(kind, target);
    if (grant === undefined) return;
    apply();
    injected[kind] = (injected[kind] ?? 0) + 1;
    active.push({ grant, healAtMs: world.nowMs + durationMs, heal });
  };

  world.powerOn(0);
  world.powerOn(1);
  world.run(prng.range(500, 2000));
  while (world.nowMs < faultPhaseMs && world.violations.length === 0) {
    world.run(prng.range(50, 2500));
    for (let k = active.length - 1; k >= 0; k--) {
      const f = active[k] as ActiveFault;
      if (world.nowMs >= f.healAtMs) {
        f.heal();
        f.grant.release();
        active.splice(k, 1);
      }
    }
    const b = prng.int(2) as BladeIndex;
    const name = bladeNames[b];
    switch (prng.int(12)) {
      case 0:
      case 1:
        // A power cut: short (a reboot) or long enough for the partner to take over.
        // Now and then the NVRAM battery has failed too: the blade boots without its HA state.
        inject(
          'power',
          name,
          () => {
            world.powerOff(b);
            if (prng.chance(0.15)) world.loseNvram(b);
          },
          () => world.powerOn(b),
          prng.pick([prng.range(100, 800), prng.range(1500, 8000)]),
        );
        break;
      case 2:
        inject('serial', name, () => world.cutLink('serial', prng.chance(0.5) ? 'both' : b, true), () => world.cutLink('serial', 'both', false), prng.range(200, 6000));
        break;
      case 3:
        inject('net', name, () => world.cutLink('net', prng.chance(0.5) ? 'both' : b, true), () => world.cutLink('net', 'both', false), prng.range(200, 6000));
        break;
      case 4:
        inject('mailbox', name, () => world.cutMailboxReads(b, true), () => world.cutMailboxReads(b, false), prng.range(200, 6000));
        break;
      case 5:
        if (prng.chance(0.3)) {
          // Every path at once, mailboxes included: both blades think the other died.
          inject(
            'partition',
            'all',
            () => {
              world.cutLink('serial', 'both', true);
              world.cutLink('net', 'both', true);
              world.cutMailboxReads('both', true);
            },
            () => {
              world.cutLink('serial', 'both', false);
              world.cutLink('net', 'both', false);
              world.cutMailboxReads('both', false);
            },
            prng.range(300, 4000),
          );
        }
        break;
      case 6: {
        const disk = prng.int(4);
        inject('corrupt', `disk${disk}`, () => world.corruptMailbox(disk, true), () => world.corruptMailbox(disk, false), prng.range(200, 5000));
        break;
      }
      case 7:
        inject('mirror', name, () => world.setMirror(b, false), () => world.setMirror(b, true), prng.range(200, 4000));
        break;
      case 8:
        if (prng.chance(0.3)) inject('disable', name, () => void world.operator(b, 'disable'), () => void world.operator(b, 'enable'), prng.range(200, 4000));
        break;
      case 9:
        if (prng.chance(0.3)) world.operator(b, prng.pick(['takeover', 'giveback'] as const));
        break;
      case 10:
        if (prng.chance(0.3)) inject('fence', 'controller', () => world.setFenceFlaky(true), () => world.setFenceFlaky(false), prng.range(200, 3000));
        break;
      case 11:
        if (prng.chance(0.5)) {
          // A lying sense line: stuck at lost (the partner may be alive) or at good (a power cut goes unseen).
          const stuck = prng.pick(['lost', 'good'] as const);
          inject('sense', name, () => world.setSenseWire(b, stuck), () => world.setSenseWire(b, undefined), prng.range(500, 8000));
        } else {
          // A hang (stalled event loop): silent on every path with its power good.
          inject('hang', name, () => world.hang(b, true), () => world.hang(b, false), prng.pick([prng.range(100, 600), prng.range(1500, 5000)]));
        }
        break;
      default:
        break;
    }
  }
  for (const f of active) {
    f.heal();
    f.grant.release();
  }
  world.powerOn(0);
  world.powerOn(1);
  world.setMirror(0, true);
  world.setMirror(1, true);
  world.setFenceFlaky(false);
  world.run(500);
  world.operator(0, 'enable');
  world.operator(1, 'enable');
  world.run(settleMs);
  world.checkSettled();

  const c = world.counters;
  const summary = `seed ${seed}: t=${(world.nowMs / 1000).toFixed(1)}s faults=${JSON.stringify(injected)} takeovers=${c.takeovers} givebacks=${c.givebacks} fenced-writes=${world.fence.fencedWrites.length} lost=${c.messagesLost} rejected=${c.rejected}`;
  log(summary);
  if (world.violations.length > 0) {
    for (const line of tail) log(`  ${line}`);
    return { ok: false, reason: world.violations.slice(0, 3).join('; ') };
  }
  return { ok: true };
}
