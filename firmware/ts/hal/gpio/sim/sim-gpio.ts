// Simulated GPIO: a chip of lines with a back door (drive an input's physical level, observe
// an output's, inject I/O failures). Edge events reach watchers through the injected Timers,
// so they interleave deterministically with everything else in a simulation.
import type { Timers } from '../../../core/clock.ts';
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';
import { GpioErrorCode, type GpioDirection, type GpioEdge, type GpioLine, type GpioValue } from '../gpio.ts';

export interface SimGpioLineOptions {
  direction: GpioDirection;
  /** Logical level = physical level inverted (a line that is active when pulled low). */
  activeLow?: boolean;
  /** Logical level an output starts at (default 0). */
  initial?: GpioValue;
  name?: string;
}

interface LineState {
  physical: GpioValue;
  failed: boolean;
  outputListeners: Set<(physical: GpioValue) => void>;
  open: SimGpioLine | undefined;
}

function checkValue(value: unknown): asserts value is GpioValue {
  if (value !== 0 && value !== 1) throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `GPIO value must be 0 or 1, got ${String(value)}`);
}

/** A simulated GPIO controller with `lineCount` lines, numbered from 0. */
export class SimGpioChip {
  private readonly lines: LineState[];
  /** Virtual delay between a level change and the edge callback (models the interrupt path). */
  readonly edgeLatencyMs: number;

  constructor(
    private readonly env: { timers: Timers },
    readonly name = 'sim-gpiochip',
    readonly lineCount = 64,
    options: { edgeLatencyMs?: number } = {},
  ) {
    this.edgeLatencyMs = options.edgeLatencyMs ?? 0.01;
    this.lines = Array.from({ length: lineCount }, () => ({ physical: 0, failed: false, outputListeners: new Set(), open: undefined }));
  }

  private state(line: number): LineState {
    const s = Number.isInteger(line) ? this.lines[line] : undefined;
    if (s === undefined) throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `${this.name} has no line ${line}`);
    return s;
  }

  /** Opens a line; one user per line at a time, like the kernel's line requests. */
  open(line: number, options: SimGpioLineOptions): GpioLine {
    const s = this.state(line);
    if (s.open !== undefined) throw new TwinbladeError(GpioErrorCode.io, 'busy', `${this.name} line ${line} is already open`);
    const l = new SimGpioLine(this, line, s, options, this.env.timers);
    s.open = l;
    return l;
  }

  // ---- back door (tests, the rig, simulation areas) ----

  /** Sets the physical level seen on `line` (an external signal driving an input). */
  drive(line: number, physical: GpioValue): void {
    checkValue(physical);
    const s = this.state(line);
    if (s.open?.direction === 'out') throw new InvalidArgumentError(GpioErrorCode.direction, `${this.name} line ${line} is an output; it cannot be driven externally`);
    this.setPhysical(s, physical);
  }

  /** The physical level of `line` (what a scope on the pin would show). */
  level(line: number): GpioValue {
    return this.state(line).physical;
  }

  /** Calls `listener` with the physical level on every write to output `line`; returns unsubscribe. */
  onOutput(line: number, listener: (physical: GpioValue) => void): () => void {
    const s = this.state(line);
    s.outputListeners.add(listener);
    return () => s.outputListeners.delete(listener);
  }

  /** Makes every read/write of `line` reject ERR_GPIO_IO (true) or work again (false). */
  setFailed(line: number, failed: boolean): void {
    this.state(line).failed = failed;
  }

  /** @internal */
  setPhysical(s: LineState, physical: GpioValue): void {
    if (s.physical === physical) return;
    s.physical = physical;
    s.open?.edge(physical);
    for (const l of [...s.outputListeners]) l(physical);
  }

  /** @internal */
  release(line: number, user: SimGpioLine): void {
    const s = this.state(line);
    if (s.open === user) s.open = undefined;
  }
}

class SimGpioLine implements GpioLine {
  readonly name: string;
  readonly direction: GpioDirection;
  private readonly activeLow: boolean;
  private closed = false;
  private readonly watchers = new Set<{ edge: GpioEdge; listener: (v: GpioValue) => void }>();

  constructor(
    private readonly chip: SimGpioChip,
    private readonly line: number,
    private readonly s: LineState,
    options: SimGpioLineOptions,
    private readonly timers: Timers,
  ) {
    if (options.direction !== 'in' && options.direction !== 'out') {
      throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `direction must be 'in' or 'out'`);
    }
    this.direction = options.direction;
    this.activeLow = options.activeLow ?? false;
    this.name = options.name ?? `${chip.name}:${line}`;
    if (this.direction === 'out') {
      const initial = options.initial ?? 0;
      checkValue(initial);
      chip.setPhysical(s, this.toPhysical(initial));
    }
  }

  private toPhysical(v: GpioValue): GpioValue {
    return this.activeLow ? ((1 - v) as GpioValue) : v;
  }

  private closedError(): TwinbladeError {
    return new TwinbladeError(GpioErrorCode.closed, 'closed', `${this.name} is closed`);
  }

  async read(): Promise<GpioValue> {
    if (this.closed) throw this.closedError();
    if (this.s.failed) throw new TwinbladeError(GpioErrorCode.io, 'io', `${this.name}: read failed (injected)`);
    return this.toPhysical(this.s.physical);
  }

  write(value: GpioValue): Promise<void> {
    checkValue(value);
    if (this.closed) return Promise.reject(this.closedError());
    if (this.direction !== 'out') return Promise.reject(new TwinbladeError(GpioErrorCode.direction, 'invalid-argument', `${this.name} is an input`));
    if (this.s.failed) return Promise.reject(new TwinbladeError(GpioErrorCode.io, 'io', `${this.name}: write failed (injected)`));
    this.chip.setPhysical(this.s, this.toPhysical(value));
    return Promise.resolve();
  }

  watch(edge: GpioEdge, listener: (value: GpioValue) => void): () => void {
    if (this.closed) throw this.closedError();
    if (this.direction !== 'in') throw new InvalidArgumentError(GpioErrorCode.direction, `${this.name} is an output; only inputs can be watched`);
    if (edge !== 'rising' && edge !== 'falling' && edge !== 'both') throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `bad edge ${String(edge)}`);
    const w = { edge, listener };
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  /** @internal A physical level change on this line: deliver the logical edge later. */
  edge(physical: GpioValue): void {
    if (this.direction !== 'in' || this.watchers.size === 0) return;
    const logical = this.toPhysical(physical);
    this.timers.after(this.chip.edgeLatencyMs, () => {
      if (this.closed) return;
      for (const w of [...this.watchers]) {
        if (w.edge === 'both' || (w.edge === 'rising') === (logical === 1)) w.listener(logical);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchers.clear();
    this.chip.release(this.line, this);
  }
}
