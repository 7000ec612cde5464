// The rig driver of the block-device HAL: an NBD client (newstyle, fixed handshake,
// NBD_OPT_GO, structured replies) that reaches a disk through the rig's loop emulator.
// Requests are pipelined; a reservation conflict (EPERM from the emulated loop controller)
// surfaces as ERR_BLOCK_FENCED, every other failure as ERR_BLOCK_IO.
import net from 'node:net';
import { TwinbladeError, InvalidArgumentError } from '../../../core/errors.ts';
import { BlockErrorCode, type BlockDevice } from '../block-device.ts';
import {
  ByteQueue,
  encodeRequest,
  NBD,
  nbdPayloadBytesMax,
  nbdSimpleReplyHeaderBytes,
  nbdStructuredReplyHeaderBytes,
} from './nbd-protocol.ts';

export interface NbdClientOptions {
  host: string;
  port: number;
  exportName: string;
  /** Logical sector size the driver enforces (default 4096). */
  sectorSize?: number;
  /** Milliseconds to wait for the handshake before giving up (default 5000). */
  connectTimeoutMs?: number;
}

interface Pending {
  type: number;
  length: number;
  resolve: (data: Buffer | undefined) => void;
  reject: (e: Error) => void;
  data?: Buffer;
  error?: { errno: number; message: string };
}

function ioError(message: string, cause?: unknown): TwinbladeError {
  return new TwinbladeError(BlockErrorCode.io, 'io', message, { cause });
}

/** Opens an NBD export and returns it as a BlockDevice. */
export async function openNbdBlockDevice(opts: NbdClientOptions): Promise<NbdBlockDevice> {
  const dev = new NbdBlockDevice(opts);
  await dev.connect();
  return dev;
}

export class NbdBlockDevice implements BlockDevice {
  readonly name: string;
  readonly sectorSize: number;
  sizeBytes = 0;
  private sock: net.Socket | undefined;
  private queue: ByteQueue | undefined;
  private readonly pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  private structured = false;
  private closed = false;
  private connecting: Promise<void> | undefined;

  constructor(private readonly opts: NbdClientOptions) {
    this.name = `nbd://${opts.host}:${opts.port}/${opts.exportName}`;
    this.sectorSize = opts.sectorSize ?? 4096;
  }

  /** Connects (or reconnects after a dropped connection). */
  connect(): Promise<void> {
    if (!this.connecting) {
      this.connecting = this.handshake().finally(() => {
        this.connecting = undefined;
      });
    }
    return this.connecting;
  }

  private async handshake(): Promise<void> {
    const sock = net.connect({ host: this.opts.host, port: this.opts.port });
    sock.setNoDelay(true);
    const q = new ByteQueue();
    sock.on('data', (c: Buffer) => q.push(c));
    sock.on('error', (e) => q.end(e));
    sock.on('close', () => q.end(new Error('connection closed')));
    const timer = setTimeout(() => sock.destroy(new Error('NBD handshake timed out')), this.opts.connectTimeoutMs ?? 5000);
    timer.unref();
    try {
      const hello = await q.take(18);
      if (hello.readBigUInt64BE(0) !== NBD.initMagic || hello.readBigUInt64BE(8) !== NBD.optsMagic) {
        throw ioError(`${this.name}: not a newstyle NBD server`);
      }
      const serverFlags = hello.readUInt16BE(16);
      if (!(serverFlags & NBD.flagFixedNewstyle)) throw ioError(`${this.name}: server lacks fixed newstyle`);
      const cflags = Buffer.alloc(4);
      cflags.writeUInt32BE(NBD.clientFlagFixedNewstyle | (serverFlags & NBD.flagNoZeroes ? NBD.clientFlagNoZeroes : 0));
      sock.write(cflags);

      const sendOpt = (opt: number, data: Buffer): void => {
        const h = Buffer.alloc(16);
        h.writeBigUInt64BE(NBD.optsMagic, 0);
        h.writeUInt32BE(opt, 8);
        h.writeUInt32BE(data.length, 12);
        sock.write(Buffer.concat([h, data]));
      };
      const readOptReply = async (): Promise<{ type: number; data: Buffer }> => {
        const h = await q.take(20);
        if (h.readBigUInt64BE(0) !== NBD.repMagic) throw ioError(`${this.name}: bad option reply magic`);
        const len = h.readUInt32BE(16);
        if (len > 64 * 1024) throw ioError(`${this.name}: option reply too long`);
        return { type: h.readUInt32BE(12), data: await q.take(len) };
      };

      sendOpt(NBD.optStructuredReply, Buffer.alloc(0));
      this.structured = (await readOptReply()).type === NBD.repAck;

      const name = Buffer.from(this.opts.exportName, 'utf8');
      const go = Buffer.alloc(4 + name.length + 4);
      go.writeUInt32BE(name.length, 0);
      name.copy(go, 4);
      go.writeUInt16BE(1, 4 + name.length);
      go.writeUInt16BE(NBD.infoBlockSize, 6 + name.length);
      sendOpt(NBD.optGo, go);
      let size: bigint | undefined;
      for (;;) {
        const r = await readOptReply();
        if (r.type === NBD.repAck) break;
        if (r.type === NBD.repInfo) {
          if (r.data.length >= 12 && r.data.readUInt16BE(0) === NBD.infoExport) size = r.data.readBigUInt64BE(2);
          continue;
        }
        if (r.type & 0x80000000) throw ioError(`${this.name}: export refused (${r.data.toString('utf8') || r.type.toString(16)})`);
      }
      if (size === undefined) throw ioError(`${this.name}: server sent no export size`);
      this.sizeBytes = Number(size) - (Number(size) % this.sectorSize);
      this.sock = sock;
      this.queue = q;
      sock.on('close', () => this.onDisconnect(new Error('connection closed')));
      sock.on('error', (e) => this.onDisconnect(e));
      this.readReplies(sock, q).catch((e: unknown) => this.onDisconnect(e as Error));
    } catch (e) {
      sock.destroy();
      throw e instanceof TwinbladeError ? e : ioError(`${this.name}: connect failed: ${(e as Error).message}`, e);
    } finally {
      clearTimeout(timer);
    }
  }

  private onDisconnect(err: Error): void {
    if (!this.sock) return;
    this.sock.destroy();
    this.sock = undefined;
    this.queue = undefined;
    const failed = [...this.pending.values()];
    this.pending.clear();
    // Requests in flight when the device is closed fail ERR_BLOCK_CLOSED (the HAL contract).
    for (const p of failed) p.reject(this.closed ? new TwinbladeError(BlockErrorCode.closed, 'closed', `${this.name}: closed with the request in flight`) : ioError(`${this.name}: connection lost: ${err.message}`, err));
  }

  private async readReplies(sock: net.Socket, q: ByteQueue): Promise<void> {
    while (this.sock === sock) {
      const magic = (await q.take(4)).readUInt32BE(0);
      if (magic === NBD.simpleReplyMagic) {
        const rest = await q.take(nbdSimpleReplyHeaderBytes - 4);
        const errno = rest.readUInt32BE(0);
        const cookie = rest.readBigUInt64BE(4);
        const p = this.pending.get(cookie);
        if (!p) throw new Error('reply for an unknown cookie');
        this.pending.delete(cookie);
        if (errno !== 0) p.reject(this.mapErrno(errno, ''));
        else p.resolve(p.type === NBD.cmdRead ? await q.take(p.length) : undefined);
      } else if (magic === NBD.structuredReplyMagic) {
        const rest = await q.take(nbdStructuredReplyHeaderBytes - 4);
        const flags = rest.readUInt16BE(0);
        const type = rest.readUInt16BE(2);
        const cookie = rest.readBigUInt64BE(4);
        const len = rest.readUInt32BE(12);
        if (len > nbdPayloadBytesMax + 64) throw new Error('structured chunk too long');
        const body = await q.take(len);
        const p = this.pending.get(cookie);
        if (!p) throw new Error('reply for an unknown cookie');
        if (type === NBD.replyTypeOffsetData) {
          p.data ??= Buffer.alloc(p.length);
          body.copy(p.data, 0, 8);
        } else if (type & 0x8000) {
          const errno = body.readUInt32BE(0);
          const mlen = body.readUInt16BE(4);
          p.error = { errno, message: body.subarray(6, 6 + mlen).toString('utf8') };
        }
        if (flags & NBD.replyFlagDone) {
          this.pending.delete(cookie);
          if (p.error) p.reject(this.mapErrno(p.error.errno, p.error.message));
          else p.resolve(p.type === NBD.cmdRead ? (p.data ?? Buffer.alloc(p.length)) : undefined);
        }
      } else {
        throw new Error(`bad reply magic 0x${magic.toString(16)}`);
      }
    }
  }

  private mapErrno(errno: number, message: string): TwinbladeError {
    if (errno === NBD.EPERM) return new TwinbladeError(BlockErrorCode.fenced, 'fenced', `${this.name}: ${message || 'reservation conflict'}`);
    return ioError(`${this.name}: I/O error ${errno}${message ? `: ${message}` : ''}`);
  }

  private check(offset: number, length: number): void {
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset % this.sectorSize !== 0 || length % this.sectorSize !== 0) {
      throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: offset ${offset} / length ${length} not aligned to ${this.sectorSize}`);
    }
    if (offset + length > this.sizeBytes) {
      throw new TwinbladeError(BlockErrorCode.outOfRange, 'out-of-range', `${this.name}: range ${offset}+${length} beyond ${this.sizeBytes}`);
    }
    if (length > nbdPayloadBytesMax) throw new TwinbladeError(BlockErrorCode.outOfRange, 'out-of-range', `${this.name}: request larger than ${nbdPayloadBytesMax}`);
  }

  private async request(type: number, offset: number, length: number, data?: Uint8Array): Promise<Buffer | undefined> {
    if (this.closed) throw new TwinbladeError(BlockErrorCode.closed, 'closed', `${this.name}: closed`);
    if (!this.sock) await this.connect();
    const sock = this.sock;
    if (!sock) throw ioError(`${this.name}: not connected`);
    const cookie = this.nextCookie++;
    return new Promise<Buffer | undefined>((resolve, reject) => {
      this.pending.set(cookie, { type, length, resolve, reject });
      const hdr = encodeRequest({ flags: 0, type, cookie, offset: BigInt(offset), length });
      if (data) sock.write(Buffer.concat([hdr, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
      else sock.write(hdr);
    });
  }

  // Argument errors throw synchronously (the HAL contract); runtime failures reject.
  read(offset: number, length: number): Promise<Uint8Array> {
    this.check(offset, length);
    if (length === 0) return Promise.resolve(new Uint8Array(0));
    return this.request(NBD.cmdRead, offset, length).then((b) => new Uint8Array((b as Buffer).buffer, (b as Buffer).byteOffset, length));
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    this.check(offset, data.length);
    if (data.length === 0) return Promise.resolve();
    return this.request(NBD.cmdWrite, offset, data.length, data).then(() => undefined);
  }

  async flush(): Promise<void> {
    await this.request(NBD.cmdFlush, 0, 0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const sock = this.sock;
    if (sock) {
      sock.write(encodeRequest({ flags: 0, type: NBD.cmdDisc, cookie: 0n, offset: 0n, length: 0 }));
      sock.end();
      this.onDisconnect(new Error('closed'));
    }
  }
}
