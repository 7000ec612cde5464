// Linux GPIO driver on the `onoff` library (the kernel's sysfs GPIO interface). Lines are
// named by chip and offset as in the board descriptor; sysfs wants the global number, which
// is the chip's base plus the offset, so the driver reads the base from sysfs.
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Gpio as OnoffGpio } from 'onoff';
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';
import { GpioErrorCode, type GpioDirection, type GpioEdge, type GpioLine, type GpioValue } from '../gpio.ts';

export interface LinuxGpioOptions {
  /**
   * The controller: a sysfs chip name (`gpiochip512`), a chip label (`pinctrl-bcm2711`,
   * `pinctrl-rp1`), or a number taken as the chip's base. Default: base 0.
   */
  chip?: string | number;
  /** Offset of the line within its chip. */
  line: number;
  direction: GpioDirection;
  activeLow?: boolean;
  /** Logical level an output is set to when it is opened (default 0). */
  initial?: GpioValue;
  /** Software debounce for inputs, in ms (onoff's debounceTimeout); default none. */
  debounceMs?: number;
  name?: string;
  /** Where sysfs is mounted (tests point this at a fake tree). Default /sys/class/gpio. */
  sysfsRoot?: string;
}

/** Maps an onoff/sysfs error (errno-style `code`) onto the portable GPIO error. */
export function mapGpioError(e: unknown, what: string): TwinbladeError {
  if (e instanceof TwinbladeError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  const errno = typeof code === 'string' ? code : 'unknown';
  const detail = e instanceof Error ? e.message : String(e);
  if (errno === 'EBUSY') return new TwinbladeError(GpioErrorCode.io, 'busy', `${what}: line busy (${detail})`, { cause: e });
  if (errno === 'EINVAL' || errno === 'ENOENT') return new TwinbladeError(GpioErrorCode.io, 'unsupported', `${what}: no such line or not supported (${detail})`, { cause: e });
  return new TwinbladeError(GpioErrorCode.io, 'io', `${what}: ${detail}`, { cause: e });
}

/** Resolves the sysfs base number of a chip given by name, label or base. */
export async function resolveChipBase(chip: string | number | undefined, sysfsRoot = '/sys/class/gpio'): Promise<number> {
  if (chip === undefined) return 0;
  if (typeof chip === 'number') {
    if (!Number.isInteger(chip) || chip < 0) throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `bad GPIO chip base ${chip}`);
    return chip;
  }
  let entries: string[];
  try {
    entries = (await readdir(sysfsRoot)).filter((e) => e.startsWith('gpiochip')).sort();
  } catch (e) {
    throw mapGpioError(e, `cannot list ${sysfsRoot}`);
  }
  for (const entry of entries) {
    const label = (await readFile(join(sysfsRoot, entry, 'label'), 'utf8').catch(() => '')).trim();
    if (entry === chip || label === chip) {
      const base = Number((await readFile(join(sysfsRoot, entry, 'base'), 'utf8')).trim());
      if (!Number.isInteger(base)) throw new TwinbladeError(GpioErrorCode.io, 'io', `${join(sysfsRoot, entry, 'base')} is not a number`);
      return base;
    }
  }
  throw new TwinbladeError(GpioErrorCode.io, 'unsupported', `no GPIO chip named or labelled ${JSON.stringify(chip)} under ${sysfsRoot}`);
}

/** Opens one line. Rejects ERR_GPIO_IO when sysfs GPIO is unavailable or the line cannot be exported. */
export async function openLinuxGpio(options: LinuxGpioOptions): Promise<GpioLine> {
  if (!Number.isInteger(options.line) || options.line < 0) throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `bad GPIO line ${options.line}`);
  if (options.direction !== 'in' && options.direction !== 'out') throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `direction must be 'in' or 'out'`);
  const initial = options.initial ?? 0;
  if (initial !== 0 && initial !== 1) throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `initial must be 0 or 1`);
  const base = await resolveChipBase(options.chip, options.sysfsRoot);
  const number = base + options.line;
  const name = options.name ?? `gpio${number}`;
  const { Gpio } = await import('onoff');
  if (!Gpio.accessible) throw new TwinbladeError(GpioErrorCode.io, 'unsupported', `${name}: sysfs GPIO is not accessible on this machine`);
  let gpio: OnoffGpio;
  try {
    // Inputs request both edges from the kernel; each watcher filters the edge it asked for.
    // Outputs start at their initial level without a glitch: sysfs 'high'/'low' set the raw
    // (physical) level, so the logical initial value is inverted for an activeLow line.
    const dir = options.direction === 'in' ? 'in' : (initial === 1) !== (options.activeLow === true) ? 'high' : 'low';
    gpio = new Gpio(number, dir, options.direction === 'in' ? 'both' : 'none', {
      activeLow: options.activeLow ?? false,
      ...(options.debounceMs !== undefined ? { debounceTimeout: options.debounceMs } : {}),
      reconfigureDirection: true,
    });
  } catch (e) {
    throw mapGpioError(e, `${name}: cannot open`);
  }
  return new LinuxGpioLine(name, options.direction, gpio);
}

class LinuxGpioLine implements GpioLine {
  private closed = false;
  private readonly watchers = new Set<{ edge: GpioEdge; listener: (v: GpioValue) => void }>();
  private last: GpioValue | undefined;
  private subscribed = false;

  constructor(
    readonly name: string,
    readonly direction: GpioDirection,
    private readonly gpio: OnoffGpio,
  ) {}

  private closedError(): TwinbladeError {
    return new TwinbladeError(GpioErrorCode.closed, 'closed', `${this.name} is closed`);
  }

  async read(): Promise<GpioValue> {
    if (this.closed) throw this.closedError();
    try {
      return (await this.gpio.read()) === 1 ? 1 : 0;
    } catch (e) {
      throw mapGpioError(e, `${this.name}: read`);
    }
  }

  write(value: GpioValue): Promise<void> {
    // Argument errors are synchronous (contract); everything else is a rejection.
    if (value !== 0 && value !== 1) throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `GPIO value must be 0 or 1, got ${String(value)}`);
    return this.writeChecked(value);
  }

  private async writeChecked(value: GpioValue): Promise<void> {
    if (this.closed) throw this.closedError();
    if (this.direction !== 'out') throw new TwinbladeError(GpioErrorCode.direction, 'invalid-argument', `${this.name} is an input`);
    try {
      await this.gpio.write(value);
    } catch (e) {
      throw mapGpioError(e, `${this.name}: write`);
    }
  }

  private readonly onEdge = (err: Error | null | undefined, value: 0 | 1): void => {
    if (err !== null && err !== undefined) return; // a failed poll: the next edge reports the level again
    const v: GpioValue = value === 1 ? 1 : 0;
    // sysfs 'both' can report the same level twice after a glitch shorter than the read.
    if (v === this.last) return;
    this.last = v;
    for (const w of [...this.watchers]) {
      if (w.edge === 'both' || (w.edge === 'rising') === (v === 1)) w.listener(v);
    }
  };

  watch(edge: GpioEdge, listener: (value: GpioValue) => void): () => void {
    if (this.closed) throw this.closedError();
    if (this.direction !== 'in') throw new InvalidArgumentError(GpioErrorCode.direction, `${this.name} is an output; only inputs can be watched`);
    if (edge !== 'rising' && edge !== 'falling' && edge !== 'both') throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `bad edge ${String(edge)}`);
    const w = { edge, listener };
    this.watchers.add(w);
    if (!this.subscribed) {
      this.subscribed = true;
      try {
        this.last = this.gpio.readSync();
      } catch {
        this.last = undefined;
      }
      this.gpio.watch(this.onEdge);
    }
    return () => {
      this.watchers.delete(w);
      if (this.watchers.size === 0 && this.subscribed) {
        this.subscribed = false;
        this.gpio.unwatch(this.onEdge);
      }
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchers.clear();
    try {
      this.gpio.unwatchAll();
      this.gpio.unexport();
    } catch (e) {
      throw mapGpioError(e, `${this.name}: close`);
    }
  }
}
