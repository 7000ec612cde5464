// The mirroring protocol (NV-1..NV-3) as two transport-agnostic state machines: the origin
// side sends each log entry to the partner with a window of unacknowledged entries and
// degrades/resynchronises; the receiver side validates entries, stores them at the same
// position in its mirror region and acknowledges cumulatively once they are durable.
// Callers drive them with events and read the messages to send from `takeOutbox()`.
import { assert } from '../../core/assert.ts';
import { DecodeError } from '../../core/errors.ts';
import { decodeEntry } from './entry.ts';
import type { BladeId } from './layout.ts';
import { NvlogErrorCode } from './limits.ts';

export type MirrorMessage =
  /**
   * Sent when the channel comes up (or our log binds to it): tells the partner to
   * resynchronise its log to us. Its `reset` in answer also tells us that its log listens
   * (see MirrorOrigin.partnerListening), so a greeting of the partner's that we missed
   * cannot leave our log unmirrored for good.
   */
  | { kind: 'hello'; from: BladeId; bootGeneration: number; halfBytes: number }
  /** Receiver: wipe your mirror of `origin`; what follows in `epoch` replaces it, starting at `fromSeq`. */
  | { kind: 'reset'; origin: BladeId; epoch: number; fromSeq: number }
  /** One log entry, stored at `position` in the receiver's mirror region. */
  | { kind: 'entry'; origin: BladeId; epoch: number; position: number; bytes: Uint8Array }
  /** Cumulative: the mirror of `origin` is durable through `seq` in `epoch` (0: the reset is done). */
  | { kind: 'ack'; origin: BladeId; epoch: number; seq: number }
  /** Receiver to origin: the stream broke (gap, bad bytes); please reset and resend. */
  | { kind: 'resync-request'; origin: BladeId; reason: string }
  /** A booting origin asks for the partner's copy of its log (own recovery, NV-5/NV-7). */
  | { kind: 'fetch'; origin: BladeId }
  /** One entry of that copy, at its position. */
  | { kind: 'copy'; origin: BladeId; position: number; bytes: Uint8Array }
  /** The copy is complete: `count` entries were sent. */
  | { kind: 'copy-done'; origin: BladeId; count: number };

export type MirrorState = 'synced' | 'degraded' | 'resyncing';

export interface MirrorItem {
  seq: number;
  position: number;
  bytes: Uint8Array;
}

export interface MirrorStateChange {
  state: MirrorState;
  reason: string;
}

export interface MirrorOriginLimits {
  mirrorInFlightMax: number;
  mirrorAckTimeoutMs: number;
  mirrorResyncRetryMs: number;
}

/**
 * The origin side. Invariants: `doneSeq` (every entry at or before it is mirrored, or was
 * waived while degraded) never goes back; in `synced` every appended entry is either in
 * flight or queued; entries are sent in sequence order.
 */
export class MirrorOrigin {
  private stateValue: MirrorState = 'degraded';
  private epoch = 0;
  private queue: MirrorItem[] = [];
  private inFlight: Array<{ seq: number; sentAtMs: number }> = [];
  private resetSentAtMs: number | undefined;
  private resetAcked = false;
  private resyncTargetSeq = 0;
  private lastAppendedSeq = 0;
  private doneSeqValue = 0;
  private ackedSeqValue = 0;
  private partnerReachable = false;
  /** A reset went out after our latest greeting (see partnerListening). */
  private resetSinceGreeting = false;
  private degradedAtMs = 0;
  private outbox: MirrorMessage[] = [];
  private changes: MirrorStateChange[] = [];
  private inFlightHighWaterValue = 0;

  constructor(
    readonly origin: BladeId,
    private readonly limits: MirrorOriginLimits,
  ) {}

  get state(): MirrorState {
    return this.stateValue;
  }
  /** Every entry at or before this is mirrored or waived: the mirror half of "may answer". */
  get doneSeq(): number {
    return this.doneSeqValue;
  }
  /** Every entry at or before this is durable in the partner's mirror (never waived). */
  get ackedSeq(): number {
    return this.ackedSeqValue;
  }
  get inFlightHighWater(): number {
    return this.inFlightHighWaterValue;
  }
  get inFlightCount(): number {
    return this.inFlight.length + this.queue.length;
  }

  /** Starts from a recovered log whose last entry is `lastSeq` (nothing is waiting yet). */
  startAt(lastSeq: number): void {
    this.lastAppendedSeq = lastSeq;
    this.doneSeqValue = lastSeq;
    this.ackedSeqValue = lastSeq;
  }

  /** The partner came up (or asked for it): reset its mirror and resend every live entry. */
  partnerUp(nowMs: number, live: readonly MirrorItem[]): void {
    this.partnerReachable = true;
    this.resetSinceGreeting = true;
    this.epoch++;
    this.queue = [...live];
    this.inFlight = [];
    this.resetAcked = false;
    this.resetSentAtMs = nowMs;
    this.resyncTargetSeq = live.length === 0 ? 0 : (live[live.length - 1] as MirrorItem).seq;
    assert(live.length === 0 || this.resyncTargetSeq <= this.lastAppendedSeq, 'resync covers only appended entries');
    live.forEach((it, i) => assert(i === 0 || it.seq === (live[i - 1] as MirrorItem).seq + 1, () => `live entries are contiguous: ${live.map((x) => x.seq).join(',')}`));
    // The receiver learns where the stream starts, so a lost or overtaken first entry is a
    // detected gap rather than a silent hole.
    const fromSeq = live.length === 0 ? this.lastAppendedSeq + 1 : (live[0] as MirrorItem).seq;
    this.outbox.push({ kind: 'reset', origin: this.origin, epoch: this.epoch, fromSeq });
    this.setState('resyncing', 'partner up: resynchronising the mirror');
    this.pump(nowMs);
  }

  /** Our log is sending the partner a greeting (`hello`); see partnerListening. */
  greeted(): void {
    this.resetSinceGreeting = false;
  }

  /**
   * The partner's log is listening: it sent a `reset` of its own stream (its answer to our
   * greeting, or a retry). Every message we send from now on reaches that log (the channel
   * is ordered), but one sent before may not have: a partner whose log bound late missed our
   * greeting's effects, and its own greeting may have gone out before we listened, so
   * nobody would ever restart our resync. Restart it unless a reset went out since our
   * latest greeting — that one was caused by the partner's greeting and reaches it. At most
   * one restart per greeting, so two blades cannot bounce resets back and forth.
   */
  partnerListening(nowMs: number, live: () => readonly MirrorItem[]): void {
    if (!this.resetSinceGreeting) this.partnerUp(nowMs, live());
  }

  /** The channel to the partner is gone: continue on the local copy alone. */
  partnerDown(reason = 'partner unreachable'): void {
    this.partnerReachable = false;
    this.degrade(0, reason);
  }

  /** An entry was written to the local log. */
  append(item: MirrorItem, nowMs: number): void {
    assert(item.seq === this.lastAppendedSeq + 1, () => `mirror append out of order: ${item.seq} after ${this.lastAppendedSeq}`);
    this.lastAppendedSeq = item.seq;
    if (this.stateValue === 'degraded') {
      this.doneSeqValue = item.seq;
      return;
    }
    this.queue.push(item);
    this.pump(nowMs);
  }

  onMessage(msg: MirrorMessage, nowMs: number, live: () => readonly MirrorItem[]): void {
    if (msg.kind === 'ack') {
      if (msg.origin !== this.origin || msg.epoch !== this.epoch || this.stateValue === 'degraded') return;
      // Any acknowledgement of this epoch implies its reset was done first (ordered channel).
      this.resetAcked = true;
      while (this.inFlight.length > 0 && (this.inFlight[0] as { seq: number }).seq <= msg.seq) this.inFlight.shift();
      if (msg.seq > this.doneSeqValue) this.doneSeqValue = Math.min(msg.seq, this.lastAppendedSeq);
      if (msg.seq > this.ackedSeqValue) this.ackedSeqValue = Math.min(msg.seq, this.lastAppendedSeq);
      if (this.stateValue === 'resyncing' && this.resetAcked && msg.seq >= this.resyncTargetSeq) {
        this.doneSeqValue = Math.max(this.doneSeqValue, this.resyncTargetSeq);
        this.setState('synced', 'mirror resynchronised');
      }
      this.pump(nowMs);
    } else if (msg.kind === 'hello') {
      this.partnerUp(nowMs, live());
    } else if (msg.kind === 'resync-request' && msg.origin === this.origin) {
      this.partnerUp(nowMs, live());
    }
  }

  /** Ack timeouts, and periodic retries of a resync while degraded with the partner reachable. */
  tick(nowMs: number, live: () => readonly MirrorItem[]): void {
    if (this.stateValue === 'degraded') {
      if (this.partnerReachable && nowMs - this.degradedAtMs >= this.limits.mirrorResyncRetryMs) this.partnerUp(nowMs, live());
      return;
    }
    const oldest = this.inFlight[0]?.sentAtMs ?? (this.resetAcked ? undefined : this.resetSentAtMs);
    if (oldest !== undefined && nowMs - oldest >= this.limits.mirrorAckTimeoutMs) this.degrade(nowMs, 'mirror acknowledgement timed out');
  }

  takeOutbox(): MirrorMessage[] {
    const o = this.outbox;
    this.outbox = [];
    return o;
  }

  takeStateChanges(): MirrorStateChange[] {
    const c = this.changes;
    this.changes = [];
    return c;
  }

  private degrade(nowMs: number, reason: string): void {
    this.queue = [];
    this.inFlight = [];
    this.degradedAtMs = nowMs;
    this.epoch++; // late acks of the abandoned stream must not count
    // Waive the mirror for everything appended: the local copy alone answers clients now,
    // and the partner may not take this blade over until resynchronised (HA-8).
    this.doneSeqValue = this.lastAppendedSeq;
    this.setState('degraded', reason);
  }

  private pump(nowMs: number): void {
    while (this.queue.length > 0 && this.inFlight.length < this.limits.mirrorInFlightMax) {
      const item = this.queue.shift() as MirrorItem;
      this.inFlight.push({ seq: item.seq, sentAtMs: nowMs });
      this.outbox.push({ kind: 'entry', origin: this.origin, epoch: this.epoch, position: item.position, bytes: item.bytes });
    }
    this.inFlightHighWaterValue = Math.max(this.inFlightHighWaterValue, this.inFlight.length);
  }

  private setState(s: MirrorState, reason: string): void {
    if (s === this.stateValue) return;
    this.stateValue = s;
    this.changes.push({ state: s, reason });
  }
}

/** What the receiver asks its driver to do, in order. */
export type ReceiverAction =
  | { kind: 'wipe' }
  | { kind: 'write'; position: number; bytes: Uint8Array; seq: number }
  /** Persist everything written so far, then send this acknowledgement. */
  | { kind: 'ack-after-persist'; msg: MirrorMessage & { kind: 'ack' } }
  | { kind: 'send'; msg: MirrorMessage };

/** The receiver side for the partner's log (stored in this blade's mirror region). */
export class MirrorReceiver {
  private epoch = -1;
  private nextSeq = 0;
  private broken = false;

  constructor(
    readonly origin: BladeId,
    private readonly regionBytes: number,
  ) {}

  /** Handles one message about `origin`'s log; returns the actions in order. */
  onMessage(msg: MirrorMessage): ReceiverAction[] {
    if (msg.kind === 'reset') {
      if (msg.origin !== this.origin) return [];
      this.epoch = msg.epoch;
      this.nextSeq = msg.fromSeq;
      this.broken = false;
      return [{ kind: 'wipe' }, { kind: 'ack-after-persist', msg: { kind: 'ack', origin: this.origin, epoch: msg.epoch, seq: 0 } }];
    }
    if (msg.kind !== 'entry' || msg.origin !== this.origin) return [];
    if (msg.epoch !== this.epoch || this.broken) return [];
    let seq: number;
    try {
      const rec = decodeEntry(msg.bytes, msg.position);
      if (rec.origin !== this.origin) throw new DecodeError(NvlogErrorCode.messageCorrupt, `entry of blade ${rec.origin} in the stream of blade ${this.origin}`);
      if (msg.position < 0 || msg.position % 8 !== 0 || msg.position + msg.bytes.length > this.regionBytes) throw new DecodeError(NvlogErrorCode.messageCorrupt, `entry position ${msg.position} outside the mirror region`);
      seq = rec.seq;
    } catch (e) {
      return this.breakStream(e instanceof Error ? e.message : String(e));
    }
    if (seq !== this.nextSeq) return this.breakStream(`expected entry ${this.nextSeq}, got ${seq}`);
    this.nextSeq = seq + 1;
    return [
      { kind: 'write', position: msg.position, bytes: msg.bytes, seq },
      { kind: 'ack-after-persist', msg: { kind: 'ack', origin: this.origin, epoch: this.epoch, seq } },
    ];
  }

  private breakStream(reason: string): ReceiverAction[] {
    // Writing anything after a break would leave a hole in the mirror; stop and ask again.
    this.broken = true;
    return [{ kind: 'send', msg: { kind: 'resync-request', origin: this.origin, reason } }];
  }
}
