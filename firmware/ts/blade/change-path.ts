// The request path of a change (DESIGN "How a request flows"): descriptor → append to the
// local NVRAM log → mirrored to the partner → both durable → apply to the file system →
// reply. Also the duplicate-request cache kept in the state-machine log (SM-2) and the
// applier that replay uses after a reboot or a takeover — one code path for both (NV-5).
import { dataView } from '../core/bytes.ts';
import { DecodeError, isTwinbladeError } from '../core/errors.ts';
import { changeOutcomeBytes, decodeChangeOp, decodeChangeOutcome, encodeChangeOp, encodeChangeOutcomeInto } from '../fsapi/codec.ts';
import { slabBytes } from '../nfs/core/xdr.ts';
import { FsError, FsStatus, fsLimits, type ChangeOp, type ChangeResult } from '../fsapi/ops.ts';
import type { ChangeLog } from '../nfs/nfs3-service.ts';
import { encodeRequestKey, type ChangeOutcome, type DrcEntry, type DuplicateRequestCache, type RequestKey } from '../nfs/core/drc.ts';
import type { NvLog } from '../nvlog/nvlog.ts';
import type { Applier, ReplayChange } from '../nvlog/core/replay.ts';
import { decodeChangePayload, EntryType, type LogRecord } from '../nvlog/core/entry.ts';
import type { CowFs, CpInfo } from '../storage/fs/cowfs.ts';
import { assert } from '../core/assert.ts';

/**
 * The change envelope stored in a log entry: the fsid of the file system the change is for
 * (a blade that has taken over logs changes for two file systems in its own log), then the
 * encoded ChangeOp (fsapi/codec.ts).
 */
export function encodeEnvelope(fsid: bigint, op: ChangeOp): Uint8Array {
  const body = encodeChangeOp(op);
  const out = new Uint8Array(8 + body.length);
  dataView(out).setBigUint64(0, fsid, true);
  out.set(body, 8);
  return out;
}

/**
 * The change envelope as pieces, joined the same bytes as `encodeEnvelope`, for
 * `NvLog.appendChange`, which copies each piece once into the log entry: the fsid, the
 * encoded descriptor, and for a WRITE its data by reference (the view of the RPC record the
 * NFS service decoded), not copied into the descriptor first. Relies on the change codec
 * ending a write with its count and data (test/nfs/write-path.test.ts checks the bytes).
 */
export function encodeEnvelopeParts(fsid: bigint, op: ChangeOp): Uint8Array[] {
  const head = envelopeHead(fsid);
  // Out-of-range writes take the codec's own path, which refuses them.
  if (op.op !== 'write' || op.data.length === 0 || op.data.length > fsLimits.writeBytesMax || op.offset + op.data.length > fsLimits.fileSizeBytesMax) {
    return [head, encodeChangeOp(op)];
  }
  const body = encodeChangeOp({ ...op, data: op.data.subarray(0, 0) });
  // The count (u32, little-endian) by hand: a DataView over this small array would first
  // move it out of the heap.
  const n = op.data.length;
  const at = body.length - 4;
  body[at] = n & 0xff;
  body[at + 1] = (n >>> 8) & 0xff;
  body[at + 2] = (n >>> 16) & 0xff;
  body[at + 3] = n >>> 24;
  return [head, body, op.data];
}

/**
 * The 8-byte fsid that starts an envelope, one per file system: the log copies it into each
 * entry and nothing writes to it (a fresh small array and a DataView per change showed in the
 * profile of 4 KiB FILE_SYNC writes). A blade serves at most its own and its partner's.
 */
const envelopeHeads = new Map<bigint, Uint8Array>();

function envelopeHead(fsid: bigint): Uint8Array {
  let head = envelopeHeads.get(fsid);
  if (head === undefined) {
    head = new Uint8Array(new ArrayBuffer(8));
    dataView(head).setBigUint64(0, fsid, true);
    if (envelopeHeads.size >= 64) envelopeHeads.clear();
    envelopeHeads.set(fsid, head);
  }
  return head;
}

export function decodeEnvelope(b: Uint8Array): { fsid: bigint; op: ChangeOp } {
  if (b.length < 8) throw new DecodeError('ERR_ENVELOPE_SHORT', `change envelope of ${b.length} bytes`);
  return { fsid: dataView(b).getBigUint64(0, true), op: decodeChangeOp(b.subarray(8)) };
}

/**
 * What the state-machine log keeps as a request's reply: either the encoded RPC reply body
 * that was sent (tag 1), or the change's outcome (tag 3, fsapi/codec.ts binary outcome),
 * written as soon as the change is applied and used for a change applied by replay, whose
 * reply was never encoded here; from it the NFS service encodes byte for byte the reply the
 * original would have had. Tag 2 (the outcome as JSON) is retired: never written, refused.
 */
const replyTag = { rpcReply: 1, outcome: 3 } as const;

// Stored replies and outcomes live as long as their retention (30 s): one small buffer each
// would be an ArrayBuffer per request for the garbage collector to track and sweep, so they
// are carved out of shared slabs.

export function encodeStoredOutcome(o: ChangeOutcome): Uint8Array {
  const out = slabBytes(1 + changeOutcomeBytes(o));
  out[0] = replyTag.outcome;
  encodeChangeOutcomeInto(o, out, 1);
  return out;
}

export function encodeStoredReply(reply: Uint8Array): Uint8Array {
  const out = slabBytes(1 + reply.length);
  out[0] = replyTag.rpcReply;
  out.set(reply, 1);
  return out;
}

/** The stored reply or outcome; undefined for anything malformed (the retransmission is then dropped). */
export function decodeStored(b: Uint8Array): DrcEntry | undefined {
  if (b.length < 1) return undefined;
  if (b[0] === replyTag.rpcReply) return { state: 'replied', reply: b.subarray(1) };
  if (b[0] === replyTag.outcome) {
    try {
      return { state: 'applied', outcome: decodeChangeOutcome(b.subarray(1)) };
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function outcomeOf(e: unknown): ChangeOutcome {
  if (e instanceof FsError) {
    const o: ChangeOutcome = { ok: false, status: e.status };
    if (e.dirPre !== undefined) o.dirPre = e.dirPre;
    if (e.dirPost !== undefined) o.dirPost = e.dirPost;
    return o;
  }
  throw e;
}

/** The file systems a blade serves, by fsid (its own, and its partner's after a takeover). */
export class FileSystems {
  private readonly byFsid = new Map<bigint, CowFs>();
  add(fs: CowFs): void {
    this.byFsid.set(fs.fsid, fs);
  }
  remove(fsid: bigint): void {
    this.byFsid.delete(fsid);
  }
  get(fsid: bigint): CowFs | undefined {
    return this.byFsid.get(fsid);
  }
  all(): CowFs[] {
    return [...this.byFsid.values()];
  }
}

/**
 * Applies logged changes during replay: each entry goes to the file system its envelope
 * names, unless that file system's consistency point already contains it. Returns the
 * stored outcome that answers a retransmission of the request.
 */
export class ReplayApplier implements Applier {
  applied = 0;
  skipped = 0;
  constructor(private readonly filesystems: FileSystems) {}

  async applyChange(change: ReplayChange): Promise<Uint8Array | undefined> {
    const { fsid, op } = decodeEnvelope(change.descriptor);
    const fs = this.filesystems.get(fsid);
    if (fs === undefined || BigInt(change.seq) <= fs.appliedSeq(change.origin)) {
      // Either a file system this blade does not serve (its owner replays it), or a change
      // its consistency point already holds: applying it again would apply it twice.
      this.skipped++;
      return undefined;
    }
    let outcome: ChangeOutcome;
    try {
      outcome = { ok: true, result: await fs.applyLogged(change.origin, BigInt(change.seq), op) };
    } catch (e) {
      outcome = outcomeOf(e);
    }
    this.applied++;
    return encodeStoredOutcome(outcome);
  }

  /** Applies one recovered log record if it is a change (state entries carry replies only). */
  async applyChangeRecord(r: LogRecord, origin: 0 | 1): Promise<void> {
    if (r.type !== EntryType.change) return;
    const p = decodeChangePayload(r.payload);
    await this.applyChange({ origin, seq: r.seq, key: p.key, descriptor: p.descriptor });
  }
}

export interface NvChangeLogHooks {
  /** The log is full: take a consistency point; resolves once it has released space. */
  makeSpace(): Promise<void>;
  /** The battery is not good: commit this file system to disk before answering (NV-7). */
  writeThrough(fs: CowFs): Promise<void>;
}

/** How many times a change waits for a consistency point to free log space before giving up. */
const logFullRetryCountMax = 8;

/**
 * When consistency points start, in log bytes appended since the last one this log started,
 * as fractions of one log half (the filer's "CP when half the NVRAM is used"). Waiting for
 * the log to be full livelocks: a CP releases the other half only after carrying its
 * still-retained replies (SM-3) into the active half, and a full active half has no room for
 * them, so every request then waited for reply retention (30 s) to pass (measured: 4 KiB
 * FILE_SYNC writes at 214 ops/s with 6,108 NFS3ERR_JUKEBOX in 93 s; 1 MiB writes after such a
 * burst failed 124 of 128). So: a CP starts at `cpStartHalfFraction` (it switches appends to
 * the other half when that one is free), and while it runs, appends beyond
 * `cpAdmitHalfFraction` of the active half wait for it, which keeps the rest of each half free
 * for the replies the next release carries into it. A CP that could not switch (the other
 * half still held changes its predecessor did not contain) leaves the count running, so the
 * active half is held to the same share. The same two marks apply to the number of changes
 * against `smRequestsMax`: the state-machine log can make room for a new request only by
 * evicting a finished one that a consistency point contains, so a stream of small changes
 * (creates) with no CP for 10 s filled it, and the NFS service then dropped calls unanswered.
 * The changes the running CP holds count too (they give way only once it commits): counting
 * only those since it started let 4 KiB FILE_SYNC writes at ~25,000/s put half the table in
 * the CP and three quarters after it, and the table overflowed whenever a CP took longer
 * than ~40 ms (the bench's client then waited 30 s for replies that never came).
 */
const cpStartHalfFraction = 0.5;
const cpAdmitHalfFraction = 0.75;

/**
 * The NFS service's ChangeLog port over the NVRAM log and the file systems. Appends are
 * pipelined (many changes in flight, mirrored in a window); applies run strictly in log
 * order, each after its own entry is durable on both blades. A full log holds the request
 * until a consistency point frees space (as a filer stalls clients behind a CP), rather than
 * failing it: many clients treat NFS3ERR_JUKEBOX as an error.
 */
export class NvChangeLog implements ChangeLog {
  private applyTail: Promise<unknown> = Promise.resolve();
  /** The last entry applied (applies run in log order, so every earlier one is applied too). */
  lastAppliedSeq = 0;
  /** The last entry applied to each file system (the release invariant is checked with it). */
  private readonly appliedByFs = new Map<bigint, number>();
  /** Bytes appended into the active log half, as far as this log knows (see cpStartHalfFraction). */
  private bytesSinceCpStart = 0;
  /** The log's half-switch count when `bytesSinceCpStart` was last reset (see `noteHalfSwitch`). */
  private halfSwitchesSeen = 0;
  /** Changes appended since the last consistency point this log started. */
  private changesSinceCpStart = 0;
  /**
   * Changes appended before the running consistency point started (0 when none runs): it
   * holds them, and until it commits none of their requests can give way in the
   * state-machine log, so they count against `smRequestsMax` with the ones since.
   */
  private changesInRunningCp = 0;
  /** The consistency point this log started, while it runs. */
  private cpRunning: Promise<void> | undefined;
  /** Set while a consistency point holds applies back (`holdApplies`); applies wait for it. */
  private applyGate: Promise<void> | undefined;
  /** Resolves when the apply under way has recorded its outcome (undefined: none under way). */
  private applying: Promise<void> | undefined;

  constructor(
    private readonly log: NvLog,
    private readonly filesystems: FileSystems,
    private readonly origin: 0 | 1,
    private readonly hooks: NvChangeLogHooks,
  ) {}

  /** Resolves once every change appended so far has been applied (or has failed). */
  async drained(): Promise<void> {
    for (;;) {
      const tail = this.applyTail;
      await tail;
      if (tail === this.applyTail) return;
    }
  }

  /**
   * For a consistency point about to start: holds new applies back, waits for the apply under
   * way to record its outcome, and waits until every entry logged so far (each applied
   * change's outcome among them) is durable in both copies. The caller starts its CPs (which
   * freeze the file systems at once) and then calls the returned function to let applies run
   * again. So a CP never commits a change whose outcome the log could still lose: a change a
   * CP holds is not replayed, and a retransmission of its request is answered from that
   * outcome (SM-2), in write-through mode (NV-7) as in normal mode.
   */
  async holdApplies(): Promise<() => void> {
    while (this.applyGate !== undefined) await this.applyGate;
    let open!: () => void;
    this.applyGate = new Promise<void>((resolve) => (open = resolve));
    const gate = this.applyGate;
    const resume = (): void => {
      if (this.applyGate === gate) this.applyGate = undefined;
      open();
    };
    try {
      await this.applying;
      await this.log.durable(this.log.lastSeq);
    } catch (e) {
      resume();
      throw e;
    }
    return resume;
  }

  /** The last entry applied to each file system so far. */
  appliedSnapshot(): Map<bigint, number> {
    return new Map(this.appliedByFs);
  }

  /**
   * A file system leaves this blade (giveback) after a CP holding `committedSeq` of this log:
   * every change applied to it must be in that CP, or a later release could drop it.
   */
  forgetFs(fsid: bigint, committedSeq: number): void {
    const applied = this.appliedByFs.get(fsid) ?? 0;
    assert(committedSeq >= applied, `file system ${fsid} leaves with changes through ${applied} applied but its CP holds ${committedSeq}`);
    this.appliedByFs.delete(fsid);
  }

  async commit(change: ChangeOp, key: RequestKey, fsid: bigint): Promise<ChangeResult> {
    const fs = this.filesystems.get(fsid);
    if (fs === undefined) throw new FsError(FsStatus.STALE, `no file system ${fsid} on this blade`);
    const envelope = encodeEnvelopeParts(fsid, change);
    let envelopeBytes = 0;
    for (const p of envelope) envelopeBytes += p.length;
    for (let attempt = 0; ; attempt++) {
      // No await between this check and the append inside commitOnce: concurrent commits
      // cannot all pass the check before any of them is counted.
      // Bounded: if consistency points cannot free the other half, the append goes ahead
      // and meets the log-full path below.
      for (let held = 0; held < logFullRetryCountMax && !this.admissible(envelopeBytes); held++) {
        await this.cpRunning;
        this.startCpIfDue();
      }
      try {
        return await this.commitOnce(fs, change, key, envelope, envelopeBytes);
      } catch (e) {
        if (!(e instanceof LogFull) || attempt >= logFullRetryCountMax) throw e instanceof LogFull ? e.cause : e;
        await this.hooks.makeSpace();
      }
    }
  }

  private commitOnce(fs: CowFs, change: ChangeOp, key: RequestKey, envelope: readonly Uint8Array[], envelopeBytes: number): Promise<ChangeResult> {
    // The entry is written synchronously inside appendChange, so the order of these calls is
    // the log order, and the apply chain below follows it. A refused append wrote nothing.
    this.noteHalfSwitch();
    const appended = this.log.appendChange(encodeRequestKey(key), envelope).catch((e: unknown) => {
      throw isTwinbladeError(e) && e.kind === 'busy' ? new LogFull(e) : e;
    });
    this.noteHalfSwitch();
    this.bytesSinceCpStart += envelopeBytes;
    this.changesSinceCpStart++;
    this.startCpIfDue();
    const applied = this.applyTail.then(async () => {
      const { seq, writeThrough } = await appended;
      while (this.applyGate !== undefined) await this.applyGate;
      let done!: () => void;
      this.applying = new Promise<void>((resolve) => (done = resolve));
      let result: ChangeResult | undefined;
      let failure: unknown;
      try {
        let outcome: ChangeOutcome;
        try {
          result = await fs.applyLogged(this.origin, BigInt(seq), change);
          outcome = { ok: true, result };
        } catch (e) {
          failure = e;
          outcome = outcomeOf(e);
        } finally {
          this.lastAppliedSeq = seq;
          this.appliedByFs.set(fs.fsid, seq);
        }
        // The outcome goes into the log before anything can commit this change (see
        // holdApplies): a retransmission after a fault is answered with it. A refused append
        // (closed by a power cut; a full log) leaves it in the state-machine table, and the
        // next release carries it into the log.
        try {
          this.log.recordOutcome(encodeRequestKey(key), seq, encodeStoredOutcome(outcome));
        } catch {
          // See above.
        }
      } finally {
        this.applying = undefined;
        done();
      }
      if (writeThrough) await this.hooks.writeThrough(fs);
      if (result === undefined) throw failure;
      return result;
    });
    this.applyTail = applied.catch(() => undefined);
    return applied;
  }

  /**
   * Whether an append of `bytes` may go ahead now: not while a consistency point runs and the
   * active half already took its share since that CP started. The first append after a CP
   * starts is always admitted, so an entry larger than the share still goes through.
   */
  private admissible(bytes: number): boolean {
    this.noteHalfSwitch();
    if (this.cpRunning === undefined) return true;
    if (this.changesInRunningCp + this.changesSinceCpStart + 1 > this.log.limits.smRequestsMax * cpAdmitHalfFraction) return false;
    return this.bytesSinceCpStart === 0 || this.bytesSinceCpStart + bytes <= this.log.layout.halfBytes * cpAdmitHalfFraction;
  }

  /**
   * Appends went to the other (empty) half since the count was last reset: start counting
   * again. A CP switches halves only once its applies are held (takeConsistencyPoint awaits
   * first), not synchronously inside `makeSpace`; a count that missed the switch stays past
   * the start mark, and every append then started another CP as soon as the last one ended
   * (measured on the single-blade daemon: 4 KiB FILE_SYNC writes 7,355 -> 536 ops/s).
   */
  private noteHalfSwitch(): void {
    const switches = this.log.halfSwitches;
    if (switches === this.halfSwitchesSeen) return;
    this.halfSwitchesSeen = switches;
    this.bytesSinceCpStart = 0;
  }

  private startCpIfDue(): void {
    this.noteHalfSwitch();
    if (this.cpRunning !== undefined) return;
    const due = this.bytesSinceCpStart >= this.log.layout.halfBytes * cpStartHalfFraction || this.changesSinceCpStart >= this.log.limits.smRequestsMax * cpStartHalfFraction;
    if (!due) return;
    this.changesInRunningCp = this.changesSinceCpStart;
    this.changesSinceCpStart = 0;
    // makeSpace may join a CP already running (taken on the timer or for a full log); the
    // next append past the mark after it starts another. Whether and when the CP switches
    // halves (NvLog.beginCp) the half-switch counter tells (noteHalfSwitch).
    const running: Promise<void> = this.hooks
      .makeSpace()
      .catch(() => undefined)
      .finally(() => {
        if (this.cpRunning !== running) return;
        this.cpRunning = undefined;
        this.changesInRunningCp = 0;
      });
    this.cpRunning = running;
    this.noteHalfSwitch();
  }
}

/**
 * How far the log may be released once the CPs of every file system a blade serves have
 * committed (the decision pair.ts and the simulator share). `appliedAtFreeze` is the last
 * entry applied when the CPs froze (applies run in log order, so everything before it is in
 * them), or the log's last entry when no change was waiting to be applied; `committed` is each file system's CP sequence for this log. Entries at or before the
 * smallest of those are in every served file system's CP too (a blade replays its log
 * through its CP at boot without counting it in `appliedAtFreeze`). A file system that left
 * (giveback) was committed before it left (`NvChangeLog.forgetFs`). Asserts the release
 * invariant: every file system with changes applied at the freeze holds them in its CP.
 */
export function releasePointAfterCp(appliedAtFreeze: number, appliedByFs: ReadonlyMap<bigint, number>, committed: ReadonlyMap<bigint, number>): number {
  for (const [fsid, seq] of appliedByFs) {
    const c = committed.get(fsid);
    assert(c !== undefined && c >= seq, `release invariant: file system ${fsid} had changes through ${seq} applied at the freeze but its CP holds ${c ?? 'nothing'}`);
  }
  const lowest = committed.size === 0 ? 0 : Math.min(...committed.values());
  return Math.max(appliedAtFreeze, lowest);
}

/**
 * One consistency point of a blade (pair.ts and the simulator run this same sequence): hold
 * applies back until every applied change's outcome is durable in both copies, switch log
 * halves, freeze and commit every file system served, then release what they all hold.
 * Returns the CPs' results.
 */
export async function takeConsistencyPoint(log: NvLog, changeLog: NvChangeLog | undefined, filesystems: FileSystems, origin: 0 | 1): Promise<CpInfo[]> {
  const resume = changeLog === undefined ? () => undefined : await changeLog.holdApplies();
  let cps: Promise<CpInfo[]>;
  let appliedAtFreeze: number;
  let appliedByFs: Map<bigint, number>;
  const served = filesystems.all();
  try {
    log.beginCp();
    // With every change logged so far applied, the entries after the last one (outcomes,
    // replies, release entries) need no CP either: the CP then holds everything logged.
    const applied = changeLog?.lastAppliedSeq ?? 0;
    appliedAtFreeze = changeLog !== undefined && applied >= log.lastChangeSeq ? log.lastSeq : applied;
    appliedByFs = changeLog?.appliedSnapshot() ?? new Map<bigint, number>();
    for (const fsid of [...appliedByFs.keys()]) if (filesystems.get(fsid) === undefined) appliedByFs.delete(fsid);
    // Each takeCp queues its freeze at once: applies let through after this see a frozen CP.
    cps = Promise.all(served.map((fs) => fs.takeCp()));
  } finally {
    resume();
  }
  const infos = await cps;
  const committed = new Map<bigint, number>();
  served.forEach((fs, i) => committed.set(fs.fsid, Number(infos[i]?.appliedSeq.get(origin) ?? 0n)));
  log.release(releasePointAfterCp(appliedAtFreeze, appliedByFs, committed));
  return infos;
}

class LogFull extends Error {
  constructor(override readonly cause: unknown) {
    super('change log full');
  }
}

/**
 * The duplicate-request cache of the NFS service, kept in the state-machine log so that a
 * retransmission finds its original reply after a crash or a takeover (SM-2).
 */
export class NvDrc implements DuplicateRequestCache {
  /**
   * `makeSpace` takes a consistency point (or joins the one running): the requests it holds
   * can then give way in the state-machine log. Without it a call meeting a full table is
   * dropped (the client retransmits).
   */
  constructor(
    private readonly log: NvLog,
    private readonly onError: (e: unknown) => void = () => undefined,
    private readonly makeSpace?: () => Promise<void>,
  ) {}

  begin(key: RequestKey): DrcEntry | undefined {
    const k = encodeRequestKey(key);
    let adm;
    try {
      adm = this.log.sm.receive(k);
    } catch {
      // The state-machine log is at its bound (SM-3): only requests a consistency point
      // holds can give way, so the call waits for one.
      if (this.makeSpace === undefined) return { state: 'in-progress' };
      return { state: 'busy', retry: this.makeSpace().catch(() => undefined) };
    }
    if (adm.kind === 'new') return undefined;
    if (adm.kind === 'in-progress') return { state: 'in-progress' };
    const stored = adm.record.reply === undefined ? undefined : decodeStored(adm.record.reply);
    return stored ?? { state: 'in-progress' };
  }

  complete(key: RequestKey, reply: Uint8Array): void {
    const k = encodeRequestKey(key);
    const rec = this.log.sm.get(k);
    // A change's outcome is already in the log (NvChangeLog records it when applying): it
    // answers a retransmission as well as this reply would (the service encodes the same bytes
    // from it), without another entry. The table keeps the outcome, which in its binary form
    // is smaller than the reply (127 against ~150 bytes for a WRITE): no copy of the reply per
    // request to keep for the retention window, and less for a release to carry forward.
    if (rec !== undefined && rec.changeSeq > 0 && rec.stateSeq > 0) {
      this.log.sm.replied(k, this.log.nowMs());
      return;
    }
    this.log.appendReply(k, rec?.changeSeq ?? 0, encodeStoredReply(reply)).catch((e: unknown) => this.onError(e));
  }

  abandon(key: RequestKey): void {
    this.log.sm.abandon(encodeRequestKey(key));
  }
}
