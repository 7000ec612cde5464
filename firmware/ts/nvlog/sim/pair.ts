// Two blades' change logs, mirroring, replay and state-machine logs under the step scheduler,
// with a test operation set and a model file system per blade ("disk" = the last consistency
// point: the applied operations and the last sequence number it contains). Faults: power cuts
// (torn or clean, battery good or failed), reboots with own recovery or partner takeover and
// giveback, link cuts, battery failures. Checkers: every acknowledged change is applied
// exactly once after every recovery, and no change is ever applied twice.
import { dataView } from '../../core/bytes.ts';
import { isTwinbladeError } from '../../core/errors.ts';
import type { Prng } from '../../core/prng.ts';
import type { BladeId } from '../core/layout.ts';
import { NvlogErrorCode, type NvlogLimits } from '../core/limits.ts';
import type { MirrorMessage, MirrorState } from '../core/mirror.ts';
import { replay, type Applier } from '../core/replay.ts';
import { StateMachineLog } from '../core/smlog.ts';
import { NvLog, partnerOf } from '../nvlog.ts';
import type { PairScheduler } from './scheduler.ts';
import { TearingNvram, type TearMode } from './tearing-nvram.ts';

// ---- the test operation set -------------------------------------------------------------

const TEST_OP_MAGIC = 0x5054; // "TP"

/** A test change: "append token N to the file system", with filler to vary the size. */
export function encodeTestOp(token: number, fillerBytes: number): Uint8Array {
  const b = new Uint8Array(8 + fillerBytes);
  const v = dataView(b);
  v.setUint16(0, TEST_OP_MAGIC, true);
  v.setUint16(2, fillerBytes, true);
  v.setUint32(4, token, true);
  for (let i = 0; i < fillerBytes; i++) b[8 + i] = (token + i) & 0xff;
  return b;
}

export function decodeTestOp(b: Uint8Array): number {
  const v = dataView(b);
  if (b.length < 8 || v.getUint16(0, true) !== TEST_OP_MAGIC || v.getUint16(2, true) !== b.length - 8) throw new Error('not a test op');
  return v.getUint32(4, true);
}

function requestKey(client: number, xid: number): Uint8Array {
  const k = new Uint8Array(8);
  const v = dataView(k);
  v.setUint32(0, client, true);
  v.setUint32(4, xid, true);
  return k;
}

// ---- model file system --------------------------------------------------------------------

interface FsImage {
  applied: number[];
  /** The last sequence number of the owner's log contained in this image. */
  lastSeq: number;
}

function cloneImage(i: FsImage): FsImage {
  return { applied: [...i.applied], lastSeq: i.lastSeq };
}

interface FsState {
  owner: BladeId;
  disk: FsImage;
  mem: FsImage | undefined;
  server: BladeId | undefined;
  /** Served by the partner after takeover: it answers retransmissions, logs no new changes. */
  takenOver: boolean;
  takeoverSm: StateMachineLog | undefined;
  takeoverCpDone: boolean;
}

interface Blade {
  id: BladeId;
  nvram: TearingNvram;
  alive: boolean;
  booting: boolean;
  incarnation: number;
  log: NvLog | undefined;
  cpInProgress: boolean;
  mirrorState: MirrorState;
  batteryFailed: boolean;
}

export interface PairOptions {
  sched: PairScheduler;
  prng: Prng;
  nvramBytes?: number;
  limits?: Partial<NvlogLimits>;
  netDelayMs?: [number, number];
  cpIntervalMs?: number;
  trace?: (line: string) => void;
}

export interface Request {
  client: number;
  xid: number;
  fs: BladeId;
  token: number;
  filler: number;
}

export class PairSim {
  readonly sched: PairScheduler;
  readonly prng: Prng;
  readonly blades: [Blade, Blade];
  readonly fss: [FsState, FsState];
  /** Tokens whose reply was sent: the client may have seen it (conservative). */
  readonly acked = new Set<number>();
  readonly clientAcked = new Set<number>();
  readonly violations: string[] = [];
  linkUp = true;
  /**
   * What HA would read from the mailbox disks: may the partner take blade i over? False from
   * the moment a degradation of i's mirror is announced (before i answers from its local copy
   * alone) until i reports its mirror synced again (HA-8).
   */
  readonly takeoverAllowed: [boolean, boolean] = [false, false];
  private session = 0;
  private lastDelivery: [number, number] = [0, 0];
  private readonly opts: Required<Omit<PairOptions, 'trace' | 'limits'>> & Pick<PairOptions, 'trace' | 'limits'>;
  recoveries = 0;
  takeovers = 0;

  constructor(opts: PairOptions) {
    this.opts = { nvramBytes: 8192 + 4 * 16384, netDelayMs: [0.05, 0.5], cpIntervalMs: 40, ...opts };
    this.sched = opts.sched;
    this.prng = opts.prng;
    const mk = (id: BladeId): Blade => ({
      id,
      nvram: new TearingNvram(this.opts.nvramBytes, this.prng.fork(), (label, fn) => this.sched.at(this.prng.float() * 0.02, `${label}-${id}`, fn), `nvram-${id}`),
      alive: false,
      booting: false,
      incarnation: 0,
      log: undefined,
      cpInProgress: false,
      mirrorState: 'degraded',
      batteryFailed: false,
    });
    this.blades = [mk(0), mk(1)];
    const fs = (owner: BladeId): FsState => ({ owner, disk: { applied: [], lastSeq: 0 }, mem: undefined, server: undefined, takenOver: false, takeoverSm: undefined, takeoverCpDone: false });
    this.fss = [fs(0), fs(1)];
  }

  trace(line: string): void {
    this.opts.trace?.(`${this.sched.nowMs().toFixed(3)} ${line}`);
  }

  /** Boots both blades (fresh NVRAM) and connects them. */
  async start(): Promise<void> {
    await Promise.all([this.boot(0), this.boot(1)]);
  }

  // ---- booting and recovery --------------------------------------------------------------

  /**
   * Boots a blade: giveback if the partner took it over, else its own recovery (merged with
   * the partner's mirror when the partner is reachable), then replay and connect.
   */
  async boot(id: BladeId): Promise<void> {
    const b = this.blades[id];
    const fs = this.fss[id];
    const p = this.blades[partnerOf(id)];
    b.booting = true;
    // A booting blade's status says its mirror is not synchronised (blade/pair.ts:
    // mirrorSyncedAtBoot false) until its resync completes: its reset empties the partner's
    // copy first, so the partner must not take it over from that copy meanwhile (HA-8).
    this.takeoverAllowed[id] = false;
    const inc = ++b.incarnation;
    while (fs.takenOver && !fs.takeoverCpDone) await this.sched.sleep(1);
    const giveback = fs.takenOver;
    const reachable = this.linkUp && p.alive && p.log !== undefined;
    const partnerCopy = reachable ? p.log?.partnerCopyBytes() : undefined;
    let opened;
    try {
      opened = await NvLog.open(b.nvram, {
        bladeId: id,
        clock: this.sched,
        timers: this.sched,
        cpSeq: fs.disk.lastSeq,
        mode: giveback ? 'after-giveback' : 'recover',
        announceDegraded: async () => {
          // The mailbox write that tells the partner "no takeover" takes a moment.
          await this.sched.sleep(0.5 + this.prng.float());
          this.takeoverAllowed[id] = false;
        },
        ...(partnerCopy !== undefined ? { partnerCopy } : {}),
        ...(this.opts.limits !== undefined ? { limits: this.opts.limits } : {}),
      });
    } catch (e) {
      this.violations.push(`blade ${id} could not recover its log: ${(e as Error).message}`);
      b.booting = false;
      return;
    }
    if (b.incarnation !== inc) return;
    const { log, recovered, report } = opened;
    for (const pr of report.problems) this.trace(`blade ${id} recovery: ${pr}`);
    fs.mem = cloneImage(fs.disk);
    if (!giveback) {
      const mem = fs.mem;
      try {
        const r = await replay(recovered, fs.disk.lastSeq, this.applier(id, mem), log.sm, this.sched.nowMs());
        this.trace(`blade ${id} replayed ${r.applied} changes after cp ${fs.disk.lastSeq} (from partner copy ${report.fromMirror})`);
      } catch (e) {
        this.violations.push(`blade ${id} replay failed: ${(e as Error).message}`);
      }
      if (b.incarnation !== inc) return;
    } else {
      this.trace(`blade ${id} giveback at cp ${fs.disk.lastSeq}`);
    }
    this.recoveries++;
    this.checkRecovered(id, giveback ? 'giveback' : 'own recovery');
    fs.takenOver = false;
    fs.takeoverSm = undefined;
    fs.server = id;
    b.log = log;
    b.alive = true;
    b.booting = false;
    b.cpInProgress = false;
    b.mirrorState = log.mirrorState;
    log.onMirrorState((c) => {
      b.mirrorState = c.state;
      // The status flag follows the mirror state (blade/pair.ts setMirrorSynced).
      if (c.state === 'synced') this.takeoverAllowed[id] = true;
      else if (c.state === 'resyncing') this.takeoverAllowed[id] = false;
      this.trace(`blade ${id} mirror ${c.state}: ${c.reason}`);
    });
    log.onFull(() => this.startCp(id));
    log.attachTransport({ send: (m) => this.send(id, m) });
    if (b.batteryFailed) await log.setBattery('failed');
    else await log.setBattery('good');
    this.scheduleCp(id, inc);
    this.connect();
  }

  private applier(fsId: BladeId, mem: FsImage): Applier {
    return {
      applyChange: (c) => {
        this.applyToken(fsId, mem, decodeTestOp(c.descriptor), c.seq);
        return Promise.resolve(new Uint8Array([1]));
      },
    };
  }

  private applyToken(fsId: BladeId, mem: FsImage, token: number, seq: number): void {
    if (seq <= mem.lastSeq) this.violations.push(`fs ${fsId}: change ${seq} applied after ${mem.lastSeq} (out of order or twice)`);
    if (mem.applied.includes(token)) this.violations.push(`fs ${fsId}: token ${token} applied twice (seq ${seq})`);
    mem.applied.push(token);
    mem.lastSeq = seq;
  }

  /** NV-5: right after a recovery every acknowledged change of the file system is applied once. */
  private checkRecovered(fsId: BladeId, how: string): void {
    const mem = this.fss[fsId].mem;
    if (mem === undefined) return;
    const count = new Map<number, number>();
    for (const t of mem.applied) count.set(t, (count.get(t) ?? 0) + 1);
    for (const t of this.acked) {
      if (tokenFs(t) !== fsId) continue;
      const n = count.get(t) ?? 0;
      if (n !== 1) this.violations.push(`after ${how} of fs ${fsId}: acknowledged token ${t} applied ${n} times`);
    }
  }

  // ---- faults ----------------------------------------------------------------------------

  /** Cuts a blade's power. The partner notices after `detectMs` and may take it over. */
  powerCut(id: BladeId, mode: TearMode, opts: { takeover: boolean; detectMs?: number }): void {
    const b = this.blades[id];
    const mayTakeOver = this.takeoverAllowed[id];
    this.trace(`power cut blade ${id} (${mode}${b.nvram.batteryFailed ? ', battery failed' : ''}, mirror ${b.mirrorState})`);
    b.log?.close();
    b.log = undefined;
    b.alive = false;
    b.booting = false;
    b.incarnation++;
    b.nvram.powerCut(mode);
    const fs = this.fss[id];
    if (fs.server === id) fs.server = undefined;
    fs.mem = undefined;
    // A blade that was serving its partner's file system after takeover loses it too.
    const other = this.fss[partnerOf(id)];
    if (other.server === id) {
      other.server = undefined;
      other.mem = undefined;
    }
    const p = this.blades[partnerOf(id)];
    const pInc = p.incarnation;
    this.sched.at(opts.detectMs ?? 5, `detect-death-${id}`, () => {
      if (!p.alive || p.incarnation !== pInc || b.alive || b.booting) return;
      p.log?.peerDisconnected();
      if (opts.takeover && mayTakeOver) void this.takeover(p.id, id);
    });
  }

  /** The partner replays the dead blade's mirrored log onto its file system (HA-7). */
  private async takeover(survivor: BladeId, dead: BladeId): Promise<void> {
    const s = this.blades[survivor];
    const fs = this.fss[dead];
    const inc = s.incarnation;
    if (s.log === undefined) return;
    this.trace(`blade ${survivor} takes over fs ${dead}`);
    fs.takenOver = true;
    fs.takeoverCpDone = false;
    const rec = s.log.recoverPartnerMirror();
    const mem = cloneImage(fs.disk);
    const sm = new StateMachineLog();
    try {
      const r = await replay(rec, fs.disk.lastSeq, this.applier(dead, mem), sm, this.sched.nowMs());
      this.trace(`blade ${survivor} replayed ${r.applied} changes of blade ${dead} after cp ${fs.disk.lastSeq}`);
      // As the blade does after takeover (blade/pair.ts): the outcomes of what the survivor
      // replayed go into its mirror of the partner's log, which the partner fetches when it
      // boots after the giveback; without them a replayed request the client never saw
      // answered is forgotten at the next release and runs again when retransmitted (SM-2).
      if (s.incarnation === inc && s.log !== undefined) await s.log.continuePartnerLog(r.outcomes);
    } catch (e) {
      this.violations.push(`takeover replay of fs ${dead} failed: ${(e as Error).message}`);
    }
    if (s.incarnation !== inc || !s.alive) return;
    this.takeovers++;
    fs.mem = mem;
    fs.takeoverSm = sm;
    fs.server = survivor;
    this.checkRecovered(dead, 'takeover');
    // The survivor writes a consistency point of the partner's file system with what it replayed.
    const snap = cloneImage(mem);
    this.sched.at(2 + this.prng.float() * 5, `takeover-cp-${dead}`, () => {
      if (s.incarnation !== inc || !s.alive) return;
      fs.disk = snap;
      fs.takeoverCpDone = true;
    });
  }

  failBattery(id: BladeId, detectMs = 3): void {
    const b = this.blades[id];
    b.batteryFailed = true;
    b.nvram.batteryFailed = true;
    this.trace(`battery failed on blade ${id}`);
    const inc = b.incarnation;
    this.sched.at(detectMs, `gauge-${id}`, () => {
      if (b.alive && b.incarnation === inc) void b.log?.setBattery('failed');
    });
  }

  healBattery(id: BladeId): void {
    const b = this.blades[id];
    b.batteryFailed = false;
    b.nvram.batteryFailed = false;
    this.trace(`battery replaced on blade ${id}`);
    if (b.alive) void b.log?.setBattery('good');
  }

  cutLink(): void {
    this.trace('link cut');
    this.linkUp = false;
    this.session++;
    for (const b of this.blades) {
      const inc = b.incarnation;
      this.sched.at(3, `detect-link-${b.id}`, () => {
        if (b.alive && b.incarnation === inc && !this.linkUp) b.log?.peerDisconnected();
      });
    }
  }

  healLink(): void {
    this.trace('link healed');
    this.linkUp = true;
    this.connect();
  }

  /** A new session between the blades: both greet, each resynchronises its log to the other. */
  private connect(): void {
    const [a, b] = this.blades;
    if (!this.linkUp || !a.alive || !b.alive) return;
    this.session++;
    for (const x of this.blades) {
      x.log?.peerDisconnected();
      x.log?.peerConnected();
    }
  }

  private send(from: BladeId, m: MirrorMessage): void {
    if (!this.linkUp) return;
    const to = this.blades[partnerOf(from)];
    const src = this.blades[from];
    const session = this.session;
    const srcInc = src.incarnation;
    const toInc = to.incarnation;
    const [lo, hi] = this.opts.netDelayMs;
    // One ordered stream per direction: strictly later than the previous message, so that a
    // scheduler breaking ties at random cannot reorder them.
    const at = Math.max(this.lastDelivery[from] + 1e-6, this.sched.nowMs() + lo + this.prng.float() * (hi - lo));
    this.lastDelivery[from] = at;
    this.sched.at(at - this.sched.nowMs(), `msg-${m.kind}-${from}>${to.id}`, () => {
      if (!this.linkUp || this.session !== session || !to.alive || to.incarnation !== toInc || src.incarnation !== srcInc) return;
      to.log?.onPeerMessage(m);
    });
  }

  // ---- consistency points -------------------------------------------------------------------

  private scheduleCp(id: BladeId, inc: number): void {
    const b = this.blades[id];
    this.sched.at(this.opts.cpIntervalMs * (0.5 + this.prng.float()), `cp-timer-${id}`, () => {
      if (b.incarnation !== inc || !b.alive) return;
      this.startCp(id);
      this.scheduleCp(id, inc);
    });
  }

  /** A consistency point of the blade's own file system: snapshot now, on disk a little later. */
  startCp(id: BladeId): void {
    const b = this.blades[id];
    const fs = this.fss[id];
    if (!b.alive || b.cpInProgress || fs.server !== id || fs.mem === undefined || b.log === undefined) return;
    b.cpInProgress = true;
    const snap = cloneImage(fs.mem);
    b.log.beginCp();
    const inc = b.incarnation;
    this.sched.at(1 + this.prng.float() * 4, `cp-done-${id}`, () => {
      if (b.incarnation !== inc || !b.alive) return;
      // A write-through commit (NV-7) taken while this CP ran is newer than its snapshot: a
      // file system's CPs never go back (the log may already have released what it holds).
      if (snap.lastSeq >= fs.disk.lastSeq) fs.disk = snap;
      b.cpInProgress = false;
      b.log?.release(snap.lastSeq);
    });
  }

  // ---- clients ---------------------------------------------------------------------------

  /** Delivers a client request to whoever serves its file system (after a network delay). */
  submit(req: Request): void {
    this.sched.at(0.01 + this.prng.float() * 0.2, `req-${req.client}.${req.xid}`, () => void this.handle(req));
  }

  private async handle(req: Request): Promise<void> {
    const fs = this.fss[req.fs];
    if (fs.server === undefined) return;
    const b = this.blades[fs.server];
    if (!b.alive) return;
    const key = requestKey(req.client, req.xid);
    if (fs.takenOver) {
      // The survivor answers retransmissions of requests the replay restored (SM-2).
      const r = fs.takeoverSm?.get(key);
      if (r !== undefined && (r.state === 'applied' || r.state === 'replied')) this.reply(req);
      return;
    }
    const log = b.log;
    const mem = fs.mem;
    if (log === undefined || mem === undefined) return;
    let adm;
    try {
      adm = log.sm.receive(key);
    } catch {
      return;
    }
    if (adm.kind === 'done') {
      this.reply(req);
      return;
    }
    if (adm.kind === 'in-progress') return;
    const inc = b.incarnation;
    let res;
    try {
      res = await log.appendChange(key, encodeTestOp(req.token, req.filler));
    } catch (e) {
      log.sm.abandon(key);
      if (!isTwinbladeError(e, NvlogErrorCode.full) && !isTwinbladeError(e, NvlogErrorCode.powerFail) && !isTwinbladeError(e, NvlogErrorCode.closed)) throw e;
      return;
    }
    if (b.incarnation !== inc || !b.alive) return;
    this.applyToken(req.fs, mem, req.token, res.seq);
    log.sm.applied(key, new Uint8Array([1]));
    if (res.writeThrough) {
      // NV-7: with the battery gone the change is committed before the client is answered.
      fs.disk = cloneImage(mem);
      log.release(mem.lastSeq);
    }
    this.reply(req);
    log.appendReply(key, res.seq, new Uint8Array([1])).catch(() => undefined);
  }

  private reply(req: Request): void {
    this.acked.add(req.token);
    this.sched.at(0.01 + this.prng.float() * 0.2, `reply-${req.client}.${req.xid}`, () => this.clientAcked.add(req.token));
  }

  /** Final check: every acknowledged token is in its file system exactly once. */
  checkFinal(): void {
    for (const fsId of [0, 1] as const) {
      const fs = this.fss[fsId];
      const img = fs.mem ?? fs.disk;
      const seen = new Set<number>();
      for (const t of img.applied) {
        if (seen.has(t)) this.violations.push(`final: fs ${fsId} token ${t} applied twice`);
        seen.add(t);
      }
      for (const t of this.acked) if (tokenFs(t) === fsId && !seen.has(t)) this.violations.push(`final: acknowledged token ${t} of fs ${fsId} lost`);
    }
  }
}

/** Tokens carry their file system in the top bit, so checkers can attribute them. */
export function makeToken(fs: BladeId, n: number): number {
  return fs * 2 ** 31 + n;
}

export function tokenFs(t: number): BladeId {
  return t >= 2 ** 31 ? 1 : 0;
}
