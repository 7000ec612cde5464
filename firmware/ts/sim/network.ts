// A simulated message network between named endpoints: per-direction latency, loss,
// duplication, reordering, one-way or two-way cuts and partitions, all drawn from the seed.
// Generic (Uint8Array messages) so that the HA, link and nvlog areas can each model their
// paths with it: one SimNetwork per path (serial link, net1, net2, ...).
import type { Clock, Timers } from '../core/clock.ts';
import type { Prng } from '../core/prng.ts';
import { InvalidArgumentError } from '../core/errors.ts';
import { drawLatencyMs, type LatencyRange } from './kernel.ts';

export interface LinkProfile {
  latency: LatencyRange;
  /** Chance that a message is silently dropped. */
  lossProbability: number;
  /** Chance that a message is delivered twice (the copy with its own latency). */
  duplicateProbability: number;
  /**
   * Chance that a message is held back by `reorderDelay` extra, letting later ones pass it
   * (on a `fifo` direction the later ones wait behind it instead).
   */
  reorderProbability: number;
  reorderDelay: LatencyRange;
  /** When true, messages on this direction are delivered in send order (a serial cable). */
  fifo: boolean;
  /** Chance that a delivered copy has one random bit flipped (a noisy UART; checksums must catch it). */
  corruptProbability: number;
  /**
   * Line rate in bytes per virtual millisecond (e.g. 92.16 for 921600 baud 8N1); messages on
   * a direction queue behind each other for their transmission time. Infinity: no limit.
   */
  bytesPerMs: number;
}

export const defaultLinkProfile: LinkProfile = {
  latency: { minMs: 0.05, maxMs: 0.5 },
  lossProbability: 0,
  duplicateProbability: 0,
  reorderProbability: 0,
  reorderDelay: { minMs: 1, maxMs: 5 },
  fifo: false,
  corruptProbability: 0,
  bytesPerMs: Number.POSITIVE_INFINITY,
};

/** Spacing between deliveries on a FIFO direction when latencies would collide. */
export const fifoSpacingMs = 0.001;

export type MessageHandler = (from: string, data: Uint8Array) => void;

export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  corrupted: number;
}

/** One node's attachment to the network. */
export class SimEndpoint {
  private readonly handlers = new Set<MessageHandler>();
  constructor(
    readonly name: string,
    private readonly net: SimNetwork,
  ) {}

  /** Sends a copy of `data` to `to`; delivery is asynchronous and may fail silently. */
  send(to: string, data: Uint8Array): void {
    this.net.send(this.name, to, data);
  }

  /** Subscribes to messages for this endpoint; returns the unsubscribe function. */
  onMessage(handler: MessageHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** @internal Called by the network at delivery time. */
  deliver(from: string, data: Uint8Array): void {
    for (const h of [...this.handlers]) h(from, data.slice());
  }
}

function key(from: string, to: string): string {
  return `${from}\u0000${to}`;
}

export interface SimNetworkOptions {
  /** For logs: "serial", "net1". */
  name?: string;
  defaultProfile?: Partial<LinkProfile>;
}

export class SimNetwork {
  readonly name: string;
  private readonly endpoints = new Map<string, SimEndpoint>();
  private readonly profiles = new Map<string, LinkProfile>();
  private readonly cuts = new Set<string>();
  private readonly down = new Set<string>();
  private readonly lastDeliveryMs = new Map<string, number>();
  private groups: Map<string, number> | undefined;
  private readonly defaultProfile: LinkProfile;
  private readonly lineBusyUntilMs = new Map<string, number>();
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, corrupted: 0 };

  constructor(
    private readonly env: { timers: Timers; prng: Prng; clock: Clock },
    options: SimNetworkOptions = {},
  ) {
    this.name = options.name ?? 'net';
    this.defaultProfile = { ...defaultLinkProfile, ...options.defaultProfile };
  }

  /** The endpoint called `name` (created on first use). */
  endpoint(name: string): SimEndpoint {
    let ep = this.endpoints.get(name);
    if (ep === undefined) {
      ep = new SimEndpoint(name, this);
      this.endpoints.set(name, ep);
    }
    return ep;
  }

  /** Sets the profile of the direction from → to (unset fields keep their current value). */
  setProfile(from: string, to: string, profile: Partial<LinkProfile>): void {
    this.profiles.set(key(from, to), { ...this.profile(from, to), ...profile });
  }

  /** Sets the profile of both directions between a and b. */
  setLinkProfile(a: string, b: string, profile: Partial<LinkProfile>): void {
    this.setProfile(a, b, profile);
    this.setProfile(b, a, profile);
  }

  profile(from: string, to: string): LinkProfile {
    return this.profiles.get(key(from, to)) ?? this.defaultProfile;
  }

  /** Cuts the path between a and b in both directions; messages in flight are lost too. */
  cut(a: string, b: string): void {
    this.cuts.add(key(a, b));
    this.cuts.add(key(b, a));
  }

  /** Cuts only the direction from → to. */
  cutOneWay(from: string, to: string): void {
    this.cuts.add(key(from, to));
  }

  /** Restores both directions between a and b. */
  restore(a: string, b: string): void {
    this.cuts.delete(key(a, b));
    this.cuts.delete(key(b, a));
  }

  /** Splits the endpoints into groups that cannot reach each other (unlisted endpoints are isolated). */
  partition(groups: readonly (readonly string[])[]): void {
    const m = new Map<string, number>();
    groups.forEach((g, i) => {
      for (const name of g) {
        if (m.has(name)) throw new InvalidArgumentError('ERR_SIM_NET_PARTITION', `endpoint ${name} is in two partition groups`);
        m.set(name, i);
      }
    });
    this.groups = m;
  }

  /** Removes the partition (cuts made with `cut` stay). */
  heal(): void {
    this.groups = undefined;
  }

  /** Takes an endpoint off the network (its node crashed) or puts it back. */
  setUp(name: string, up: boolean): void {
    if (up) this.down.delete(name);
    else this.down.add(name);
  }

  /** Whether a message sent now from → to could be delivered. */
  connected(from: string, to: string): boolean {
    if (this.down.has(from) || this.down.has(to) || this.cuts.has(key(from, to))) return false;
    if (this.groups !== undefined) {
      const gf = this.groups.get(from);
      const gt = this.groups.get(to);
      if (gf === undefined || gt === undefined || gf !== gt) return false;
    }
    return true;
  }

  /** @internal Use SimEndpoint.send. */
  send(from: string, to: string, data: Uint8Array): void {
    this.stats.sent++;
    const copy = data.slice();
    const p = this.profile(from, to);
    const prng = this.env.prng;
    if (!this.connected(from, to) || prng.chance(p.lossProbability)) {
      this.stats.dropped++;
      return;
    }
    this.schedule(from, to, copy, p);
    if (prng.chance(p.duplicateProbability)) {
      this.stats.duplicated++;
      this.schedule(from, to, copy, p);
    }
  }

  private schedule(from: string, to: string, data: Uint8Array, p: LinkProfile): void {
    const prng = this.env.prng;
    let delay = drawLatencyMs(prng, p.latency);
    if (Number.isFinite(p.bytesPerMs) && p.bytesPerMs > 0) {
      // The message occupies the line for its transmission time, after those queued before it.
      const k = key(from, to);
      const now = this.env.clock.nowMs();
      const start = Math.max(now, this.lineBusyUntilMs.get(k) ?? 0);
      const done = start + data.length / p.bytesPerMs;
      this.lineBusyUntilMs.set(k, done);
      delay += done - now;
    }
    // On a FIFO direction a "reorder" is a stall: later messages wait behind the held one.
    if (prng.chance(p.reorderProbability)) delay += drawLatencyMs(prng, p.reorderDelay);
    if (p.fifo) {
      // Never overtake an earlier message on a FIFO direction: strictly later, because events
      // due at the same instant run in seeded random order.
      const k = key(from, to);
      const now = this.env.clock.nowMs();
      const last = this.lastDeliveryMs.get(k) ?? -1;
      if (now + delay <= last) delay = last - now + fifoSpacingMs;
      this.lastDeliveryMs.set(k, now + delay);
    }
    this.env.timers.after(delay, () => {
      const dest = this.endpoints.get(to);
      if (dest === undefined || !this.connected(from, to)) {
        this.stats.dropped++;
        return;
      }
      this.stats.delivered++;
      let payload = data;
      if (data.length > 0 && prng.chance(p.corruptProbability)) {
        payload = data.slice();
        const bit = prng.int(data.length * 8);
        payload[bit >> 3] = (payload[bit >> 3] as number) ^ (1 << (bit & 7));
        this.stats.corrupted++;
      }
      dest.deliver(from, payload);
    });
  }
}
