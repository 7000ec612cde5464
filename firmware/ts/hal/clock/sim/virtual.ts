// Virtual time: a Clock and Timers driven by an explicit event queue instead of the process
// clock, so that a simulation (sim/kernel.ts) or a unit test decides when time passes.
import type { Clock, TimerHandle, Timers } from '../../../core/clock.ts';
import { InvalidArgumentError } from '../../../core/errors.ts';
import { assert } from '../../../core/assert.ts';

/** Default wall-clock origin of virtual time: 2024-01-01T00:00:00Z, fixed so runs are reproducible. */
export const virtualWallOriginNs = 1_704_067_200_000_000_000n;

/** One scheduled callback. Ordered by `atMs`, then by `tie` (seeded), then by `seq` (FIFO). */
export interface VirtualEvent {
  readonly atMs: number;
  readonly tie: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
  /** Called once when the event leaves the queue (fired or cancelled); used by domains. */
  onSettled: (() => void) | undefined;
}

function before(a: VirtualEvent, b: VirtualEvent): boolean {
  if (a.atMs !== b.atMs) return a.atMs < b.atMs;
  if (a.tie !== b.tie) return a.tie < b.tie;
  return a.seq < b.seq;
}

/** A binary min-heap of events. Cancelled events stay in the heap and are skipped lazily. */
export class EventQueue {
  private readonly heap: VirtualEvent[] = [];
  private seq = 0;
  private live = 0;

  /** Number of events that will still fire. */
  get size(): number {
    return this.live;
  }

  push(atMs: number, tie: number, fn: () => void): VirtualEvent {
    const ev: VirtualEvent = { atMs, tie, seq: this.seq++, fn, cancelled: false, onSettled: undefined };
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent] as VirtualEvent;
      if (!before(ev, p)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = ev;
    this.live++;
    return ev;
  }

  cancel(ev: VirtualEvent): void {
    if (ev.cancelled) return;
    ev.cancelled = true;
    this.live--;
    ev.onSettled?.();
  }

  /** Time of the next live event, or undefined when nothing is scheduled. */
  peekTimeMs(): number | undefined {
    this.dropCancelled();
    return this.heap[0]?.atMs;
  }

  /** Removes and returns the next live event. */
  pop(): VirtualEvent | undefined {
    this.dropCancelled();
    const ev = this.removeTop();
    if (ev !== undefined) {
      this.live--;
      // Marking it cancelled makes a late cancel() of a fired event a no-op.
      ev.cancelled = true;
    }
    return ev;
  }

  private dropCancelled(): void {
    while (this.heap.length > 0 && (this.heap[0] as VirtualEvent).cancelled) this.removeTop();
  }

  private removeTop(): VirtualEvent | undefined {
    const h = this.heap;
    const top = h[0];
    if (top === undefined) return undefined;
    const last = h.pop() as VirtualEvent;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      while (true) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        if (r < n && before(h[r] as VirtualEvent, h[l] as VirtualEvent)) c = r;
        if (!before(h[c] as VirtualEvent, last)) break;
        h[i] = h[c] as VirtualEvent;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

/** A monotonic virtual clock. Only the owner of the event queue advances it. */
export class VirtualClock implements Clock {
  private now = 0;
  constructor(private readonly wallOriginNs: bigint = virtualWallOriginNs) {}
  nowMs(): number {
    return this.now;
  }
  wallNs(): bigint {
    return this.wallOriginNs + BigInt(Math.round(this.now * 1_000_000));
  }
  /** Moves time forward to `ms`; time never goes back. */
  advanceTo(ms: number): void {
    assert(ms >= this.now, () => `virtual time would go back from ${this.now} to ${ms}`);
    this.now = ms;
  }
}

export const VirtualTimeErrorCode = {
  invalidDelay: 'ERR_TIMER_INVALID_DELAY',
} as const;

function checkDelay(delayMs: number): number {
  if (typeof delayMs !== 'number' || Number.isNaN(delayMs)) {
    throw new InvalidArgumentError(VirtualTimeErrorCode.invalidDelay, `timer delay must be a number, got ${String(delayMs)}`);
  }
  // Like real timers, a negative delay means "as soon as possible".
  return Math.max(0, delayMs);
}

/** Schedules into an EventQueue on behalf of VirtualTimers (the kernel adds domains). */
export interface EventScheduler {
  schedule(atMs: number, fn: () => void): VirtualEvent | undefined;
  cancel(ev: VirtualEvent): void;
}

/** Timers on virtual time. A callback never runs inside `after`; it runs when its time is reached. */
export class VirtualTimers implements Timers {
  constructor(
    private readonly clock: Clock,
    private readonly scheduler: EventScheduler,
  ) {}

  after(delayMs: number, fn: () => void): TimerHandle {
    const delay = checkDelay(delayMs);
    let ev = this.scheduler.schedule(this.clock.nowMs() + delay, fn);
    return {
      cancel: () => {
        if (ev !== undefined) this.scheduler.cancel(ev);
      },
      refresh: () => {
        if (ev !== undefined) this.scheduler.cancel(ev);
        ev = this.scheduler.schedule(this.clock.nowMs() + delay, fn);
      },
    };
  }

  sleep(delayMs: number): Promise<void> {
    const delay = checkDelay(delayMs);
    return new Promise((resolve) => {
      this.scheduler.schedule(this.clock.nowMs() + delay, resolve);
    });
  }
}

export interface VirtualTimeOptions {
  /** Breaks ties between events due at the same time; default 0 (first scheduled runs first). */
  tieBreak?: () => number;
  wallOriginNs?: bigint;
}

/**
 * A self-contained virtual time source: clock, timers and queue. Unit tests of pure code use
 * `advanceBy`, which fires due callbacks synchronously; the simulation kernel uses
 * `runNext` and lets promises settle between events.
 */
export class VirtualTime implements EventScheduler {
  readonly clock: VirtualClock;
  readonly timers: VirtualTimers;
  readonly queue = new EventQueue();
  private readonly tieBreak: () => number;

  constructor(options: VirtualTimeOptions = {}) {
    this.clock = new VirtualClock(options.wallOriginNs);
    this.timers = new VirtualTimers(this.clock, this);
    this.tieBreak = options.tieBreak ?? (() => 0);
  }

  schedule(atMs: number, fn: () => void): VirtualEvent {
    return this.queue.push(atMs, this.tieBreak(), fn);
  }

  cancel(ev: VirtualEvent): void {
    this.queue.cancel(ev);
  }

  /** Time of the next pending event, if any. */
  nextEventMs(): number | undefined {
    return this.queue.peekTimeMs();
  }

  /** Advances to the next event and runs it. Returns false when nothing is scheduled. */
  runNext(): boolean {
    const ev = this.queue.pop();
    if (ev === undefined) return false;
    this.clock.advanceTo(Math.max(ev.atMs, this.clock.nowMs()));
    try {
      ev.fn();
    } finally {
      ev.onSettled?.();
    }
    return true;
  }

  /** Runs every event due within `ms` from now (synchronously), then sets the clock to now + ms. */
  advanceBy(ms: number): void {
    const target = this.clock.nowMs() + checkDelay(ms);
    while (true) {
      const next = this.queue.peekTimeMs();
      if (next === undefined || next > target) break;
      this.runNext();
    }
    this.clock.advanceTo(target);
  }
}
