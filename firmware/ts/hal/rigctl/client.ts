// The blade side of the rig control channel: one connection per blade process, shared by
// the rig drivers of the GPIO and I2C HAL and the rig fence driver.
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { TwinbladeError } from '../../core/errors.ts';
import {
  parseLine,
  rigControlLineBytesMax,
  rigControlVersion,
  RigControlErrorCode,
  type RigBladeId,
  type RigEvent,
} from './protocol.ts';

export interface RigControlClientOptions {
  /** Path of the rig's control socket. */
  socketPath: string;
  blade: RigBladeId;
  /** Per-request timeout (default 5000 ms). */
  requestTimeoutMs?: number;
}

export class RigControlClient extends EventEmitter {
  private sock: net.Socket | undefined;
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closed = false;

  constructor(private readonly opts: RigControlClientOptions) {
    super();
  }

  get blade(): RigBladeId {
    return this.opts.blade;
  }

  async connect(): Promise<void> {
    const sock = net.connect(this.opts.socketPath);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(chunk));
    sock.on('error', () => undefined);
    sock.on('close', () => this.onClose());
    this.sock = sock;
    sock.write(`${JSON.stringify({ op: 'hello', version: rigControlVersion, blade: this.opts.blade })}\n`);
    await this.request('ping');
  }

  /** Sends a request and resolves with its result; rejects with the rig's error code. */
  request<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const sock = this.sock;
    if (!sock || this.closed) return Promise.reject(new TwinbladeError(RigControlErrorCode.closed, 'closed', 'rig control channel closed'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new TwinbladeError(RigControlErrorCode.timeout, 'timeout', `rig control: ${op} timed out`));
      }, this.opts.requestTimeoutMs ?? 5000);
      timer.unref();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      sock.write(`${JSON.stringify({ id, op, args })}\n`);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sock?.end();
    this.onClose();
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    if (this.buf.length > rigControlLineBytesMax * 4) {
      this.sock?.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const msg = parseLine(line);
      if (!msg) continue;
      if (typeof msg.event === 'string') {
        this.emit('event', msg as RigEvent);
        this.emit(msg.event, msg as RigEvent);
        continue;
      }
      const id = msg.id;
      if (typeof id !== 'number') continue;
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      if (msg.ok === true) p.resolve(msg.result);
      else {
        const err = (msg.error ?? {}) as { code?: string; message?: string };
        p.reject(new TwinbladeError(err.code ?? RigControlErrorCode.failed, 'io', err.message ?? 'rig control request failed'));
      }
    }
  }

  private onClose(): void {
    this.sock = undefined;
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new TwinbladeError(RigControlErrorCode.closed, 'disconnected', 'rig control channel closed'));
    }
    this.pending.clear();
    this.emit('close');
  }
}
