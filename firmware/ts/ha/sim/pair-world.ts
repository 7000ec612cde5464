// A deterministic two-blade world for the HA layer: both blades' HA machines with simulated
// drivers (interconnect and network paths with latency, loss and cuts; mailbox disks with
// reads, writes and corruption; the recording fence; reset line; log replay; a disk-write
// workload; optionally each blade's partner-power sense line, driven by the partner's power),
// virtual time from one event queue, fault injection (power cuts, hangs, link and mailbox
// faults, lying sense lines), and the safety and liveness checkers. The scenario scripts (test/ha) and the `ha` simulation area drive it.
// It runs on its own synchronous event queue rather than the async simulation kernel
// (sim/kernel.ts): the HA machine is synchronous, and this keeps 500 campaign seeds of a
// minute of virtual time each well under a minute. test/ha/driver.test.ts runs the real
// runtime (ha/driver.ts over the link endpoint) under the kernel instead.
import { Prng } from '../../core/prng.ts';
import { assert } from '../../core/assert.ts';
import { isTwinbladeError } from '../../core/errors.ts';
import { HaMachine, type HaAction, type HaConfig, type HaPathConfig, type OperatorCommand, type OperatorResult, type PersistedHaState, type SetIndex } from '../core/machine.ts';
import { decodeStatus, encodeStatus, HaPhase, statusMessageBytes, type StatusMessage } from '../core/status.ts';
import { decodeMailbox, encodeMailbox, mailboxSectorBytesMin } from '../core/mailbox.ts';
import { defaultHaTiming, pathTimeoutMs, takeoverBoundMs, type HaTiming, type PathKind } from '../core/timing.ts';
import { powerLossTakeoverBoundMs } from '../core/power-sense.ts';
import { SimFenceArray } from '../fence-sim.ts';
import { FenceError, FenceErrorCode } from '../fence.ts';
import { mailboxPathId } from '../mailbox-io.ts';

export type BladeIndex = 0 | 1;
export const bladeNames = ['a', 'b'] as const;
export type LinkKind = 'serial' | 'net';

/** Disks 0,1 belong to blade a's set; 2,3 to blade b's. Every disk carries mailboxes. */
export const setDisks: readonly [readonly number[], readonly number[]] = [
  [0, 1],
  [2, 3],
];
const diskCount = 4;

/** Upper bounds of the simulated latencies (ms); the liveness bound adds them. */
export const simLatency = {
  serialMaxMs: 4,
  netMaxMs: 2,
  diskMaxMs: 6,
  fenceMaxMs: 10,
  replayMaxMs: 150,
  bootMs: 80,
  workloadIntervalMs: 40,
} as const;

export interface PairWorldOptions {
  seed: number;
  timing?: Partial<HaTiming>;
  autoGiveback?: boolean;
  /** Probability that one message on a serial/network path is lost. */
  lossProbability?: number;
  /** Fault budget for loss: at most this many consecutive losses per path and direction. */
  consecutiveLossMax?: number;
  /** Probability that one message on a serial/network path arrives with a flipped byte. */
  corruptProbability?: number;
  firmwareVersions?: [number, number];
  /**
   * Each blade has a partner-power sense line (hardware-assisted takeover): a power cut of
   * one blade reads as lost on the other's line at once; a hang or a reset pulse does not.
   */
  powerSense?: boolean;
  trace?: (line: string) => void;
}

const systemId = 0x7b1ade01;
const defaultFirmware = 0x0001_0003;

interface BladeSim {
  readonly index: BladeIndex;
  powered: boolean;
  incarnation: number;
  machine: HaMachine | undefined;
  nvram: PersistedHaState | undefined;
  firmwareVersion: number;
  mirrorSynced: boolean;
  bootId: number;
  /** Time since which the blade has been powered (undefined: off). */
  poweredSinceMs: number | undefined;
  /** Time since which the blade has held (claimed) a non-empty set, continuously. */
  claimingSinceMs: number | undefined;
  serving: number;
  lastPhase: string;
  lastGeneration: number;
  /** Hung (a stalled event loop): the machine neither runs nor sends; results wait for it. */
  hung: boolean;
  /** Work that arrived for the machine while it hung, run in order when it resumes. */
  deferred: (() => void)[];
  /** When the blade last resumed from a hang (a reachability window starts over). */
  resumedAtMs: number | undefined;
  /** The partner-power sense line this blade reads is stuck at good (true) or lost (false). */
  senseStuck: boolean | undefined;
  /** What this blade's machine was last told about its partner's power. */
  senseReported: boolean | undefined;
}

interface Event {
  at: number;
  seq: number;
  fn: () => void;
}

/** A binary min-heap of events by (time, insertion order): simultaneous events run in a fixed order. */
class EventQueue {
  private heap: Event[] = [];
  private seq = 0;
  push(at: number, fn: () => void): void {
    const e = { at, seq: this.seq++, fn };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p] as Event, e)) break;
      h[i] = h[p] as Event;
      i = p;
    }
    h[i] = e;
  }
  peekAt(): number | undefined {
    return this.heap[0]?.at;
  }
  pop(): Event | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && less(h[r] as Event, h[l] as Event) ? r : l;
      if (less(last, h[c] as Event)) break;
      h[i] = h[c] as Event;
      i = c;
    }
    h[i] = last;
    return top;
  }
}

function less(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

interface LivenessExpectation {
  /** The partner hung rather than lost its power: the expectation lapses when it resumes. */
  hang: boolean;
  survivor: BladeIndex;
  generation: number;
  sinceMs: number;
  deadlineMs: number;
}

export class PairWorld {
  nowMs = 0;
  readonly timing: HaTiming;
  readonly fence: SimFenceArray;
  readonly violations: string[] = [];
  readonly counters = { messagesSent: 0, messagesLost: 0, messagesCorrupted: 0, mailboxWrites: 0, mailboxReads: 0, takeovers: 0, givebacks: 0, alerts: 0, rejected: 0 };
  private readonly prng: Prng;
  private readonly queue = new EventQueue();
  private readonly opts: PairWorldOptions;
  private readonly blades: [BladeSim, BladeSim];
  /** Mailbox region per disk: two slots of one 512-byte sector. */
  private readonly mailboxes: Uint8Array[] = Array.from({ length: diskCount }, () => new Uint8Array(2 * mailboxSectorBytesMin));
  /** Link cuts by kind and sending blade. */
  private readonly cut: Record<LinkKind, [boolean, boolean]> = { serial: [false, false], net: [false, false] };
  /** Time since which a link from the sending blade has been uncut. */
  private readonly linkOkSinceMs: Record<LinkKind, [number, number]> = { serial: [0, 0], net: [0, 0] };
  private readonly lossRun: Record<LinkKind, [number, number]> = { serial: [0, 0], net: [0, 0] };
  /** Mailbox reads by blade i fail while cut. */
  private readonly mailboxReadCut: [boolean, boolean] = [false, false];
  private readonly mailboxReadOkSinceMs: [number, number] = [0, 0];
  private readonly corruptDisks = new Set<number>();
  /** When set, pulsing the partner's reset line does nothing (a broken wire): only the fence stops it. */
  resetLineBroken = false;
  private fenceFlaky = false;
  /** Last time a mailbox corruption fault started or ended. */
  private corruptEverMs = -Infinity;
  private readonly diskOkSinceMs: number[] = new Array<number>(diskCount).fill(0);
  /** Per blade and disk: when its last command issued completes (see `inOrder`). */
  private readonly diskQueueMs: [number[], number[]] = [new Array<number>(diskCount).fill(0), new Array<number>(diskCount).fill(0)];
  private readonly liveness: LivenessExpectation[] = [];
  /** (blade, set) -> time of the first refused write while serving it. */
  private readonly fencedSince = new Map<string, number>();
  private readonly paths: readonly HaPathConfig[];

  constructor(opts: PairWorldOptions) {
    this.opts = opts;
    this.prng = new Prng(opts.seed);
    this.timing = { ...defaultHaTiming, ...opts.timing };
    this.fence = new SimFenceArray(diskCount, () => this.nowMs);
    const fw = opts.firmwareVersions ?? [defaultFirmware, defaultFirmware];
    const blade = (index: BladeIndex): BladeSim => ({
      index,
      powered: false,
      incarnation: 0,
      machine: undefined,
      nvram: undefined,
      firmwareVersion: fw[index],
      mirrorSynced: true,
      bootId: 0,
      poweredSinceMs: undefined,
      claimingSinceMs: undefined,
      serving: 0,
      lastPhase: 'OFF',
      lastGeneration: 0,
      hung: false,
      deferred: [],
      resumedAtMs: undefined,
      senseStuck: undefined,
      senseReported: undefined,
    });
    this.blades = [blade(0), blade(1)];
    const paths: HaPathConfig[] = [
      { id: 'serial', kind: 'interconnect' },
      { id: 'net0', kind: 'network' },
    ];
    for (let d = 0; d < diskCount; d++) paths.push({ id: mailboxPathId(d), kind: 'mailbox' });
    this.paths = paths;
    this.scheduleChecks();
  }

  private scheduleChecks(): void {
    this.at(checkIntervalMs, () => {
      this.checkTimers();
      this.scheduleChecks();
    });
  }

  // ---------------------------------------------------------------------------------------
  // Control (scenario commands and the fault injector)

  private trace(line: string): void {
    this.opts.trace?.(`${(this.nowMs / 1000).toFixed(3).padStart(8)} ${line}`);
  }

  /** Power on (`resetOnly`: the end of a reset pulse; the power rail never dropped). */
  powerOn(i: BladeIndex, resetOnly = false): void {
    const b = this.blades[i];
    if (b.powered) return;
    b.powered = true;
    b.incarnation++;
    b.poweredSinceMs = this.nowMs;
    b.bootId = this.prng.nextU32();
    b.hung = false;
    b.deferred = [];
    const inc = b.incarnation;
    if (!resetOnly) this.senseChanged(this.blades[i === 0 ? 1 : 0]);
    // The firmware takes a while to come up; then the HA machine starts (step 251).
    this.at(simLatency.bootMs, () => {
      if (!this.alive(b, inc)) return;
      b.machine = new HaMachine(this.configFor(b), b.nvram, this.nowMs);
      this.trace(`${bladeNames[i]}: boot generation ${(b.nvram?.generation ?? 0) + 1}`);
      b.senseReported = undefined;
      this.reportSense(b);
      this.drain(b);
      this.scheduleTick(b, inc);
      this.schedulePoll(b, inc);
      this.scheduleWorkload(b, inc);
    });
  }

  /** Power cut (`resetOnly`: held in reset by the partner; the power rail stays good). */
  powerOff(i: BladeIndex, resetOnly = false): void {
    const b = this.blades[i];
    if (!b.powered) return;
    b.powered = false;
    b.incarnation++;
    b.machine = undefined;
    b.poweredSinceMs = undefined;
    b.claimingSinceMs = undefined;
    b.serving = 0;
    b.lastPhase = 'OFF';
    b.hung = false;
    b.deferred = [];
    this.trace(`${bladeNames[i]}: power off`);
    const partner = this.blades[i === 0 ? 1 : 0];
    // The liveness bound depends on what the survivor's line will say, so ask before it changes.
    const fast = !resetOnly && this.senseHonest(partner);
    if (!resetOnly) this.senseChanged(partner);
    this.expectTakeoverOf(i, false, fast);
  }

  /**
   * A hang (a stalled event loop, a livelock): the blade keeps its power and its state but
   * runs nothing: no ticks, no sends, no disk writes; results of commands it issued wait.
   * `on` false resumes it. The partner's sense line stays good: only silence tells.
   */
  hang(i: BladeIndex, on: boolean): void {
    const b = this.blades[i];
    if (!b.powered || b.machine === undefined || b.hung === on) return;
    b.hung = on;
    this.trace(`${bladeNames[i]}: ${on ? 'hung' : 'resumed'}`);
    if (on) {
      this.expectTakeoverOf(i, true, false);
      return;
    }
    b.resumedAtMs = this.nowMs;
    for (const fn of b.deferred.splice(0)) fn();
    this.drain(b);
  }

  /** Breaks (stuck at 'good' or 'lost') or mends (undefined) the sense line `reader` reads. */
  setSenseWire(reader: BladeIndex, stuck: 'good' | 'lost' | undefined): void {
    const b = this.blades[reader];
    b.senseStuck = stuck === undefined ? undefined : stuck === 'good';
    this.trace(`${bladeNames[reader]}: partner-power sense wire ${stuck === undefined ? 'mended' : `stuck at ${stuck}`}`);
    // A survivor whose line lies may take longer than the fast bound, or (stuck at lost)
    // start a takeover that only the fence arbitrates: its pending expectations lapse.
    this.dropExpectations(reader);
    this.senseChanged(b);
  }

  /** The level `reader`'s sense line shows now. */
  private senseLevel(reader: BladeSim): boolean {
    return reader.senseStuck ?? this.blades[reader.index === 0 ? 1 : 0].powered;
  }

  /** The line tells the truth and the machine has not caught it lying: a power cut will be sensed. */
  private senseHonest(reader: BladeSim): boolean {
    if (this.opts.powerSense !== true || reader.senseStuck !== undefined) return false;
    return reader.machine?.status().partnerPowerSenseFaulty === false;
  }

  private senseChanged(reader: BladeSim): void {
    if (this.opts.powerSense !== true || reader.machine === undefined) return;
    if (reader.hung) {
      reader.deferred.push(() => this.reportSense(reader));
      return;
    }
    this.reportSense(reader);
    this.drain(reader);
  }

  /** Reports the line to the machine when its level differs from the last report (the driver's watcher). */
  private reportSense(b: BladeSim): void {
    if (this.opts.powerSense !== true || b.machine === undefined) return;
    const good = this.senseLevel(b);
    if (b.senseReported === good) return;
    b.senseReported = good;
    this.trace(`${bladeNames[b.index]}: partner power ${good ? 'good' : 'lost'}`);
    b.machine.step({ type: 'partner-power', good }, this.nowMs);
  }

  /** The blade's NVRAM loses its contents (a failed battery at a power cut): it boots as new. */
  loseNvram(i: BladeIndex): void {
    this.blades[i].nvram = undefined;
    this.trace(`${bladeNames[i]}: NVRAM contents lost`);
  }

  isPowered(i: BladeIndex): boolean {
    return this.blades[i].powered;
  }

  cutLink(kind: LinkKind, from: BladeIndex | 'both', on: boolean): void {
    for (const f of from === 'both' ? ([0, 1] as const) : [from]) {
      if (this.cut[kind][f] === on) continue;
      this.cut[kind][f] = on;
      if (!on) this.linkOkSinceMs[kind][f] = this.nowMs;
    }
  }

  cutMailboxReads(reader: BladeIndex | 'both', on: boolean): void {
    for (const r of reader === 'both' ? ([0, 1] as const) : [reader]) {
      if (this.mailboxReadCut[r] === on) continue;
      this.mailboxReadCut[r] = on;
      if (!on) this.mailboxReadOkSinceMs[r] = this.nowMs;
    }
  }

  corruptMailbox(disk: number, on: boolean): void {
    assert(disk >= 0 && disk < diskCount, 'corruptMailbox: no such disk');
    this.corruptEverMs = this.nowMs;
    if (on) this.corruptDisks.add(disk);
    else if (this.corruptDisks.delete(disk)) this.diskOkSinceMs[disk] = this.nowMs;
  }

  setMirror(i: BladeIndex, synced: boolean): void {
    const b = this.blades[i];
    b.mirrorSynced = synced;
    this.trace(`${bladeNames[i]}: mirror ${synced ? 'synced' : 'degraded'}`);
    // A mirror sync error legitimately disables takeover (HA-8): expectations of this survivor lapse.
    if (!synced) this.dropExpectations(i);
    this.whenRunning(b, b.incarnation, (m) => m.step({ type: 'mirror', synced }, this.nowMs));
  }

  /** While set, each fence command fails (ERR_FENCE_IO) on a disk with probability 1/2. */
  setFenceFlaky(on: boolean): void {
    this.fenceFlaky = on;
    this.trace(`fence controller ${on ? 'flaky' : 'healthy'}`);
    // A takeover may be retried, and so take longer than the bound, while commands fail.
    if (on) this.liveness.splice(0);
  }

  setFirmware(i: BladeIndex, version: number): void {
    this.blades[i].firmwareVersion = version;
  }

  operator(i: BladeIndex, command: OperatorCommand): OperatorResult {
    const b = this.blades[i];
    if (b.machine === undefined || b.hung) return { ok: false, code: 'ERR_BLADE_OFF', message: 'the blade is not running' };
    const r = b.machine.operator(command, this.nowMs);
    this.drain(b);
    // An operator's command changes what the survivor may do: drop pending expectations.
    this.dropExpectations(i);
    return r;
  }

  machine(i: BladeIndex): HaMachine | undefined {
    return this.blades[i].machine;
  }

  /** Runs the world for `ms` of virtual time. */
  run(ms: number): void {
    const end = this.nowMs + ms;
    for (;;) {
      const at = this.queue.peekAt();
      if (at === undefined || at > end) break;
      const e = this.queue.pop();
      assert(e !== undefined, 'event queue');
      this.nowMs = Math.max(this.nowMs, e.at);
      e.fn();
    }
    this.nowMs = end;
    this.checkTimers();
  }

  /** One line per blade for scenario output. */
  statusLines(): string[] {
    const out: string[] = [];
    for (const b of this.blades) {
      const name = bladeNames[b.index];
      if (b.machine === undefined) {
        out.push(`${name}: ${b.powered ? 'BOOTING' : 'OFF'}`);
        continue;
      }
      const s = b.machine.status();
      const paths = s.paths.map((p) => `${p.id}=${p.bad ? 'bad' : p.up ? 'up' : 'down'}`).join(' ') + (s.partnerPower === 'unknown' ? '' : ` partner-power=${s.partnerPower}${s.partnerPowerSenseFaulty ? '(faulty)' : ''}`);
      out.push(
        `${name}: ${s.phase}/${s.step} ${s.indicator} gen=${s.generation} holds=${sets(s.claimedSets)} serves=${sets(s.servingSets)} blockers=${s.blockers.join(',') || '-'} partner=${s.partner.alive ? 'alive' : 'silent'}:${s.partner.phase ?? '?'}`,
      );
      out.push(`${name}:   ${paths}`);
    }
    const holders = Array.from({ length: diskCount }, (_, d) => {
      const h = this.fence.holder(d);
      return h === undefined ? '-' : bladeNames[h];
    });
    out.push(`disks: holders=${holders.join('')} fenced-writes=${this.fence.fencedWrites.length} violations=${this.fence.violations.length}`);
    return out;
  }

  // ---------------------------------------------------------------------------------------
  // Blade drivers

  private configFor(b: BladeSim): HaConfig {
    return {
      systemId,
      bladeIndex: b.index,
      firmwareVersion: b.firmwareVersion,
      paths: this.paths,
      timing: this.timing,
      autoGiveback: this.opts.autoGiveback ?? true,
      mirrorSyncedAtBoot: b.mirrorSynced,
      bootId: b.bootId,
    };
  }

  private at(delayMs: number, fn: () => void): void {
    this.queue.push(this.nowMs + delayMs, fn);
  }

  /**
   * The delay after which a command of `blade` to `disks`, issued now with latency `delayMs`,
   * completes: one initiator's commands to one disk complete in the order issued (a write
   * queued before a release or a registration is not overtaken by it).
   */
  private inOrder(blade: BladeIndex, disks: readonly number[], delayMs: number): number {
    const q = this.diskQueueMs[blade];
    let at = this.nowMs + delayMs;
    for (const d of disks) at = Math.max(at, q[d] ?? 0);
    for (const d of disks) q[d] = at;
    return at - this.nowMs;
  }

  private alive(b: BladeSim, inc: number): boolean {
    return b.powered && b.incarnation === inc;
  }

  /** Steps the blade's machine now, or (hung) when it resumes; then carries out its output. */
  private whenRunning(b: BladeSim, inc: number, fn: (m: HaMachine) => void): void {
    if (!this.alive(b, inc) || b.machine === undefined) return;
    if (b.hung) {
      b.deferred.push(() => this.whenRunning(b, inc, fn));
      return;
    }
    fn(b.machine);
    this.drain(b);
  }

  private scheduleTick(b: BladeSim, inc: number): void {
    this.at(this.timing.tickIntervalMs, () => {
      if (!this.alive(b, inc) || b.machine === undefined) return;
      if (!b.hung) {
        b.machine.tick(this.nowMs);
        this.drain(b);
      }
      this.scheduleTick(b, inc);
    });
  }

  private schedulePoll(b: BladeSim, inc: number): void {
    this.at(this.timing.mailboxPollIntervalMs, () => {
      if (!this.alive(b, inc)) return;
      const partnerSlot: BladeIndex = b.index === 0 ? 1 : 0;
      for (let d = 0; d < diskCount; d++) {
        this.at(this.prng.range(1, simLatency.diskMaxMs), () => {
          if (!this.alive(b, inc) || b.machine === undefined || b.hung) return;
          if (this.mailboxReadCut[b.index]) return;
          this.counters.mailboxReads++;
          const box = this.mailboxes[d] as Uint8Array;
          let sector = box.slice(partnerSlot * mailboxSectorBytesMin, (partnerSlot + 1) * mailboxSectorBytesMin);
          if (this.corruptDisks.has(d)) {
            sector = sector.slice();
            const at = this.prng.int(96);
            sector[at] = (sector[at] as number) ^ (1 << this.prng.int(8));
          }
          try {
            const rec = decodeMailbox(sector, partnerSlot, d);
            b.machine.step({ type: 'status', path: mailboxPathId(d), message: rec.status }, this.nowMs);
          } catch (e) {
            this.counters.rejected++;
            b.machine.step({ type: 'rejected', path: mailboxPathId(d), code: isTwinbladeError(e) ? e.code : 'unknown' }, this.nowMs);
          }
          this.drain(b);
        });
      }
      this.schedulePoll(b, inc);
    });
  }

  /** The file system's disk writes while a set is served: every one goes through the fence. */
  private scheduleWorkload(b: BladeSim, inc: number): void {
    this.at(simLatency.workloadIntervalMs, () => {
      if (!this.alive(b, inc)) return;
      for (const s of [0, 1] as const) {
        if ((b.serving & (1 << s)) === 0 || b.hung) continue;
        const disk = this.prng.pick(setDisks[s]);
        this.at(this.inOrder(b.index, [disk], this.prng.range(1, simLatency.diskMaxMs)), () => {
          if (!this.alive(b, inc) || b.machine === undefined) return;
          if (this.fence.write(disk, b.index)) return;
          if ((b.serving & (1 << s)) !== 0 && !this.fencedSince.has(`${b.index}:${s}`)) this.fencedSince.set(`${b.index}:${s}`, this.nowMs);
          this.whenRunning(b, inc, (m) => m.step({ type: 'write-fenced', set: s }, this.nowMs));
        });
      }
      this.scheduleWorkload(b, inc);
    });
  }

  /** Carries out the machine's output: persist first (the Ready ordering rule), then the actions. */
  private drain(b: BladeSim): void {
    const m = b.machine;
    if (m === undefined) return;
    const inc = b.incarnation;
    while (m.hasReady()) {
      const r = m.ready();
      if (r.persist !== undefined) b.nvram = { ...r.persist };
      for (const a of r.actions) this.perform(b, inc, a);
    }
    const s = m.status();
    const phase = `${s.phase}`;
    if (phase !== b.lastPhase) {
      this.trace(`${bladeNames[b.index]}: ${b.lastPhase} -> ${phase}`);
      b.lastPhase = phase;
    }
    if (s.generation !== b.lastGeneration) {
      b.lastGeneration = s.generation;
      // An internal reboot (STOPPED -> REBOOTING): pending expectations of this survivor lapse.
      for (let k = this.liveness.length - 1; k >= 0; k--) if (this.liveness[k]?.survivor === b.index) this.liveness.splice(k, 1);
    }
    if (s.claimedSets === 0) b.claimingSinceMs = undefined;
    else if (b.claimingSinceMs === undefined) b.claimingSinceMs = this.nowMs;
  }

  private perform(b: BladeSim, inc: number, a: HaAction): void {
    const name = bladeNames[b.index];
    const partner = this.blades[b.index === 0 ? 1 : 0];
    switch (a.type) {
      case 'send':
        this.sendLinks(b, a.message);
        return;
      case 'write-mailbox': {
        // One disk after the other (seed 003), so at most one copy is ever in flight.
        const disks = [...setDisks[0], ...setDisks[1]].filter((d) => (a.sets & (1 << (d < 2 ? 0 : 1))) !== 0);
        let delay = 0;
        for (const d of disks) {
          delay += this.prng.range(1, simLatency.diskMaxMs);
          const bytes = encodeMailbox({ slot: b.index, diskIndex: d, status: a.message });
          this.at(this.inOrder(b.index, [d], delay), () => {
            if (!this.alive(b, inc) || b.machine === undefined) return;
            if (this.fence.write(d, b.index)) {
              this.counters.mailboxWrites++;
              (this.mailboxes[d] as Uint8Array).set(bytes, b.index * mailboxSectorBytesMin);
            } else {
              this.whenRunning(b, inc, (m) => m.step({ type: 'write-fenced', set: d < 2 ? 0 : 1 }, this.nowMs));
            }
          });
        }
        return;
      }
      case 'fence':
        this.at(this.inOrder(b.index, setDisks[a.set], this.prng.range(1, simLatency.fenceMaxMs)), () => {
          if (!this.alive(b, inc) || b.machine === undefined) return;
          let code: string | undefined;
          try {
            for (const d of setDisks[a.set]) {
              // A flaky loop controller: the command never reaches this disk.
              if (this.fenceFlaky && this.prng.chance(0.5)) throw new FenceError(FenceErrorCode.io, `disk ${d}: fence command lost`);
              this.fence[a.op](d, b.index);
            }
          } catch (e) {
            code = isTwinbladeError(e) ? e.code : 'unknown';
          }
          if (a.op !== 'register') this.trace(`${name}: ${a.op} set ${a.set} ${code ?? 'ok'}`);
          this.whenRunning(b, inc, (m) => m.step({ type: 'fence-result', op: a.op, set: a.set, token: a.token, ok: code === undefined, ...(code === undefined ? {} : { code }) }, this.nowMs));
        });
        return;
      case 'pulse-reset':
        this.trace(`${name}: pulse partner reset${this.resetLineBroken ? ' (line broken: no effect)' : ''}`);
        if (partner.powered && !this.resetLineBroken) {
          // A reset keeps the partner's power rail up: its sense line stays good.
          this.powerOff(partner.index, true);
          // A pulsed reset only restarts a blade; a blade that lost power stays off.
          this.at(a.durationMs, () => this.powerOn(partner.index, true));
        }
        this.at(a.durationMs, () => this.whenRunning(b, inc, (m) => m.step({ type: 'reset-done' }, this.nowMs)));
        return;
      case 'serve': {
        const key = `${b.index}:${a.set}`;
        if (a.on) {
          b.serving |= 1 << a.set;
          this.fencedSince.delete(key);
          if (a.set !== b.index) {
            this.counters.takeovers++;
            this.liveness.splice(0, this.liveness.length, ...this.liveness.filter((x) => x.survivor !== b.index));
          }
        } else {
          b.serving &= ~(1 << a.set);
          this.fencedSince.delete(key);
          if (a.set !== b.index) this.counters.givebacks++;
        }
        this.trace(`${name}: ${a.on ? 'serve' : 'stop serving'} set ${a.set}`);
        return;
      }
      case 'replay':
        this.at(this.prng.range(5, simLatency.replayMaxMs), () => this.whenRunning(b, inc, (m) => m.step({ type: 'replay-done', set: a.set, ok: true }, this.nowMs)));
        return;
      case 'alert':
        this.counters.alerts++;
        this.trace(`${name}: alert ${a.code}: ${a.message}`);
        if (a.code === 'HA_TAKEOVER_STARTED' && a.message.startsWith('automatic')) this.checkPartnerUnreachable(b.index, a.message.includes('partner power lost'));
        return;
    }
  }

  private sendLinks(b: BladeSim, message: StatusMessage): void {
    const bytes = encodeStatus(message);
    const to = this.blades[b.index === 0 ? 1 : 0];
    for (const kind of ['serial', 'net'] as const) {
      this.counters.messagesSent++;
      if (this.cut[kind][b.index]) continue;
      const loss = this.opts.lossProbability ?? 0;
      if (loss > 0 && this.lossRun[kind][b.index] < (this.opts.consecutiveLossMax ?? 2) && this.prng.chance(loss)) {
        this.lossRun[kind][b.index]++;
        this.counters.messagesLost++;
        continue;
      }
      this.lossRun[kind][b.index] = 0;
      let wire = bytes;
      const corrupt = this.opts.corruptProbability ?? 0;
      if (corrupt > 0 && this.prng.chance(corrupt)) {
        wire = bytes.slice();
        const at = this.prng.int(statusMessageBytes);
        wire[at] = (wire[at] as number) ^ (1 << this.prng.int(8));
        this.counters.messagesCorrupted++;
      }
      const latency = this.prng.range(1, kind === 'serial' ? simLatency.serialMaxMs : simLatency.netMaxMs);
      const path = kind === 'serial' ? 'serial' : 'net0';
      this.at(latency, () => {
        // A message in flight reaches whatever instance of the partner runs when it lands.
        const m = to.machine;
        // A hung blade drops what arrives (its receive buffers overflow).
        if (!to.powered || m === undefined || to.hung) return;
        try {
          m.step({ type: 'status', path, message: decodeStatus(wire) }, this.nowMs);
        } catch (e) {
          this.counters.rejected++;
          m.step({ type: 'rejected', path, code: isTwinbladeError(e) ? e.code : 'unknown' }, this.nowMs);
        }
        this.drain(to);
      });
    }
  }

  // ---------------------------------------------------------------------------------------
  // Checkers

  private fail(what: string): void {
    this.violations.push(`t=${this.nowMs.toFixed(0)} ${what}`);
    this.trace(`VIOLATION ${what}`);
  }

  /**
   * Liveness: when a blade dies while its partner runs NORMAL with nothing blocking takeover,
   * the partner must serve the dead blade's disks within the documented bound.
   */
  private dropExpectations(survivor: BladeIndex): void {
    for (let k = this.liveness.length - 1; k >= 0; k--) if (this.liveness[k]?.survivor === survivor) this.liveness.splice(k, 1);
  }

  private expectTakeoverOf(dead: BladeIndex, hang: boolean, sensed: boolean): void {
    const s = this.blades[dead === 0 ? 1 : 0];
    const m = s.machine;
    if (m === undefined || s.hung) return;
    const st = m.status();
    if (st.phase !== 'NORMAL' || st.step !== 'steady' || st.blockers.length > 0 || (st.claimedSets & (1 << dead)) !== 0 || this.fenceFlaky) return;
    const kinds: PathKind[] = ['interconnect', 'network', 'mailbox'];
    const ioBound = simLatency.fenceMaxMs + simLatency.replayMaxMs + simLatency.diskMaxMs + simLatency.serialMaxMs;
    // A power cut the survivor's line reports is taken over without waiting for the mailboxes.
    const bound = sensed ? powerLossTakeoverBoundMs(this.timing, ioBound) : takeoverBoundMs(this.timing, kinds, s.index, ioBound, this.corruptDisks.size > 0 || this.corruptEverMs > this.nowMs - 5000);
    this.liveness.push({ hang, survivor: s.index, generation: st.generation, sinceMs: this.nowMs, deadlineMs: this.nowMs + bound });
  }

  private checkTimers(): void {
    for (let k = this.liveness.length - 1; k >= 0; k--) {
      const e = this.liveness[k] as LivenessExpectation;
      const s = this.blades[e.survivor];
      const dead = this.blades[e.survivor === 0 ? 1 : 0];
      const gen = s.machine?.status().generation;
      const deadAgain = e.hang ? !dead.hung || !dead.powered : dead.powered || (dead.poweredSinceMs !== undefined && dead.poweredSinceMs > e.sinceMs);
      if (!s.powered || s.hung || gen !== e.generation || deadAgain) {
        this.liveness.splice(k, 1);
        continue;
      }
      if ((s.serving & (1 << dead.index)) !== 0) {
        this.liveness.splice(k, 1);
        continue;
      }
      // The dead blade's own last word disables the takeover (HA-8): a survivor that was
      // itself stalled when its partner died reads it only afterwards (seed 6339: a resumed
      // at the instant b hung, then read b's NO-TAKEOVER).
      const blockers = s.machine?.status().blockers ?? [];
      if (blockers.includes('partnerNoTakeover') || blockers.includes('partnerDisable')) {
        this.liveness.splice(k, 1);
        continue;
      }
      if (this.nowMs >= e.deadlineMs) {
        this.fail(`liveness: blade ${bladeNames[dead.index]} ${e.hang ? 'hung' : 'died'} at ${e.sinceMs.toFixed(0)} and blade ${bladeNames[s.index]} did not take over within ${(e.deadlineMs - e.sinceMs).toFixed(0)} ms`);
        this.liveness.splice(k, 1);
      }
    }
    // A blade told by the fence that the partner holds a set must stop serving it at once.
    for (const [key, since] of this.fencedSince) {
      const [bi, si] = key.split(':').map(Number) as [BladeIndex, SetIndex];
      const b = this.blades[bi];
      if ((b.serving & (1 << si)) === 0) {
        this.fencedSince.delete(key);
      } else if (this.nowMs - since > fencedStopBoundMs) {
        this.fail(`blade ${bladeNames[bi]} kept serving set ${si} ${(this.nowMs - since).toFixed(0)} ms after the fence refused its writes`);
        this.fencedSince.delete(key);
      }
    }
    for (const v of this.fence.violations.splice(0)) this.fail(`split brain: blades ${v.blades.map((x) => bladeNames[x]).join('+')} both wrote disk ${v.disk} in reservation epoch ${v.epoch}`);
  }

  /**
   * Safety: an automatic takeover may only start when the partner is unreachable. If the
   * partner has been running, and some path from it has been intact, for longer than that
   * path's detection window, it was reachable and the takeover is wrong.
   */
  private checkPartnerUnreachable(taker: BladeIndex, bySense: boolean): void {
    const p = this.blades[taker === 0 ? 1 : 0];
    // A hung partner is unreachable: it neither sends nor reads.
    if (!p.powered || p.poweredSinceMs === undefined || p.machine === undefined || p.hung) return;
    // Started by the sense line: the partner must be silent on the interconnect and network;
    // the mailboxes are not waited for, so a line stuck at lost may take over a live partner
    // that only they still show (the fence arbitrates). An honest line never says lost here.
    if (bySense && this.blades[taker].senseStuck !== false) this.fail(`blade ${bladeNames[taker]} took over by the sense line while its partner has power and the line is honest`);
    if (p.machine.status().phase === 'STOPPED') return;
    const t = this.timing;
    const linkWindow = pathTimeoutMs(t, 'interconnect') + 3 * t.heartbeatIntervalMs + t.heartbeatMissCountMax * t.tickIntervalMs + simLatency.bootMs + 50;
    const mailboxWindow = pathTimeoutMs(t, 'mailbox') + t.mailboxPollIntervalMs + 2 * t.mailboxWriteIntervalMs + t.mailboxMissCountMax * t.tickIntervalMs + simLatency.bootMs + 100;
    const since = (x: number | undefined): number => (x === undefined ? Infinity : this.nowMs - x);
    // A blade that resumed from a hang starts over like a fresh boot.
    const poweredFor = Math.min(since(p.poweredSinceMs), since(p.resumedAtMs));
    const reasons: string[] = [];
    for (const kind of ['serial', 'net'] as const) {
      if (!this.cut[kind][p.index] && Math.min(poweredFor, since(this.linkOkSinceMs[kind][p.index])) > linkWindow) reasons.push(kind);
    }
    if (!this.mailboxReadCut[taker] && !bySense) {
      const claims = p.machine.status().claimedSets;
      for (let d = 0; d < diskCount; d++) {
        if ((claims & (1 << (d < 2 ? 0 : 1))) === 0 || this.corruptDisks.has(d)) continue;
        const ok = Math.min(poweredFor, since(p.claimingSinceMs), since(this.mailboxReadOkSinceMs[taker]), since(this.diskOkSinceMs[d]));
        if (ok > mailboxWindow) reasons.push(mailboxPathId(d));
      }
    }
    if (reasons.length > 0) this.fail(`blade ${bladeNames[taker]} started a takeover of a live partner reachable on ${reasons.join(', ')}`);
  }

  /** End-of-run checks once every fault is healed and both blades have had time to settle. */
  checkSettled(): void {
    for (const b of this.blades) {
      const st = b.machine?.status();
      if (st === undefined) {
        this.fail(`blade ${bladeNames[b.index]} is not running at the end`);
        continue;
      }
      if (st.phase !== 'NORMAL' || st.servingSets !== 1 << b.index) {
        this.fail(`blade ${bladeNames[b.index]} did not settle: ${st.phase}/${st.step} serving ${sets(st.servingSets)} blockers ${st.blockers.join(',') || '-'}`);
      }
    }
  }

  phaseOf(i: BladeIndex): HaPhase | undefined {
    const st = this.blades[i].machine?.status();
    if (st === undefined) return undefined;
    return ({ NORMAL: HaPhase.normal, TAKEOVER: HaPhase.takeover, STOPPED: HaPhase.stopped, REBOOTING: HaPhase.rebooting } as const)[st.phase as 'NORMAL'];
  }
}

const checkIntervalMs = 10;

/** How long a blade may go on serving a set after the fence first refused its write. */
export const fencedStopBoundMs = 50;

function sets(mask: number): string {
  const s = [(mask & 1) !== 0 ? 'a' : '', (mask & 2) !== 0 ? 'b' : ''].join('');
  return s === '' ? '-' : s;
}
