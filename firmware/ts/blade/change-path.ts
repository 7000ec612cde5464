// The request path of a change (DESIGN "How a request flows"): descriptor → append to the
// local NVRAM log → mirrored to the partner → both durable → apply to the file system →
// reply. Also the duplicate-request cache kept in the state-machine log (SM-2) and the
// applier that replay uses after a reboot or a takeover — one code path for both (NV-5).
import { dataView, utf8Decode, utf8Encode } from '../core/bytes.ts';
import { DecodeError, isTwinbladeError } from '../core/errors.ts';
import { decodeChangeOp, encodeChangeOp } from '../fsapi/codec.ts';
import { FsError, FsStatus, type ChangeOp, type ChangeResult } from '../fsapi/ops.ts';
import type { ChangeLog } from '../nfs/nfs3-service.ts';
import { encodeRequestKey, type ChangeOutcome, type DrcEntry, type DuplicateRequestCache, type RequestKey } from '../nfs/core/drc.ts';
import type { NvLog } from '../nvlog/nvlog.ts';
import type { Applier, ReplayChange } from '../nvlog/core/replay.ts';
import { decodeChangePayload, EntryType, type LogRecord } from '../nvlog/core/entry.ts';
import type { CowFs } from '../storage/fs/cowfs.ts';

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

export function decodeEnvelope(b: Uint8Array): { fsid: bigint; op: ChangeOp } {
  if (b.length < 8) throw new DecodeError('ERR_ENVELOPE_SHORT', `change envelope of ${b.length} bytes`);
  return { fsid: dataView(b).getBigUint64(0, true), op: decodeChangeOp(b.subarray(8)) };
}

/**
 * What the state-machine log keeps as a request's reply: either the encoded RPC reply body
 * that was sent (tag 1), or — for a change applied by replay, whose reply was never encoded
 * here — its outcome (tag 2), from which the NFS service encodes byte for byte the reply the
 * original would have had.
 */
const replyTag = { rpcReply: 1, outcome: 2 } as const;

function outcomeToJson(o: ChangeOutcome): string {
  return JSON.stringify(o);
}

export function encodeStoredOutcome(o: ChangeOutcome): Uint8Array {
  const json = utf8Encode(outcomeToJson(o));
  const out = new Uint8Array(1 + json.length);
  out[0] = replyTag.outcome;
  out.set(json, 1);
  return out;
}

export function encodeStoredReply(reply: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + reply.length);
  out[0] = replyTag.rpcReply;
  out.set(reply, 1);
  return out;
}

export function decodeStored(b: Uint8Array): DrcEntry | undefined {
  if (b.length < 1) return undefined;
  if (b[0] === replyTag.rpcReply) return { state: 'replied', reply: b.subarray(1) };
  if (b[0] === replyTag.outcome) {
    try {
      return { state: 'applied', outcome: JSON.parse(utf8Decode(b.subarray(1))) as ChangeOutcome };
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
  /** Bytes appended into the active log half, as far as this log knows (see cpStartHalfFraction). */
  private bytesSinceCpStart = 0;
  /** Changes appended since the last consistency point this log started. */
  private changesSinceCpStart = 0;
  /** The consistency point this log started, while it runs. */
  private cpRunning: Promise<void> | undefined;

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

  async commit(change: ChangeOp, key: RequestKey, fsid: bigint): Promise<ChangeResult> {
    const fs = this.filesystems.get(fsid);
    if (fs === undefined) throw new FsError(FsStatus.STALE, `no file system ${fsid} on this blade`);
    const envelope = encodeEnvelope(fsid, change);
    for (let attempt = 0; ; attempt++) {
      // No await between this check and the append inside commitOnce: concurrent commits
      // cannot all pass the check before any of them is counted.
      // Bounded: if consistency points cannot free the other half, the append goes ahead
      // and meets the log-full path below.
      for (let held = 0; held < logFullRetryCountMax && !this.admissible(envelope.length); held++) {
        await this.cpRunning;
        this.startCpIfDue();
      }
      try {
        return await this.commitOnce(fs, change, key, envelope);
      } catch (e) {
        if (!(e instanceof LogFull) || attempt >= logFullRetryCountMax) throw e instanceof LogFull ? e.cause : e;
        await this.hooks.makeSpace();
      }
    }
  }

  private commitOnce(fs: CowFs, change: ChangeOp, key: RequestKey, envelope: Uint8Array): Promise<ChangeResult> {
    // The entry is written synchronously inside appendChange, so the order of these calls is
    // the log order, and the apply chain below follows it. A refused append wrote nothing.
    const appended = this.log.appendChange(encodeRequestKey(key), envelope).catch((e: unknown) => {
      throw isTwinbladeError(e) && e.kind === 'busy' ? new LogFull(e) : e;
    });
    this.bytesSinceCpStart += envelope.length;
    this.changesSinceCpStart++;
    this.startCpIfDue();
    const applied = this.applyTail.then(async () => {
      const { seq, writeThrough } = await appended;
      let result: ChangeResult;
      try {
        result = await fs.applyLogged(this.origin, BigInt(seq), change);
      } finally {
        this.lastAppliedSeq = seq;
      }
      if (writeThrough) await this.hooks.writeThrough(fs);
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
    if (this.cpRunning === undefined) return true;
    if (this.changesSinceCpStart + 1 > this.log.limits.smRequestsMax * cpAdmitHalfFraction) return false;
    return this.bytesSinceCpStart === 0 || this.bytesSinceCpStart + bytes <= this.log.layout.halfBytes * cpAdmitHalfFraction;
  }

  private startCpIfDue(): void {
    if (this.cpRunning !== undefined) return;
    const due = this.bytesSinceCpStart >= this.log.layout.halfBytes * cpStartHalfFraction || this.changesSinceCpStart >= this.log.limits.smRequestsMax * cpStartHalfFraction;
    if (!due) return;
    this.changesSinceCpStart = 0;
    // makeSpace may join a CP already running (taken on the timer or for a full log); the
    // next append past the mark after it starts another. A CP switches halves synchronously
    // as it starts (NvLog.beginCp), so the switch counter tells whether appends now go to an
    // empty half. (metrics() walks the state-machine table: once per CP, not per append.)
    const switchesBefore = this.log.metrics().halfSwitches;
    const running: Promise<void> = this.hooks
      .makeSpace()
      .catch(() => undefined)
      .finally(() => {
        if (this.cpRunning === running) this.cpRunning = undefined;
      });
    this.cpRunning = running;
    if (this.log.metrics().halfSwitches !== switchesBefore) this.bytesSinceCpStart = 0;
  }
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
  constructor(private readonly log: NvLog, private readonly onError: (e: unknown) => void = () => undefined) {}

  begin(key: RequestKey): DrcEntry | undefined {
    const k = encodeRequestKey(key);
    let adm;
    try {
      adm = this.log.sm.receive(k);
    } catch {
      // The state-machine log is at its bound (SM-3): drop the call; the client retransmits.
      return { state: 'in-progress' };
    }
    if (adm.kind === 'new') return undefined;
    if (adm.kind === 'in-progress') return { state: 'in-progress' };
    const stored = adm.record.reply === undefined ? undefined : decodeStored(adm.record.reply);
    return stored ?? { state: 'in-progress' };
  }

  complete(key: RequestKey, reply: Uint8Array): void {
    const k = encodeRequestKey(key);
    const rec = this.log.sm.get(k);
    this.log.appendReply(k, rec?.changeSeq ?? 0, encodeStoredReply(reply)).catch((e: unknown) => this.onError(e));
  }

  abandon(key: RequestKey): void {
    this.log.sm.abandon(encodeRequestKey(key));
  }
}
