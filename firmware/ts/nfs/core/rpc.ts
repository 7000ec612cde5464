// ONC RPC version 2 messages (RFC 5531): call headers, accepted and denied replies,
// AUTH_NONE and AUTH_SYS credentials, and TCP record marking. Pure: no I/O.
import { DecodeError } from '../../core/errors.ts';
import { XdrReader, XdrWriter } from './xdr.ts';

export const RPC_VERSION = 2;
export const MsgType = { CALL: 0, REPLY: 1 } as const;
export const AuthFlavor = { NONE: 0, SYS: 1, SHORT: 2, DH: 3, RPCSEC_GSS: 6 } as const;
export const AcceptStat = { SUCCESS: 0, PROG_UNAVAIL: 1, PROG_MISMATCH: 2, PROC_UNAVAIL: 3, GARBAGE_ARGS: 4, SYSTEM_ERR: 5 } as const;
export const RejectStat = { RPC_MISMATCH: 0, AUTH_ERROR: 1 } as const;
export const AuthStat = {
  OK: 0,
  BADCRED: 1,
  REJECTEDCRED: 2,
  BADVERF: 3,
  REJECTEDVERF: 4,
  TOOWEAK: 5,
  INVALIDRESP: 6,
  FAILED: 7,
} as const;

export const rpcLimits = {
  /** RFC 5531: the body of an opaque_auth is at most 400 bytes. */
  authBodyBytesMax: 400,
  /** AUTH_SYS machine name and supplementary groups (RFC 5531 appendix A). */
  authSysMachineNameBytesMax: 255,
  authSysGidsMax: 16,
} as const;

export interface OpaqueAuth {
  flavor: number;
  body: Uint8Array;
}

export interface AuthSys {
  stamp: number;
  machineName: string;
  uid: number;
  gid: number;
  gids: number[];
}

/** A decoded call header; the procedure arguments start at `argsOffset` in the record. */
export interface RpcCall {
  xid: number;
  prog: number;
  vers: number;
  proc: number;
  cred: OpaqueAuth;
  verf: OpaqueAuth;
  /** The AUTH_SYS credentials when cred.flavor is AUTH_SYS. */
  authSys: AuthSys | undefined;
  record: Uint8Array;
  argsOffset: number;
}

/**
 * What the header decoder concluded. `drop`: nothing can be answered (no xid, or not a
 * call). `deny`: answer with a denied reply. `call`: dispatch to the program.
 */
export type CallDecode =
  | { kind: 'drop'; reason: string }
  | { kind: 'deny-version'; xid: number }
  | { kind: 'deny-auth'; xid: number; stat: number }
  | { kind: 'call'; call: RpcCall };

function readAuth(r: XdrReader): OpaqueAuth {
  const flavor = r.u32();
  const body = r.opaque(rpcLimits.authBodyBytesMax);
  return { flavor, body };
}

export function decodeAuthSys(body: Uint8Array): AuthSys {
  const r = new XdrReader(body);
  const stamp = r.u32();
  const machineName = r.string(rpcLimits.authSysMachineNameBytesMax);
  const uid = r.u32();
  const gid = r.u32();
  const n = r.u32();
  if (n > rpcLimits.authSysGidsMax) throw new DecodeError('ERR_RPC_AUTH_SYS', `AUTH_SYS: ${n} gids exceeds ${rpcLimits.authSysGidsMax}`);
  const gids: number[] = [];
  for (let i = 0; i < n; i++) gids.push(r.u32());
  r.done();
  return { stamp, machineName, uid, gid, gids };
}

export function encodeAuthSys(a: AuthSys): Uint8Array {
  const w = new XdrWriter(64);
  w.u32(a.stamp);
  w.string(a.machineName, rpcLimits.authSysMachineNameBytesMax);
  w.u32(a.uid);
  w.u32(a.gid);
  w.u32(a.gids.length);
  for (const g of a.gids) w.u32(g);
  return w.bytes().slice();
}

/** Decodes a call header from one complete record. Never throws. */
export function decodeCall(record: Uint8Array): CallDecode {
  if (record.length < 8) return { kind: 'drop', reason: 'record shorter than an RPC header' };
  const r = new XdrReader(record);
  const xid = r.u32();
  const mtype = r.u32();
  if (mtype !== MsgType.CALL) return { kind: 'drop', reason: `message type ${mtype} is not CALL` };
  try {
    const rpcvers = r.u32();
    if (rpcvers !== RPC_VERSION) return { kind: 'deny-version', xid };
    const prog = r.u32();
    const vers = r.u32();
    const proc = r.u32();
    let cred: OpaqueAuth;
    let verf: OpaqueAuth;
    try {
      cred = readAuth(r);
    } catch {
      return { kind: 'deny-auth', xid, stat: AuthStat.BADCRED };
    }
    try {
      verf = readAuth(r);
    } catch {
      return { kind: 'deny-auth', xid, stat: AuthStat.BADVERF };
    }
    let authSys: AuthSys | undefined;
    if (cred.flavor === AuthFlavor.SYS) {
      try {
        authSys = decodeAuthSys(cred.body);
      } catch {
        return { kind: 'deny-auth', xid, stat: AuthStat.BADCRED };
      }
    } else if (cred.flavor !== AuthFlavor.NONE) {
      return { kind: 'deny-auth', xid, stat: AuthStat.BADCRED };
    }
    if (verf.flavor !== AuthFlavor.NONE) return { kind: 'deny-auth', xid, stat: AuthStat.BADVERF };
    return { kind: 'call', call: { xid, prog, vers, proc, cred, verf, authSys, record, argsOffset: r.pos } };
  } catch {
    // A header cut short after the xid: the caller can still be told its call was garbage.
    return { kind: 'deny-auth', xid, stat: AuthStat.BADCRED };
  }
}

/** Bytes reserved at the front of every reply writer for the TCP record mark. */
export const RECORD_MARK_BYTES = 4;

/** Starts an accepted reply (verifier AUTH_NONE); the caller appends the results for SUCCESS. */
export function beginAcceptedReply(xid: number, stat: number, sizeHint = 128): XdrWriter {
  const w = new XdrWriter(sizeHint + 32, RECORD_MARK_BYTES);
  w.u32(xid);
  w.u32(MsgType.REPLY);
  w.u32(0); // MSG_ACCEPTED
  w.u32(AuthFlavor.NONE);
  w.u32(0);
  w.u32(stat);
  return w;
}

export function progMismatchReply(xid: number, low: number, high: number): XdrWriter {
  const w = beginAcceptedReply(xid, AcceptStat.PROG_MISMATCH);
  w.u32(low);
  w.u32(high);
  return w;
}

export function rpcMismatchReply(xid: number): XdrWriter {
  const w = new XdrWriter(48, RECORD_MARK_BYTES);
  w.u32(xid);
  w.u32(MsgType.REPLY);
  w.u32(1); // MSG_DENIED
  w.u32(RejectStat.RPC_MISMATCH);
  w.u32(RPC_VERSION);
  w.u32(RPC_VERSION);
  return w;
}

export function authErrorReply(xid: number, stat: number): XdrWriter {
  const w = new XdrWriter(48, RECORD_MARK_BYTES);
  w.u32(xid);
  w.u32(MsgType.REPLY);
  w.u32(1); // MSG_DENIED
  w.u32(RejectStat.AUTH_ERROR);
  w.u32(stat);
  return w;
}

/** Fills the record mark (last fragment bit + length) and returns the bytes to send on TCP. */
export function frameForTcp(w: XdrWriter): Uint8Array {
  frameSegmentsForTcp(w);
  return w.bytes(0);
}

/** Like frameForTcp, as buffers to write in order (a READ's data is not copied). */
export function frameSegmentsForTcp(w: XdrWriter): Uint8Array[] {
  const len = w.length(RECORD_MARK_BYTES);
  if (len > 0x7fffffff) throw new RangeError('reply larger than one record fragment');
  w.patchU32(0, (0x80000000 | len) >>> 0);
  return w.segments(0);
}

/** The reply message without the record mark (what UDP sends and the DRC stores). */
export function replyBody(w: XdrWriter): Uint8Array {
  return w.bytes(RECORD_MARK_BYTES);
}

export function encodeCall(
  xid: number,
  prog: number,
  vers: number,
  proc: number,
  cred: OpaqueAuth,
  args: Uint8Array | ((w: XdrWriter) => void),
  argsBytesHint = 256,
): XdrWriter {
  const w = new XdrWriter((typeof args === 'function' ? argsBytesHint : args.length) + 512, RECORD_MARK_BYTES);
  w.u32(xid);
  w.u32(MsgType.CALL);
  w.u32(RPC_VERSION);
  w.u32(prog);
  w.u32(vers);
  w.u32(proc);
  w.u32(cred.flavor);
  w.opaque(cred.body, rpcLimits.authBodyBytesMax);
  w.u32(AuthFlavor.NONE);
  w.u32(0);
  if (typeof args === 'function') args(w);
  else w.raw(args);
  return w;
}

/** A decoded reply, as the client sees it. */
export type RpcReply =
  | { xid: number; kind: 'success'; results: XdrReader }
  | { xid: number; kind: 'accepted-error'; stat: number; low?: number; high?: number }
  | { xid: number; kind: 'rpc-mismatch'; low: number; high: number }
  | { xid: number; kind: 'auth-error'; stat: number };

export function decodeReply(record: Uint8Array): RpcReply {
  const r = new XdrReader(record);
  const xid = r.u32();
  const mtype = r.u32();
  if (mtype !== MsgType.REPLY) throw new DecodeError('ERR_RPC_NOT_REPLY', `message type ${mtype} is not REPLY`);
  const replyStat = r.u32();
  if (replyStat === 0) {
    r.u32();
    r.opaque(rpcLimits.authBodyBytesMax);
    const stat = r.u32();
    if (stat === AcceptStat.SUCCESS) return { xid, kind: 'success', results: r };
    if (stat === AcceptStat.PROG_MISMATCH) return { xid, kind: 'accepted-error', stat, low: r.u32(), high: r.u32() };
    return { xid, kind: 'accepted-error', stat };
  }
  if (replyStat !== 1) throw new DecodeError('ERR_RPC_REPLY_STAT', `reply_stat ${replyStat}`);
  const rej = r.u32();
  if (rej === RejectStat.RPC_MISMATCH) return { xid, kind: 'rpc-mismatch', low: r.u32(), high: r.u32() };
  if (rej === RejectStat.AUTH_ERROR) return { xid, kind: 'auth-error', stat: r.u32() };
  throw new DecodeError('ERR_RPC_REJECT_STAT', `reject_stat ${rej}`);
}

/**
 * Incremental TCP record-marking decoder (RFC 5531 section 11). Feed it socket chunks;
 * it returns complete records. A record larger than `recordBytesMax` (summed over its
 * fragments) is an error: the connection must be closed, because the stream cannot be
 * resynchronised without reading the whole oversized record.
 */
export class RecordDecoder {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private readonly fragments: Uint8Array[] = [];
  private recordBytes = 0;
  /**
   * `allocate(n)` gives the buffer a record spanning several chunks or fragments is joined
   * into; every byte of it is then written, so it need not be zeroed (the TCP server passes an
   * allocator that skips the zero fill of a 1 MiB WRITE's record). Records are never reused:
   * the NFS service hands a WRITE's data over to the file system as it is (fsapi/codec.ts
   * `handOverWriteData`).
   */
  constructor(
    private readonly recordBytesMax: number,
    private readonly allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes),
  ) {}

  /** Bytes held for an incomplete record (the per-connection memory this decoder uses). */
  get bufferedBytes(): number {
    return this.buffered + this.recordBytes;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Uint8Array[] = [];
    while (this.buffered >= 4) {
      const head = this.peek(4);
      const mark = ((head[0] as number) << 24 | (head[1] as number) << 16 | (head[2] as number) << 8 | (head[3] as number)) >>> 0;
      const last = (mark & 0x80000000) !== 0;
      const len = mark & 0x7fffffff;
      if (this.recordBytes + len > this.recordBytesMax) {
        throw new DecodeError('ERR_RPC_RECORD_TOO_LONG', `record of at least ${this.recordBytes + len} bytes exceeds ${this.recordBytesMax}`);
      }
      if (this.buffered < 4 + len) break;
      this.take(4);
      const frag = this.take(len);
      if (!last && len === 0) continue; // an empty middle fragment carries nothing: hold no memory for it
      this.recordBytes = fragmentDone(this.fragments, this.recordBytes, frag, last, out, this.allocate);
    }
    return out;
  }

  private peek(n: number): Uint8Array {
    const first = this.chunks[0] as Uint8Array;
    if (first.length >= n) return first.subarray(0, n);
    const out = new Uint8Array(n);
    let off = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (off === n) break;
    }
    return out;
  }

  private take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    this.buffered -= n;
    const first = this.chunks[0] as Uint8Array;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = this.allocate(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0] as Uint8Array;
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}

export interface InPlaceRecordReaderOptions {
  /**
   * Gives a large fragment's buffer, a multi-fragment record's joining buffer and a slab;
   * every byte of a fragment's or record's buffer is written before it is handed out, so it
   * need not be zeroed (the TCP server passes one that skips the zero fill of a 1 MiB WRITE's
   * record). Default `new Uint8Array(bytes)`.
   */
  allocate?: (bytes: number) => Uint8Array;
  /**
   * 0 (default): each fragment that came whole in the scratch is copied into memory of its
   * own (`slice`). Otherwise those below `inPlaceBytesMin` are copied one after another into
   * slabs of this many bytes, each byte written once and never again (a full slab is left to
   * its records, not reused): one allocation per slab rather than per record; larger ones get
   * memory of their own from `allocate`, as if read in place. Small records then share
   * memory, which keeps the file system from adopting a small WRITE's bytes as an unaligned
   * page of their own (fsapi/codec.ts handOverWriteData): it copies them into its aligned
   * page slabs instead, which a CP writes to O_DIRECT disks without a bounce copy.
   */
  slabBytes?: number;
}

/**
 * TCP record-marking reader for a socket whose reads land where the reader says (node's
 * `onread.buffer` given as a function): a fragment of at least `inPlaceBytesMin` is read
 * straight into its own buffer, so a 64 KiB READ reply costs no intermediate chunk and no
 * copy; marks and small fragments go through one reused scratch buffer. Gives the same
 * records and the same errors as RecordDecoder, whose chunks it would otherwise have joined.
 * Usage: before each read, `nextBuffer()`; after a read of n bytes into it, `filled(n)`.
 */
export class InPlaceRecordReader {
  private readonly scratch: Uint8Array;
  /** Unconsumed bytes of the scratch buffer: [start, end). */
  private start = 0;
  private end = 0;
  /** The large fragment being read in place, how much of it has arrived, and whether it ends its record. */
  private frag: Uint8Array | undefined;
  private fragFilled = 0;
  private fragLast = false;
  /** Earlier fragments of the record being assembled (multi-fragment records are rare). */
  private readonly fragments: Uint8Array[] = [];
  private recordBytes = 0;

  /** Small fragments are copied into this slab from `slabOffset` on (see `slabBytes`). */
  private slab: Uint8Array = new Uint8Array(0);
  private slabOffset = 0;
  private readonly allocate: (bytes: number) => Uint8Array;
  private readonly slabBytes: number;

  constructor(
    private readonly recordBytesMax: number,
    private readonly inPlaceBytesMin = 8 * 1024,
    scratchBytes = 64 * 1024,
    opts: InPlaceRecordReaderOptions = {},
  ) {
    this.allocate = opts.allocate ?? ((bytes) => new Uint8Array(bytes));
    this.slabBytes = opts.slabBytes ?? 0;
    // Room for a whole small fragment after compaction, whatever else the scratch holds.
    this.scratch = new Uint8Array(Math.max(scratchBytes, 2 * (inPlaceBytesMin + RECORD_MARK_BYTES)));
  }

  /** Bytes held for an incomplete record (the per-connection memory this reader uses). */
  get bufferedBytes(): number {
    return this.end - this.start + this.fragFilled + this.recordBytes;
  }

  /** Where the next read should put its bytes (never empty). */
  nextBuffer(): Uint8Array {
    if (this.frag !== undefined) return this.frag.subarray(this.fragFilled);
    if (this.start === this.end) {
      this.start = this.end = 0;
    } else if (this.scratch.length - this.end < this.inPlaceBytesMin + RECORD_MARK_BYTES) {
      // What is left is a mark or a small fragment's start: move it to the front.
      this.scratch.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    return this.scratch.subarray(this.end);
  }

  /** Takes the `n` bytes the last read put into nextBuffer(); returns the records they complete. */
  filled(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (this.frag !== undefined) {
      this.fragFilled += n;
      if (this.fragFilled === this.frag.length) {
        const f = this.frag;
        this.frag = undefined;
        this.fragFilled = 0;
        this.recordBytes = fragmentDone(this.fragments, this.recordBytes, f, this.fragLast, out, this.allocate);
      }
      return out;
    }
    this.end += n;
    const s = this.scratch;
    while (this.end - this.start >= RECORD_MARK_BYTES) {
      const p = this.start;
      const mark = (((s[p] as number) << 24) | ((s[p + 1] as number) << 16) | ((s[p + 2] as number) << 8) | (s[p + 3] as number)) >>> 0;
      const last = (mark & 0x80000000) !== 0;
      const len = mark & 0x7fffffff;
      if (this.recordBytes + len > this.recordBytesMax) {
        throw new DecodeError('ERR_RPC_RECORD_TOO_LONG', `record of at least ${this.recordBytes + len} bytes exceeds ${this.recordBytesMax}`);
      }
      const have = this.end - p - RECORD_MARK_BYTES;
      if (have >= len) {
        this.start = p + RECORD_MARK_BYTES + len;
        if (!last && len === 0) continue; // an empty middle fragment carries nothing
        this.recordBytes = fragmentDone(this.fragments, this.recordBytes, this.copyOut(p + RECORD_MARK_BYTES, this.start), last, out, this.allocate);
        continue;
      }
      if (len >= this.inPlaceBytesMin) {
        // The rest of this fragment is read straight into its own buffer.
        const f = this.allocate(len);
        f.set(s.subarray(p + RECORD_MARK_BYTES, this.end));
        this.frag = f;
        this.fragFilled = have;
        this.fragLast = last;
        this.start = this.end = 0;
      }
      break;
    }
    return out;
  }

  /** A whole fragment's bytes out of the scratch, in memory that nothing writes again. */
  private copyOut(from: number, to: number): Uint8Array {
    const n = to - from;
    if (this.slabBytes === 0) return this.scratch.slice(from, to);
    if (n >= this.inPlaceBytesMin || n > this.slabBytes) {
      // As large as a fragment read in place (it came whole in one read): its own memory too.
      const f = this.allocate(n);
      f.set(this.scratch.subarray(from, to));
      return f;
    }
    if (this.slabOffset + n > this.slab.length) {
      this.slab = this.allocate(this.slabBytes);
      this.slabOffset = 0;
    }
    const f = this.slab.subarray(this.slabOffset, this.slabOffset + n);
    f.set(this.scratch.subarray(from, to));
    this.slabOffset += n;
    return f;
  }
}

/**
 * A record's fragment has arrived: a single-fragment record goes out as it is; otherwise the
 * fragment joins `fragments` (emptied in place), and the last one joins them all into one
 * record. Returns the bytes held for the record still being assembled.
 */
function fragmentDone(
  fragments: Uint8Array[],
  heldBytes: number,
  f: Uint8Array,
  last: boolean,
  out: Uint8Array[],
  allocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes),
): number {
  if (last && fragments.length === 0) {
    out.push(f);
    return 0;
  }
  fragments.push(f);
  const total = heldBytes + f.length;
  if (!last) return total;
  const rec = allocate(total);
  let off = 0;
  for (const g of fragments) {
    rec.set(g, off);
    off += g.length;
  }
  out.push(rec);
  fragments.length = 0;
  return 0;
}
