// The master side of a pseudo-terminal as a SerialPort: what a rig relay, a serial benchmark
// or a test holds while a blade's LinuxSerialPort opens the slave path. Reads go through a
// libuv tty handle; writes through the thread pool, since a tty handle's writes block.
import { ReadStream } from 'node:tty';
import { closeSync, write as fsWrite } from 'node:fs';
import type { SerialEvents, SerialPort } from '../serial-port.ts';
import type { TimerHandle, Timers } from '../../../core/clock.ts';
import { realTimers } from '../../clock/real.ts';
import { openPty } from '../../../native/index.ts';
import { SerialEmitter } from '../sim/serial-emitter.ts';
import { checkSerialData, serialCanceledError, serialClosedError, serialDisconnectedError, serialInvalidArgument, serialIoError } from '../sim/serial-errors.ts';
import { serialHighWaterMarkBytes } from './linux-serial-port.ts';

export interface PtyMasterPortOptions {
  name?: string;
  /** Back-pressure threshold in bytes (default 16 KiB). */
  highWaterMark?: number;
  /** Timers for the EAGAIN retry backoff (default: real timers). */
  timers?: Timers;
  /**
   * Keep our own slave descriptor open while the port is open (default true): the pty then
   * outlives the other side closing and reopening the slave path (a blade rebooting on a
   * connected cable), but the master cannot notice the other side going away. With false,
   * the slave descriptor is closed at `open()` (so open the other side first) and the master
   * reports 'disconnected' and closes once every slave descriptor is closed.
   */
  keepSlaveOpen?: boolean;
}

type State = 'new' | 'open' | 'closed';

/** Longest wait between retries of a write the pty refused (EAGAIN). */
export const ptyWriteRetryDelayMsMax = 16;

/** How long close() lets a write in the thread pool finish before closing the descriptor. */
export const ptyCloseWaitMs = 100;

export class PtyMasterPort implements SerialPort {
  readonly name: string;
  /** The slave device path to hand to the blade's serial driver. */
  readonly slavePath: string;
  private readonly masterFd: number;
  private slaveFd: number | undefined;
  private readonly highWaterMark: number;
  private readonly timers: Timers;
  private readonly keepSlaveOpen: boolean;
  private readonly emitter = new SerialEmitter();
  private state: State = 'new';
  private reader: ReadStream | undefined;
  private readerIsClosed = false;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private writing = false;
  private needDrain = false;
  private writeDone: Promise<void> = Promise.resolve();

  /**
   * Takes ownership of a pty from `openPty()` (both descriptors). The slave descriptor is kept
   * open until `open()`, so that the pair exists before the other side has opened the path.
   */
  constructor(pty: { master: number; slave: number; slavePath: string }, options: PtyMasterPortOptions = {}) {
    this.name = options.name ?? `pty-master(${pty.slavePath})`;
    this.masterFd = pty.master;
    this.slaveFd = pty.slave;
    this.slavePath = pty.slavePath;
    this.highWaterMark = options.highWaterMark ?? serialHighWaterMarkBytes;
    if (!Number.isSafeInteger(this.highWaterMark) || this.highWaterMark <= 0) throw serialInvalidArgument(this.name, 'highWaterMark must be a positive integer');
    this.timers = options.timers ?? realTimers;
    this.keepSlaveOpen = options.keepSlaveOpen ?? true;
  }

  /** A new pty pair; the returned port is its master side. */
  static create(options: PtyMasterPortOptions = {}): PtyMasterPort {
    return new PtyMasterPort(openPty(), options);
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Starts reading (and, with `keepSlaveOpen: false`, closes our slave descriptor). */
  async open(): Promise<void> {
    if (this.state !== 'new') throw serialInvalidArgument(this.name, `open() in state ${this.state}`);
    this.state = 'open';
    if (!this.keepSlaveOpen) this.releaseSlave();
    const reader = new ReadStream(this.masterFd);
    this.reader = reader;
    reader.once('close', () => {
      this.readerIsClosed = true;
    });
    reader.on('data', (chunk: Buffer) => {
      if (this.state === 'open') this.emitter.emit('data', new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
    });
    // libuv reports the master's EIO (every slave descriptor closed) as end of file.
    reader.on('end', () => {
      if (this.state !== 'open') return;
      this.emitter.emit('error', serialDisconnectedError(this.name));
      void this.close();
    });
    reader.on('error', (err: Error & { code?: string }) => {
      if (this.state !== 'open') return;
      // EIO on a pty master: every slave descriptor was closed (the blade went away).
      if (err.code === 'EIO') {
        this.emitter.emit('error', serialDisconnectedError(this.name, err));
      } else {
        this.emitter.emit('error', serialIoError(this.name, 'read', err));
      }
      void this.close();
    });
  }

  /** Closes our slave descriptor now: the pair then lives only while the other side holds the path open. */
  releaseSlave(): void {
    if (this.slaveFd === undefined) return;
    closeSync(this.slaveFd);
    this.slaveFd = undefined;
  }

  write(data: Uint8Array): boolean {
    checkSerialData(this.name, data);
    if (this.state !== 'open') throw serialClosedError(this.name);
    if (data.length > 0) {
      this.queue.push(Buffer.from(data));
      this.queuedBytes += data.length;
      if (!this.writing) this.writeDone = this.pump();
    }
    const below = this.queuedBytes < this.highWaterMark;
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

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    if (this.queuedBytes > 0) this.emitter.emit('error', serialCanceledError(this.name, this.queuedBytes));
    this.queue = [];
    this.queuedBytes = 0;
    this.releaseSlave();
    // A write in the thread pool normally finishes at once. One blocked in the kernel (the
    // other side stopped reading) holds its own reference to the open file, so closing the
    // descriptor under it is safe; the pump issues nothing after the state changed.
    let waited: TimerHandle | undefined;
    await Promise.race([this.writeDone, new Promise<void>((resolve) => (waited = this.timers.after(ptyCloseWaitMs, resolve)))]);
    waited?.cancel();
    if (this.reader !== undefined) {
      // After a read error the stream has already destroyed itself (and closed the descriptor).
      const reader = this.reader;
      await new Promise<void>((resolve) => {
        if (this.readerIsClosed) {
          resolve();
          return;
        }
        reader.once('close', () => resolve());
        reader.destroy();
      });
    } else {
      closeSync(this.masterFd);
    }
    if (wasOpen) this.emitter.emit('close');
  }

  private async pump(): Promise<void> {
    this.writing = true;
    let delayMs = 1;
    while (this.state === 'open' && this.queue.length > 0) {
      const head = this.queue[0] as Buffer;
      let n: number;
      try {
        n = await new Promise<number>((resolve, reject) => fsWrite(this.masterFd, head, 0, head.length, null, (err, written) => (err ? reject(err) : resolve(written))));
        delayMs = 1;
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR') {
          await this.timers.sleep(delayMs);
          delayMs = Math.min(delayMs * 2, ptyWriteRetryDelayMsMax);
          continue;
        }
        if (this.state === 'open') {
          this.emitter.emit('error', code === 'EIO' ? serialDisconnectedError(this.name, e) : serialIoError(this.name, 'write', e));
          this.writing = false;
          void this.close();
        }
        return;
      }
      if (this.state !== 'open') break;
      this.queuedBytes -= n;
      if (n < head.length) this.queue[0] = head.subarray(n);
      else this.queue.shift();
      if (this.needDrain && this.queuedBytes < this.highWaterMark) {
        this.needDrain = false;
        this.emitter.emit('drain');
      }
    }
    this.writing = false;
  }
}
