// The state-machine log (SM-1..SM-3): the execution state of every in-flight request
// (received → logged → applied → replied) and, once replied, the reply that answers a
// retransmission. The durable part lives in the change log (a change entry is "logged", a
// state entry is "replied" with its reply); this table is rebuilt from it after a fault.
import { TwinbladeError } from '../../core/errors.ts';
import { EntryType, decodeChangePayload, decodeStatePayload, type LogRecord } from './entry.ts';
import { NvlogErrorCode, nvlogLimits } from './limits.ts';

export type RequestState = 'received' | 'logged' | 'applied' | 'replied';

export interface SmRecord {
  key: string;
  /** The key as the log stores it (`key` is these bytes as a string, one character each). */
  keyBytes: Uint8Array;
  state: RequestState;
  /** The change entry this request logged (0 until logged, or for a request that changes nothing). */
  changeSeq: number;
  /** Set once applied: the reply a retransmission gets. Undefined if it could not be kept. */
  reply: Uint8Array | undefined;
  /** When the reply was sent (or restored); the retention window runs from here. */
  repliedAtMs: number | undefined;
  /** The newest state entry holding the reply durably (0: none yet). */
  stateSeq: number;
}

/** What to do with an arriving request. */
export type Admission =
  | { kind: 'new' }
  /** Already running (a retransmission overtook its original): drop it, the original answers. */
  | { kind: 'in-progress'; record: SmRecord }
  /** Already executed: answer with the stored reply, do not run it again (SM-2). */
  | { kind: 'done'; record: SmRecord };

export interface SmMetrics {
  requests: number;
  requestsHighWater: number;
  replied: number;
  /** Finished requests dropped before their retention ended because the table was full. */
  evictions: number;
}

export class StateMachineLog {
  private readonly byKey = new Map<string, SmRecord>();
  private highWater = 0;
  /** The newest consistency point seen by `release`: records inside it may be evicted. */
  private cpSeq = 0;
  private evictions = 0;
  /** Where `evictOldest` continues (a live Map iterator: it follows inserts and deletes). */
  private evictCursor: Iterator<[string, SmRecord]> | undefined;

  constructor(private readonly limits: { smRequestsMax: number; replyRetentionMs: number } = nvlogLimits) {}

  /**
   * The table's key for request key bytes: the bytes as a one-byte string. Remembered for the
   * last `keyRingSize` key buffers by identity: the change path passes the same encoded key
   * (drc.ts caches it per request) to six or seven calls per request, interleaved with the
   * other requests in flight. (Hex strings were 3.3 % of the CPU at 4 KiB FILE_SYNC writes; a
   * WeakMap instead of the ring cost a hash and an ephemeron entry per request for the GC.)
   * Key buffers are never written after they are made.
   */
  static keyOf(key: Uint8Array): string {
    for (let i = 0; i < keyRingSize; i++) {
      const slot = (keyRingNext - 1 - i + keyRingSize) % keyRingSize;
      if (keyRingBytes[slot] === key) return keyRingStrings[slot] as string;
    }
    // One character per byte, made in one call.
    const k = String.fromCharCode.apply(null, key as unknown as number[]);
    keyRingBytes[keyRingNext] = key;
    keyRingStrings[keyRingNext] = k;
    keyRingNext = (keyRingNext + 1) % keyRingSize;
    return k;
  }

  /** Admits a request; throws ERR_NVLOG_SM_FULL when the pipeline bound is reached (SM-3). */
  receive(key: Uint8Array): Admission {
    const k = StateMachineLog.keyOf(key);
    const have = this.byKey.get(k);
    if (have !== undefined) return have.state === 'applied' || have.state === 'replied' ? { kind: 'done', record: have } : { kind: 'in-progress', record: have };
    if (this.byKey.size >= this.limits.smRequestsMax && !this.evictOldest()) {
      throw new TwinbladeError(NvlogErrorCode.smFull, 'busy', `state-machine log holds ${this.byKey.size} requests, none of them finished and inside a consistency point`);
    }
    this.byKey.set(k, newRecord(k, key));
    this.highWater = Math.max(this.highWater, this.byKey.size);
    return { kind: 'new' };
  }

  /** Forgets a request that failed before its change was logged (the client will retry). */
  abandon(key: Uint8Array): void {
    const k = StateMachineLog.keyOf(key);
    if (this.byKey.get(k)?.state === 'received') this.byKey.delete(k);
  }

  logged(key: Uint8Array, changeSeq: number): void {
    const r = this.ensure(StateMachineLog.keyOf(key), key);
    if (r.state === 'received') r.state = 'logged';
    r.changeSeq = changeSeq;
  }

  /** Applied with this reply. `retainFromMs` starts the retention window of a reply that replay recomputed. */
  applied(key: Uint8Array, reply: Uint8Array | undefined, retainFromMs?: number): void {
    const r = this.ensure(StateMachineLog.keyOf(key), key);
    if (r.state !== 'replied') r.state = 'applied';
    r.reply = reply;
    if (retainFromMs !== undefined && r.repliedAtMs === undefined) r.repliedAtMs = retainFromMs;
  }

  replied(key: Uint8Array, nowMs: number): void {
    const r = this.ensure(StateMachineLog.keyOf(key), key);
    r.state = 'replied';
    r.repliedAtMs = nowMs;
  }

  get(key: Uint8Array): SmRecord | undefined {
    return this.byKey.get(StateMachineLog.keyOf(key));
  }

  /**
   * Restores the last valid state of every request from recovered log entries (SM-2): a change
   * entry means logged; an entry at or before `cpSeq` is applied; a state entry means replied
   * (its reply is the RPC reply sent, or the change's outcome recorded when it was applied).
   * Change entries at or before `releasedSeq` are released (in a committed CP, their replies
   * carried forward while retained) and restore nothing. Replay then moves the logged ones to
   * applied with the reply it recomputes.
   */
  restore(records: readonly LogRecord[], cpSeq: number, nowMs: number, releasedSeq = 0): void {
    for (const rec of records) {
      if (rec.type === EntryType.change) {
        if (rec.seq <= releasedSeq) continue;
        const p = decodeChangePayload(rec.payload);
        const r = this.ensure(StateMachineLog.keyOf(p.key), p.key);
        if (r.state === 'replied') continue;
        r.changeSeq = rec.seq;
        r.state = rec.seq <= cpSeq ? 'applied' : 'logged';
        if (r.state === 'applied') r.repliedAtMs = nowMs;
      } else if (rec.type === EntryType.state) {
        const p = decodeStatePayload(rec.payload);
        const r = this.ensure(StateMachineLog.keyOf(p.key), p.key);
        r.state = 'replied';
        r.changeSeq = p.changeSeq;
        r.reply = p.reply.slice();
        r.repliedAtMs = nowMs;
        r.stateSeq = rec.seq;
      }
    }
    this.highWater = Math.max(this.highWater, this.byKey.size);
  }

  /**
   * Releases requests whose change is inside the consistency point `cpSeq` and whose reply
   * retention has passed (SM-3). Returns how many were released.
   */
  release(cpSeq: number, nowMs: number): number {
    this.cpSeq = Math.max(this.cpSeq, cpSeq);
    let n = 0;
    for (const [k, r] of this.byKey) {
      if (r.changeSeq <= cpSeq && (r.state === 'replied' || r.state === 'applied') && r.repliedAtMs !== undefined && nowMs - r.repliedAtMs >= this.limits.replyRetentionMs) {
        this.byKey.delete(k);
        n++;
      }
    }
    return n;
  }

  /** Records that the reply of `key` is durable in the state entry `seq`. */
  noteStateSeq(key: Uint8Array, seq: number): void {
    const r = this.byKey.get(StateMachineLog.keyOf(key));
    if (r !== undefined) r.stateSeq = Math.max(r.stateSeq, seq);
  }

  /**
   * Replies that must outlive the log half [firstSeq, lastSeq] being released: still inside
   * their retention window, and durable only in that half (or nowhere yet). The log carries
   * them forward as new state entries, so a reply survives as long as it is retained while
   * the log depth stays bounded by the consistency points (SM-3).
   */
  carryCandidates(firstSeq: number, lastSeq: number, nowMs: number, max = Number.MAX_SAFE_INTEGER): SmRecord[] {
    const out: SmRecord[] = [];
    for (const r of this.byKey.values()) {
      if (r.reply === undefined || (r.state !== 'applied' && r.state !== 'replied')) continue;
      if (r.repliedAtMs !== undefined && nowMs - r.repliedAtMs >= this.limits.replyRetentionMs) continue;
      if (r.stateSeq === 0 ? r.changeSeq <= lastSeq : r.stateSeq >= firstSeq && r.stateSeq <= lastSeq) out.push(r);
    }
    if (out.length <= max) return out;
    // The newest replies first: they are the ones a retransmission may still ask for.
    return out.sort((a, b) => (b.repliedAtMs ?? nowMs) - (a.repliedAtMs ?? nowMs) || b.changeSeq - a.changeSeq).slice(0, max).sort((a, b) => a.changeSeq - b.changeSeq);
  }

  metrics(): SmMetrics {
    let replied = 0;
    for (const r of this.byKey.values()) if (r.state === 'replied') replied++;
    return { requests: this.byKey.size, requestsHighWater: this.highWater, replied, evictions: this.evictions };
  }

  /**
   * At capacity, the oldest finished request whose change is inside a consistency point gives
   * way before its retention ends (like a duplicate-request cache evicting its oldest entry):
   * the bound on the pipeline wins over a very late retransmission. Unfinished requests are
   * never evicted. The table is scanned by a cursor that stays where the last eviction was
   * (oldest first, like a CLOCK hand; at most one lap per call): scanning from the front each
   * time walked over every entry deleted there since the Map last compacted, thousands of
   * them at 4096 requests, and showed as 2.5 % of the blade's CPU at 4 KiB FILE_SYNC writes.
   */
  private evictOldest(): boolean {
    const total = this.byKey.size;
    let visited = 0;
    let lapStarted = false;
    for (;;) {
      if (this.evictCursor === undefined) {
        if (lapStarted) return false;
        this.evictCursor = this.byKey.entries();
        lapStarted = true;
      }
      const n = this.evictCursor.next();
      if (n.done === true) {
        this.evictCursor = undefined;
        continue;
      }
      const [k, r] = n.value;
      if ((r.state === 'replied' || r.state === 'applied') && r.changeSeq <= this.cpSeq) {
        this.byKey.delete(k);
        this.evictions++;
        return true;
      }
      if (++visited >= total) return false;
    }
  }

  private ensure(k: string, keyBytes: Uint8Array): SmRecord {
    let r = this.byKey.get(k);
    if (r === undefined) {
      r = newRecord(k, keyBytes);
      this.byKey.set(k, r);
      this.highWater = Math.max(this.highWater, this.byKey.size);
    }
    return r;
  }
}

/** The ring `keyOf` remembers its last answers in (module-wide: keys are plain bytes). */
const keyRingSize = 64;
const keyRingBytes: Array<Uint8Array | undefined> = new Array<Uint8Array | undefined>(keyRingSize).fill(undefined);
const keyRingStrings: string[] = new Array<string>(keyRingSize).fill('');
let keyRingNext = 0;

function newRecord(k: string, keyBytes: Uint8Array): SmRecord {
  // A copy: restore passes a view of a log record, which must not be kept alive by the table.
  return { key: k, keyBytes: keyBytes.slice(), state: 'received', changeSeq: 0, reply: undefined, repliedAtMs: undefined, stateSeq: 0 };
}
