// The link endpoint driver: binds the pure multipath core to real transports (serial/pty,
// TCP, UDP), a clock and timers. This is what the blade composition root constructs.

import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle, Timers } from '../core/clock.ts';
import { concatBytes } from '../core/bytes.ts';
import { InvalidArgumentError } from '../core/errors.ts';
import type { Mac } from './core/frame.ts';
import { MultipathLink } from './core/multipath.ts';
import type { MultipathLimits, MultipathStats, PathKind } from './core/multipath.ts';
import type { ChannelLimits, Role } from './core/reliable.ts';
import type { LinkEndpoint, LinkEndpointEvents, PathTransport } from './endpoint.ts';

/** How often the driver ticks the core (liveness, retransmits, keepalives). */
export const linkTickIntervalMsDefault = 10;

export interface MultipathEndpointOptions {
  localGeneration: number;
  role: Role;
  mac: Mac;
  /** Transports in order of preference for reliable traffic (first = preferred). */
  transports: readonly PathTransport[];
  /** Per-path limits, by index (e.g. a smaller window for a slow serial line). */
  pathLimits?: readonly (Partial<ChannelLimits> | undefined)[];
  limits?: Partial<MultipathLimits>;
  clock: Clock;
  timers: Timers;
  tickIntervalMs?: number;
}

export class MultipathEndpoint implements LinkEndpoint {
  readonly localGeneration: number;
  readonly paths: readonly { name: string; kind: PathKind }[];
  private readonly core: MultipathLink;
  private readonly transports: readonly PathTransport[];
  private readonly clock: Clock;
  private readonly emitter = new EventEmitter();
  private readonly tickTimer: TimerHandle;
  private flushQueued = false;
  private inputFlushQueued = false;
  private closed = false;
  private flushing = false;

  constructor(opts: MultipathEndpointOptions) {
    if (opts.transports.length === 0) throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', 'a link needs at least one transport');
    this.localGeneration = opts.localGeneration;
    this.transports = opts.transports;
    this.clock = opts.clock;
    this.paths = opts.transports.map((t) => ({ name: t.name, kind: t.kind }));
    this.core = new MultipathLink({
      localGeneration: opts.localGeneration,
      role: opts.role,
      mac: opts.mac,
      paths: opts.transports.map((t, i) => {
        const limits = opts.pathLimits?.[i];
        return limits === undefined ? { name: t.name, kind: t.kind } : { name: t.name, kind: t.kind, limits };
      }),
      ...(opts.limits === undefined ? {} : { limits: opts.limits }),
    });
    // Errors are reported as events; without a listener they must not crash the blade.
    this.emitter.on('error', () => undefined);
    opts.transports.forEach((t, i) => {
      t.start({
        data: (bytes) => {
          if (this.closed) return;
          this.core.receive(i, bytes, this.clock.nowMs());
          // A stream chunk usually holds many frames already; answering it at once keeps the
          // sender's window moving. Datagrams come one frame per callback: batch those.
          if (t.kind === 'stream') this.flush();
          else this.scheduleInputFlush();
        },
        drain: () => {
          if (this.closed) return;
          this.core.setPathWritable(i, true);
          this.flush();
        },
        reset: () => {
          this.core.resetStream(i);
          this.core.setPathWritable(i, true);
        },
        error: (err) => {
          this.emitter.emit('error', err, i);
        },
      });
    });
    const interval = opts.tickIntervalMs ?? linkTickIntervalMsDefault;
    const onTick = (): void => {
      if (this.closed) return;
      this.core.tick(this.clock.nowMs());
      this.flush();
      this.tickTimer.refresh();
    };
    this.tickTimer = opts.timers.after(interval, onTick);
    this.core.tick(this.clock.nowMs());
    this.scheduleFlush();
  }

  get peerGeneration(): number {
    return this.core.peerGeneration;
  }
  get peerReachable(): boolean {
    return this.core.peerReachable;
  }
  get activePath(): number {
    return this.core.activePath;
  }
  get writable(): boolean {
    return this.core.writable;
  }
  isPathUp(path: number): boolean {
    return this.core.isPathUp(path);
  }

  sendAll(type: number, payload: Uint8Array): number {
    const n = this.core.sendAll(type, payload);
    this.scheduleFlush();
    return n;
  }

  sendReliable(channel: number, payload: Uint8Array): boolean {
    const w = this.core.sendReliable(channel, payload);
    this.scheduleFlush();
    return w;
  }

  on<E extends keyof LinkEndpointEvents>(event: E, listener: LinkEndpointEvents[E]): this {
    this.emitter.on(event, listener);
    return this;
  }
  off<E extends keyof LinkEndpointEvents>(event: E, listener: LinkEndpointEvents[E]): this {
    this.emitter.off(event, listener);
    return this;
  }

  stats(): MultipathStats {
    return this.core.stats();
  }

  /**
   * Forgets the partner's session, for a partner known (from the shared-disk mailboxes, never
   * from the link) to have come back with a lower generation than before, which the link would
   * otherwise refuse as a replay forever. Returns the reliable messages not yet acknowledged.
   */
  forgetPeer(): { channel: number; payload: Uint8Array }[] {
    const undelivered = this.core.forgetPeer();
    this.scheduleFlush();
    return undelivered;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.tickTimer.cancel();
    await Promise.all(this.transports.map((t) => t.close()));
  }

  /**
   * Datagrams that arrive in one pass of the event loop's poll phase (libuv hands over many,
   * one callback each) are answered by one flush: one cumulative ACK for all of them instead of
   * one per frame.
   */
  private scheduleInputFlush(): void {
    if (this.inputFlushQueued || this.closed) return;
    this.inputFlushQueued = true;
    setImmediate(() => {
      this.inputFlushQueued = false;
      this.flush();
    });
  }

  /** Sends made in one synchronous burst go out together in one write per path. */
  private scheduleFlush(): void {
    if (this.flushQueued || this.closed) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.closed) return;
    if (this.flushing) {
      // A listener sent from inside an event we are emitting: pick it up right after.
      this.scheduleFlush();
      return;
    }
    this.flushing = true;
    try {
      const r = this.core.ready();
      for (const t of r.transmit) {
        const transport = this.transports[t.path] as PathTransport;
        if (transport.kind === 'stream') {
          const bytes = t.frames.length === 1 ? (t.frames[0] as Uint8Array) : concatBytes(t.frames);
          if (!transport.write(bytes)) this.core.setPathWritable(t.path, false);
        } else {
          for (const f of t.frames) transport.write(f);
        }
      }
      for (const e of r.events) {
        switch (e.type) {
          case 'pathUp':
          case 'pathDown':
            this.emitter.emit(e.type, e.path, (this.paths[e.path] as { name: string }).name);
            break;
          case 'peerEstablished':
            this.emitter.emit('peerEstablished', e.peerGeneration);
            break;
          case 'peerRestart':
            this.emitter.emit('peerRestart', { previousGeneration: e.previousGeneration, peerGeneration: e.peerGeneration, undelivered: e.undelivered });
            break;
          case 'activePath':
            this.emitter.emit('activePath', e.path);
            break;
          case 'drain':
            this.emitter.emit('drain');
            break;
        }
      }
      for (const m of r.messages) this.emitter.emit('message', m.channel, m.payload);
      for (const d of r.datagrams) this.emitter.emit('datagram', d.type, d.payload, d.path);
    } finally {
      this.flushing = false;
    }
  }
}
