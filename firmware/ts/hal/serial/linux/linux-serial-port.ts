// The Linux serial driver: a UART (/dev/ttyAMA0, /dev/ttyS0, /dev/ttyUSB0) or a pty slave
// through the `serialport` library, with its errors mapped to the HAL's stable codes and kinds.
import { SerialPort as SerialPortLib } from 'serialport';
import type { SerialEvents, SerialPort } from '../serial-port.ts';
import { SerialEmitter } from '../sim/serial-emitter.ts';
import { checkSerialData, serialCanceledError, serialClosedError, serialDisconnectedError, serialInvalidArgument, serialIoError } from '../sim/serial-errors.ts';

/** Default line speed of the blade interconnect. */
export const serialDefaultBaudRate = 115_200;
/** Bytes queued in the driver above which `write` returns false. */
export const serialHighWaterMarkBytes = 16 * 1024;

export interface LinuxSerialPortOptions {
  /** Device path: /dev/ttyAMA0, /dev/ttyUSB0, or a pty slave such as /dev/pts/3. */
  path: string;
  baudRate?: number;
  /** Back-pressure threshold in bytes (default 16 KiB). */
  highWaterMark?: number;
  /** Hardware flow control (RTS/CTS), off by default: the null-modem cable has three wires. */
  rtscts?: boolean;
  /** Name for logs; default the path. */
  name?: string;
}

type State = 'new' | 'opening' | 'open' | 'closing' | 'closed';

export class LinuxSerialPort implements SerialPort {
  readonly name: string;
  readonly path: string;
  readonly baudRate: number;
  private readonly highWaterMark: number;
  private readonly rtscts: boolean;
  private readonly emitter = new SerialEmitter();
  private port: SerialPortLib | undefined;
  private state: State = 'new';
  private closed: Promise<void> | undefined;
  private resolveClosed: (() => void) | undefined;

  constructor(options: LinuxSerialPortOptions) {
    this.name = options.name ?? options.path;
    if (typeof options.path !== 'string' || options.path === '') throw serialInvalidArgument(this.name, 'path must be a non-empty string');
    this.path = options.path;
    this.baudRate = options.baudRate ?? serialDefaultBaudRate;
    this.highWaterMark = options.highWaterMark ?? serialHighWaterMarkBytes;
    if (!Number.isSafeInteger(this.baudRate) || this.baudRate <= 0) throw serialInvalidArgument(this.name, 'baudRate must be a positive integer');
    if (!Number.isSafeInteger(this.highWaterMark) || this.highWaterMark <= 0) throw serialInvalidArgument(this.name, 'highWaterMark must be a positive integer');
    this.rtscts = options.rtscts ?? false;
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Opens the device. Rejects `ERR_SERIAL_INVALID_ARGUMENT` if already opened (or closed), `ERR_SERIAL_IO` if the device cannot be opened. */
  async open(): Promise<void> {
    if (this.state !== 'new') throw serialInvalidArgument(this.name, `open() in state ${this.state}`);
    this.state = 'opening';
    const port = new SerialPortLib({ path: this.path, baudRate: this.baudRate, autoOpen: false, highWaterMark: this.highWaterMark, rtscts: this.rtscts });
    try {
      await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    } catch (e) {
      this.state = 'closed';
      throw serialIoError(this.name, 'open', e);
    }
    this.port = port;
    this.closed = new Promise<void>((resolve) => {
      this.resolveClosed = resolve;
    });
    port.on('data', (chunk: Buffer) => {
      if (this.state === 'open') this.emitter.emit('data', new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
    });
    port.on('drain', () => {
      if (this.state === 'open') this.emitter.emit('drain');
    });
    port.on('error', (err: Error & { canceled?: boolean }) => {
      // Errors of writes canceled by close() were reported once, as 'canceled', by close().
      if (this.state !== 'open') return;
      this.emitter.emit('error', serialIoError(this.name, 'i/o', err));
    });
    port.on('close', (err: (Error & { disconnected?: boolean }) | null | undefined) => {
      if (this.state === 'open' && err?.disconnected === true) this.emitter.emit('error', serialDisconnectedError(this.name, err));
      this.finish();
    });
    this.state = 'open';
  }

  write(data: Uint8Array): boolean {
    checkSerialData(this.name, data);
    const port = this.port;
    if (this.state !== 'open' || port === undefined) throw serialClosedError(this.name);
    // A copy: the caller may reuse its buffer, and the stream holds chunks until they are sent.
    return port.write(Buffer.from(data));
  }

  on<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): this {
    this.emitter.on(event, listener);
    return this;
  }

  off<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): this {
    this.emitter.off(event, listener);
    return this;
  }

  /** Closes the port; bytes still queued are canceled (one `error` of kind 'canceled'), then `close` is emitted. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'new' || this.state === 'opening') {
      this.state = 'closed';
      return;
    }
    if (this.state === 'closed' || this.state === 'closing') {
      await this.closed;
      return;
    }
    const port = this.port as SerialPortLib;
    const pending = port.writableLength;
    this.state = 'closing';
    if (pending > 0) this.emitter.emit('error', serialCanceledError(this.name, pending));
    await new Promise<void>((resolve) => {
      port.close(() => resolve());
    });
    this.finish();
    await this.closed;
  }

  private finish(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.port?.removeAllListeners('data');
    this.emitter.emit('close');
    this.resolveClosed?.();
  }
}
