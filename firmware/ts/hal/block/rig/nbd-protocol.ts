// NBD protocol constants and small codecs (newstyle, fixed handshake), shared by the rig's
// loop emulator (the server) and the blades' NBD client block driver. Source: the NBD
// protocol document (doc/proto.md of the nbd project).

export const NBD = {
  initMagic: 0x4e42444d41474943n, // "NBDMAGIC"
  optsMagic: 0x49484156454f5054n, // "IHAVEOPT"
  repMagic: 0x3e889045565a9n,
  requestMagic: 0x25609513,
  simpleReplyMagic: 0x67446698,
  structuredReplyMagic: 0x668e33ef,

  flagFixedNewstyle: 1 << 0,
  flagNoZeroes: 1 << 1,
  clientFlagFixedNewstyle: 1 << 0,
  clientFlagNoZeroes: 1 << 1,

  optExportName: 1,
  optAbort: 2,
  optList: 3,
  optStartTls: 5,
  optInfo: 6,
  optGo: 7,
  optStructuredReply: 8,
  optListMetaContext: 9,
  optSetMetaContext: 10,

  repAck: 1,
  repServer: 2,
  repInfo: 3,
  repErrUnsup: 0x80000001,
  repErrPolicy: 0x80000002,
  repErrInvalid: 0x80000003,
  repErrTlsReqd: 0x80000005,
  repErrUnknown: 0x80000006,

  infoExport: 0,
  infoName: 1,
  infoDescription: 2,
  infoBlockSize: 3,

  tflagHasFlags: 1 << 0,
  tflagReadOnly: 1 << 1,
  tflagSendFlush: 1 << 2,
  tflagSendFua: 1 << 3,
  tflagSendTrim: 1 << 5,
  tflagSendWriteZeroes: 1 << 6,
  tflagSendDf: 1 << 7,
  tflagCanMultiConn: 1 << 8,

  cmdRead: 0,
  cmdWrite: 1,
  cmdDisc: 2,
  cmdFlush: 3,
  cmdTrim: 4,
  cmdCache: 5,
  cmdWriteZeroes: 6,
  cmdBlockStatus: 7,

  cmdFlagFua: 1 << 0,
  cmdFlagNoHole: 1 << 1,
  cmdFlagDf: 1 << 2,

  replyFlagDone: 1 << 0,
  replyTypeNone: 0,
  replyTypeOffsetData: 1,
  replyTypeError: 0x8001,

  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** The request header is 28 bytes; a simple reply header 16; a structured reply header 20. */
export const nbdRequestHeaderBytes = 28;
export const nbdSimpleReplyHeaderBytes = 16;
export const nbdStructuredReplyHeaderBytes = 20;

/** Largest payload either side accepts in one request (named limit, as the protocol advises 32 MiB). */
export const nbdPayloadBytesMax = 32 * 1024 * 1024;

export interface NbdRequest {
  flags: number;
  type: number;
  cookie: bigint;
  offset: bigint;
  length: number;
}

export function encodeRequest(r: NbdRequest): Buffer {
  const b = Buffer.alloc(nbdRequestHeaderBytes);
  b.writeUInt32BE(NBD.requestMagic, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeBigUInt64BE(r.cookie, 8);
  b.writeBigUInt64BE(r.offset, 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

export function decodeRequest(b: Buffer): NbdRequest | undefined {
  if (b.readUInt32BE(0) !== NBD.requestMagic) return undefined;
  return {
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    cookie: b.readBigUInt64BE(8),
    offset: b.readBigUInt64BE(16),
    length: b.readUInt32BE(24),
  };
}

/**
 * Accumulates bytes from a socket and hands out exact-length pieces in order, so that a
 * protocol reader can be written as a sequence of `await take(n)` calls.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private available = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.available += chunk.length;
    this.wake();
  }

  end(err: Error): void {
    this.ended = err;
    this.wake();
  }

  get bufferedBytes(): number {
    return this.available;
  }

  take(n: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('ByteQueue: concurrent take'));
    if (this.available >= n) return Promise.resolve(this.consume(n));
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
    });
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.available >= w.n) {
      this.waiter = undefined;
      w.resolve(this.consume(w.n));
    } else if (this.ended) {
      this.waiter = undefined;
      w.reject(this.ended);
    }
  }

  private consume(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0] as Buffer;
    if (first.length === n) {
      this.chunks.shift();
      this.available -= n;
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      this.available -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0] as Buffer;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.available -= n;
    return out;
  }
}
