// A UDP path between the blades' interconnect addresses: one frame per datagram. Loss,
// duplication and reordering are the reliable channel's business, not this transport's.

import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { InvalidArgumentError } from '../core/errors.ts';
import type { PathTransport, TransportSink } from './endpoint.ts';

export interface UdpPathOptions {
  name: string;
  /** Local interconnect address and port to bind (port 0 picks one; see address()). */
  localHost: string;
  localPort: number;
  /** The partner's interconnect address and port; may be set later with setRemote(). */
  remoteHost?: string;
  remotePort?: number;
  type?: 'udp4' | 'udp6';
  /**
   * Socket buffer size asked of the kernel (it caps it at net.core.rmem_max/wmem_max). A full
   * send window must fit, or bursts are dropped on the receiving socket before we read them.
   */
  socketBufferBytes?: number;
}

export const udpSocketBufferBytesDefault = 4 * 1024 * 1024;

export class UdpPathTransport implements PathTransport {
  readonly kind = 'datagram' as const;
  readonly name: string;
  private readonly socket: dgram.Socket;
  private remote: { host: string; port: number } | undefined;
  private sink: TransportSink | undefined;
  private bound: Promise<void> | undefined;
  private closed = false;
  /** Datagrams from an address other than the partner's: dropped before decoding. */
  foreignDatagrams = 0;
  sendErrors = 0;

  constructor(private readonly opts: UdpPathOptions) {
    this.name = opts.name;
    const buf = opts.socketBufferBytes ?? udpSocketBufferBytesDefault;
    this.socket = dgram.createSocket({ type: opts.type ?? 'udp4', recvBufferSize: buf, sendBufferSize: buf });
    if (opts.remoteHost !== undefined && opts.remotePort !== undefined) this.remote = { host: opts.remoteHost, port: opts.remotePort };
  }

  /** Resolves once the socket is bound. */
  whenBound(): Promise<void> {
    return this.bound ?? Promise.resolve();
  }

  address(): AddressInfo {
    return this.socket.address();
  }

  setRemote(host: string, port: number): void {
    this.remote = { host, port };
  }

  start(sink: TransportSink): void {
    if (this.sink !== undefined) throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `transport ${this.name} already started`);
    this.sink = sink;
    this.socket.on('message', (msg, rinfo) => {
      const r = this.remote;
      // The partner's address is configured; anything else is a stray sender. Authentication
      // would refuse it anyway, this only saves the work.
      if (r !== undefined && (rinfo.port !== r.port || !sameHost(rinfo.address, r.host))) {
        this.foreignDatagrams++;
        return;
      }
      sink.data(new Uint8Array(msg.buffer, msg.byteOffset, msg.length));
    });
    this.socket.on('error', (e) => sink.error(e));
    this.bound = new Promise<void>((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.bind(this.opts.localPort, this.opts.localHost, () => {
        this.socket.off('error', reject);
        this.socket.unref();
        resolve();
      });
    });
    this.bound.catch(() => undefined);
  }

  write(bytes: Uint8Array): boolean {
    const r = this.remote;
    if (this.closed || r === undefined) return true;
    this.socket.send(bytes, r.port, r.host, (err) => {
      // A send error (no route, buffer full) is a lost datagram; the protocol recovers.
      if (err) this.sendErrors++;
    });
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}

function sameHost(a: string, b: string): boolean {
  if (a === b) return true;
  const norm = (h: string) => (h === 'localhost' ? '127.0.0.1' : h.replace(/^::ffff:/, ''));
  return norm(a) === norm(b);
}
