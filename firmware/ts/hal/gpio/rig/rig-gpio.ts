// The rig driver of the GPIO HAL: a line of the rig's emulated board controller, reached over
// the rig control channel (ops gpio.open/read/write/watch/unwatch, events `gpio` {line, value}
// with physical levels). Active-low inversion, edge filtering and the argument checks happen
// here, as the kernel does them for the Linux driver; the rig enforces the wiring (which
// lines exist, which are inputs).
import { InvalidArgumentError, TwinbladeError, isTwinbladeError } from '../../../core/errors.ts';
import type { RigControlClient } from '../../rigctl/client.ts';
import type { RigEvent } from '../../rigctl/protocol.ts';
import type { GpioOpener } from '../../../board/devices.ts';
import { GpioErrorCode, type GpioDirection, type GpioEdge, type GpioLine, type GpioValue } from '../gpio.ts';

export interface RigGpioLineOptions {
  line: number;
  direction: GpioDirection;
  activeLow?: boolean;
  /** Logical level an output is set to when opened (default 0). */
  initial?: GpioValue;
  name?: string;
}

function checkValue(value: unknown): asserts value is GpioValue {
  if (value !== 0 && value !== 1) throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `GPIO value must be 0 or 1, got ${String(value)}`);
}

/** Opens one line of the rig board (checks it exists with that direction; sets an output's initial level). */
export async function openRigGpio(client: RigControlClient, options: RigGpioLineOptions): Promise<GpioLine> {
  if (!Number.isInteger(options.line) || options.line < 0) throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `line must be a non-negative integer, got ${String(options.line)}`);
  if (options.direction !== 'in' && options.direction !== 'out') throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `direction must be 'in' or 'out'`);
  const initial = options.initial ?? 0;
  checkValue(initial);
  const line = new RigGpioLine(client, options);
  await line.call('gpio.open', { direction: options.direction });
  if (options.direction === 'out') await line.write(initial);
  return line;
}

/** A GpioOpener (board/devices.ts) over the rig control channel: the board's line numbers are the rig's. */
export function rigGpioOpener(client: RigControlClient): GpioOpener {
  return (req) => openRigGpio(client, { line: req.spec.line, direction: req.direction, activeLow: req.spec.activeLow, initial: req.initial, name: req.name });
}

class RigGpioLine implements GpioLine {
  readonly name: string;
  readonly direction: GpioDirection;
  private readonly line: number;
  private readonly activeLow: boolean;
  private closed = false;
  private readonly watchers = new Set<{ edge: GpioEdge; listener: (v: GpioValue) => void }>();
  private readonly onEvent = (e: RigEvent): void => {
    if (e['line'] !== this.line || (e['value'] !== 0 && e['value'] !== 1)) return;
    this.deliver(this.logical(e['value']));
  };

  constructor(
    private readonly client: RigControlClient,
    options: RigGpioLineOptions,
  ) {
    this.line = options.line;
    this.direction = options.direction;
    this.activeLow = options.activeLow ?? false;
    this.name = options.name ?? `rig-gpio-${client.blade}:${options.line}`;
  }

  private logical(physical: GpioValue): GpioValue {
    return this.activeLow ? ((1 - physical) as GpioValue) : physical;
  }

  private closedError(): TwinbladeError {
    return new TwinbladeError(GpioErrorCode.closed, 'closed', `${this.name} is closed`);
  }

  /** @internal One request for this line; GPIO codes from the rig pass through, a failed channel is ERR_GPIO_IO. */
  async call(op: string, args: Record<string, unknown> = {}): Promise<unknown> {
    try {
      return await this.client.request(op, { line: this.line, ...args });
    } catch (e) {
      if (isTwinbladeError(e) && e.code.startsWith('ERR_GPIO_')) {
        throw new TwinbladeError(e.code, e.code === GpioErrorCode.io ? 'io' : 'invalid-argument', `${this.name}: ${e.message}`, { cause: e });
      }
      throw new TwinbladeError(GpioErrorCode.io, 'io', `${this.name}: rig control channel: ${(e as Error).message}`, { cause: e });
    }
  }

  async read(): Promise<GpioValue> {
    if (this.closed) throw this.closedError();
    const v = await this.call('gpio.read');
    if (v !== 0 && v !== 1) throw new TwinbladeError(GpioErrorCode.io, 'io', `${this.name}: the rig answered ${String(v)}`);
    return this.logical(v);
  }

  write(value: GpioValue): Promise<void> {
    checkValue(value);
    if (this.closed) return Promise.reject(this.closedError());
    if (this.direction !== 'out') return Promise.reject(new TwinbladeError(GpioErrorCode.direction, 'invalid-argument', `${this.name} is an input`));
    // Logical to physical is the same inversion both ways.
    return this.call('gpio.write', { value: this.logical(value) }).then(() => undefined);
  }

  watch(edge: GpioEdge, listener: (value: GpioValue) => void): () => void {
    if (this.closed) throw this.closedError();
    if (this.direction !== 'in') throw new InvalidArgumentError(GpioErrorCode.direction, `${this.name} is an output; only inputs can be watched`);
    if (edge !== 'rising' && edge !== 'falling' && edge !== 'both') throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `bad edge ${String(edge)}`);
    const w = { edge, listener };
    if (this.watchers.size === 0) {
      // The rig sends one event per level change of a subscribed line, so every event is an
      // edge. Requests on the channel are handled in order, so an edge caused by any later
      // request is reported. A failed subscription (the channel went down) leaves the watcher
      // silent, as an unpowered line would be.
      this.client.on('gpio', this.onEvent);
      this.call('gpio.watch').catch(() => undefined);
    }
    this.watchers.add(w);
    return () => {
      if (!this.watchers.delete(w) || this.watchers.size > 0) return;
      this.unsubscribe();
    };
  }

  private unsubscribe(): void {
    this.client.off('gpio', this.onEvent);
    this.call('gpio.unwatch').catch(() => undefined);
  }

  private deliver(level: GpioValue): void {
    if (this.closed) return;
    for (const w of [...this.watchers]) {
      if (w.edge === 'both' || (w.edge === 'rising') === (level === 1)) w.listener(level);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.watchers.size > 0) {
      this.watchers.clear();
      this.unsubscribe();
    }
  }
}
