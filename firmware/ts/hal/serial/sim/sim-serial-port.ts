// The simulated serial driver: two ports joined by a simulated null-modem line, driven by the
// injected Timers and a seeded Prng, with line speed, delay, loss, duplication, corruption and
// cut/heal, and arbitrary chunk boundaries on the receiving side.
import type { SerialEvents, SerialPort } from '../serial-port.ts';
import type { Timers } from '../../../core/clock.ts';
import type { Prng } from '../../../core/prng.ts';
import { SerialEmitter } from './serial-emitter.ts';
import { checkSerialData, serialCanceledError, serialClosedError, serialDisconnectedError, serialInvalidArgument } from './serial-errors.ts';

/** Fault rates, each a probability per delivered chunk. */
export interface SimSerialFaults {
  /** The chunk never arrives. */
  lossRate: number;
  /** The chunk arrives twice. */
  duplicateRate: number;
  /** One bit of the chunk is flipped. */
  corruptRate: number;
}

export interface SimSerialLinkOptions {
  timers: Timers;
  prng: Prng;
  /** Line speed; 10 bits per byte on the wire (8N1). 0 = unlimited. Default 115200. */
  baudRate?: number;
  /** Propagation and driver latency per chunk in ms (default 0.2). */
  delayMs?: number;
  /** Extra uniform random latency per chunk in ms (default 0); order is preserved. */
  jitterMs?: number;
  /** Largest chunk the receiver is handed (default 64); sizes are random in 1..max. */
  chunkBytesMax?: number;
  /** Back-pressure threshold of each port's transmit queue (default 16 KiB). */
  highWaterMark?: number;
  faults?: Partial<SimSerialFaults>;
  /** Port names (default "sim-serial-a", "sim-serial-b"). */
  names?: [string, string];
}

export interface SimSerialStats {
  bytesSent: number;
  bytesDelivered: number;
  chunksLost: number;
  chunksDuplicated: number;
  chunksCorrupted: number;
  /** Chunks that arrived while the line was cut or the receiver was not open. */
  chunksDropped: number;
}

type State = 'new' | 'open' | 'closed';

/** One end of a simulated serial line. Create pairs with {@link createSimSerialPair}. */
export class SimSerialPort implements SerialPort {
  readonly name: string;
  private readonly emitter = new SerialEmitter();
  private state: State = 'new';
  private readonly line: SimSerialLine;
  private readonly side: 0 | 1;
  // Transmit queue: bytes accepted by write() and not yet on the wire.
  private txQueue: Uint8Array[] = [];
  private txQueuedBytes = 0;
  private transmitting = false;
  private needDrain = false;

  /** @internal Use createSimSerialPair. */
  constructor(name: string, line: SimSerialLine, side: 0 | 1) {
    this.name = name;
    this.line = line;
    this.side = side;
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  open(): Promise<void> {
    if (this.state !== 'new') return Promise.reject(serialInvalidArgument(this.name, `open() in state ${this.state}`));
    this.state = 'open';
    return Promise.resolve();
  }

  write(data: Uint8Array): boolean {
    checkSerialData(this.name, data);
    if (this.state !== 'open') throw serialClosedError(this.name);
    if (data.length > 0) {
      this.txQueue.push(data.slice());
      this.txQueuedBytes += data.length;
      if (!this.transmitting) this.transmitNext();
    }
    const below = this.txQueuedBytes < this.line.highWaterMark;
    if (!below) this.needDrain = true;
    return below;
  }

  on<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): this {
    this.emitter.on(event, listener);
    return this;
  }

  off<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): this {
    this.emitter.off(event, listener);
    return this;
  }

  /** Cancels queued bytes (one 'canceled' error), then emits close. Bytes already on the wire still arrive. */
  close(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    if (this.txQueuedBytes > 0) this.emitter.emit('error', serialCanceledError(this.name, this.txQueuedBytes));
    this.txQueue = [];
    this.txQueuedBytes = 0;
    if (wasOpen) this.emitter.emit('close');
    return Promise.resolve();
  }

  /** Back door: the device goes away (a USB adapter unplugged): 'disconnected' error, then close. */
  simulateDisconnect(): void {
    if (this.state !== 'open') return;
    this.emitter.emit('error', serialDisconnectedError(this.name));
    this.txQueue = [];
    this.txQueuedBytes = 0;
    this.state = 'closed';
    this.emitter.emit('close');
  }

  /** Bytes written but not yet on the wire. */
  get queuedBytes(): number {
    return this.txQueuedBytes;
  }

  /** @internal Called by the line with bytes for this end. */
  receive(chunk: Uint8Array): boolean {
    if (this.state !== 'open') return false;
    this.emitter.emit('data', chunk);
    return true;
  }

  // Puts the next chunk on the wire; the line is busy for its transmission time, then the
  // chunk travels (delay) while the next one is sent.
  private transmitNext(): void {
    const head = this.txQueue[0];
    if (this.state !== 'open' || head === undefined) {
      this.transmitting = false;
      return;
    }
    this.transmitting = true;
    const n = Math.min(head.length, 1 + this.line.prng.int(this.line.chunkBytesMax));
    const chunk = head.subarray(0, n);
    if (n < head.length) this.txQueue[0] = head.subarray(n);
    else this.txQueue.shift();
    this.line.timers.after(this.line.transmitMs(n), () => {
      if (this.state !== 'open') {
        this.transmitting = false;
        return;
      }
      this.txQueuedBytes -= n;
      this.line.send(this.side, chunk);
      if (this.needDrain && this.txQueuedBytes < this.line.highWaterMark) {
        this.needDrain = false;
        this.emitter.emit('drain');
      }
      this.transmitNext();
    });
  }
}

/** The wire between the two ports: delivery order, delay and faults. */
class SimSerialLine {
  readonly timers: Timers;
  readonly prng: Prng;
  readonly chunkBytesMax: number;
  readonly highWaterMark: number;
  baudRate: number;
  delayMs: number;
  jitterMs: number;
  faults: SimSerialFaults;
  cut = false;
  readonly stats: SimSerialStats = { bytesSent: 0, bytesDelivered: 0, chunksLost: 0, chunksDuplicated: 0, chunksCorrupted: 0, chunksDropped: 0 };
  ports: [SimSerialPort, SimSerialPort] | undefined;
  // Per direction (index = sending side): chunks on the wire, oldest first. Each delivery
  // timer hands over the oldest chunk, so equal-time timers can never reorder bytes.
  private readonly inFlight: [Uint8Array[], Uint8Array[]] = [[], []];

  constructor(o: SimSerialLinkOptions) {
    this.timers = o.timers;
    this.prng = o.prng;
    this.baudRate = o.baudRate ?? 115_200;
    this.delayMs = o.delayMs ?? 0.2;
    this.jitterMs = o.jitterMs ?? 0;
    this.chunkBytesMax = o.chunkBytesMax ?? 64;
    this.highWaterMark = o.highWaterMark ?? 16 * 1024;
    this.faults = { lossRate: 0, duplicateRate: 0, corruptRate: 0, ...o.faults };
  }

  transmitMs(bytes: number): number {
    return this.baudRate > 0 ? (bytes * 10 * 1000) / this.baudRate : 0;
  }

  send(from: 0 | 1, chunk: Uint8Array): void {
    this.stats.bytesSent += chunk.length;
    const queue = this.inFlight[from];
    queue.push(chunk);
    const delay = this.delayMs + (this.jitterMs > 0 ? this.prng.float() * this.jitterMs : 0);
    this.timers.after(delay, () => {
      const next = queue.shift();
      if (next !== undefined) this.deliver(from === 0 ? 1 : 0, next);
    });
  }

  private deliver(to: 0 | 1, chunk: Uint8Array): void {
    const port = (this.ports as [SimSerialPort, SimSerialPort])[to];
    if (this.cut) {
      this.stats.chunksDropped++;
      return;
    }
    if (this.faults.lossRate > 0 && this.prng.chance(this.faults.lossRate)) {
      this.stats.chunksLost++;
      return;
    }
    let data = chunk;
    if (this.faults.corruptRate > 0 && this.prng.chance(this.faults.corruptRate)) {
      data = chunk.slice();
      const bit = this.prng.int(data.length * 8);
      data[bit >> 3] = (data[bit >> 3] as number) ^ (1 << (bit & 7));
      this.stats.chunksCorrupted++;
    }
    const copies = this.faults.duplicateRate > 0 && this.prng.chance(this.faults.duplicateRate) ? 2 : 1;
    if (copies === 2) this.stats.chunksDuplicated++;
    for (let i = 0; i < copies; i++) {
      // Each delivery is a fresh array: the listener owns it.
      if (port.receive(i === 0 && data !== chunk ? data : data.slice())) this.stats.bytesDelivered += data.length;
      else this.stats.chunksDropped++;
    }
  }
}

/** Controls of the simulated line (fault injection back door). */
export interface SimSerialLink {
  /** Cuts the cable: chunks arriving while cut are lost (a UART notices nothing). */
  cut(): void;
  heal(): void;
  readonly isCut: boolean;
  setFaults(faults: Partial<SimSerialFaults>): void;
  /** Changes speed and latency from now on. */
  setTiming(timing: { baudRate?: number; delayMs?: number; jitterMs?: number }): void;
  readonly stats: Readonly<SimSerialStats>;
}

function checkRate(name: string, v: number | undefined): void {
  if (v !== undefined && !(v >= 0 && v <= 1)) throw serialInvalidArgument(name, 'fault rates are probabilities in [0, 1]');
}

function checkNonNegative(name: string, what: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw serialInvalidArgument(name, `${what} must be a non-negative number`);
}

/** Two connected simulated serial ports and the controls of the line between them. */
export function createSimSerialPair(options: SimSerialLinkOptions): { a: SimSerialPort; b: SimSerialPort; link: SimSerialLink } {
  const [nameA, nameB] = options.names ?? ['sim-serial-a', 'sim-serial-b'];
  checkNonNegative(nameA, 'baudRate', options.baudRate);
  checkNonNegative(nameA, 'delayMs', options.delayMs);
  checkNonNegative(nameA, 'jitterMs', options.jitterMs);
  if (options.chunkBytesMax !== undefined && !(Number.isSafeInteger(options.chunkBytesMax) && options.chunkBytesMax > 0)) throw serialInvalidArgument(nameA, 'chunkBytesMax must be a positive integer');
  if (options.highWaterMark !== undefined && !(Number.isSafeInteger(options.highWaterMark) && options.highWaterMark > 0)) throw serialInvalidArgument(nameA, 'highWaterMark must be a positive integer');
  checkRate(nameA, options.faults?.lossRate);
  checkRate(nameA, options.faults?.duplicateRate);
  checkRate(nameA, options.faults?.corruptRate);
  const line = new SimSerialLine(options);
  const a = new SimSerialPort(nameA, line, 0);
  const b = new SimSerialPort(nameB, line, 1);
  line.ports = [a, b];
  const link: SimSerialLink = {
    cut: () => {
      line.cut = true;
    },
    heal: () => {
      line.cut = false;
    },
    get isCut() {
      return line.cut;
    },
    setFaults: (faults) => {
      checkRate(nameA, faults.lossRate);
      checkRate(nameA, faults.duplicateRate);
      checkRate(nameA, faults.corruptRate);
      line.faults = { ...line.faults, ...faults };
    },
    setTiming: (timing) => {
      checkNonNegative(nameA, 'baudRate', timing.baudRate);
      checkNonNegative(nameA, 'delayMs', timing.delayMs);
      checkNonNegative(nameA, 'jitterMs', timing.jitterMs);
      if (timing.baudRate !== undefined) line.baudRate = timing.baudRate;
      if (timing.delayMs !== undefined) line.delayMs = timing.delayMs;
      if (timing.jitterMs !== undefined) line.jitterMs = timing.jitterMs;
    },
    get stats() {
      return line.stats;
    },
  };
  return { a, b, link };
}
