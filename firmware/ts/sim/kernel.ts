// The deterministic simulation kernel: one seed drives virtual time, the order of
// simultaneous events, I/O latencies and buggify(); async firmware code runs on it unchanged
// because it only ever sees the injected Clock, Timers and Prng.
import type { Clock, Timers } from '../core/clock.ts';
import { Prng } from '../core/prng.ts';
import { TwinbladeError } from '../core/errors.ts';
import { setBuggifyHook } from '../core/buggify.ts';
import { VirtualTime, type EventScheduler, type VirtualEvent, VirtualTimers } from '../hal/clock/sim/virtual.ts';
import { BuggifyPolicy, type BuggifyOptions } from './buggify.ts';

export const SimErrorCode = {
  /** The run took more than `stepCountMax` events: a livelock or a runaway workload. */
  stepLimit: 'ERR_SIM_STEP_LIMIT',
  /** Virtual time passed `virtualTimeMaxMs` before the stop condition held. */
  timeLimit: 'ERR_SIM_TIME_LIMIT',
  /** No event is pending and the stop condition does not hold: the system is stuck. */
  stalled: 'ERR_SIM_STALLED',
  /** A simulated task or event callback threw, or a checker called `fail`. */
  failed: 'ERR_SIM_FAILED',
  /** A second simulation tried to run while one was running (buggify is process-global). */
  busy: 'ERR_SIM_BUSY',
} as const;

export class SimulationError extends TwinbladeError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, code === SimErrorCode.stepLimit || code === SimErrorCode.timeLimit ? 'timeout' : 'io', message, options);
    this.name = 'SimulationError';
  }
}

export interface SimulationOptions {
  seed: number;
  /** Events one run may process before it fails (default 2,000,000). */
  stepCountMax?: number;
  /** Virtual milliseconds one run may last before it fails (default 24 h). */
  virtualTimeMaxMs?: number;
  /** buggify() policy; `false` leaves buggify() off for the run. */
  buggify?: BuggifyOptions | false;
  /** Wall-clock origin of the virtual clock (default 2024-01-01T00:00:00Z). */
  wallOriginNs?: bigint;
}

/** An inclusive latency range in virtual milliseconds. */
export interface LatencyRange {
  minMs: number;
  maxMs: number;
}

/**
 * A failure domain (one blade, one disk enclosure): its timers die with it. After `kill()`
 * pending callbacks never run, new `after` handles are inert and `sleep` never resolves, so
 * code "running" on a crashed blade simply stops, like on a real power cut.
 */
export class SimDomain implements EventScheduler {
  readonly timers: Timers;
  private readonly pending = new Set<VirtualEvent>();
  private dead = false;

  constructor(
    readonly name: string,
    clock: Clock,
    private readonly parent: EventScheduler,
  ) {
    this.timers = new VirtualTimers(clock, this);
  }

  get alive(): boolean {
    return !this.dead;
  }

  schedule(atMs: number, fn: () => void): VirtualEvent | undefined {
    if (this.dead) return undefined;
    const ev = this.parent.schedule(atMs, fn);
    if (ev === undefined) return undefined;
    this.pending.add(ev);
    ev.onSettled = () => this.pending.delete(ev);
    return ev;
  }

  cancel(ev: VirtualEvent): void {
    this.parent.cancel(ev);
  }

  /** Cancels every pending timer of the domain and refuses new ones. Idempotent. */
  kill(): void {
    if (this.dead) return;
    this.dead = true;
    for (const ev of [...this.pending]) this.parent.cancel(ev);
    this.pending.clear();
  }
}

/** buggify's hook is process-global, so only one run may be in progress at a time. */
let running = false;

/** Resolves after every microtask queued so far (and those they queue) has run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * One simulation run. Typical use:
 *
 *     const sim = new Simulation({ seed });
 *     const disk = new SimBlockDevice({ timers: sim.timers, prng: sim.fork() });
 *     sim.spawn('writer', () => workload(disk));
 *     await sim.runUntil(() => done);
 *
 * Determinism rule: simulated code may only wait on promises that the virtual timers
 * eventually resolve. Real I/O (files, sockets, real timers) inside a run breaks replay.
 */
export class Simulation implements EventScheduler {
  readonly seed: number;
  /** The root generator; prefer `fork()` for each component so they do not share a stream. */
  readonly prng: Prng;
  readonly clock: Clock;
  /** Timers of the "world" domain, which never dies. */
  readonly timers: Timers;
  readonly stepCountMax: number;
  readonly virtualTimeMaxMs: number;
  private readonly time: VirtualTime;
  private readonly tiePrng: Prng;
  private readonly buggifyPolicy: BuggifyPolicy | undefined;
  private failure: SimulationError | undefined;
  private stepCount = 0;
  private readonly tasks = new Map<string, number>();

  constructor(options: SimulationOptions) {
    this.seed = options.seed;
    this.prng = new Prng(options.seed);
    this.tiePrng = this.prng.fork();
    const buggifyPrng = this.prng.fork();
    this.time = new VirtualTime({ tieBreak: () => this.tiePrng.nextU32(), ...(options.wallOriginNs !== undefined ? { wallOriginNs: options.wallOriginNs } : {}) });
    this.clock = this.time.clock;
    this.timers = this.time.timers;
    this.stepCountMax = options.stepCountMax ?? 2_000_000;
    this.virtualTimeMaxMs = options.virtualTimeMaxMs ?? 24 * 3600 * 1000;
    this.buggifyPolicy = options.buggify === false ? undefined : new BuggifyPolicy(buggifyPrng, options.buggify ?? {});
  }

  get nowMs(): number {
    return this.clock.nowMs();
  }

  /** Events processed so far. */
  get steps(): number {
    return this.stepCount;
  }

  /** Number of events still scheduled. */
  get pendingEvents(): number {
    return this.time.queue.size;
  }

  schedule(atMs: number, fn: () => void): VirtualEvent {
    return this.time.schedule(atMs, fn);
  }

  cancel(ev: VirtualEvent): void {
    this.time.cancel(ev);
  }

  /** An independent generator for one component, derived from the seed. */
  fork(): Prng {
    return this.prng.fork();
  }

  /** A new failure domain (see SimDomain) whose timers can be killed at once. */
  domain(name: string): SimDomain {
    return new SimDomain(name, this.clock, this);
  }

  /** The buggify sites reached so far (empty when buggify is off). */
  buggifyReport(): { site: string; active: boolean; fired: number }[] {
    return this.buggifyPolicy?.siteReport() ?? [];
  }

  /** Marks the run failed (a checker found a violation); the run loop stops at once. */
  fail(reason: string, cause?: unknown): void {
    if (this.failure === undefined) {
      this.failure = new SimulationError(SimErrorCode.failed, reason, cause === undefined ? undefined : { cause });
    }
  }

  /**
   * Starts an async task. A rejection fails the run (with the task name); a task that is
   * still pending when the run ends is simply abandoned.
   */
  spawn(name: string, fn: () => Promise<unknown>): void {
    this.tasks.set(name, (this.tasks.get(name) ?? 0) + 1);
    const done = (): void => {
      const n = (this.tasks.get(name) ?? 1) - 1;
      if (n === 0) this.tasks.delete(name);
      else this.tasks.set(name, n);
    };
    let p: Promise<unknown>;
    try {
      p = fn();
    } catch (e) {
      done();
      this.fail(`task ${name} threw: ${describe(e)}`, e);
      return;
    }
    p.then(done, (e: unknown) => {
      done();
      this.fail(`task ${name} failed: ${describe(e)}`, e);
    });
  }

  /** Names of spawned tasks that have not finished (sorted), for stall diagnostics. */
  runningTasks(): string[] {
    return [...this.tasks.keys()].sort();
  }

  /**
   * Runs events until `stop` holds (a predicate checked after each event settles) or, when
   * `stop` is a number, until virtual time reaches it. Throws SimulationError on a failure,
   * on the step or time guard, or when nothing is scheduled and `stop` cannot become true.
   */
  async runUntil(stop: (() => boolean) | number): Promise<void> {
    if (running) {
      throw new SimulationError(SimErrorCode.busy, 'a simulation run is already in progress in this process (runs do not nest)');
    }
    running = true;
    if (this.buggifyPolicy !== undefined) setBuggifyHook(this.buggifyPolicy.hook);
    try {
      const untilMs = typeof stop === 'number' ? stop : undefined;
      const done = typeof stop === 'number' ? () => this.clock.nowMs() >= stop : stop;
      await settle();
      while (true) {
        if (this.failure !== undefined) throw this.failure;
        if (done()) return;
        const next = this.time.nextEventMs();
        if (untilMs !== undefined && (next === undefined || next > untilMs)) {
          this.time.clock.advanceTo(Math.max(untilMs, this.clock.nowMs()));
          return;
        }
        if (next === undefined) {
          const tasks = this.runningTasks();
          throw new SimulationError(
            SimErrorCode.stalled,
            `stalled at t=${fmtMs(this.clock.nowMs())}: no event pending and the stop condition does not hold` +
              (tasks.length > 0 ? ` (waiting tasks: ${tasks.join(', ')})` : ''),
          );
        }
        if (next > this.virtualTimeMaxMs) {
          throw new SimulationError(SimErrorCode.timeLimit, `virtual time limit ${fmtMs(this.virtualTimeMaxMs)} reached before the stop condition held`);
        }
        if (this.stepCount >= this.stepCountMax) {
          throw new SimulationError(SimErrorCode.stepLimit, `step limit ${this.stepCountMax} reached at t=${fmtMs(this.clock.nowMs())}`);
        }
        this.stepCount++;
        try {
          this.time.runNext();
        } catch (e) {
          this.fail(`event callback threw at t=${fmtMs(this.clock.nowMs())}: ${describe(e)}`, e);
        }
        await settle();
      }
    } finally {
      running = false;
      if (this.buggifyPolicy !== undefined) setBuggifyHook(undefined);
    }
  }

  /** Spawns `main` and runs until it settles; returns its value or throws its error. */
  async run<T>(main: () => Promise<T>): Promise<T> {
    let result: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    main().then(
      (value) => {
        result = { ok: true, value };
      },
      (error: unknown) => {
        result = { ok: false, error };
      },
    );
    await this.runUntil(() => result !== undefined);
    const r = result as { ok: true; value: T } | { ok: false; error: unknown };
    if (!r.ok) throw r.error;
    return r.value;
  }

  /** A latency drawn uniformly from `range` with the given generator (default: the root). */
  latencyMs(range: LatencyRange, prng: Prng = this.prng): number {
    return drawLatencyMs(prng, range);
  }
}

/** A latency drawn uniformly from an inclusive range, in whole microseconds. */
export function drawLatencyMs(prng: Prng, range: LatencyRange): number {
  if (range.maxMs <= range.minMs) return range.minMs;
  const spanUs = Math.round((range.maxMs - range.minMs) * 1000);
  return range.minMs + prng.int(spanUs + 1) / 1000;
}

/**
 * Completes an "I/O" after a random latency: runs `produce` at completion time and resolves
 * (or rejects) with its result. Sim drivers built on `{ timers, prng }` use this for every
 * operation so that completions interleave differently under each seed.
 */
export function completeAfter<T>(env: { timers: Timers; prng: Prng }, range: LatencyRange, produce: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    env.timers.after(drawLatencyMs(env.prng, range), () => {
      try {
        resolve(produce());
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

function fmtMs(ms: number): string {
  return `${Number.isInteger(ms) ? ms : ms.toFixed(3)}ms`;
}

function describe(e: unknown): string {
  if (e instanceof TwinbladeError) return `${e.code}: ${e.message}`;
  if (e instanceof Error) return e.message;
  return String(e);
}
