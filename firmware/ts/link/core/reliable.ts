// The per-path link protocol as a pure state machine (etcd-raft style): a session handshake
// keyed by boot generations, a reliable ordered channel (cumulative + selective acks,
// retransmit with bounded exponential backoff, bounded window, back-pressure), unreliable
// datagrams (latest wins), and liveness. Callers drive it with receive()/tick()/send() and
// collect what to transmit and what was delivered with ready().

import { assert } from '../../core/assert.ts';
import { buggify } from '../../core/buggify.ts';
import { InvalidArgumentError, TwinbladeError } from '../../core/errors.ts';
import { FrameFlag, FrameType, encodeFrame, framePayloadBytesMax } from './frame.ts';
import type { Frame, Mac } from './frame.ts';

/** Named limits of one path's channel. Every queue and timer is bounded by one of these. */
export interface ChannelLimits {
  /** Data frames sent and not yet acknowledged (the send window). */
  windowFramesMax: number;
  /** Out-of-order data frames the receiver buffers beyond the next expected one (the selective ack reports up to 256). */
  reorderFramesMax: number;
  /** Messages queued behind the window at which send() starts returning false. */
  sendQueueHighWaterMessages: number;
  /** Messages queued behind the window at which send() throws ERR_LINK_QUEUE_FULL. */
  sendQueueMessagesMax: number;
  /** Datagrams waiting for the next ready(); beyond it the oldest is dropped (latest wins). */
  datagramQueueMax: number;
  /**
   * Largest payload of one frame on this path; a longer message is split into consecutive DATA
   * fragments (flag `more`) and joined by the receiver. A UDP path must stay well under the
   * 65 507-byte datagram limit (and IP fragmentation), a slow UART under a liveness timeout.
   */
  fragmentBytesMax: number;
  /**
   * Frames resent per ready() at most. After a timeout every unacknowledged frame is marked
   * lost, but they go out a few at a time: if the timeout was spurious (the peer or our event
   * loop was only slow), acks for the originals arrive and cancel the rest of the resends.
   */
  retransmitBurstFramesMax: number;
  retransmitTimeoutMsInitial: number;
  retransmitTimeoutMsMin: number;
  retransmitTimeoutMsMax: number;
  /** An ACK is sent when nothing else went out for this long, so the peer sees us alive. */
  keepaliveIntervalMs: number;
  /** A path with no valid frame for this long is down (SPEC HA-5: 0.5 s for the interconnect). */
  livenessTimeoutMs: number;
  /** HELLO repeat interval while the session is not established. */
  helloIntervalMs: number;
}

export const defaultChannelLimits: Readonly<ChannelLimits> = Object.freeze({
  windowFramesMax: 64,
  reorderFramesMax: 64,
  sendQueueHighWaterMessages: 256,
  sendQueueMessagesMax: 4096,
  datagramQueueMax: 64,
  fragmentBytesMax: framePayloadBytesMax,
  retransmitBurstFramesMax: 8,
  retransmitTimeoutMsInitial: 200,
  retransmitTimeoutMsMin: 50,
  retransmitTimeoutMsMax: 2000,
  keepaliveIntervalMs: 100,
  livenessTimeoutMs: 500,
  helloIntervalMs: 100,
});

/** Link-level rejection codes (frames that decoded but are refused by the protocol). */
export const LinkRejectCode = {
  /** A frame carrying our own role: reflected back at us. */
  reflected: 'ERR_LINK_REFLECTED',
  /** Generation 0 on the wire (never valid). */
  generation: 'ERR_LINK_GENERATION',
  /** From an older generation of the peer, or addressed to an older generation of us: a replay or a late frame. */
  staleSession: 'ERR_LINK_STALE_SESSION',
  /** A data frame beyond the receive reorder window. */
  window: 'ERR_LINK_WINDOW',
  /** An ack for data we never sent. */
  ackRange: 'ERR_LINK_ACK_RANGE',
  /** A datagram not newer than the last one on its channel: replayed or reordered. */
  replay: 'ERR_LINK_REPLAY',
  /** A frame type that makes no sense in this state (e.g. data before the handshake). */
  unexpected: 'ERR_LINK_UNEXPECTED',
  /** Fragments that do not join into a message (a channel change mid-message, or too long). */
  fragment: 'ERR_LINK_FRAGMENT',
} as const;
export type LinkRejectCode = (typeof LinkRejectCode)[keyof typeof LinkRejectCode];

export type Role = 'a' | 'b';

export interface ChannelConfig {
  /**
   * This blade's generation: a boot counter from persistent memory (SPEC HA-2). It must be
   * non-zero and greater than at any earlier boot, so that the peer can tell a restart
   * from a replay of an old session.
   */
  localGeneration: number;
  role: Role;
  mac: Mac;
  limits?: Partial<ChannelLimits>;
}

/** A reliable message handed to send(); `tag` is the caller's and comes back in `acked`. */
export interface OutboundMessage {
  channel: number;
  payload: Uint8Array;
  tag: number;
}

export interface InboundMessage {
  channel: number;
  payload: Uint8Array;
}

export type ChannelEvent =
  | { type: 'up' }
  | { type: 'down' }
  /** A session with the peer generation is now established (first contact or after a restart). */
  | { type: 'established'; peerGeneration: number }
  /**
   * The peer restarted (a greater generation completed the handshake). Sequence state was
   * reset; `undelivered` are the messages sent to the old generation and never acknowledged.
   */
  | { type: 'peerRestart'; previousGeneration: number; peerGeneration: number; undelivered: OutboundMessage[] }
  /** send() returned false earlier and the queue is below its high-water mark again. */
  | { type: 'drain' };

/**
 * What to do after a batch of input. Ordering rule: nothing here needs persisting, so the
 * caller may transmit `frames` and hand `messages`/`datagrams` up in either order; the acks in
 * `frames` already cover `messages` (they count as delivered once returned here).
 */
export interface ChannelReady {
  /** Encoded frames to transmit, in order. */
  frames: Uint8Array[];
  /** Reliable messages, in order, each exactly once per peer generation. */
  messages: InboundMessage[];
  /** Datagrams that were newer than the last on their channel. */
  datagrams: InboundMessage[];
  /** Tags of sent messages the peer has now acknowledged, in send order. */
  acked: number[];
  events: ChannelEvent[];
}

export interface ChannelStats {
  framesSent: number;
  framesReceived: number;
  bytesSent: number;
  dataFramesSent: number;
  retransmits: number;
  duplicates: number;
  messagesDelivered: number;
  datagramsSent: number;
  datagramsDelivered: number;
  datagramsDropped: number;
  rejects: Record<string, number>;
}

interface Unacked {
  seq: number;
  msg: OutboundMessage;
  /** This frame's part of the message, and whether more of it follows. */
  fragment: Uint8Array;
  more: boolean;
  firstSentMs: number;
  lastSentMs: number;
  transmissions: number;
  sacked: boolean;
  resend: boolean;
}

/** Signed distance a - b in sequence space (mod 2^32), valid while |a - b| < 2^31. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}
function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/**
 * Bytes of an ACK's selective bitmap at most (256 frames beyond the cumulative ack): bit i
 * says seq (ack + 2 + i) was received. Frames beyond it are simply not reported.
 */
const sackBytesMax = 32;

export class ReliableChannel {
  readonly limits: Readonly<ChannelLimits>;
  readonly stats: ChannelStats = {
    framesSent: 0, framesReceived: 0, bytesSent: 0, dataFramesSent: 0, retransmits: 0, duplicates: 0,
    messagesDelivered: 0, datagramsSent: 0, datagramsDelivered: 0, datagramsDropped: 0, rejects: {},
  };

  private readonly gen: number;
  private readonly flags: number;
  private readonly peerFlags: number;
  private readonly mac: Mac;

  private nowMs = 0;
  private peerGen = 0;
  private peerGenHeard = 0;
  private helloDue = true;
  private lastHelloMs = -Infinity;

  // Send side.
  private nextSeq = 1;
  private readonly unacked: Unacked[] = [];
  private queue: OutboundMessage[] = [];
  private queueHead = 0;
  /** Bytes of the head message already put into fragments. */
  private headOffset = 0;
  private needDrain = false;
  private rtoMs: number;
  private srttMs = -1;
  private rttvarMs = 0;
  private rtoDeadlineMs = Infinity;
  private transportWritable = true;
  private datagramsOut: { channel: number; payload: Uint8Array }[] = [];
  private nextDatagramSeq = 1;

  // Receive side.
  private expectedSeq = 1;
  private readonly reorder = new Map<number, { channel: number; payload: Uint8Array; more: boolean }>();
  /** Fragments of the message being joined. */
  private partial: Uint8Array[] = [];
  private partialBytes = 0;
  private partialChannel = -1;
  private readonly lastDatagramSeq = new Map<number, number>();
  private ackDue = false;

  // Liveness.
  private up = false;
  private lastRxMs = -Infinity;
  private lastTxMs = -Infinity;

  private out: ChannelReady = emptyReady();

  constructor(config: ChannelConfig) {
    if (!Number.isInteger(config.localGeneration) || config.localGeneration < 1 || config.localGeneration > 0xffffffff) {
      throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `localGeneration ${config.localGeneration} must be a u32 > 0`);
    }
    this.limits = Object.freeze({ ...defaultChannelLimits, ...config.limits });
    const l = this.limits;
    if (!(l.windowFramesMax >= 1 && l.windowFramesMax < 2 ** 30 && l.reorderFramesMax >= 0 && l.reorderFramesMax < 2 ** 30)) {
      throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', 'window and reorder limits must be positive and far below 2^31');
    }
    if (!(Number.isInteger(l.fragmentBytesMax) && l.fragmentBytesMax >= 1 && l.fragmentBytesMax <= framePayloadBytesMax)) {
      throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `fragmentBytesMax must be 1..${framePayloadBytesMax}`);
    }
    if (!(l.retransmitBurstFramesMax >= 1)) throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', 'retransmitBurstFramesMax must be at least 1');
    if (!(l.retransmitTimeoutMsMin > 0 && l.retransmitTimeoutMsMin <= l.retransmitTimeoutMsMax)) {
      throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', 'retransmit timeout bounds are inconsistent');
    }
    this.gen = config.localGeneration;
    this.flags = config.role === 'b' ? FrameFlag.fromB : 0;
    this.peerFlags = config.role === 'b' ? 0 : FrameFlag.fromB;
    this.mac = config.mac;
    this.rtoMs = clamp(l.retransmitTimeoutMsInitial, l.retransmitTimeoutMsMin, l.retransmitTimeoutMsMax);
  }

  get localGeneration(): number {
    return this.gen;
  }
  /** The peer generation of the established session (0 before the first handshake). */
  get peerGeneration(): number {
    return this.peerGen;
  }
  get established(): boolean {
    return this.peerGen !== 0;
  }
  /** True while valid frames of the established session keep arriving within livenessTimeoutMs. */
  get isUp(): boolean {
    return this.up;
  }
  /** False once the send queue reached sendQueueHighWaterMessages; a `drain` event follows. */
  get writable(): boolean {
    return this.queuedCount() < this.limits.sendQueueHighWaterMessages;
  }
  /** Frames in the window (fragments count one each) plus messages queued behind it. */
  get pendingMessages(): number {
    return this.unacked.length + this.queuedCount();
  }
  /** The current retransmit timeout (for observability and tests). */
  get retransmitTimeoutMs(): number {
    return this.rtoMs;
  }
  get smoothedRttMs(): number {
    return this.srttMs;
  }

  /**
   * Queues a reliable message. Returns false when the caller should wait for a `drain` event
   * (the message is still accepted). Throws ERR_LINK_QUEUE_FULL (kind busy) past
   * sendQueueMessagesMax, and InvalidArgumentError for a bad channel or an oversized payload.
   */
  send(channel: number, payload: Uint8Array, tag = 0): boolean {
    checkChannel(channel);
    if (payload.length > framePayloadBytesMax) {
      throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `payload of ${payload.length} bytes exceeds ${framePayloadBytesMax}`);
    }
    if (this.queuedCount() >= this.limits.sendQueueMessagesMax) {
      throw new TwinbladeError('ERR_LINK_QUEUE_FULL', 'busy', `send queue holds sendQueueMessagesMax (${this.limits.sendQueueMessagesMax}) messages`);
    }
    this.queue.push({ channel, payload, tag });
    const w = this.writable;
    if (!w) this.needDrain = true;
    return w;
  }

  /**
   * Queues an unreliable datagram (HA status), at most fragmentBytesMax bytes. Returns false
   * (and sends nothing) while no session is established, because the peer would refuse a frame
   * without its generation.
   */
  sendDatagram(channel: number, payload: Uint8Array): boolean {
    checkChannel(channel);
    if (payload.length > this.limits.fragmentBytesMax) {
      // Datagrams are never fragmented: a lost piece would lose the whole, with no resend.
      throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `datagram of ${payload.length} bytes exceeds this path's fragmentBytesMax ${this.limits.fragmentBytesMax}`);
    }
    if (!this.established) return false;
    if (this.datagramsOut.length >= this.limits.datagramQueueMax) {
      this.datagramsOut.shift();
      this.stats.datagramsDropped++;
    }
    this.datagramsOut.push({ channel, payload });
    return true;
  }

  /** Tells the channel whether its transport accepts more (stream back-pressure). */
  setTransportWritable(writable: boolean): void {
    if (writable && !this.transportWritable && this.unacked.length > 0) {
      // Bytes stuck in our own send buffer were not on the wire: restart the timer rather than
      // count that time against the peer.
      this.rtoDeadlineMs = this.nowMs + this.rtoMs;
    }
    this.transportWritable = writable;
  }

  /** Handles one decoded, authenticated frame from this path. */
  receive(frame: Frame, nowMs: number): void {
    this.advance(nowMs);
    this.stats.framesReceived++;
    if ((frame.flags & FrameFlag.fromB) !== this.peerFlags) return this.reject(LinkRejectCode.reflected);
    const src = frame.srcGeneration;
    if (src === 0) return this.reject(LinkRejectCode.generation);
    if (src < this.peerGen) return this.reject(LinkRejectCode.staleSession);
    if (frame.type === FrameType.hello) {
      if (src > this.peerGenHeard) this.peerGenHeard = src;
      if (frame.dstGeneration !== this.gen) {
        // The peer does not know our current generation yet (it or we restarted): tell it.
        this.helloDue = true;
        return;
      }
      if (src !== this.peerGen) {
        this.adopt(src);
        // Make sure the peer can complete its side even if our earlier HELLO was lost.
        this.helloDue = true;
      }
      this.heard();
      return;
    }
    if (frame.dstGeneration !== this.gen) return this.reject(LinkRejectCode.staleSession);
    if (src > this.peerGen) {
      // Addressed to our current generation, so it is fresh: the handshake reply was lost.
      if (src > this.peerGenHeard) this.peerGenHeard = src;
      this.adopt(src);
    }
    this.heard();
    this.onAck(frame.ack, frame.type === FrameType.ack ? frame.payload : undefined);
    switch (frame.type) {
      case FrameType.data:
        this.onData(frame);
        return;
      case FrameType.datagram:
        this.onDatagram(frame);
        return;
      case FrameType.ack:
        return;
      default:
        return this.reject(LinkRejectCode.unexpected);
    }
  }

  /** Advances time: liveness, HELLO repeats, retransmits, keepalives. */
  tick(nowMs: number): void {
    this.advance(nowMs);
    const l = this.limits;
    if (this.up && nowMs - this.lastRxMs > l.livenessTimeoutMs) {
      this.up = false;
      this.out.events.push({ type: 'down' });
    }
    if (!this.established && nowMs - this.lastHelloMs >= l.helloIntervalMs) this.helloDue = true;
    if (this.transportWritable && this.unacked.length > 0 && nowMs >= this.rtoDeadlineMs) {
      if (this.up) {
        for (const u of this.unacked) if (!u.sacked) u.resend = true;
      } else {
        // Nothing is coming back: probe with the oldest frame rather than pour the whole
        // window into a dead path every timeout. The rest follows once the path answers.
        const first = this.unacked.find((u) => !u.sacked);
        if (first !== undefined) first.resend = true;
      }
      // Bounded exponential backoff: a dead path is probed at most every retransmitTimeoutMsMax.
      this.rtoMs = Math.min(this.rtoMs * 2, l.retransmitTimeoutMsMax);
      this.rtoDeadlineMs = nowMs + this.rtoMs;
    }
    if (this.established && nowMs - this.lastTxMs >= l.keepaliveIntervalMs) this.ackDue = true;
  }

  /** Collects frames to transmit, deliveries and events accumulated since the last call. */
  ready(): ChannelReady {
    const now = this.nowMs;
    const frames = this.out.frames;
    if (this.helloDue) {
      this.helloDue = false;
      this.lastHelloMs = now;
      frames.push(this.encode({ type: FrameType.hello, channel: 0, seq: 0, dstGeneration: this.peerGenHeard, payload: empty }));
    }
    if (this.established) {
      let dataSent = false;
      if (this.transportWritable) {
        let burst = this.limits.retransmitBurstFramesMax;
        for (const u of this.unacked) {
          if (burst === 0) break;
          if (!u.resend) continue;
          burst--;
          u.resend = false;
          u.transmissions++;
          u.lastSentMs = now;
          this.stats.retransmits++;
          frames.push(this.encodeData(u));
          dataSent = true;
        }
        while (this.queuedCount() > 0 && this.unacked.length < this.limits.windowFramesMax) {
          const msg = this.queue[this.queueHead] as OutboundMessage;
          const from = this.headOffset;
          const to = Math.min(msg.payload.length, from + this.limits.fragmentBytesMax);
          const more = to < msg.payload.length;
          if (more) this.headOffset = to;
          else {
            this.queueHead++;
            this.headOffset = 0;
          }
          const fragment = from === 0 && !more ? msg.payload : msg.payload.subarray(from, to);
          const u: Unacked = { seq: this.nextSeq, msg, fragment, more, firstSentMs: now, lastSentMs: now, transmissions: 1, sacked: false, resend: false };
          this.nextSeq = seqAdd(this.nextSeq, 1);
          this.unacked.push(u);
          if (this.unacked.length === 1) this.rtoDeadlineMs = now + this.rtoMs;
          frames.push(this.encodeData(u));
          dataSent = true;
          // Simulation only: resend this frame at the next flush as if its timer fired early,
          // so receivers meet duplicates on ordered paths too.
          if (buggify('link.early-retransmit', 0.02)) u.resend = true;
        }
        this.compactQueue();
      }
      for (const d of this.datagramsOut) {
        frames.push(this.encode({ type: FrameType.datagram, channel: d.channel, seq: this.nextDatagramSeq, dstGeneration: this.peerGen, payload: d.payload }));
        this.nextDatagramSeq = seqAdd(this.nextDatagramSeq, 1);
        this.stats.datagramsSent++;
      }
      this.datagramsOut = [];
      // Data frames carry the cumulative ack; a separate ACK is needed when none went out, or
      // when out-of-order frames are held (only an ACK carries the selective bitmap).
      if (this.ackDue && (!dataSent || this.reorder.size > 0)) {
        // Simulation only: hold the ACK until a later flush (a slow receiver), which widens the
        // sender's RTT estimate and exercises timeouts with acks in flight.
        if (buggify('link.delay-ack', 0.1)) {
          this.ackDue = true;
        } else {
          frames.push(this.encode({ type: FrameType.ack, channel: 0, seq: 0, dstGeneration: this.peerGen, payload: this.sackBitmap() }));
          this.ackDue = false;
        }
      } else {
        this.ackDue = false;
      }
    }
    if (frames.length > 0) this.lastTxMs = now;
    for (const f of frames) this.stats.bytesSent += f.length;
    this.stats.framesSent += frames.length;
    if (this.needDrain && this.writable) {
      this.needDrain = false;
      this.out.events.push({ type: 'drain' });
    }
    const r = this.out;
    this.out = emptyReady();
    return r;
  }

  private advance(nowMs: number): void {
    // Time never goes back; a caller that passes an older value is ignored rather than trusted.
    if (nowMs > this.nowMs) this.nowMs = nowMs;
  }

  private reject(code: LinkRejectCode): void {
    this.stats.rejects[code] = (this.stats.rejects[code] ?? 0) + 1;
  }

  private heard(): void {
    this.lastRxMs = this.nowMs;
    if (!this.up) {
      this.up = true;
      this.out.events.push({ type: 'up' });
    }
  }

  /**
   * Forgets the peer's session (its generation and all sequence state), as if this blade had
   * just booted, and returns the reliable messages it never acknowledged. This is for the one
   * case the generation rule cannot handle: a partner that lost its boot counter and came back
   * with a lower generation, which is refused as stale. Call it only on evidence from a
   * trusted source (HA: the shared-disk mailboxes), never on the link's own word: to the link a
   * lower generation looks exactly like a replay of an old session.
   */
  forgetPeer(): OutboundMessage[] {
    const undelivered = this.resetSession();
    this.peerGen = 0;
    this.peerGenHeard = 0;
    this.helloDue = true;
    if (this.up) {
      this.up = false;
      this.out.events.push({ type: 'down' });
    }
    return undelivered;
  }

  private adopt(peerGen: number): void {
    const previous = this.peerGen;
    if (previous !== 0) {
      const undelivered = this.resetSession();
      this.out.events.push({ type: 'peerRestart', previousGeneration: previous, peerGeneration: peerGen, undelivered });
    }
    this.peerGen = peerGen;
    this.out.events.push({ type: 'established', peerGeneration: peerGen });
    // Tell the peer at once that we are here, so its first data need not wait for a keepalive.
    this.ackDue = true;
  }

  /** Drops all sequence state of the current session; returns the unacknowledged messages. */
  private resetSession(): OutboundMessage[] {
    // A message may be partly in the window and partly queued: report each once, in order.
    const undelivered = [...new Set([...this.unacked.map((u) => u.msg), ...this.queue.slice(this.queueHead)])];
    this.unacked.length = 0;
    this.queue = [];
    this.queueHead = 0;
    this.headOffset = 0;
    this.partial = [];
    this.partialBytes = 0;
    this.partialChannel = -1;
    this.nextSeq = 1;
    this.nextDatagramSeq = 1;
    this.datagramsOut = [];
    this.expectedSeq = 1;
    this.reorder.clear();
    this.lastDatagramSeq.clear();
    this.rtoDeadlineMs = Infinity;
    this.srttMs = -1;
    this.rttvarMs = 0;
    this.rtoMs = clamp(this.limits.retransmitTimeoutMsInitial, this.limits.retransmitTimeoutMsMin, this.limits.retransmitTimeoutMsMax);
    return undelivered;
  }

  private onAck(ack: number, sack: Uint8Array | undefined): void {
    const first = this.unacked[0];
    const lastSent = seqAdd(this.nextSeq, -1);
    if (seqDiff(ack, lastSent) > 0) return this.reject(LinkRejectCode.ackRange);
    if (first === undefined || seqDiff(ack, first.seq) < 0) {
      this.onSack(ack, sack);
      return;
    }
    let n = 0;
    let sample = -1;
    while (n < this.unacked.length && seqDiff((this.unacked[n] as Unacked).seq, ack) <= 0) {
      const u = this.unacked[n] as Unacked;
      // Karn's rule: only frames sent once give an unambiguous round-trip sample.
      if (u.transmissions === 1) sample = this.nowMs - u.firstSentMs;
      if (!u.more) this.out.acked.push(u.msg.tag);
      n++;
    }
    this.unacked.splice(0, n);
    if (sample >= 0) this.updateRtt(sample);
    else this.rtoMs = clamp(this.rtoMs, this.limits.retransmitTimeoutMsMin, this.limits.retransmitTimeoutMsMax);
    this.rtoDeadlineMs = this.unacked.length > 0 ? this.nowMs + this.rtoMs : Infinity;
    this.onSack(ack, sack);
  }

  private onSack(ack: number, sack: Uint8Array | undefined): void {
    if (sack === undefined || sack.length === 0 || this.unacked.length === 0) return;
    let highest = -1;
    for (const u of this.unacked) {
      const i = seqDiff(u.seq, ack) - 2;
      if (i < 0 || i >= sack.length * 8) continue;
      if ((((sack[i >>> 3] as number) >>> (i & 7)) & 1) === 1) {
        u.sacked = true;
        highest = i;
      }
    }
    if (highest < 0) return;
    // Fast retransmit: the receiver holds later frames, so the holes below the highest one it
    // holds were lost. Resend each at most once per round trip, not on every ack.
    const rtt = this.srttMs >= 0 ? this.srttMs : this.rtoMs;
    for (const u of this.unacked) {
      if (seqDiff(u.seq, ack) - 2 >= highest) break;
      if (!u.sacked && this.nowMs - u.lastSentMs >= rtt) u.resend = true;
    }
  }

  private updateRtt(sampleMs: number): void {
    const l = this.limits;
    if (this.srttMs < 0) {
      this.srttMs = sampleMs;
      this.rttvarMs = sampleMs / 2;
    } else {
      this.rttvarMs = 0.75 * this.rttvarMs + 0.25 * Math.abs(this.srttMs - sampleMs);
      this.srttMs = 0.875 * this.srttMs + 0.125 * sampleMs;
    }
    this.rtoMs = clamp(this.srttMs + 4 * this.rttvarMs, l.retransmitTimeoutMsMin, l.retransmitTimeoutMsMax);
  }

  private onData(frame: Frame): void {
    this.ackDue = true;
    const d = seqDiff(frame.seq, this.expectedSeq);
    if (d < 0 || (d > 0 && this.reorder.has(frame.seq))) {
      this.stats.duplicates++;
      return;
    }
    if (d > this.limits.reorderFramesMax) return this.reject(LinkRejectCode.window);
    const more = (frame.flags & FrameFlag.more) !== 0;
    if (d > 0) {
      this.reorder.set(frame.seq, { channel: frame.channel, payload: frame.payload, more });
      return;
    }
    this.accept(frame.channel, frame.payload, more);
    for (;;) {
      const next = this.reorder.get(this.expectedSeq);
      if (next === undefined) break;
      this.reorder.delete(this.expectedSeq);
      this.accept(next.channel, next.payload, next.more);
    }
  }

  /** Takes the next in-order DATA frame: a whole message, or a fragment to join. */
  private accept(channel: number, payload: Uint8Array, more: boolean): void {
    this.expectedSeq = seqAdd(this.expectedSeq, 1);
    if (this.partialChannel >= 0 && channel !== this.partialChannel) {
      // The sender never interleaves messages, so this is a broken peer: drop the half message.
      this.reject(LinkRejectCode.fragment);
      this.partial = [];
      this.partialBytes = 0;
      this.partialChannel = -1;
    }
    if (!more && this.partialChannel < 0) {
      this.out.messages.push({ channel, payload });
      this.stats.messagesDelivered++;
      return;
    }
    this.partial.push(payload);
    this.partialBytes += payload.length;
    this.partialChannel = channel;
    if (this.partialBytes > framePayloadBytesMax) {
      this.reject(LinkRejectCode.fragment);
      this.partial = [];
      this.partialBytes = 0;
      this.partialChannel = -1;
      return;
    }
    if (more) return;
    const whole = new Uint8Array(this.partialBytes);
    let off = 0;
    for (const p of this.partial) {
      whole.set(p, off);
      off += p.length;
    }
    this.partial = [];
    this.partialBytes = 0;
    this.partialChannel = -1;
    this.out.messages.push({ channel, payload: whole });
    this.stats.messagesDelivered++;
  }

  private onDatagram(frame: Frame): void {
    const last = this.lastDatagramSeq.get(frame.channel);
    if (last !== undefined && seqDiff(frame.seq, last) <= 0) return this.reject(LinkRejectCode.replay);
    this.lastDatagramSeq.set(frame.channel, frame.seq);
    this.stats.datagramsDelivered++;
    this.out.datagrams.push({ channel: frame.channel, payload: frame.payload });
  }

  /** Bit i (LSB first within each byte) says seq expected + 1 + i is held. Empty when in order. */
  private sackBitmap(): Uint8Array {
    if (this.reorder.size === 0) return empty;
    let top = 0;
    for (const seq of this.reorder.keys()) top = Math.max(top, seqDiff(seq, this.expectedSeq));
    const b = new Uint8Array(Math.min(sackBytesMax, (top + 7) >>> 3));
    for (const seq of this.reorder.keys()) {
      const i = seqDiff(seq, this.expectedSeq) - 1;
      if (i >= 0 && i < b.length * 8) b[i >>> 3] = (b[i >>> 3] as number) | (1 << (i & 7));
    }
    return b;
  }

  private encodeData(u: Unacked): Uint8Array {
    this.stats.dataFramesSent++;
    return this.encode({ type: FrameType.data, channel: u.msg.channel, seq: u.seq, dstGeneration: this.peerGen, payload: u.fragment }, u.more ? FrameFlag.more : 0);
  }

  private encode(f: { type: FrameType; channel: number; seq: number; dstGeneration: number; payload: Uint8Array }, extraFlags = 0): Uint8Array {
    return encodeFrame(
      { ...f, flags: this.flags | extraFlags, srcGeneration: this.gen, ack: seqAdd(this.expectedSeq, -1) },
      this.mac,
    );
  }

  private queuedCount(): number {
    return this.queue.length - this.queueHead;
  }

  private compactQueue(): void {
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    }
    assert(this.unacked.length <= this.limits.windowFramesMax, 'send window exceeded windowFramesMax');
  }
}

const empty = new Uint8Array(0);

function emptyReady(): ChannelReady {
  return { frames: [], messages: [], datagrams: [], acked: [], events: [] };
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

function checkChannel(channel: number): void {
  if (!Number.isInteger(channel) || channel < 0 || channel > 255) {
    throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `channel ${channel} is not 0..255`);
  }
}
