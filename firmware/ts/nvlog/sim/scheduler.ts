// A deterministic discrete-event scheduler with virtual time, used by the nvlog simulation
// area and the crash-point tests: every asynchronous step (a persist completing, a message
// arriving, a timer) is one event, so a test can cut power between any two of them.
import type { Clock, TimerHandle, Timers } from '../../core/clock.ts';

interface Event {
  at: number;
  id: number;
  label: string;
  fn: () => void;
  canceled: boolean;
}

/** Lets every pending promise continuation run (a macrotask boundary). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * What the two-blade harness needs from a simulation: virtual time, timers, and one-shot
 * events. Implemented by `StepScheduler` (step-granular, for crash-point enumeration) and by
 * `KernelScheduler` over the project's simulation kernel (sim/kernel.ts).
 */
export interface PairScheduler extends Clock, Timers {
  /** Runs `fn` after `delayMs` of virtual time; `label` names the step in traces. */
  at(delayMs: number, label: string, fn: () => void): unknown;
}

/** The project's simulation kernel seen as a PairScheduler (labels are not kept). */
export class KernelScheduler implements PairScheduler {
  constructor(private readonly kernel: { clock: Clock; timers: Timers; schedule(atMs: number, fn: () => void): unknown }) {}
  nowMs(): number {
    return this.kernel.clock.nowMs();
  }
  wallNs(): bigint {
    return this.kernel.clock.wallNs();
  }
  at(delayMs: number, _label: string, fn: () => void): unknown {
    return this.kernel.schedule(this.kernel.clock.nowMs() + Math.max(0, delayMs), fn);
  }
  after(delayMs: number, fn: () => void): TimerHandle {
    return this.kernel.timers.after(delayMs, fn);
  }
  sleep(delayMs: number): Promise<void> {
    return this.kernel.timers.sleep(delayMs);
  }
}

export class StepScheduler implements PairScheduler {
  private now = 0;
  private nextId = 0;
  private queue: Event[] = [];
  /** Events run so far. */
  steps = 0;
  /** When set, called before each event with its label; returning true stops before running it. */
  stopBefore: ((step: number, label: string) => boolean) | undefined;

  nowMs(): number {
    return this.now;
  }

  wallNs(): bigint {
    return 1_700_000_000_000_000_000n + BigInt(Math.round(this.now * 1e6));
  }

  /** Schedules `fn` after `delayMs` of virtual time; events at the same time run in order. */
  at(delayMs: number, label: string, fn: () => void): Event {
    const ev: Event = { at: this.now + Math.max(0, delayMs), id: this.nextId++, label, fn, canceled: false };
    // Insertion keeps the queue sorted by (at, id); queues here stay short.
    let i = this.queue.length;
    while (i > 0 && compare(this.queue[i - 1] as Event, ev) > 0) i--;
    this.queue.splice(i, 0, ev);
    return ev;
  }

  after(delayMs: number, fn: () => void): TimerHandle {
    let ev = this.at(delayMs, 'timer', fn);
    return {
      cancel: () => {
        ev.canceled = true;
      },
      refresh: () => {
        ev.canceled = true;
        ev = this.at(delayMs, 'timer', fn);
      },
    };
  }

  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.at(delayMs, 'sleep', resolve));
  }

  get pending(): number {
    return this.queue.filter((e) => !e.canceled).length;
  }

  /** Runs the next event and lets its consequences settle. False when none is left or stopped. */
  async step(): Promise<boolean> {
    let ev = this.queue.shift();
    while (ev !== undefined && ev.canceled) ev = this.queue.shift();
    if (ev === undefined) return false;
    if (this.stopBefore !== undefined && this.stopBefore(this.steps, ev.label)) {
      this.queue.unshift(ev);
      return false;
    }
    this.now = Math.max(this.now, ev.at);
    this.steps++;
    ev.fn();
    await settle();
    return true;
  }

  /** Runs events until virtual time passes `tMs`, nothing is left, or `stopBefore` stops. */
  async runUntil(tMs: number): Promise<boolean> {
    for (;;) {
      let next = this.queue.find((e) => !e.canceled);
      if (next === undefined || next.at > tMs) {
        // Work started by the caller may not have scheduled its first event yet.
        await settle();
        next = this.queue.find((e) => !e.canceled);
      }
      if (next === undefined || next.at > tMs) {
        this.now = Math.max(this.now, tMs);
        return true;
      }
      if (!(await this.step())) return false;
    }
  }
}

function compare(a: Event, b: Event): number {
  return a.at - b.at || a.id - b.id;
}
