// Byte-stream transports for the link: any SerialPort-shaped stream (the serial interconnect,
// a pty in the rig) and a reconnecting TCP connection between the blades' interconnect
// addresses. They move bytes only; framing and the protocol live in core/.

import net from 'node:net';
import type { Timers, TimerHandle } from '../core/clock.ts';
import { InvalidArgumentError } from '../core/errors.ts';
import type { SerialPort } from '../hal/serial/serial-port.ts';
import type { PathTransport, TransportSink } from './endpoint.ts';

/** The part of the SerialPort HAL interface a stream path needs (a TCP socket adapts to it). */
export type ByteStream = Pick<SerialPort, 'write' | 'on' | 'off' | 'close' | 'isOpen'>;

/**
 * A path over an already-open byte stream (the serial interconnect). If the stream closes the
 * path simply stops carrying bytes; liveness reports it down.
 */
export class StreamPathTransport implements PathTransport {
  readonly kind = 'stream' as const;
  private sink: TransportSink | undefined;
  private closed = false;

  constructor(
    readonly name: string,
    private readonly stream: ByteStream,
  ) {}

  start(sink: TransportSink): void {
    if (this.sink !== undefined) throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `transport ${this.name} already started`);
    this.sink = sink;
    this.stream.on('data', this.onData);
    this.stream.on('drain', this.onDrain);
    this.stream.on('error', this.onError);
  }

  write(bytes: Uint8Array): boolean {
    if (this.closed || !this.stream.isOpen) return true;
    try {
      return this.stream.write(bytes);
    } catch (e) {
      // ERR_SERIAL_CLOSED: the port went away between our check and the write; the bytes are
      // lost like any on a cut cable, and the protocol retransmits.
      this.sink?.error(e as Error);
      return true;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stream.off('data', this.onData);
    this.stream.off('drain', this.onDrain);
    this.stream.off('error', this.onError);
    await this.stream.close();
  }

  private readonly onData = (chunk: Uint8Array): void => this.sink?.data(chunk);
  private readonly onDrain = (): void => this.sink?.drain();
  private readonly onError = (err: Error): void => this.sink?.error(err);
}

export interface ReopeningStreamPathOptions {
  name: string;
  /** Opens a fresh stream: HAL ports are one-shot, so each reopen builds a new port instance. */
  open: () => Promise<ByteStream>;
  timers: Timers;
  reopenDelayMsMin?: number;
  reopenDelayMsMax?: number;
}

/**
 * A serial path that survives its device going away (a USB serial adapter unplugged and
 * plugged back, a UART driver reset): when the stream closes it reopens it with bounded
 * backoff. Bytes written meanwhile are lost like bytes on a cut cable; the reliable channel
 * resends them, and its liveness reports the path down until frames flow again.
 */
export class ReopeningStreamPathTransport implements PathTransport {
  readonly kind = 'stream' as const;
  readonly name: string;
  private sink: TransportSink | undefined;
  private stream: ByteStream | undefined;
  private timer: TimerHandle | undefined;
  private delayMs: number;
  private closed = false;
  /** Successful opens, and failed attempts, for observability. */
  opens = 0;
  openFailures = 0;

  constructor(private readonly opts: ReopeningStreamPathOptions) {
    this.name = opts.name;
    this.delayMs = opts.reopenDelayMsMin ?? 100;
  }

  start(sink: TransportSink): void {
    if (this.sink !== undefined) throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `transport ${this.name} already started`);
    this.sink = sink;
    this.attempt();
  }

  write(bytes: Uint8Array): boolean {
    const s = this.stream;
    if (this.closed || s === undefined || !s.isOpen) return true;
    try {
      return s.write(bytes);
    } catch (e) {
      this.sink?.error(e as Error);
      return true;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.timer?.cancel();
    const s = this.stream;
    this.stream = undefined;
    if (s !== undefined) {
      this.detach(s);
      await s.close();
    }
  }

  private attempt(): void {
    if (this.closed) return;
    this.opts.open().then(
      (s) => {
        if (this.closed) {
          void s.close();
          return;
        }
        this.opens++;
        this.delayMs = this.opts.reopenDelayMsMin ?? 100;
        this.stream = s;
        s.on('data', this.onData);
        s.on('drain', this.onDrain);
        s.on('error', this.onError);
        s.on('close', this.onClose);
        // A new stream starts between frames; whatever the old one left half-read is garbage.
        this.sink?.reset();
      },
      (e: unknown) => {
        this.openFailures++;
        this.sink?.error(e instanceof Error ? e : new Error(String(e)));
        this.retryLater();
      },
    );
  }

  private retryLater(): void {
    if (this.closed) return;
    this.timer?.cancel();
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.opts.reopenDelayMsMax ?? 5000);
    this.timer = this.opts.timers.after(delay, () => this.attempt());
  }

  private detach(s: ByteStream): void {
    s.off('data', this.onData);
    s.off('drain', this.onDrain);
    s.off('error', this.onError);
    s.off('close', this.onClose);
  }

  private readonly onData = (chunk: Uint8Array): void => this.sink?.data(chunk);
  private readonly onDrain = (): void => this.sink?.drain();
  private readonly onError = (err: Error): void => this.sink?.error(err);
  private readonly onClose = (): void => {
    const s = this.stream;
    this.stream = undefined;
    if (s !== undefined) this.detach(s);
    this.retryLater();
  };
}

type SocketListener = (...args: unknown[]) => void;

/** Adapts a connected node:net socket to the ByteStream shape (Buffer chunks become Uint8Array). */
export function socketByteStream(socket: net.Socket): ByteStream {
  const wrapped = new Map<SocketListener, SocketListener>();
  const stream: ByteStream = {
    get isOpen() {
      return !socket.destroyed && socket.writable;
    },
    write(data) {
      return socket.write(data);
    },
    on(event, listener) {
      const l = listener as SocketListener;
      const w = (event === 'data' ? (b: Buffer) => (listener as (c: Uint8Array) => void)(new Uint8Array(b.buffer, b.byteOffset, b.length)) : l) as SocketListener;
      wrapped.set(l, w);
      socket.on(event as string, w);
      return stream as never;
    },
    off(event, listener) {
      const w = wrapped.get(listener as SocketListener);
      if (w !== undefined) socket.off(event as string, w);
      wrapped.delete(listener as SocketListener);
      return stream as never;
    },
    close() {
      return new Promise<void>((resolve) => {
        if (socket.destroyed) return resolve();
        socket.once('close', () => resolve());
        socket.destroy();
      });
    },
  };
  return stream;
}

export interface TcpPathOptions {
  name: string;
  /**
   * 'listen': accept the partner's connection on host:port (port 0 picks one; see address()).
   * 'connect': connect to the partner's host:port and reconnect with bounded backoff.
   * One blade listens and the other connects (by convention blade A listens).
   */
  mode: 'listen' | 'connect';
  host: string;
  port: number;
  timers: Timers;
  /**
   * Listen mode: accept connections only from this address (the partner's interconnect
   * address). Others are closed at once and counted in `foreignConnections`, so a stray host
   * cannot displace the partner's connection.
   */
  partnerHost?: string;
  /** Connect mode: the local address to connect from (our interconnect address). */
  localHost?: string;
  reconnectDelayMsMin?: number;
  reconnectDelayMsMax?: number;
}

/**
 * A TCP path. Only one connection is live at a time: a newer accepted connection replaces the
 * older one (a partner that rebooted reconnects before our side notices the old one died).
 * Frames are authenticated, so a stranger connecting can inject nothing; with `partnerHost`
 * set it cannot even displace the partner's connection.
 */
export class TcpPathTransport implements PathTransport {
  readonly kind = 'stream' as const;
  readonly name: string;
  private readonly opts: TcpPathOptions;
  private sink: TransportSink | undefined;
  private socket: net.Socket | undefined;
  private server: net.Server | undefined;
  private reconnectTimer: TimerHandle | undefined;
  private reconnectDelayMs: number;
  private closed = false;
  private listening: Promise<void> | undefined;
  /** Connections made (connect) or accepted (listen), for observability. */
  connections = 0;
  /** Connections refused in listen mode because they came from another address than partnerHost. */
  foreignConnections = 0;

  constructor(opts: TcpPathOptions) {
    this.opts = opts;
    this.name = opts.name;
    this.reconnectDelayMs = opts.reconnectDelayMsMin ?? 50;
  }

  /** Resolves once the server listens (listen mode) or immediately (connect mode). */
  whenListening(): Promise<void> {
    return this.listening ?? Promise.resolve();
  }

  /** The bound address in listen mode (after whenListening()). */
  address(): net.AddressInfo {
    const a = this.server?.address();
    if (a === null || a === undefined || typeof a === 'string') throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `${this.name} is not listening`);
    return a;
  }

  start(sink: TransportSink): void {
    if (this.sink !== undefined) throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `transport ${this.name} already started`);
    this.sink = sink;
    if (this.opts.mode === 'listen') {
      const server = net.createServer({ noDelay: true }, (s) => {
        const partner = this.opts.partnerHost;
        if (partner !== undefined && !sameHost(s.remoteAddress ?? '', partner)) {
          this.foreignConnections++;
          s.destroy();
          return;
        }
        this.adopt(s);
      });
      this.server = server;
      this.listening = new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.opts.port, this.opts.host, () => {
          server.off('error', reject);
          server.on('error', (e) => this.sink?.error(e));
          resolve();
        });
      });
      // The listen error is reported through whenListening(); keep it from being unhandled here.
      this.listening.catch(() => undefined);
      server.unref();
    } else {
      this.connect();
    }
  }

  write(bytes: Uint8Array): boolean {
    const s = this.socket;
    if (s === undefined || s.destroyed || !s.writable) return true;
    return s.write(bytes);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.reconnectTimer?.cancel();
    const s = this.socket;
    this.socket = undefined;
    const waits: Promise<void>[] = [];
    if (s !== undefined && !s.destroyed) waits.push(new Promise((r) => { s.once('close', () => r()); s.destroy(); }));
    const server = this.server;
    if (server !== undefined) waits.push(new Promise((r) => server.close(() => r())));
    await Promise.all(waits);
  }

  private connect(): void {
    if (this.closed) return;
    const s = net.connect({
      host: this.opts.host,
      port: this.opts.port,
      noDelay: true,
      ...(this.opts.localHost === undefined ? {} : { localAddress: this.opts.localHost }),
    });
    s.once('connect', () => {
      this.reconnectDelayMs = this.opts.reconnectDelayMsMin ?? 50;
      this.adopt(s);
    });
    s.on('error', () => undefined);
    s.once('close', () => {
      if (this.socket === s) this.socket = undefined;
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.closed || this.opts.mode !== 'connect') return;
    this.reconnectTimer?.cancel();
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, this.opts.reconnectDelayMsMax ?? 1000);
    this.reconnectTimer = this.opts.timers.after(delay, () => this.connect());
  }

  private adopt(s: net.Socket): void {
    if (this.closed) {
      s.destroy();
      return;
    }
    this.connections++;
    s.setNoDelay(true);
    s.unref();
    const old = this.socket;
    this.socket = s;
    if (old !== undefined && old !== s) old.destroy();
    this.sink?.reset();
    s.on('data', (b: Buffer) => {
      if (this.socket === s) this.sink?.data(new Uint8Array(b.buffer, b.byteOffset, b.length));
    });
    s.on('drain', () => {
      if (this.socket === s) this.sink?.drain();
    });
    s.on('error', (e) => {
      if (this.socket === s) this.sink?.error(e);
    });
    s.once('close', () => {
      if (this.socket === s) this.socket = undefined;
    });
  }
}

function sameHost(a: string, b: string): boolean {
  const norm = (h: string): string => (h === 'localhost' ? '127.0.0.1' : h.replace(/^::ffff:/, ''));
  return norm(a) === norm(b);
}
