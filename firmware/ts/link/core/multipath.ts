// The multipath link session as a pure state machine: one ReliableChannel per path (serial,
// TCP, UDP), unreliable broadcast on every path (HA status, SPEC HA-1), and reliable ordered
// messages over the best healthy path with fail-over to another (SPEC CF-4). Per-message ids
// and receiver de-duplication turn at-least-once across fail-over into exactly-once in order.

import { InvalidArgumentError, TwinbladeError } from '../../core/errors.ts';
import { buggify } from '../../core/buggify.ts';
import { dataView } from '../../core/bytes.ts';
import { Deframer } from './deframer.ts';
import type { DeframerStats } from './deframer.ts';
import { FrameErrorCode, decodeFrame, framePayloadBytesMax } from './frame.ts';
import type { Mac } from './frame.ts';
import { ReliableChannel, seqDiff } from './reliable.ts';
import type { ChannelLimits, ChannelStats, InboundMessage, Role } from './reliable.ts';

/** How a path carries frames: a byte stream (serial, TCP) or one frame per datagram (UDP). */
export type PathKind = 'stream' | 'datagram';

export interface PathSpec {
  /** For logs and counters, e.g. "serial", "net0-udp". */
  name: string;
  kind: PathKind;
  /** Per-path limits (a slow serial line wants a smaller window than a LAN). */
  limits?: Partial<ChannelLimits>;
}

/** Named limits of the multipath session. */
export interface MultipathLimits {
  /** Reliable messages not yet acknowledged on any path at which sendReliable() returns false. */
  reliableHighWaterMessages: number;
  /** Reliable messages outstanding at which sendReliable() throws ERR_LINK_QUEUE_FULL. */
  reliableMessagesMax: number;
  /** Payload bytes outstanding at which sendReliable() returns false (messages are up to 256 KiB). */
  reliableHighWaterBytes: number;
  /** Payload bytes outstanding at which sendReliable() throws ERR_LINK_QUEUE_FULL. */
  reliableBytesMax: number;
}

export const defaultMultipathLimits: Readonly<MultipathLimits> = Object.freeze({
  reliableHighWaterMessages: 256,
  reliableMessagesMax: 4096,
  reliableHighWaterBytes: 8 * 1024 * 1024,
  reliableBytesMax: 256 * 1024 * 1024,
});

export interface MultipathConfig {
  /** This blade's boot generation (non-zero, increasing across boots; see ReliableChannel). */
  localGeneration: number;
  role: Role;
  mac: Mac;
  /** Paths in order of preference for reliable traffic (first = preferred). */
  paths: readonly PathSpec[];
  limits?: Partial<MultipathLimits>;
}

/**
 * Default fragment size on datagram paths: far below the 65 507-byte UDP limit, and small
 * enough that one lost IP fragment (six of them at a 1500-byte MTU) costs little to resend.
 */
export const datagramFragmentBytesMaxDefault = 8192;

/** Bytes of the message id that prefixes every reliable payload. */
export const reliableEnvelopeBytes = 4;
/** Largest payload sendReliable accepts. */
export const reliablePayloadBytesMax = framePayloadBytesMax - reliableEnvelopeBytes;

/** A reliable message as handed to the layer above. */
export interface ReliableMessage {
  channel: number;
  payload: Uint8Array;
}

/** A datagram as handed to the layer above, with the path it came on (HA tracks per-path liveness). */
export interface DatagramMessage {
  path: number;
  type: number;
  payload: Uint8Array;
}

export type MultipathEvent =
  | { type: 'pathUp'; path: number }
  | { type: 'pathDown'; path: number }
  /** The first session with the peer, or a session with a restarted peer, is established. */
  | { type: 'peerEstablished'; peerGeneration: number }
  /**
   * The peer restarted. Reliable messages it may not have received are returned (sent to
   * the old generation, never acknowledged); message numbering restarts.
   */
  | { type: 'peerRestart'; previousGeneration: number; peerGeneration: number; undelivered: ReliableMessage[] }
  /** The path carrying reliable traffic changed (fail-over or fail-back); -1 = none usable. */
  | { type: 'activePath'; path: number }
  /** sendReliable() returned false earlier and there is room again. */
  | { type: 'drain' };

export interface MultipathReady {
  /** Bytes to write per path (one stream chunk, or one datagram per element for datagram paths). */
  transmit: { path: number; frames: Uint8Array[] }[];
  /** Reliable messages in order, exactly once per peer generation. */
  messages: ReliableMessage[];
  datagrams: DatagramMessage[];
  events: MultipathEvent[];
}

export interface PathStats {
  name: string;
  kind: PathKind;
  up: boolean;
  established: boolean;
  peerGeneration: number;
  bytesIn: number;
  framesIn: number;
  channel: ChannelStats;
  /** Frame-level (decoder) and link-level rejections by stable code. */
  rejects: Record<string, number>;
  smoothedRttMs: number;
  retransmitTimeoutMs: number;
}

export interface MultipathStats {
  paths: PathStats[];
  activePath: number;
  peerGeneration: number;
  reliableOutstanding: number;
  reliableOutstandingBytes: number;
  reliableSent: number;
  reliableDelivered: number;
  /** Copies that arrived twice (over two paths after a fail-over) and were suppressed. */
  reliableDuplicates: number;
  rejects: Record<string, number>;
}

interface Outstanding {
  id: number;
  channel: number;
  /** The payload with its id envelope, as sent on every path. */
  wire: Uint8Array;
  user: Uint8Array;
  /** Paths this message was queued on. */
  paths: Set<number>;
}

interface Path {
  spec: PathSpec;
  channel: ReliableChannel;
  deframer: Deframer | undefined;
  datagramRejects: Record<string, number>;
  datagramStats: { bytesIn: number; framesIn: number };
  frames: Uint8Array[];
}

export class MultipathLink {
  readonly limits: Readonly<MultipathLimits>;
  private readonly paths: Path[];
  private readonly mac: Mac;
  private nowMs = 0;
  private peerGen = 0;
  private active = -1;

  // Reliable send side: outstanding messages keyed by an endpoint-lifetime tag, in send order.
  private nextTag = 1;
  private nextMsgId = 1;
  private readonly outstanding = new Map<number, Outstanding>();
  private outstandingBytes = 0;
  private needDrain = false;

  // Reliable receive side.
  private expectedMsgId = 1;
  private readonly reorder = new Map<number, ReliableMessage>();

  private messages: ReliableMessage[] = [];
  private datagrams: DatagramMessage[] = [];
  private events: MultipathEvent[] = [];
  private readonly counters = { reliableSent: 0, reliableDelivered: 0, reliableDuplicates: 0 };
  private readonly rejects: Record<string, number> = {};

  constructor(config: MultipathConfig) {
    if (config.paths.length === 0) throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', 'a link needs at least one path');
    this.limits = Object.freeze({ ...defaultMultipathLimits, ...config.limits });
    this.mac = config.mac;
    this.paths = config.paths.map((spec) => ({
      spec,
      channel: new ReliableChannel({
        localGeneration: config.localGeneration,
        role: config.role,
        mac: config.mac,
        // The multipath layer bounds reliable traffic itself; a path's own queue must never
        // refuse what it hands down.
        limits: {
          ...(spec.kind === 'datagram' ? { fragmentBytesMax: datagramFragmentBytesMaxDefault } : {}),
          ...spec.limits,
          sendQueueMessagesMax: Math.max(spec.limits?.sendQueueMessagesMax ?? 0, this.limits.reliableMessagesMax * 2),
        },
      }),
      deframer: spec.kind === 'stream' ? new Deframer({ mac: config.mac }) : undefined,
      datagramRejects: {},
      datagramStats: { bytesIn: 0, framesIn: 0 },
      frames: [],
    }));
  }

  get pathCount(): number {
    return this.paths.length;
  }
  /** The path carrying reliable traffic, or -1 when none is usable. */
  get activePath(): number {
    return this.active;
  }
  get peerGeneration(): number {
    return this.peerGen;
  }
  /** True iff some path is up with the current peer session. */
  get peerReachable(): boolean {
    return this.paths.some((_, i) => this.usable(i));
  }
  isPathUp(path: number): boolean {
    return this.path(path).channel.isUp;
  }
  /** False once outstanding reliable messages reach either high-water mark; `drain` follows. */
  get writable(): boolean {
    return this.outstanding.size < this.limits.reliableHighWaterMessages && this.outstandingBytes < this.limits.reliableHighWaterBytes;
  }

  /** Bytes (a stream chunk, or one whole datagram) that arrived on `path`. Never throws on content. */
  receive(path: number, bytes: Uint8Array, nowMs: number): void {
    this.advance(nowMs);
    const p = this.path(path);
    if (p.deframer !== undefined) {
      for (const f of p.deframer.push(bytes)) p.channel.receive(f, this.nowMs);
      return;
    }
    p.datagramStats.bytesIn += bytes.length;
    const r = decodeFrame(bytes, this.mac);
    if (!r.ok) {
      p.datagramRejects[r.code] = (p.datagramRejects[r.code] ?? 0) + 1;
      return;
    }
    p.datagramStats.framesIn++;
    p.channel.receive(r.frame, this.nowMs);
  }

  /** The byte stream of `path` was replaced (a TCP reconnect): drop any partial frame. */
  resetStream(path: number): void {
    this.path(path).deframer?.reset();
  }

  setPathWritable(path: number, writable: boolean): void {
    this.path(path).channel.setTransportWritable(writable);
  }

  tick(nowMs: number): void {
    this.advance(nowMs);
    for (const p of this.paths) p.channel.tick(this.nowMs);
  }

  /**
   * Sends an unreliable message of `type` (at most the smallest path fragmentBytesMax: 8 KiB
   * with a UDP path) on every path with an established session (SPEC
   * HA-1). Returns how many paths it went out on; 0 means the peer is unknown on every path.
   */
  sendAll(type: number, payload: Uint8Array): number {
    // All or nothing: check the size against every path before queueing on any.
    const max = Math.min(...this.paths.map((p) => p.channel.limits.fragmentBytesMax));
    if (payload.length > max) {
      throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `datagram of ${payload.length} bytes exceeds ${max}, the smallest fragmentBytesMax of the paths`);
    }
    let n = 0;
    for (const p of this.paths) if (p.channel.sendDatagram(type, payload)) n++;
    return n;
  }

  /**
   * Queues a reliable ordered message on `channel`. Returns false when the caller should
   * wait for `drain` (the message is accepted anyway). Throws ERR_LINK_QUEUE_FULL past
   * reliableMessagesMax, InvalidArgumentError for a bad channel or an oversized payload.
   */
  sendReliable(channel: number, payload: Uint8Array): boolean {
    if (!Number.isInteger(channel) || channel < 0 || channel > 255) {
      throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `channel ${channel} is not 0..255`);
    }
    if (payload.length > reliablePayloadBytesMax) {
      throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `payload of ${payload.length} bytes exceeds ${reliablePayloadBytesMax}`);
    }
    if (this.outstanding.size >= this.limits.reliableMessagesMax) {
      throw new TwinbladeError('ERR_LINK_QUEUE_FULL', 'busy', `reliableMessagesMax (${this.limits.reliableMessagesMax}) messages outstanding`);
    }
    if (this.outstandingBytes + payload.length > this.limits.reliableBytesMax) {
      throw new TwinbladeError('ERR_LINK_QUEUE_FULL', 'busy', `reliableBytesMax (${this.limits.reliableBytesMax}) bytes outstanding`);
    }
    const id = this.nextMsgId;
    this.nextMsgId = (this.nextMsgId + 1) >>> 0;
    const wire = new Uint8Array(reliableEnvelopeBytes + payload.length);
    dataView(wire).setUint32(0, id);
    wire.set(payload, reliableEnvelopeBytes);
    const o: Outstanding = { id, channel, wire, user: payload, paths: new Set() };
    const tag = this.nextTag++;
    this.outstanding.set(tag, o);
    this.outstandingBytes += payload.length;
    this.counters.reliableSent++;
    if (this.active >= 0) this.queueOn(this.active, tag, o);
    const w = this.writable;
    if (!w) this.needDrain = true;
    return w;
  }

  /**
   * Forgets the peer's session on every path (see ReliableChannel.forgetPeer: only for a
   * partner known, from a trusted source, to have come back with a lower generation). Returns
   * the reliable messages not yet acknowledged; message ids restart. The next handshake is a
   * first contact.
   */
  forgetPeer(): ReliableMessage[] {
    for (const p of this.paths) p.channel.forgetPeer();
    const undelivered = [...this.outstanding.values()].map((o) => ({ channel: o.channel, payload: o.user }));
    this.outstanding.clear();
    this.outstandingBytes = 0;
    this.nextMsgId = 1;
    this.expectedMsgId = 1;
    this.reorder.clear();
    this.peerGen = 0;
    return undelivered;
  }

  /** Collects what to transmit and deliver after a batch of input. */
  ready(): MultipathReady {
    // Two rounds: the first hands up what the paths received (which may establish a session
    // or change path health), the second sends what that made possible.
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < this.paths.length; i++) this.collect(i);
      this.choosePath();
    }
    if (this.needDrain && this.writable) {
      this.needDrain = false;
      this.events.push({ type: 'drain' });
    }
    const transmit: { path: number; frames: Uint8Array[] }[] = [];
    this.paths.forEach((p, i) => {
      if (p.frames.length > 0) transmit.push({ path: i, frames: p.frames });
      p.frames = [];
    });
    const r: MultipathReady = { transmit, messages: this.messages, datagrams: this.datagrams, events: this.events };
    this.messages = [];
    this.datagrams = [];
    this.events = [];
    return r;
  }

  stats(): MultipathStats {
    return {
      paths: this.paths.map((p) => {
        const d: DeframerStats | undefined = p.deframer?.stats;
        const rejects: Record<string, number> = { ...(d?.rejects ?? p.datagramRejects) };
        for (const [k, v] of Object.entries(p.channel.stats.rejects)) rejects[k] = (rejects[k] ?? 0) + v;
        return {
          name: p.spec.name,
          kind: p.spec.kind,
          up: p.channel.isUp,
          established: p.channel.established,
          peerGeneration: p.channel.peerGeneration,
          bytesIn: d?.bytesIn ?? p.datagramStats.bytesIn,
          framesIn: d?.framesAccepted ?? p.datagramStats.framesIn,
          channel: { ...p.channel.stats, rejects: { ...p.channel.stats.rejects } },
          rejects,
          smoothedRttMs: p.channel.smoothedRttMs,
          retransmitTimeoutMs: p.channel.retransmitTimeoutMs,
        };
      }),
      activePath: this.active,
      peerGeneration: this.peerGen,
      reliableOutstanding: this.outstanding.size,
      reliableOutstandingBytes: this.outstandingBytes,
      ...this.counters,
      rejects: { ...this.rejects },
    };
  }

  private path(i: number): Path {
    const p = this.paths[i];
    if (p === undefined) throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `no path ${i}`);
    return p;
  }

  private advance(nowMs: number): void {
    if (nowMs > this.nowMs) this.nowMs = nowMs;
  }

  private usable(i: number): boolean {
    const c = (this.paths[i] as Path).channel;
    return c.isUp && c.peerGeneration === this.peerGen && this.peerGen !== 0;
  }

  private collect(i: number): void {
    const p = this.paths[i] as Path;
    const r = p.channel.ready();
    for (const f of r.frames) p.frames.push(f);
    for (const e of r.events) {
      switch (e.type) {
        case 'up':
          this.events.push({ type: 'pathUp', path: i });
          break;
        case 'down':
          this.events.push({ type: 'pathDown', path: i });
          break;
        case 'established':
          this.onPeerGeneration(e.peerGeneration);
          break;
        case 'peerRestart':
        case 'drain':
          // Restart: the multipath layer holds every unacknowledged message itself and reports
          // them once (onPeerGeneration). Drain: back-pressure is the multipath layer's own.
          break;
      }
    }
    for (const tag of r.acked) {
      const o = this.outstanding.get(tag);
      if (o === undefined) continue;
      this.outstanding.delete(tag);
      this.outstandingBytes -= o.user.length;
    }
    for (const d of r.datagrams) {
      // A path still on an older peer session carries only late frames of a dead generation.
      if (p.channel.peerGeneration === this.peerGen) this.datagrams.push({ path: i, type: d.channel, payload: d.payload });
    }
    for (const m of r.messages) {
      if (p.channel.peerGeneration === this.peerGen) this.onMessage(m);
    }
  }

  private onPeerGeneration(gen: number): void {
    if (gen <= this.peerGen) return;
    const previous = this.peerGen;
    this.peerGen = gen;
    if (previous !== 0) {
      const undelivered = [...this.outstanding.values()].map((o) => ({ channel: o.channel, payload: o.user }));
      this.outstanding.clear();
      this.outstandingBytes = 0;
      this.nextMsgId = 1;
      this.expectedMsgId = 1;
      this.reorder.clear();
      this.events.push({ type: 'peerRestart', previousGeneration: previous, peerGeneration: gen, undelivered });
    }
    this.events.push({ type: 'peerEstablished', peerGeneration: gen });
  }

  private onMessage(m: InboundMessage): void {
    if (m.payload.length < reliableEnvelopeBytes) {
      this.rejects[FrameErrorCode.length] = (this.rejects[FrameErrorCode.length] ?? 0) + 1;
      return;
    }
    const id = dataView(m.payload).getUint32(0);
    const msg: ReliableMessage = { channel: m.channel, payload: m.payload.subarray(reliableEnvelopeBytes) };
    const d = seqDiff(id, this.expectedMsgId);
    if (d < 0 || (d > 0 && this.reorder.has(id))) {
      this.counters.reliableDuplicates++;
      return;
    }
    if (d > 0) {
      // Each path is ordered and fail-over resends from the oldest unacknowledged message, so
      // an honest peer never gets further ahead than what it may have outstanding.
      if (d > this.limits.reliableMessagesMax) {
        this.rejects['ERR_LINK_WINDOW'] = (this.rejects['ERR_LINK_WINDOW'] ?? 0) + 1;
        return;
      }
      this.reorder.set(id, msg);
      return;
    }
    this.deliver(msg);
    for (;;) {
      const next = this.reorder.get(this.expectedMsgId);
      if (next === undefined) break;
      this.reorder.delete(this.expectedMsgId);
      this.deliver(next);
    }
  }

  private deliver(m: ReliableMessage): void {
    this.messages.push(m);
    this.counters.reliableDelivered++;
    this.expectedMsgId = (this.expectedMsgId + 1) >>> 0;
  }

  private choosePath(): void {
    let best = -1;
    for (let i = 0; i < this.paths.length; i++) {
      if (this.usable(i)) {
        best = i;
        break;
      }
    }
    // Simulation only: switch to another healthy path for no reason, so fail-over (resend of
    // everything unacknowledged, duplicates dropped by id) runs far more often than paths fail.
    if (best >= 0 && buggify('link.switch-path', 0.02)) {
      for (let i = this.paths.length - 1; i > best; i--) {
        if (this.usable(i)) {
          best = i;
          break;
        }
      }
    }
    if (best === this.active) return;
    this.active = best;
    this.events.push({ type: 'activePath', path: best });
    if (best < 0) return;
    // Fail-over (and fail-back): everything not yet acknowledged goes out on the new path, in
    // order. The old path keeps its copies and resends them if it recovers; the receiver drops
    // whichever copy comes second. While the active path stays, sendReliable queues on it
    // directly, so this walk happens only on a change.
    for (const [tag, o] of this.outstanding) if (!o.paths.has(best)) this.queueOn(best, tag, o);
  }

  private queueOn(path: number, tag: number, o: Outstanding): void {
    o.paths.add(path);
    (this.paths[path] as Path).channel.send(o.channel, o.wire, tag);
  }
}
