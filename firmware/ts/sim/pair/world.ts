// The whole pair under the simulation kernel: two blades, each with its NVRAM change log
// (mirrored to the partner), its RAID set on shared simulated disks with the copy-on-write
// file system, and the request path of blade/change-path.ts (NvChangeLog, NvDrc,
// ReplayApplier). Recovery, takeover and giveback follow blade/pair.ts step by step; the HA
// decision itself is reduced to "the partner takes a dead blade over when its mirror was
// synced" (docs/simulation-pair.md says where this differs from the real composition).
import type { SimDomain, Simulation } from '../kernel.ts';
import { SimBlockDevice } from '../../hal/block/sim/sim-block-device.ts';
import { SimNvram } from '../../hal/nvram/sim/sim-nvram.ts';
import { NvLog } from '../../nvlog/nvlog.ts';
import { replay } from '../../nvlog/core/replay.ts';
import type { RecoveredLog } from '../../nvlog/core/recovery.ts';
import type { MirrorMessage } from '../../nvlog/core/mirror.ts';
import { openVolume, createVolume, type RaidVolume } from '../../storage/raid/index.ts';
import { CowFs, mkfs } from '../../storage/fs/cowfs.ts';
import { fsck } from '../../storage/fs/fsck.ts';
import { FileSystems, NvChangeLog, NvDrc, ReplayApplier, takeConsistencyPoint } from '../../blade/change-path.ts';
import type { Prng } from '../../core/prng.ts';

export type BladeId = 0 | 1;

/** Named limits of the simulated pair (small, so that a seed takes milliseconds of CPU). */
export const pairSimLimits = {
  membersPerSet: 3,
  /** Hot spares per set: a failed member is rebuilt onto one (the checker waits for it). */
  sparesPerSet: 1,
  diskSizeBytes: 4 * 1024 * 1024,
  stripeUnitBytes: 16 * 1024,
  nvramBytes: 8192 + 4 * 16384,
  /** Consistency-point timer of each blade. */
  cpIntervalMs: 40,
  /** How long a blade takes to notice that its partner died (HA's path timeouts, shortened). */
  detectDeathMs: 8,
  /** Delay of one interconnect message (one ordered stream per direction). */
  linkDelayMs: [0.05, 0.5] as const,
  /**
   * The same with the Ethernet path down and the serial path carrying the session (a path
   * fault: the session survives, the mirror's round trip grows).
   */
  serialOnlyDelayMs: [1, 4] as const,
  /** State-machine log replies kept for retransmissions (longer than a run). */
  replyRetentionMs: 60_000,
} as const;

export const pairId = 'sim-pair';
export const setFsid = (set: BladeId): bigint => 0x7a1b0000n + BigInt(set);

interface MountedSet {
  volume: RaidVolume;
  fs: CowFs;
  handles: SimBlockDevice[];
}

export interface SimBlade {
  readonly id: BladeId;
  nvram: SimNvram;
  incarnation: number;
  /** Booted (own set recovered and served); false while off or recovering. */
  up: boolean;
  /** Recovering after a power-on (HA reboot steps): the partner does not take it over now. */
  booting: boolean;
  domain: SimDomain | undefined;
  log: NvLog | undefined;
  filesystems: FileSystems;
  sets: Map<BladeId, MountedSet>;
  changeLog: NvChangeLog | undefined;
  drc: NvDrc | undefined;
  ownRecovered: RecoveredLog | undefined;
  cpRunning: Promise<void> | undefined;
  batteryFailed: boolean;
}

/**
 * Deliberate mistakes for the checker's own tests: `skipOwnReplay` (a rebooted blade ignores
 * its log), `noPartnerCopy` (a blade boots after a giveback without the partner's copy of its
 * log). (A giveback joining a running CP, once pair.ts's, is no longer planted: drained applies
 * leave its window too small for this schedule to hit.)
 */
export interface PlantedBugs {
  skipOwnReplay?: boolean;
  noPartnerCopy?: boolean;
}

export const partnerOf = (b: BladeId): BladeId => (b === 0 ? 1 : 0);

export class PairSimWorld {
  readonly disks: [SimBlockDevice[], SimBlockDevice[]];
  readonly blades: [SimBlade, SimBlade];
  /** Which blade serves each set's export now (undefined: nobody, clients wait). */
  readonly server: [BladeId | undefined, BladeId | undefined] = [undefined, undefined];
  /** Which blade has each set's disks open for writing (checker: never two). */
  readonly writer: [BladeId | undefined, BladeId | undefined] = [undefined, undefined];
  /** What HA would read in the mailboxes: may the partner take blade i over (HA-8)? */
  readonly takeoverAllowed: [boolean, boolean] = [false, false];
  /** A takeover of the set is between its decision and serving: the owner's boot waits for it. */
  readonly takeoverRunning: [boolean, boolean] = [false, false];
  readonly violations: string[] = [];
  readonly counters = { boots: 0, takeovers: 0, givebacks: 0, cps: 0, replayed: 0, fsckRuns: 0, diskFailures: 0 };
  linkUp = true;
  /** One interconnect path is down: traffic continues on the slower one (`serialOnlyDelayMs`). */
  pathDown = false;
  private session = 0;
  private readonly lastDelivery: [number, number] = [0, 0];

  constructor(
    readonly sim: Simulation,
    private readonly prng: Prng,
    private readonly trace: (line: string) => void,
    private readonly planted: PlantedBugs = {},
  ) {
    const disk = (name: string): SimBlockDevice =>
      new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), name, sizeBytes: pairSimLimits.diskSizeBytes, sectorSize: 512, latency: { readMs: 0.05, writeMs: 0.1, flushMs: 0.3, jitterMs: 0.1 } });
    // Members first, then the spares.
    this.disks = [0, 1].map((s) => [
      ...Array.from({ length: pairSimLimits.membersPerSet }, (_, i) => disk(`set${s}d${i}`)),
      ...Array.from({ length: pairSimLimits.sparesPerSet }, (_, i) => disk(`set${s}s${i}`)),
    ]) as [SimBlockDevice[], SimBlockDevice[]];
    const blade = (id: BladeId): SimBlade => ({
      id,
      nvram: new SimNvram({ sizeBytes: pairSimLimits.nvramBytes, prng: sim.fork(), name: `nvram-${id}` }),
      incarnation: 0,
      up: false,
      booting: false,
      domain: undefined,
      log: undefined,
      filesystems: new FileSystems(),
      sets: new Map(),
      changeLog: undefined,
      drc: undefined,
      ownRecovered: undefined,
      cpRunning: undefined,
      batteryFailed: false,
    });
    this.blades = [blade(0), blade(1)];
  }

  private note(line: string): void {
    this.trace(`t=${this.sim.clock.nowMs().toFixed(3)} ${line}`);
  }

  /** Formats both sets (the factory `blade init`), then closes them. */
  async format(): Promise<void> {
    for (const set of [0, 1] as const) {
      const handles = this.disks[set].map((d) => d.attach({ timers: this.sim.timers }));
      const volume = await createVolume(handles.slice(0, pairSimLimits.membersPerSet), {
        spares: handles.slice(pairSimLimits.membersPerSet),
        pairId,
        volumeId: `vol-${set}`,
        clock: this.sim.clock,
        timers: this.sim.timers,
        prng: this.prng.fork(),
        stripeUnitBytes: pairSimLimits.stripeUnitBytes,
      });
      await mkfs(volume, { fsid: setFsid(set), rootMode: 0o777 });
      await volume.close();
      for (const h of handles) await h.close();
    }
  }

  alive(b: SimBlade, inc: number): boolean {
    return b.up && b.incarnation === inc && b.domain?.alive === true;
  }

  /** Mounts a set's disks for `b` (fsck first: every recovery must find a clean CP). */
  private async mountSet(b: SimBlade, set: BladeId, domain: SimDomain): Promise<MountedSet> {
    const w = this.writer[set];
    if (w !== undefined && w !== b.id) this.violations.push(`blade ${b.id} opens set ${set} while blade ${w} still has it open for writing`);
    this.writer[set] = b.id;
    const handles = this.disks[set].map((d) => d.attach({ timers: domain.timers, name: `${d.name}@${b.id}` }));
    const volume = await openVolume(handles, { pairId, volumeId: `vol-${set}`, clock: this.sim.clock, timers: domain.timers, prng: this.prng.fork() });
    const problems = await fsck(volume);
    this.counters.fsckRuns++;
    if (problems.length > 0) this.violations.push(`fsck of set ${set} at mount by blade ${b.id}: ${problems.map((p) => `${p.code} ${p.message}`).join('; ')}`);
    const fs = await CowFs.mount(volume, { timers: domain.timers, clock: this.sim.clock, cachePagesMax: 128 });
    return { volume, fs, handles };
  }

  /**
   * Boots blade `id` (pair.ts recoverOwn): a giveback first when the partner holds our set
   * (pair.ts serve(set, false): CP of everything, close, hand back), then mount, open the
   * log, replay after the CP, build the change path and serve.
   */
  async boot(id: BladeId): Promise<void> {
    const b = this.blades[id];
    const p = this.blades[partnerOf(id)];
    b.booting = true;
    // HA reboot steps: a partner in the middle of taking us over finishes first, then gives back.
    while (this.takeoverRunning[id]) await this.sim.timers.sleep(1);
    // HA gives back only with the interconnect up (machine.ts considerGiveback): we fetch the
    // partner's copy of our log over it, with the outcomes of what it replayed for us.
    while (this.server[id] === p.id && p.up && !this.linkUp) await this.sim.timers.sleep(1);
    const inc = ++b.incarnation;
    let afterGiveback = false;
    if (this.server[id] === p.id) {
      const pInc = p.incarnation;
      this.server[id] = undefined;
      // pair.ts serve(set, false): the changes in the pipeline are applied, then a CP that
      // starts after them (joining one already running could miss the last changes, and
      // CowFs.close takes no CP: seed 833 of an earlier schedule lost an answered write so).
      await p.changeLog?.drained();
      await this.freshCp(p);
      const ms = p.sets.get(id);
      if (ms !== undefined && p.incarnation === pInc) {
        p.changeLog?.forgetFs(setFsid(id), Number(ms.fs.committedSeq().get(p.id) ?? 0n));
        // Out of the CP set before closing (as pair.ts does).
        p.filesystems.remove(setFsid(id));
        p.sets.delete(id);
        await p.cpRunning;
        await ms.fs.close();
        await ms.volume.close();
        for (const h of ms.handles) await h.close();
        this.writer[id] = undefined;
      }
      afterGiveback = true;
      this.counters.givebacks++;
      this.note(`blade ${p.id} gave set ${id} back`);
    }
    const domain = this.sim.domain(`blade${id}.${inc}`);
    b.domain = domain;
    b.nvram = b.nvram.reopen(`nvram-${id}.${inc}`);
    b.filesystems = new FileSystems();
    b.sets = new Map();
    const ms = await this.mountSet(b, id, domain);
    const cpSeq = Number(ms.fs.appliedSeq(id));
    // The partner's copy of our log (pair.ts fetches it over the link before opening the log,
    // fetchPartnerCopy): it fills what our NVRAM lost, and after a takeover it holds the
    // outcomes of our changes the partner replayed.
    const partnerCopy = this.linkUp && p.up && p.log !== undefined && this.planted.noPartnerCopy !== true ? p.log.partnerCopyBytes() : undefined;
    const opened = await NvLog.open(b.nvram, {
      ...(partnerCopy !== undefined ? { partnerCopy } : {}),
      // pair.ts passes the HA generation (kept on the mailbox disks too); the incarnation
      // counter stands for it here.
      bootGenerationFloor: inc,
      bladeId: id,
      clock: this.sim.clock,
      timers: domain.timers,
      cpSeq,
      limits: { replyRetentionMs: pairSimLimits.replyRetentionMs, mirrorAckTimeoutMs: 20, mirrorResyncRetryMs: 50, smRequestsMax: 64 },
      announceDegraded: async () => {
        // The NO-TAKEOVER mailbox write takes a disk write's time.
        await domain.timers.sleep(0.5 + this.prng.float());
        this.takeoverAllowed[id] = false;
      },
      ...(afterGiveback ? { mode: 'after-giveback' as const } : {}),
    });
    const log = opened.log;
    for (const pr of opened.report.problems) this.note(`blade ${id} log recovery: ${pr}`);
    b.filesystems.add(ms.fs);
    b.sets.set(id, ms);
    const applier = new ReplayApplier(b.filesystems);
    // After a giveback the partner's CP holds everything acknowledged; NvLog.open has restored
    // the state-machine log and numbers new changes after every entry it found (pair.ts
    // likewise replays only in recover mode).
    const replayNow = !afterGiveback && this.planted.skipOwnReplay !== true;
    if (replayNow) await replay(opened.recovered, cpSeq, applier, log.sm, this.sim.clock.nowMs());
    this.counters.replayed += applier.applied;
    b.ownRecovered = opened.recovered;
    b.log = log;
    b.changeLog = new NvChangeLog(log, b.filesystems, id, {
      makeSpace: () => this.doCp(b),
      writeThrough: () => this.freshCp(b),
    });
    b.drc = new NvDrc(log, undefined, () => this.doCp(b));
    log.onFull(() => void this.doCp(b));
    log.onMirrorState((s) => {
      if (s.state === 'synced') this.takeoverAllowed[id] = true;
    });
    log.attachTransport({ send: (m) => this.send(id, inc, m) });
    await log.setBattery(b.batteryFailed ? 'failed' : 'good');
    b.up = true;
    b.booting = false;
    b.cpRunning = undefined;
    this.server[id] = id;
    this.counters.boots++;
    this.note(`blade ${id} up (cp seq ${cpSeq}, replayed ${applier.applied}${afterGiveback ? ', after giveback' : ''})`);
    const cpTick = (): void => {
      domain.timers.after(pairSimLimits.cpIntervalMs * (0.5 + this.prng.float()), () => {
        void this.doCp(b);
        cpTick();
      });
    };
    cpTick();
    this.connect();
  }

  /** pair.ts doCp: a CP of every file system served, then the release of what they all hold. */
  doCp(b: SimBlade): Promise<void> {
    if (b.cpRunning !== undefined) return b.cpRunning;
    const log = b.log;
    if (log === undefined) return Promise.resolve();
    const inc = b.incarnation;
    const running = (async () => {
      await takeConsistencyPoint(log, b.changeLog, b.filesystems, b.id);
      if (b.incarnation !== inc) return;
      this.counters.cps++;
    })()
      .catch((e: unknown) => {
        if (b.incarnation === inc && b.up) this.violations.push(`blade ${b.id}: consistency point failed: ${String(e)}`);
      })
      .finally(() => {
        if (b.cpRunning === running) b.cpRunning = undefined;
      });
    b.cpRunning = running;
    return running;
  }

  /**
   * A CP that starts after every change applied so far: for NV-7 write-through (the change
   * just applied must be on disk before the reply) and for giveback (pair.ts doCp({ fresh })).
   * A CP already running may have frozen the file system before the change was applied, so
   * it is waited for and a new one taken.
   */
  private async freshCp(b: SimBlade): Promise<void> {
    if (b.cpRunning !== undefined) await b.cpRunning;
    await this.doCp(b);
  }

  /** Takeover (pair.ts recoverPartner): mount the dead blade's set, replay our mirror of its log. */
  async takeover(s: SimBlade, dead: BladeId): Promise<void> {
    const inc = s.incarnation;
    const domain = s.domain;
    const log = s.log;
    if (domain === undefined || log === undefined) return;
    this.note(`blade ${s.id} takes over set ${dead}`);
    const ms = await this.mountSet(s, dead, domain);
    if (!this.alive(s, inc)) return;
    s.filesystems.add(ms.fs);
    s.sets.set(dead, ms);
    const cpSeq = Number(ms.fs.appliedSeq(dead));
    const applier = new ReplayApplier(s.filesystems);
    try {
      const rep = await replay(log.recoverPartnerMirror(), cpSeq, applier, log.sm, this.sim.clock.nowMs());
      // The outcomes of what we replayed go into our mirror of the partner's log, which it
      // fetches when it boots after the giveback (pair.ts does the same).
      await log.continuePartnerLog(rep.outcomes);
      // Changes we logged ourselves for the partner's file system during an earlier takeover.
      const own = s.ownRecovered;
      if (own !== undefined) {
        const ownApplier = new ReplayApplier(s.filesystems);
        for (const r of own.records) {
          if (r.seq <= Number(ms.fs.appliedSeq(s.id))) continue;
          await ownApplier.applyChangeRecord(r, s.id);
        }
      }
    } catch (e) {
      // pair.ts recoverPartner: a failed takeover closes what it opened (the owner's boot
      // must find the set's disks free), and HA learns of the failure.
      if (this.alive(s, inc)) {
        s.filesystems.remove(setFsid(dead));
        s.sets.delete(dead);
        await ms.fs.close().catch(() => undefined);
        await ms.volume.close().catch(() => undefined);
        for (const h of ms.handles) await h.close();
        this.writer[dead] = undefined;
      }
      throw e;
    }
    if (!this.alive(s, inc)) return;
    this.counters.replayed += applier.applied;
    this.counters.takeovers++;
    this.server[dead] = s.id;
    this.note(`blade ${s.id} serves set ${dead} (replayed ${applier.applied} after cp seq ${cpSeq})`);
  }

  /** Each set's RAID state as its current writer sees it ('normal' once a failed member is rebuilt). */
  raidStates(): string[] {
    return ([0, 1] as const).map((set) => {
      const w = this.writer[set];
      const ms = w === undefined ? undefined : this.blades[w].sets.get(set);
      const st = ms?.volume.status();
      return st === undefined ? 'closed' : `${st.state}${st.rebuildError !== undefined ? ` (${st.rebuildError.code})` : ''}`;
    });
  }

  /** Cuts blade `id`'s power; the shared disks lose what was not flushed. The partner may take over. */
  powerCut(id: BladeId, takeover: boolean): void {
    const b = this.blades[id];
    const mayTakeOver = this.takeoverAllowed[id];
    this.note(`power cut blade ${id}${b.batteryFailed ? ' (battery failed)' : ''}, takeover ${takeover && mayTakeOver ? 'yes' : 'no'}`);
    b.up = false;
    b.incarnation++;
    b.domain?.kill();
    b.log?.close();
    b.log = undefined;
    for (const ms of b.sets.values()) for (const h of ms.handles) void h.close();
    for (const set of [0, 1] as const) {
      if (this.server[set] === id) this.server[set] = undefined;
      if (this.writer[set] === id) this.writer[set] = undefined;
    }
    b.sets = new Map();
    b.nvram.powerCut();
    for (const d of this.disks[id]) d.powerCut();
    const p = this.blades[partnerOf(id)];
    const pInc = p.incarnation;
    this.sim.timers.after(pairSimLimits.detectDeathMs, () => {
      if (!this.alive(p, pInc) || b.up || b.booting) return;
      p.log?.peerDisconnected();
      if (takeover && mayTakeOver) {
        this.takeoverRunning[id] = true;
        this.spawnBlade(p, pInc, `takeover${p.id}`, () => this.takeover(p, id).finally(() => (this.takeoverRunning[id] = false)));
      }
    });
  }

  /**
   * Runs blade work as a simulation task; errors after the blade died are its power cut.
   * A boot (`inc` 'boot') is never cut (faults hit only blades that are up), so its errors count.
   */
  spawnBlade(b: SimBlade, inc: number | 'boot', name: string, fn: () => Promise<void>): void {
    this.sim.spawn(name, async () => {
      try {
        await fn();
      } catch (e) {
        if (inc !== 'boot' && b.incarnation !== inc) return;
        this.violations.push(`blade ${b.id} ${name}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      }
    });
  }

  failBattery(id: BladeId): void {
    const b = this.blades[id];
    b.batteryFailed = true;
    b.nvram.batteryFailed = true;
    const inc = b.incarnation;
    this.note(`battery failed on blade ${id}`);
    // The gauge reports it a little later (NV-7 write-through from then on).
    this.sim.timers.after(3, () => {
      if (this.alive(b, inc)) void b.log?.setBattery('failed');
    });
  }

  healBattery(id: BladeId): void {
    const b = this.blades[id];
    b.batteryFailed = false;
    b.nvram.batteryFailed = false;
    if (b.up) void b.log?.setBattery('good');
  }

  cutLink(): void {
    this.note('interconnect cut');
    this.linkUp = false;
    this.session++;
    for (const b of this.blades) {
      const inc = b.incarnation;
      this.sim.timers.after(3, () => {
        if (this.alive(b, inc) && !this.linkUp) b.log?.peerDisconnected();
      });
    }
  }

  /** One path of the interconnect fails (or comes back): the session stays, messages slow down. */
  setPathDown(down: boolean): void {
    this.note(down ? 'interconnect path down (serial only)' : 'interconnect path up');
    this.pathDown = down;
  }

  healLink(): void {
    this.note('interconnect healed');
    this.linkUp = true;
    this.connect();
  }

  /**
   * One member disk of a set fails (one per set at most): RAID runs degraded and rebuilds onto
   * the set's spare, on whichever blade has the set open (resumed at the next mount after a cut).
   */
  failDisk(set: BladeId, member: number): void {
    this.note(`disk ${set}.${member} failed`);
    this.counters.diskFailures++;
    this.disks[set][member]?.fail();
  }

  private connect(): void {
    const [a, b] = this.blades;
    if (!this.linkUp || !a.up || !b.up) return;
    this.session++;
    for (const x of this.blades) {
      x.log?.peerDisconnected();
      x.log?.peerConnected();
    }
  }

  private send(from: BladeId, fromInc: number, m: MirrorMessage): void {
    if (!this.linkUp) return;
    const to = this.blades[partnerOf(from)];
    const src = this.blades[from];
    const session = this.session;
    const toInc = to.incarnation;
    const [lo, hi] = this.pathDown ? pairSimLimits.serialOnlyDelayMs : pairSimLimits.linkDelayMs;
    const now = this.sim.clock.nowMs();
    const at = Math.max(this.lastDelivery[from] + 1e-6, now + lo + this.prng.float() * (hi - lo));
    this.lastDelivery[from] = at;
    this.sim.timers.after(at - now, () => {
      if (!this.linkUp || this.session !== session || !to.up || to.incarnation !== toInc || src.incarnation !== fromInc) return;
      to.log?.onPeerMessage(m);
    });
  }
}
