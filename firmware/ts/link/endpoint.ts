// The public face of the blade interconnect: what the HA status protocol and NVRAM
// mirroring use to talk to the partner blade, whatever paths carry the bytes.

import type { MultipathStats } from './core/multipath.ts';
import type { PathKind } from './core/multipath.ts';
import type { ChannelLimits } from './core/reliable.ts';

export type { MultipathStats, PathStats, ReliableMessage } from './core/multipath.ts';
export { reliablePayloadBytesMax } from './core/multipath.ts';

/**
 * Channel numbers and datagram types are one byte each. Reliable channels and datagram types
 * are separate spaces. Allocations live here so that two components never share one.
 */
export const LinkChannel = {
  /** NVRAM change-log mirroring (nvlog). */
  mirror: 1,
  /** Takeover/giveback requests and replies that need an answer (ha). */
  haControl: 2,
  /** IP pass-through of client requests (netfail, SPEC CF-3). */
  passThrough: 3,
} as const;

export const LinkDatagramType = {
  /** The HA status message (SPEC HA-1, HA-2): sent on every path, latest wins. */
  haStatus: 1,
  /** Network path beacons (SPEC CF-2). */
  beacon: 2,
} as const;

/**
 * Limits for a path over a real UART (115200 baud: about 11.5 KB/s, so a 4 KiB frame spends
 * some 360 ms on the wire and the driver's 16 KiB queue holds 1.4 s of traffic). A small window
 * keeps that queue short, and the first retransmit timeout exceeds a full queue's drain time so
 * that frames which are merely slow are not resent before the first round trip is measured.
 * Liveness must outlast a few frame times: one damaged 4 KiB frame leaves a 700 ms gap between
 * good frames, so the 500 ms of HA-5 (a fast interconnect in the seed) would flap the path.
 */
export const uartPathLimits: Readonly<Partial<ChannelLimits>> = Object.freeze({
  windowFramesMax: 4,
  reorderFramesMax: 4,
  // 710 ms of line time per frame at most: a 256 KiB mirror message goes as 32 fragments, and
  // the liveness timeout below never has to outlast one giant frame.
  fragmentBytesMax: 8192,
  retransmitTimeoutMsInitial: 2000,
  retransmitTimeoutMsMin: 200,
  retransmitTimeoutMsMax: 5000,
  retransmitBurstFramesMax: 2,
  livenessTimeoutMs: 2000,
});

export interface LinkEndpointEvents {
  /** A reliable message, in order, exactly once per peer generation. */
  message: (channel: number, payload: Uint8Array) => void;
  /** A datagram from `path`; the same datagram arrives once per path it was sent on. */
  datagram: (type: number, payload: Uint8Array, path: number) => void;
  pathUp: (path: number, name: string) => void;
  pathDown: (path: number, name: string) => void;
  /** A session with the peer (first contact, or after it restarted) is established. */
  peerEstablished: (peerGeneration: number) => void;
  /** The peer restarted; `undelivered` reliable messages were never acknowledged by the old generation. */
  peerRestart: (info: { previousGeneration: number; peerGeneration: number; undelivered: { channel: number; payload: Uint8Array }[] }) => void;
  /** Reliable traffic moved to `path` (-1: no usable path; messages wait). */
  activePath: (path: number) => void;
  /** There is room again after sendReliable returned false. */
  drain: () => void;
  /** A transport failed (the path stays configured; liveness reports it down). */
  error: (err: Error, path: number) => void;
}

/**
 * A message endpoint to the partner blade over one or more paths.
 *
 * Delivery guarantees:
 * - `sendAll` is unreliable: one copy per path with an established session, no retransmit.
 *   Receivers see each copy (tagged with its path) and keep the newest by their own
 *   generation/sequence (SPEC HA-3).
 * - `sendReliable` is exactly-once, in order, per channel and across channels, for as long as
 *   both blades keep their generation: it travels on the first healthy path in preference
 *   order; when that path goes down, every unacknowledged message is sent again on the next
 *   healthy one (at-least-once on the wire) and the receiver drops copies by message id.
 *   If the peer restarts, messages it did not acknowledge are returned in `peerRestart`.
 * - Back-pressure: `sendReliable` returns false when the caller should wait for `drain`.
 */
export interface LinkEndpoint {
  readonly localGeneration: number;
  /** 0 until the first session is established. */
  readonly peerGeneration: number;
  /** True iff some path is up with the current peer session. */
  readonly peerReachable: boolean;
  /** The path carrying reliable traffic, or -1. */
  readonly activePath: number;
  readonly writable: boolean;
  readonly paths: readonly { name: string; kind: PathKind }[];
  isPathUp(path: number): boolean;
  /** Unreliable broadcast on every path; returns how many paths it went out on. */
  sendAll(type: number, payload: Uint8Array): number;
  /** Reliable ordered message; false = wait for `drain` (the message is still accepted). */
  sendReliable(channel: number, payload: Uint8Array): boolean;
  on<E extends keyof LinkEndpointEvents>(event: E, listener: LinkEndpointEvents[E]): this;
  off<E extends keyof LinkEndpointEvents>(event: E, listener: LinkEndpointEvents[E]): this;
  stats(): MultipathStats;
  /**
   * Forgets the partner's session: only for a partner known from a trusted source (the
   * shared-disk mailboxes) to have come back with a lower generation, which the link refuses
   * as stale. Returns the reliable messages not yet acknowledged.
   */
  forgetPeer(): { channel: number; payload: Uint8Array }[];
  /** Stops timers and closes every transport; idempotent. */
  close(): Promise<void>;
}

/** Where a transport hands what it receives. */
export interface TransportSink {
  /** Stream: any chunk. Datagram: exactly one datagram. */
  data(bytes: Uint8Array): void;
  /** The transport accepts writes again after write() returned false. */
  drain(): void;
  /** The byte stream was replaced (reconnect): partial frames must be dropped. */
  reset(): void;
  error(err: Error): void;
}

/** One path's bytes: a serial port, a TCP connection, or a UDP socket pair. */
export interface PathTransport {
  readonly name: string;
  readonly kind: PathKind;
  /** Called once by the endpoint before any write. */
  start(sink: TransportSink): void;
  /**
   * Stream: queues bytes. Datagram: sends one datagram. Returns false when the transport is
   * congested (the bytes are still queued, or for a datagram dropped); `drain` follows.
   * Never throws for a missing connection: those bytes are lost and the protocol recovers.
   */
  write(bytes: Uint8Array): boolean;
  close(): Promise<void>;
}
