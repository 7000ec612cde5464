// The change log driver: one blade's NVRAM holding its own log (two halves) and the mirror of
// its partner's log, driven over the Nvram HAL. It appends and persists entries, mirrors them
// through an injected transport, answers "may reply" only when both copies are durable (NV-2),
// stores the partner's entries (NV-3), keeps the state-machine log, and seals on power failure.
import type { Clock, TimerHandle, Timers } from '../core/clock.ts';
import { assert } from '../core/assert.ts';
import { buggify } from '../core/buggify.ts';
import { TwinbladeError } from '../core/errors.ts';
import type { Nvram } from '../hal/nvram/nvram.ts';
import {
  EntryType,
  changePayloadParts,
  encodeChangePayload,
  entryHeaderScratch,
  entryPadding,
  encodeReleasePayload,
  encodeStatePayload,
  statePayloadParts,
  RELEASE_PAYLOAD_BYTES,
  paddedEntryBytes,
  type LogRecord,
} from './core/entry.ts';
import {
  HEADER_COPY_BYTES,
  STATE_SLOT_BYTES,
  computeLayout,
  decodeStateSlot,
  encodeHeader,
  encodeStateSlot,
  type BatteryState,
  type BladeId,
  type NvramHeader,
  type NvramLayout,
} from './core/layout.ts';
import { NvlogErrorCode, nvlogLimits, type NvlogLimits } from './core/limits.ts';
import { MirrorOrigin, MirrorReceiver, type MirrorItem, type MirrorMessage, type MirrorState, type MirrorStateChange } from './core/mirror.ts';
import { continueLog, decideHeader, mergeWithMirror, planReplay, recoverRegion, releasedSeqOf, segments, type RecoveredLog, type ReplayPlan } from './core/recovery.ts';
import { StateMachineLog } from './core/smlog.ts';

/** Sends mirroring messages to the partner (the link layer, or a small adapter in tests). */
export interface MirrorTransport {
  /** Queues one message; delivery is ordered and may fail silently when the link is down. */
  send(msg: MirrorMessage): void;
}

export interface NvLogOptions {
  bladeId: BladeId;
  clock: Clock;
  timers: Timers;
  /** The last sequence number of this blade's log contained in the on-disk consistency point. */
  cpSeq: number;
  /** The partner's mirror of this blade's log (its region bytes), when the partner could send it. */
  partnerCopy?: Uint8Array;
  limits?: Partial<NvlogLimits>;
  /**
   * A lower bound for the new boot generation: the HA generation, which the mailbox disks keep
   * too (HA-4). A blade whose NVRAM was lost must not count boots from 1 again, or entries of
   * its previous life (in a partner's copy that never resynchronised) pass for new ones.
   */
  bootGenerationFloor?: number;
  /** Operator override: format an NVRAM whose header names another blade or format version. */
  reformat?: boolean;
  /**
   * `recover` (default): replay what follows `cpSeq`. `after-giveback`: the partner took this
   * blade over, replayed its mirror and wrote a CP containing everything through `cpSeq`; entries
   * after it here were never acknowledged and are dropped, entries up to it only restore the
   * state-machine log (so retransmissions still get their replies).
   */
  mode?: 'recover' | 'after-giveback';
  /**
   * Called when the mirror degrades, before any client is answered from the local copy alone.
   * HA resolves it once the partner can no longer take this blade over (NO-TAKEOVER written to
   * the mailbox disks and persistent state, HA-8): otherwise a partner that missed the news
   * (link cut, then this blade dies) could take over from a mirror lacking answered changes.
   * Without it, degradation waives the mirror at once.
   */
  announceDegraded?: (reason: string) => Promise<void>;
}

export interface RecoveryReport {
  /** How the header was chosen: copy 0/1, a fresh format, or the error that made it unusable. */
  header: { kind: 'use'; copy: 0 | 1; otherCopy: string } | { kind: 'fresh' } | { kind: 'error'; code: string; detail: string };
  bootGeneration: number;
  /** The previous boot ended with a clean power-fail seal, and where. */
  sealed: boolean;
  sealedSeq: number;
  /** The seal named an entry that the recovered log does not end with. */
  sealMismatch: boolean;
  halves: Array<{ half: 0 | 1; entries: number; endRow: string; endReason: string; endPosition: number; beyondBreak: number }>;
  fromMirror: number;
  conflicts: number[];
  /** Change entries after the consistency point: what replay will apply. */
  toApply: number;
  /** Intact entries after a break, not applied (they were never acknowledged). */
  discarded: number;
  /** Human-readable findings, worst first; empty for a clean recovery. */
  problems: string[];
}

export interface NvLogMetrics {
  lastSeq: number;
  localDurableSeq: number;
  mirrorDoneSeq: number;
  mirrorState: MirrorState;
  mirrorInFlightHighWater: number;
  logBytesUsed: number;
  logBytesHighWater: number;
  smRequests: number;
  smRequestsHighWater: number;
  smEvictions: number;
  appends: number;
  halfSwitches: number;
  fullRejections: number;
  writeThrough: boolean;
}

export interface AppendResult {
  seq: number;
  /** The battery is not good: commit the change to disk before answering the client (NV-7). */
  writeThrough: boolean;
}

type Listener<T> = (v: T) => void;

/** Where a live entry of the local log is (its bytes are in NVRAM there). */
interface LiveEntry {
  seq: number;
  /** Byte offset inside the local log region (0 .. 2*halfBytes). */
  position: number;
  /** The whole padded entry. */
  length: number;
  half: 0 | 1;
}

const noBytes = new Uint8Array(0);

interface HalfState {
  /** Entries in this half that are not yet released. */
  liveCount: number;
  maxSeq: number;
  firstSeq: number;
  /** Entries carried out of this half; it is reused only once they are durable in both copies. */
  freeAfterSeq: number;
  /** Change entries in this half (a half of replies and release entries only needs no CP). */
  changes: number;
}

export class NvLog {
  readonly layout: NvramLayout;
  readonly sm: StateMachineLog;
  readonly limits: NvlogLimits;
  private header: NvramHeader;
  private headerCopyNext: 0 | 1;
  private readonly mirror: MirrorOrigin;
  private readonly receiver: MirrorReceiver;
  private transport: MirrorTransport | undefined;
  private activeHalf: 0 | 1 = 0;
  private writePos = 0;
  private readonly halves: [HalfState, HalfState] = [emptyHalf(), emptyHalf()];
  /**
   * Live (unreleased) records by sequence number, for resynchronising the mirror. Where they
   * are, not their bytes: the bytes stay in NVRAM until the half is released, and a resync
   * reads them from there (holding a copy of every live entry in the heap cost a 1 MiB
   * buffer per 1 MiB WRITE kept alive until its release, and the GC work that goes with it).
   */
  private readonly live = new Map<number, LiveEntry>();
  private nextSeq: number;
  private localDurableSeq: number;
  private readonly durableAhead = new Set<number>();
  private waiters: Array<{ seq: number; needMirror: boolean; resolve: () => void }> = [];
  /** Every entry numbered up to this is released; the newest release entry records it. */
  private releasedSeqValue = 0;
  /** The newest change entry appended by this boot (0: none yet). */
  private lastChangeSeqValue = 0;
  private accepting = true;
  private closed = false;
  /** The partner's last greeting announced another NVRAM half size: no mirroring (HA-8). */
  private peerHalfMismatch = false;
  private writeThroughValue = false;
  private batteryValue: BatteryState;
  private sealPromise: Promise<void> | undefined;
  private inFlightPersists = new Set<Promise<void>>();
  private tickTimer: TimerHandle | undefined;
  private receiverPersistScheduled = false;
  /** False between a degradation and the end of its announcement: no waiver yet. */
  private waiverAllowed = true;
  private announceEpoch = 0;
  /** The mirror watermark already used to answer clients (never goes back). */
  private mirrorReleasedSeq = 0;
  private pendingAcks: Array<MirrorMessage & { kind: 'ack' }> = [];
  private haCounter = 0;
  private readonly listeners = { mirror: [] as Listener<MirrorStateChange>[], writeThrough: [] as Listener<boolean>[], full: [] as Listener<void>[], sealed: [] as Listener<number>[] };
  private counters = { appends: 0, halfSwitches: 0, fullRejections: 0, logBytesHighWater: 0 };
  private liveBytes = 0;

  private constructor(
    private readonly nvram: Nvram,
    private readonly opts: NvLogOptions,
    layout: NvramLayout,
    header: NvramHeader,
    headerCopyNext: 0 | 1,
    nextSeq: number,
  ) {
    this.layout = layout;
    this.header = header;
    this.headerCopyNext = headerCopyNext;
    this.limits = { ...nvlogLimits, ...opts.limits };
    this.sm = new StateMachineLog(this.limits);
    this.mirror = new MirrorOrigin(opts.bladeId, this.limits);
    this.receiver = new MirrorReceiver(partnerOf(opts.bladeId), 2 * layout.halfBytes);
    this.nextSeq = nextSeq;
    this.localDurableSeq = nextSeq - 1;
    this.mirrorReleasedSeq = nextSeq - 1;
    this.mirror.startAt(nextSeq - 1);
    this.batteryValue = header.battery;
    // A booting blade has not reached its partner yet: its mirror starts degraded, which HA
    // must announce like any other degradation before a client is answered.
    if (opts.announceDegraded !== undefined) this.announce('boot: the partner has not resynchronised this log yet');
    this.writeThroughValue = header.battery === 'low' || header.battery === 'failed';
  }

  /**
   * Opens the log after a boot: chooses the header, recovers the local log (merged with the
   * partner's copy when given), writes back entries only the partner had, starts a new boot
   * generation and returns what replay must apply. Refuses (throws) an NVRAM of another blade
   * or format version unless `reformat` is set; a replay gap throws ERR_NVLOG_REPLAY_GAP.
   */
  static async open(nvram: Nvram, opts: NvLogOptions): Promise<{ log: NvLog; recovered: RecoveredLog; plan: ReplayPlan & { ok: true }; report: RecoveryReport }> {
    const layout = computeLayout(nvram.sizeBytes);
    const problems: string[] = [];
    const decision = decideHeader(nvram.read(0, HEADER_COPY_BYTES), nvram.read(HEADER_COPY_BYTES, HEADER_COPY_BYTES), opts.bladeId, layout);
    let reportHeader: RecoveryReport['header'];
    let prev: NvramHeader | undefined;
    let nextCopy: 0 | 1 = 0;
    let localUsable = true;
    if (decision.kind === 'use') {
      prev = decision.header;
      nextCopy = decision.copy === 0 ? 1 : 0;
      reportHeader = { kind: 'use', copy: decision.copy, otherCopy: decision.otherCopy };
      if (decision.otherCopy !== 'valid') problems.push(`NVRAM header copy ${nextCopy} is ${decision.otherCopy}; copy ${decision.copy} used`);
    } else if (decision.kind === 'fresh') {
      reportHeader = { kind: 'fresh' };
    } else {
      reportHeader = { kind: 'error', code: decision.code, detail: decision.detail };
      if (decision.code !== NvlogErrorCode.headerCorrupt && opts.reformat !== true) {
        throw new TwinbladeError(decision.code, 'corrupt', `NVRAM refused: ${decision.detail}`);
      }
      // A corrupt header does not make the entries wrong: they are self-checking and say
      // which blade wrote them, so the log is still scanned. A foreign one is not trusted.
      localUsable = decision.code === NvlogErrorCode.headerCorrupt;
      problems.push(`${decision.code}: ${decision.detail}`);
    }
    const regionBytes = 2 * layout.halfBytes;
    // Borrowed where the driver maps its memory: copying the region cost a buffer of its size
    // and ~0.9 s at boot for blade init's 1 GiB NVRAM (two 256 MiB halves). Recovery copies the
    // records it keeps (scanHalf), and nothing else writes the NVRAM until open returns.
    const localRegion = localUsable ? (nvram.borrow?.(layout.localOffset, regionBytes) ?? nvram.read(layout.localOffset, regionBytes)) : new Uint8Array(regionBytes);
    let recovered = recoverRegion(localRegion, layout.halfBytes, opts.bladeId);
    if (opts.partnerCopy !== undefined) {
      const theirs = recoverRegion(opts.partnerCopy, layout.halfBytes, opts.bladeId);
      recovered = mergeWithMirror(recovered, theirs);
    }
    for (const h of recovered.halves) {
      if (h.endRow.severity === 'error') problems.push(`half ${h.half}: ${h.endRow.id} ${h.endRow.end ?? ''} at ${h.endPosition}: ${h.endRow.why}`);
      if (h.beyondBreak > 0) problems.push(`half ${h.half}: ${h.beyondBreak} intact entries after a ${h.endRow.end ?? 'break'} at ${h.endPosition} were not used (never acknowledged)`);
    }
    if (recovered.conflicts.length > 0) problems.push(`entries ${recovered.conflicts.join(',')} exist in two versions (local log or partner copy); the later boot's version was used`);
    let plan = planReplay(recovered, opts.cpSeq);
    let smOnly: LogRecord[] = [];
    /** After a giveback: the release point the first new entry records (see below). */
    let voidThrough: number | undefined;
    let smReleased = 0;
    if (opts.mode === 'after-giveback') {
      // The partner replayed every acknowledged entry of this log (its mirror has them all),
      // so each change entry here is in a committed CP of its file system (ours through
      // `cpSeq`, the partner's through the giveback CP after an earlier takeover) or was never
      // acknowledged. The newest run stays as it is — its state entries keep answering
      // retransmissions and are carried forward like any others — and new entries continue
      // after it, never reusing a number a file system may have applied. The first new entry
      // is a release entry through the end of that run: no recovery replays any of it again.
      const lastRun = segments(recovered.records).at(-1) ?? [];
      const runEnd = lastRun.length === 0 ? 0 : (lastRun[lastRun.length - 1] as LogRecord).seq;
      const released = releasedSeqOf(recovered);
      voidThrough = Math.max(opts.cpSeq, runEnd, released);
      const dropped = recovered.records.filter((r) => r.seq > opts.cpSeq && r.type === EntryType.change);
      if (dropped.length > 0) problems.push(`after giveback: ${dropped.length} change entries after the partner's consistency point ${opts.cpSeq} are not replayed (released, or never acknowledged)`);
      // New entries continue in this run only if it ends where they start; otherwise (the
      // partner replayed entries this copy lacks) a new run starts, so that no sequence gap
      // is ever written inside a half.
      const contiguous = runEnd === voidThrough && runEnd > 0;
      // The state-machine log learns the replies (and the outcomes the partner recorded for
      // what it replayed, continueLog) and that changes through the CP were applied; change
      // entries after it were never acknowledged and must run if retransmitted.
      smOnly = lastRun.filter((r) => !(r.type === EntryType.change && r.seq > opts.cpSeq));
      smReleased = released;
      plan = { ok: true, live: contiguous ? lastRun : [], toApply: [], discarded: [], lastSeq: runEnd, releasedSeq: voidThrough, baseSeq: voidThrough };
    }
    if (!plan.ok) throw new TwinbladeError(plan.code, 'corrupt', `change log recovery refused: ${plan.detail}`);
    if (plan.discarded.length > 0 && opts.mode !== 'after-giveback') problems.push(`${plan.discarded.length} entries after a break were not applied (never acknowledged)`);

    let maxBoot = prev?.bootGeneration ?? 0;
    for (const r of recovered.records) maxBoot = Math.max(maxBoot, r.bootGeneration);
    for (const h of recovered.halves) maxBoot = Math.max(maxBoot, h.maxBootSeen);
    const lastLive = plan.live[plan.live.length - 1];
    const sealed = prev?.sealed ?? false;
    const sealedSeq = prev?.sealedSeq ?? 0;
    const sealMismatch = sealed && (lastLive?.seq ?? opts.cpSeq) < sealedSeq;
    if (sealMismatch) problems.push(`the power-fail seal names entry ${sealedSeq} but the log ends at ${lastLive?.seq ?? opts.cpSeq}`);
    const header: NvramHeader = {
      bladeId: opts.bladeId,
      bootGeneration: Math.max(maxBoot + 1, opts.bootGenerationFloor ?? 0),
      writeCounter: (prev?.writeCounter ?? 0) + 1,
      battery: prev?.battery ?? 'unknown',
      sealed: false,
      sealedSeq: 0,
      layout,
    };
    // Never below the release point: a released number may be in some file system's CP.
    const nextSeq = Math.max(opts.cpSeq, lastLive?.seq ?? 0, plan.releasedSeq) + 1;
    const log = new NvLog(nvram, opts, layout, header, nextCopy, nextSeq);
    log.releasedSeqValue = plan.releasedSeq;
    await log.adopt(plan.live, recovered, localRegion);
    await log.clearTail(localRegion);
    await log.writeHeader();
    if (voidThrough === undefined && plan.live.length === 0 && plan.releasedSeq > opts.cpSeq) {
      // Nothing of the old run stays live, so new entries start at the front of half 0 and
      // may overwrite the release entry that recorded the release point: record it again
      // first, or a later recovery could take released entries for missing ones.
      log.appendRelease(plan.releasedSeq);
      await log.durable(log.lastSeq, false);
    }
    if (voidThrough !== undefined) {
      log.sm.restore(smOnly, opts.cpSeq, opts.clock.nowMs(), smReleased);
      log.appendRelease(voidThrough);
      await log.durable(log.lastSeq, false);
    }
    const report: RecoveryReport = {
      header: reportHeader,
      bootGeneration: header.bootGeneration,
      sealed,
      sealedSeq,
      sealMismatch,
      halves: recovered.halves.map((h) => ({ half: h.half, entries: h.records.length, endRow: h.endRow.id, endReason: h.endRow.end ?? '', endPosition: h.endPosition, beyondBreak: h.beyondBreak })),
      fromMirror: recovered.fromMirror,
      conflicts: recovered.conflicts,
      toApply: plan.toApply.length,
      discarded: plan.discarded.length,
      problems,
    };
    return { log, recovered, plan, report };
  }

  /** Takes over the recovered live records: writes back any that came from the partner's copy. */
  private async adopt(live: readonly LogRecord[], recovered: RecoveredLog, localRegion: Uint8Array): Promise<void> {
    let wrote = false;
    for (const r of live) {
      const half: 0 | 1 = r.position < this.layout.halfBytes ? 0 : 1;
      const same = localRegion.subarray(r.position, r.position + r.bytes.length);
      if (recovered.fromMirror > 0 && !bytesSame(same, r.bytes)) {
        this.nvram.write(this.layout.localOffset + r.position, r.bytes);
        wrote = true;
      }
      const h = this.halves[half];
      if (h.liveCount === 0) h.firstSeq = r.seq;
      h.liveCount++;
      if (r.type === EntryType.change) h.changes++;
      h.maxSeq = r.seq;
      this.live.set(r.seq, { seq: r.seq, position: r.position, length: r.bytes.length, half });
      this.liveBytes += r.bytes.length;
      this.activeHalf = half;
      this.writePos = r.position + r.bytes.length - half * this.layout.halfBytes;
    }
    if (wrote) await this.nvram.persist(this.layout.localOffset, 2 * this.layout.halfBytes);
    this.noteBytes();
  }

  /**
   * Zeroes what lies after the live run in the active half, durably, before anything new is
   * written there. The bytes right after the run are the torn or unacknowledged tail that
   * recovery just discarded (and older laps after it). New entries reuse those sequence
   * numbers at those positions, so a torn write of the first new entry could otherwise leave
   * the old discarded entry whole again — same number, right after the live run, valid
   * checksums — and a later recovery would apply a change this one threw away.
   */
  private async clearTail(localRegion: Uint8Array): Promise<void> {
    const from = this.activeHalf * this.layout.halfBytes + this.writePos;
    const to = lastNonZeroEnd(localRegion, from, (this.activeHalf + 1) * this.layout.halfBytes);
    if (to <= from) return;
    this.nvram.write(this.layout.localOffset + from, new Uint8Array(to - from));
    await this.nvram.persist(this.layout.localOffset + from, to - from);
  }

  // ---- events -------------------------------------------------------------------------

  /** Mirror state changes (synced / degraded / resyncing): HA disables takeover unless synced (HA-8). */
  onMirrorState(fn: Listener<MirrorStateChange>): void {
    this.listeners.mirror.push(fn);
  }
  onWriteThrough(fn: Listener<boolean>): void {
    this.listeners.writeThrough.push(fn);
  }
  /** Both halves hold unreleased entries: a consistency point is needed now. */
  onFull(fn: Listener<void>): void {
    this.listeners.full.push(fn);
  }
  onSealed(fn: Listener<number>): void {
    this.listeners.sealed.push(fn);
  }

  get bladeId(): BladeId {
    return this.opts.bladeId;
  }
  get bootGeneration(): number {
    return this.header.bootGeneration;
  }
  get mirrorState(): MirrorState {
    return this.mirror.state;
  }
  get writeThrough(): boolean {
    return this.writeThroughValue;
  }
  get battery(): BatteryState {
    return this.batteryValue;
  }
  get lastSeq(): number {
    return this.nextSeq - 1;
  }
  /** The newest change entry appended since this log was opened (0: none). */
  get lastChangeSeq(): number {
    return this.lastChangeSeqValue;
  }
  /** How many times appends moved to the other half (cheap, unlike `metrics()`). */
  get halfSwitches(): number {
    return this.counters.halfSwitches;
  }
  /** The release point: every entry up to it is in a committed CP of its file system. */
  get releasedSeq(): number {
    return this.releasedSeqValue;
  }

  // ---- appending ----------------------------------------------------------------------

  /**
   * Logs a change: writes and persists the entry, mirrors it, and resolves once both copies
   * are durable (or the mirror is degraded and the local copy is). Only then may the client
   * be answered (NV-2). Throws ERR_NVLOG_FULL (kind busy) when no half has room.
   */
  async appendChange(key: Uint8Array, descriptor: Uint8Array | readonly Uint8Array[]): Promise<AppendResult> {
    // A descriptor in pieces (a WRITE's header and its data) is copied once, into the entry.
    const payload = descriptor instanceof Uint8Array ? encodeChangePayload({ key, descriptor }) : changePayloadParts(key, descriptor);
    const seq = this.appendEntry(EntryType.change, payload);
    this.lastChangeSeqValue = seq;
    this.sm.logged(key, seq);
    await this.waitFor(seq, true);
    return { seq, writeThrough: this.writeThroughValue };
  }

  /** Records that a request was replied with `reply` (SM-1); resolves when locally durable. */
  async appendReply(key: Uint8Array, changeSeq: number, reply: Uint8Array): Promise<number> {
    // The table learns the reply first: if the entry cannot be written now (log full), the
    // next release carries it forward into the log.
    this.sm.applied(key, reply);
    this.sm.replied(key, this.opts.clock.nowMs());
    const seq = this.appendEntry(EntryType.state, statePayloadParts({ key, changeSeq, reply }));
    this.sm.noteStateSeq(key, seq);
    await this.waitFor(seq, false);
    return seq;
  }

  /**
   * Records the outcome of an applied change (a state entry holding `outcome`, which answers
   * a retransmission), without waiting. The change path writes it as soon as the change is
   * applied, and a consistency point waits until it is durable in both copies (`durable`)
   * before committing the change: a change a CP holds is never replayed, so its answer must
   * come from the log (SM-2). Returns the entry's sequence number.
   */
  recordOutcome(key: Uint8Array, changeSeq: number, outcome: Uint8Array): number {
    this.sm.applied(key, outcome);
    const seq = this.appendEntry(EntryType.state, statePayloadParts({ key, changeSeq, reply: outcome }));
    this.sm.noteStateSeq(key, seq);
    return seq;
  }

  /**
   * Resolves once every entry up to `seq` is durable locally and, with `mirrored` (default),
   * in the partner's copy too (or the mirror is degraded and announced, HA-8).
   */
  durable(seq: number, mirrored = true): Promise<void> {
    return this.waitFor(seq, mirrored);
  }

  /** The log's clock (the state-machine log's retention runs on it). */
  nowMs(): number {
    return this.opts.clock.nowMs();
  }

  /** Appends a release entry naming the current release point (recovery of either copy reads it). */
  private appendRelease(releasedSeq: number): number {
    assert(releasedSeq < this.nextSeq, `release point ${releasedSeq} beyond the log end ${this.lastSeq}`);
    this.releasedSeqValue = Math.max(this.releasedSeqValue, releasedSeq);
    return this.appendEntry(EntryType.release, encodeReleasePayload({ releasedSeq: this.releasedSeqValue }));
  }

  private appendEntry(type: EntryType, payload: Uint8Array | readonly Uint8Array[]): number {
    const parts = payload instanceof Uint8Array ? [payload] : payload;
    let payloadBytes = 0;
    for (const p of parts) payloadBytes += p.length;
    if (this.closed) throw new TwinbladeError(NvlogErrorCode.closed, 'closed', 'change log is closed');
    if (!this.accepting) throw new TwinbladeError(NvlogErrorCode.powerFail, 'unsupported', 'power failure: no new changes are accepted');
    const len = paddedEntryBytes(payloadBytes);
    if (len > this.layout.halfBytes) throw new TwinbladeError(NvlogErrorCode.invalidArgument, 'invalid-argument', `entry of ${len} bytes is larger than a log half`);
    if (this.writePos + len > this.layout.halfBytes) {
      const other: 0 | 1 = this.activeHalf === 0 ? 1 : 0;
      if (!this.halfFree(other)) {
        this.counters.fullRejections++;
        for (const fn of this.listeners.full) fn();
        throw new TwinbladeError(NvlogErrorCode.full, 'busy', 'both log halves hold unreleased entries: waiting for a consistency point');
      }
      this.switchTo(other);
    }
    const seq = this.nextSeq++;
    // Header, payload pieces and padding go straight into NVRAM in one gather write: the
    // payload (a WRITE's data, a view of the RPC record) is copied once, into the log.
    const header = entryHeaderScratch({ type, origin: this.opts.bladeId, seq, bootGeneration: this.header.bootGeneration }, parts);
    const gather: Uint8Array[] = [header];
    for (const p of parts) gather.push(p);
    const pad = entryPadding(payloadBytes);
    if (pad.length > 0) gather.push(pad);
    const position = this.activeHalf * this.layout.halfBytes + this.writePos;
    const offset = this.layout.localOffset + position;
    this.nvram.writeParts(offset, gather);
    this.writePos += len;
    const h = this.halves[this.activeHalf];
    if (h.liveCount === 0) h.firstSeq = seq;
    h.liveCount++;
    if (type === EntryType.change) h.changes++;
    h.maxSeq = seq;
    this.live.set(seq, { seq, position, length: len, half: this.activeHalf });
    this.liveBytes += len;
    this.counters.appends++;
    this.noteBytes();
    const [fenceFrom, fenceBytes] = this.fenceRange(offset + len);
    // Two promises per entry (the persist and its handlers), not four: this runs twice per change.
    const p: Promise<void> = this.nvram.persist(fenceFrom, fenceBytes).then(
      () => {
        this.inFlightPersists.delete(p);
        this.localDurable(seq);
      },
      () => {
        // A failed fence never reports the entry durable (the waiters keep waiting, as for a
        // power cut); the seal waits for what is in flight, not for what failed.
        this.inFlightPersists.delete(p);
      },
    );
    this.inFlightPersists.add(p);
    // A degraded mirror sends nothing (a later resync reads the live entries from NVRAM), so
    // the entry's bytes are copied out of NVRAM only for a partner that receives them.
    const bytes = this.mirror.state === 'degraded' ? noBytes : this.nvram.read(offset, len);
    this.mirror.append({ seq, position, bytes }, this.opts.clock.nowMs());
    this.flushMirror();
    return seq;
  }

  /**
   * The range one entry's persist covers: from the oldest entry not yet durable through this
   * one. An entry then never becomes durable before an entry written earlier, so what is
   * durable is always a prefix of the log (entries written but not yet persisted may survive
   * a cut in any combination; recovery keeps only the contiguous run and refuses a hole no
   * torn write explains). On battery-backed memory the fence costs the same whatever the range.
   */
  private fenceRange(end: number): [number, number] {
    const oldest = this.live.get(this.localDurableSeq + 1);
    const start = oldest === undefined ? end : this.layout.localOffset + oldest.position;
    if (start <= end && oldest?.half === this.activeHalf) return [start, end - start];
    return [this.layout.localOffset, 2 * this.layout.halfBytes];
  }

  private switchTo(half: 0 | 1): void {
    this.activeHalf = half;
    this.writePos = 0;
    this.counters.halfSwitches++;
  }

  private localDurable(seq: number): void {
    this.durableAhead.add(seq);
    while (this.durableAhead.has(this.localDurableSeq + 1)) {
      this.durableAhead.delete(this.localDurableSeq + 1);
      this.localDurableSeq++;
    }
    this.wake();
  }

  private waitFor(seq: number, needMirror: boolean): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push({ seq, needMirror, resolve });
      this.wake();
    });
  }

  private wake(): void {
    // After close (a power cut in the simulator) nothing may be reported durable any more.
    if (this.waiters.length === 0 || this.closed) return;
    const mirrored = Math.max(this.mirrorReleasedSeq, this.waiverAllowed ? this.mirror.doneSeq : this.mirror.ackedSeq);
    this.mirrorReleasedSeq = mirrored;
    // Compacted in place (this runs on every append and every fence): resolving only queues
    // the waiter's continuation, so nothing re-enters while the array is rewritten.
    const ws = this.waiters;
    let kept = 0;
    for (let i = 0; i < ws.length; i++) {
      const w = ws[i] as (typeof ws)[number];
      if (w.seq <= this.localDurableSeq && (!w.needMirror || w.seq <= mirrored)) w.resolve();
      else ws[kept++] = w;
    }
    ws.length = kept;
  }

  // ---- consistency points and release --------------------------------------------------

  /**
   * Called when a consistency point starts: switches appends to the other half if it is free,
   * so that the CP can release the current one. Returns the last sequence number logged.
   */
  beginCp(): number {
    const other: 0 | 1 = this.activeHalf === 0 ? 1 : 0;
    // A half holding no change entries (carried replies, release entries) needs no CP to be
    // released; switching away from it would only carry its replies again at every CP.
    if (this.halfFree(other) && this.writePos > 0 && this.halves[this.activeHalf].changes > 0) this.switchTo(other);
    return this.lastSeq;
  }

  /** A half may be written again once released and once the entries carried out of it are durable. */
  private halfFree(half: 0 | 1): boolean {
    const h = this.halves[half];
    return h.liveCount === 0 && h.freeAfterSeq <= Math.min(this.localDurableSeq, this.mirror.doneSeq);
  }

  /**
   * A consistency point containing every change up to `cpSeq` is on disk: release the entries
   * it contains whose replies are past retention (SM-3). A half is reused only once all of its
   * entries are released. Returns the number of entries released.
   */
  release(cpSeq: number): number {
    if (this.closed || !this.accepting) return 0;
    assert(cpSeq <= this.lastSeq, `release through ${cpSeq} beyond the log end ${this.lastSeq}`);
    const now = this.opts.clock.nowMs();
    this.sm.release(cpSeq, now);
    let n = 0;
    const freed: Array<0 | 1> = [];
    let through = this.releasedSeqValue;
    const other: 0 | 1 = this.activeHalf === 0 ? 1 : 0;
    if (this.releasable(other, cpSeq)) {
      const maxSeq = this.halves[other].maxSeq;
      const k = this.releaseHalf(other, now);
      if (k > 0) [n, through] = [n + k, Math.max(through, maxSeq)];
      if (k > 0) freed.push(other);
    }
    // The active half can be released too when everything in it is: appends move to the
    // (empty) other half first, so that sequence order keeps matching position order.
    if (this.releasable(this.activeHalf, cpSeq) && this.halfFree(other) && this.halves[this.activeHalf].maxSeq === this.lastSeq && this.halves[this.activeHalf].changes > 0) {
      const old = this.activeHalf;
      const maxSeq = this.halves[old].maxSeq;
      this.switchTo(other);
      const k = this.releaseHalf(old, now);
      if (k > 0) [n, through] = [n + k, Math.max(through, maxSeq)];
      if (k > 0) freed.push(old);
    }
    if (freed.length > 0) {
      // Entries are released a half at a time, oldest half first, so everything up to the
      // released half's last entry is released now. The release entry goes into the active
      // half, and the freed halves are reused only once it is durable in both copies: a
      // recovery that finds them overwritten then always finds it too.
      const seq = this.appendRelease(through);
      for (const h of freed) this.halves[h].freeAfterSeq = seq;
    }
    this.noteBytes();
    return n;
  }

  private releasable(half: 0 | 1, cpSeq: number): boolean {
    const h = this.halves[half];
    return h.liveCount > 0 && h.maxSeq <= cpSeq && h.maxSeq <= this.mirror.doneSeq;
  }

  /**
   * Releases a half that is not the active one. Replies still inside their retention window
   * whose only durable copy is in it are first carried forward into the active half; if they
   * do not fit, the half stays (the log depth is bounded; the next CP tries again).
   */
  private releaseHalf(half: 0 | 1, now: number): number {
    const h = this.halves[half];
    const carry = this.sm.carryCandidates(h.firstSeq, h.maxSeq, now, this.limits.carryForwardMax);
    const payloads = carry.map((r) => ({ r, p: encodeStatePayload({ key: r.keyBytes, changeSeq: r.changeSeq, reply: r.reply ?? new Uint8Array(0) }) }));
    // Room for the carried replies and the release entry that follows them.
    const need = payloads.reduce((s, x) => s + paddedEntryBytes(x.p.length), 0) + paddedEntryBytes(RELEASE_PAYLOAD_BYTES);
    if (this.writePos + need > this.layout.halfBytes) return 0;
    let lastCarried = 0;
    for (const { r, p } of payloads) {
      lastCarried = this.appendEntry(EntryType.state, p);
      this.sm.noteStateSeq(r.keyBytes, lastCarried);
    }
    let n = 0;
    for (let s = h.firstSeq; s <= h.maxSeq; s++) if (this.live.get(s)?.half === half && this.forget(s)) n++;
    this.halves[half] = { ...emptyHalf(), freeAfterSeq: lastCarried };
    return n;
  }

  // ---- mirroring ------------------------------------------------------------------------

  /** Connects the transport; `connected` tells the partner to resynchronise its log to us. */
  attachTransport(t: MirrorTransport): void {
    this.transport = t;
    if (this.tickTimer === undefined) {
      this.tickTimer = this.opts.timers.after(Math.max(1, this.limits.mirrorAckTimeoutMs / 4), () => {
        this.tick();
        this.tickTimer?.refresh();
      });
    }
  }

  /** The channel to the partner is up: greet it, so it resynchronises our mirror of its log. */
  peerConnected(): void {
    this.mirror.greeted();
    this.transport?.send({ kind: 'hello', from: this.opts.bladeId, bootGeneration: this.header.bootGeneration, halfBytes: this.layout.halfBytes });
  }

  /** The channel to the partner is gone: continue on the local copy, report degraded. */
  peerDisconnected(): void {
    this.mirror.partnerDown();
    this.flushMirror();
  }

  /** Handles a message from the partner (about our log, or about its log in our mirror). */
  onPeerMessage(msg: MirrorMessage): void {
    if (this.closed) return;
    if (msg.kind === 'hello') this.peerHalfMismatch = msg.halfBytes !== this.layout.halfBytes;
    if (msg.kind === 'hello' && msg.halfBytes !== this.layout.halfBytes) {
      // Different NVRAM sizes cannot mirror position for position: stay degraded (HA-8).
      this.mirror.partnerDown(`partner NVRAM half is ${msg.halfBytes} B, ours ${this.layout.halfBytes} B`);
      this.flushMirror();
      return;
    }
    const partner = partnerOf(this.opts.bladeId);
    if (msg.kind === 'reset' || msg.kind === 'entry') {
      if (msg.origin === partner) this.onReceiverActions(this.receiver.onMessage(msg));
      // The partner's log listens (its reset answers our greeting): restart our resync if it
      // may have missed it (MirrorOrigin.partnerListening). Not across an NVRAM size mismatch.
      if (msg.kind === 'reset' && msg.origin === partner && !this.peerHalfMismatch) {
        this.mirror.partnerListening(this.opts.clock.nowMs(), () => this.liveItems());
        this.flushMirror();
      }
      return;
    }
    if (msg.kind === 'fetch') {
      // The partner is recovering its own log and asks for our copy of it.
      if (msg.origin !== partner) return;
      const copy = this.recoverPartnerMirror().records;
      for (const r of copy) this.transport?.send({ kind: 'copy', origin: partner, position: r.position, bytes: r.bytes });
      this.transport?.send({ kind: 'copy-done', origin: partner, count: copy.length });
      return;
    }
    if (msg.kind === 'copy' || msg.kind === 'copy-done') return;
    this.mirror.onMessage(msg, this.opts.clock.nowMs(), () => this.liveItems());
    this.flushMirror();
  }

  /** Drives mirror timeouts; the driver calls it from its own timer after `attachTransport`. */
  tick(): void {
    if (this.closed) return;
    this.mirror.tick(this.opts.clock.nowMs(), () => this.liveItems());
    this.flushMirror();
  }

  private liveItems(): MirrorItem[] {
    return [...this.live.values()].sort((a, b) => a.seq - b.seq).map(({ seq, position, length }) => ({ seq, position, bytes: this.nvram.read(this.layout.localOffset + position, length) }));
  }

  private flushMirror(): void {
    for (const m of this.mirror.takeOutbox()) this.transport?.send(m);
    for (const c of this.mirror.takeStateChanges()) {
      if (c.state === 'degraded' && this.opts.announceDegraded !== undefined) this.announce(c.reason);
      for (const fn of this.listeners.mirror) fn(c);
    }
    this.wake();
  }

  private announce(reason: string): void {
    this.waiverAllowed = false;
    const epoch = ++this.announceEpoch;
    const done = (): void => {
      if (epoch !== this.announceEpoch) return;
      this.waiverAllowed = true;
      this.wake();
    };
    (this.opts.announceDegraded as (r: string) => Promise<void>)(reason).then(done, () => {
      // Not announced: keep waiting for the partner's acknowledgements (or a later degradation).
    });
  }

  private onReceiverActions(actions: ReturnType<MirrorReceiver['onMessage']>): void {
    for (const a of actions) {
      if (a.kind === 'wipe') {
        this.nvram.write(this.layout.mirrorOffset, new Uint8Array(2 * this.layout.halfBytes));
      } else if (a.kind === 'write') {
        this.nvram.write(this.layout.mirrorOffset + a.position, a.bytes);
      } else if (a.kind === 'send') {
        this.transport?.send(a.msg);
      } else {
        this.pendingAcks.push(a.msg);
        this.scheduleReceiverPersist();
      }
    }
  }

  /** Coalesces the persists of entries that arrived together into one fence and one ack. */
  private scheduleReceiverPersist(): void {
    if (this.receiverPersistScheduled) return;
    this.receiverPersistScheduled = true;
    // In simulation, sometimes a partner too slow for the ack timeout: degrade, then resync.
    const defer = buggify('nvlog.receiver.slow-ack', 0.01) ? (fn: () => void) => void this.opts.timers.after(this.limits.mirrorAckTimeoutMs * 1.5, fn) : queueMicrotask;
    defer(() => {
      this.receiverPersistScheduled = false;
      const acks = this.pendingAcks;
      this.pendingAcks = [];
      void this.nvram.persist(this.layout.mirrorOffset, 2 * this.layout.halfBytes).then(
        () => {
          if (this.closed) return;
          const last = acks[acks.length - 1];
          // Acks are cumulative; an epoch change inside the batch sends the newest epoch's last.
          if (last !== undefined) {
            for (const a of acks) if (a.epoch !== last.epoch) this.transport?.send(a);
            this.transport?.send(last);
          }
        },
        () => undefined,
      );
    });
  }

  /** The partner's log as held in our mirror region (for takeover replay, HA-7). */
  recoverPartnerMirror(): RecoveredLog {
    return recoverRegion(this.partnerCopyBytes(), this.layout.halfBytes, partnerOf(this.opts.bladeId));
  }

  /**
   * After a takeover (HA-7): records in our mirror of the partner's log the outcomes of its
   * changes that our replay applied (`continueLog`), so that the partner learns them with the
   * copy it fetches when it boots after the giveback. Returns how many fitted.
   */
  async continuePartnerLog(outcomes: ReadonlyArray<{ key: Uint8Array; changeSeq: number; reply: Uint8Array }>): Promise<number> {
    if (this.closed || outcomes.length === 0) return 0;
    const items = continueLog(this.recoverPartnerMirror(), outcomes);
    for (const it of items) this.nvram.write(this.layout.mirrorOffset + it.position, it.bytes);
    if (items.length > 0) await this.nvram.persist(this.layout.mirrorOffset, 2 * this.layout.halfBytes);
    return items.length;
  }

  /** The raw mirror region, to hand to a partner that recovers its own log after a reboot. */
  partnerCopyBytes(): Uint8Array {
    return this.nvram.read(this.layout.mirrorOffset, 2 * this.layout.halfBytes);
  }

  // ---- battery and power ----------------------------------------------------------------

  /**
   * Records the battery state in the header and switches write-through on when it is not
   * good (NV-7): `AppendResult.writeThrough` then tells callers to commit before answering.
   */
  async setBattery(state: BatteryState): Promise<void> {
    if (state === this.batteryValue) return;
    this.batteryValue = state;
    this.header = { ...this.header, battery: state };
    const wt = state === 'low' || state === 'failed';
    if (wt !== this.writeThroughValue) {
      this.writeThroughValue = wt;
      for (const fn of this.listeners.writeThrough) fn(wt);
    }
    await this.writeHeader();
  }

  /**
   * Power is failing (ST-5): stop accepting changes, wait until every entry written is
   * persisted, and record a clean seal naming the last entry. Idempotent.
   */
  powerFail(): Promise<void> {
    if (this.sealPromise !== undefined) return this.sealPromise;
    this.accepting = false;
    this.sealPromise = (async () => {
      while (this.inFlightPersists.size > 0) await Promise.allSettled([...this.inFlightPersists]);
      const sealedSeq = this.localDurableSeq;
      this.header = { ...this.header, sealed: true, sealedSeq };
      await this.writeHeader();
      for (const fn of this.listeners.sealed) fn(sealedSeq);
    })();
    return this.sealPromise;
  }

  // ---- HA state area ----------------------------------------------------------------------

  /** The HA status protocol's persistent state (its generation number etc.), or undefined. */
  readHaState(): Uint8Array | undefined {
    const a = decodeStateSlot(this.nvram.read(this.layout.stateAreaOffset, STATE_SLOT_BYTES));
    const b = decodeStateSlot(this.nvram.read(this.layout.stateAreaOffset + STATE_SLOT_BYTES, STATE_SLOT_BYTES));
    const best = a === undefined ? b : b === undefined ? a : a.counter >= b.counter ? a : b;
    if (best !== undefined) this.haCounter = Math.max(this.haCounter, best.counter);
    return best?.payload;
  }

  /** Stores the HA state durably: alternate slots, so a torn write keeps the previous value. */
  async writeHaState(payload: Uint8Array): Promise<void> {
    if (this.haCounter === 0) this.readHaState();
    this.haCounter++;
    const slot = this.haCounter % 2;
    const off = this.layout.stateAreaOffset + slot * STATE_SLOT_BYTES;
    this.nvram.write(off, encodeStateSlot(this.haCounter, payload));
    await this.nvram.persist(off, STATE_SLOT_BYTES);
  }

  // ---- misc -----------------------------------------------------------------------------

  metrics(): NvLogMetrics {
    const sm = this.sm.metrics();
    return {
      lastSeq: this.lastSeq,
      localDurableSeq: this.localDurableSeq,
      mirrorDoneSeq: this.mirror.doneSeq,
      mirrorState: this.mirror.state,
      mirrorInFlightHighWater: this.mirror.inFlightHighWater,
      logBytesUsed: this.bytesUsed(),
      logBytesHighWater: this.counters.logBytesHighWater,
      smRequests: sm.requests,
      smRequestsHighWater: sm.requestsHighWater,
      smEvictions: sm.evictions,
      appends: this.counters.appends,
      halfSwitches: this.counters.halfSwitches,
      fullRejections: this.counters.fullRejections,
      writeThrough: this.writeThroughValue,
    };
  }

  /** Stops timers and refuses further calls; pending appends never resolve (like a power cut). */
  close(): void {
    this.closed = true;
    this.tickTimer?.cancel();
    this.tickTimer = undefined;
  }

  private bytesUsed(): number {
    return this.liveBytes;
  }

  private forget(seq: number): boolean {
    const it = this.live.get(seq);
    if (it === undefined) return false;
    this.live.delete(seq);
    this.liveBytes -= it.length;
    return true;
  }

  private noteBytes(): void {
    this.counters.logBytesHighWater = Math.max(this.counters.logBytesHighWater, this.bytesUsed());
  }

  private async writeHeader(): Promise<void> {
    this.header = { ...this.header, writeCounter: this.header.writeCounter + 1 };
    const off = this.layout.headerOffsets[this.headerCopyNext];
    this.headerCopyNext = this.headerCopyNext === 0 ? 1 : 0;
    this.nvram.write(off, encodeHeader(this.header));
    await this.nvram.persist(off, HEADER_COPY_BYTES);
  }
}

function emptyHalf(): HalfState {
  return { liveCount: 0, maxSeq: 0, firstSeq: 0, freeAfterSeq: 0, changes: 0 };
}

export function partnerOf(b: BladeId): BladeId {
  return b === 0 ? 1 : 0;
}

function bytesSame(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Zeros compared a chunk at a time by `lastNonZeroEnd`. */
const zeroChunk = new Uint8Array(64 * 1024);

/**
 * The end of the last non-zero byte of `bytes` in [from, to), or `from` when all are zero: a
 * chunk at a time by comparison with zeros (native memcmp), then byte by byte within the
 * chunk that has one. A fresh 1 GiB NVRAM's active half is 256 MiB of zeros to get through.
 */
export function lastNonZeroEnd(bytes: Uint8Array, from: number, to: number): number {
  let end = to;
  while (end > from) {
    const start = Math.max(from, end - zeroChunk.length);
    const chunk = bytes.subarray(start, end);
    if (Buffer.compare(chunk, zeroChunk.subarray(0, chunk.length)) !== 0) {
      while (end > start && bytes[end - 1] === 0) end--;
      return end;
    }
    end = start;
  }
  return from;
}
