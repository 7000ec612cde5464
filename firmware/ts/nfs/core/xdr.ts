// XDR (RFC 4506) reader and writer plus small codec combinators, used by every ONC RPC
// program here (portmap, MOUNT, NFSv3) on both the server and the client side.
// The reader checks every bound and throws DecodeError with a stable code, never RangeError.
import { DecodeError, InvalidArgumentError } from '../../core/errors.ts';
import { utf8Decode, utf8Encode } from '../../core/bytes.ts';

const TWO32 = 4294967296;

/** Reads XDR items from a byte range; every read is bounds-checked. */
export class XdrReader {
  readonly buf: Uint8Array;
  private readonly view: DataView;
  pos: number;
  readonly end: number;

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = start;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (n > this.end - this.pos) throw new DecodeError('ERR_XDR_SHORT', `XDR: need ${n} bytes, ${this.end - this.pos} left`);
  }

  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos);
    this.pos += 4;
    return v;
  }

  /** Unsigned hyper as a number: exact up to 2^53, larger values lose low bits but stay finite. */
  u64(): number {
    this.need(8);
    const hi = this.view.getUint32(this.pos);
    const lo = this.view.getUint32(this.pos + 4);
    this.pos += 8;
    return hi * TWO32 + lo;
  }

  u64big(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v;
  }

  bool(): boolean {
    const v = this.u32();
    if (v > 1) throw new DecodeError('ERR_XDR_BOOL', `XDR: bool must be 0 or 1, got ${v}`);
    return v === 1;
  }

  /** Fixed-length opaque: a view into the buffer (no copy), padding skipped. */
  fixed(n: number): Uint8Array {
    const padded = n + ((4 - (n % 4)) % 4);
    this.need(padded);
    const v = this.buf.subarray(this.pos, this.pos + n);
    for (let i = n; i < padded; i++) {
      if (this.buf[this.pos + i] !== 0) throw new DecodeError('ERR_XDR_PAD', 'XDR: non-zero padding');
    }
    this.pos += padded;
    return v;
  }

  /** Variable-length opaque of at most `max` bytes: a view into the buffer (no copy). */
  opaque(max: number): Uint8Array {
    const n = this.u32();
    if (n > max) throw new DecodeError('ERR_XDR_TOO_LONG', `XDR: opaque of ${n} bytes exceeds ${max}`);
    return this.fixed(n);
  }

  /** UTF-8 string of at most `max` bytes. Invalid UTF-8 is ERR_XDR_UTF8. */
  string(max: number): string {
    const b = this.opaque(max);
    try {
      return utf8Decode(b);
    } catch {
      throw new DecodeError('ERR_XDR_UTF8', 'XDR: string is not valid UTF-8');
    }
  }

  /** Throws unless every byte was consumed (trailing garbage is a malformed call). */
  done(): void {
    if (this.pos !== this.end) throw new DecodeError('ERR_XDR_TRAILING', `XDR: ${this.end - this.pos} trailing bytes`);
  }
}

/**
 * Small buffers are carved out of shared 64 KiB slabs (as node's Buffer pool does): creating
 * an ArrayBuffer per reply costs more than encoding the reply. A slab region is never handed
 * out twice; a slab is freed by the garbage collector once no view of it is alive.
 */
const SLAB_BYTES = 64 * 1024;
const SLAB_ALLOC_BYTES_MAX = 4096;
let slab = new Uint8Array(SLAB_BYTES);
let slabOffset = 0;

function allocBytes(n: number): Uint8Array {
  if (n > SLAB_ALLOC_BYTES_MAX) return new Uint8Array(n);
  if (slabOffset + n > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    slabOffset = 0;
  }
  const b = slab.subarray(slabOffset, slabOffset + n);
  slabOffset += (n + 7) & ~7;
  return b;
}

/** `n` bytes of slab memory (zeroed, never handed out twice): for small buffers made per request. */
export function slabBytes(n: number): Uint8Array {
  return allocBytes(n);
}

/** A copy of `b` in slab memory (for small buffers kept for a while, such as cached replies). */
export function copyBytes(b: Uint8Array): Uint8Array {
  const out = allocBytes(b.length);
  out.set(b);
  return out;
}

/** Writes XDR items into a growing buffer. `reserve` leaves room at the front (a record mark). */
export class XdrWriter {
  private buf: Uint8Array;
  private view: DataView;
  pos: number;

  constructor(initialBytes = 512, reserve = 0) {
    this.buf = allocBytes(Math.max(initialBytes, reserve + 16));
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.pos = reserve;
  }

  private room(n: number): void {
    if (this.tail !== undefined) throw new InvalidArgumentError('ERR_XDR_AFTER_TAIL', 'XDR: nothing may follow a tail opaque');
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = allocBytes(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.pos, v >>> 0);
    this.pos += 4;
  }

  i32(v: number): void {
    this.room(4);
    this.view.setInt32(this.pos, v | 0);
    this.pos += 4;
  }

  u64(v: number): void {
    if (!(v >= 0) || !Number.isFinite(v)) throw new InvalidArgumentError('ERR_XDR_RANGE', `XDR: u64 must be a non-negative number, got ${v}`);
    this.room(8);
    this.view.setUint32(this.pos, Math.floor(v / TWO32) >>> 0);
    this.view.setUint32(this.pos + 4, v % TWO32 >>> 0);
    this.pos += 8;
  }

  u64big(v: bigint): void {
    this.room(8);
    this.view.setBigUint64(this.pos, BigInt.asUintN(64, v));
    this.pos += 8;
  }

  bool(v: boolean): void {
    this.u32(v ? 1 : 0);
  }

  fixed(b: Uint8Array, n = b.length): void {
    if (b.length !== n) throw new InvalidArgumentError('ERR_XDR_RANGE', `XDR: fixed opaque must be ${n} bytes, got ${b.length}`);
    const padded = n + ((4 - (n % 4)) % 4);
    this.room(padded);
    this.buf.set(b, this.pos);
    this.buf.fill(0, this.pos + n, this.pos + padded);
    this.pos += padded;
  }

  opaque(b: Uint8Array, max = 0xffffffff): void {
    if (b.length > max) throw new InvalidArgumentError('ERR_XDR_RANGE', `XDR: opaque of ${b.length} bytes exceeds ${max}`);
    this.u32(b.length);
    this.fixed(b);
  }

  string(s: string, max = 0xffffffff): void {
    this.opaque(utf8Encode(s), max);
  }

  /**
   * Bytes that follow everything written, sent without copying them into this buffer (the
   * data of a READ reply). Set by `opaqueTail`; nothing may be written after it.
   */
  tail: Uint8Array | undefined;

  /** Ends the message with a variable-length opaque carried by reference (see `tail`). */
  opaqueTail(b: Uint8Array): void {
    this.u32(b.length);
    this.tail = b;
    this.tailBytes = b.length;
  }

  /** More parts of the tail after `tail` (opaqueTailParts), also sent by reference. */
  private tailMore: readonly Uint8Array[] = [];
  private tailBytes = 0;

  /**
   * Like `opaqueTail`, the opaque being the concatenation of `parts`, none of them copied (a
   * READ reply whose data lies in several cached buffers).
   */
  opaqueTailParts(parts: readonly Uint8Array[]): void {
    let n = 0;
    for (const p of parts) n += p.length;
    this.u32(n);
    this.tail = parts[0] ?? new Uint8Array(0);
    this.tailMore = parts.slice(1);
    this.tailBytes = n;
  }

  /** Total encoded length from `from`, including the tail and its padding. */
  length(from = 0): number {
    const t = this.tail === undefined ? 0 : this.tailBytes + ((4 - (this.tailBytes % 4)) % 4);
    return this.pos - from + t;
  }

  /** The encoded message as buffers to send in order (no copy of the tail). */
  segments(from = 0): Uint8Array[] {
    const head = this.buf.subarray(from, this.pos);
    if (this.tail === undefined) return [head];
    const pad = (4 - (this.tailBytes % 4)) % 4;
    const out = this.tailMore.length === 0 ? [head, this.tail] : [head, this.tail, ...this.tailMore];
    if (pad !== 0) out.push(new Uint8Array(pad));
    return out;
  }

  /** Appends raw bytes (already XDR-encoded). */
  raw(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Overwrites a u32 at an earlier position (a record mark or a count known only later). */
  patchU32(at: number, v: number): void {
    this.view.setUint32(at, v >>> 0);
  }

  /** The bytes written so far (a view, from offset `from`; a copy when there is a tail). */
  bytes(from = 0): Uint8Array {
    if (this.tail === undefined) return this.buf.subarray(from, this.pos);
    const out = new Uint8Array(this.length(from));
    let off = 0;
    for (const s of this.segments(from)) {
      out.set(s, off);
      off += s.length;
    }
    return out;
  }
}

/** A two-way XDR codec for one type: the server decodes what the client encodes, and back. */
export interface Codec<T> {
  enc(w: XdrWriter, v: T): void;
  dec(r: XdrReader): T;
}

// Codec<any> is needed for the inference in `struct`; each field stays precisely typed.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyCodec = Codec<any>;
export type CodecType<C> = C extends Codec<infer T> ? T : never;

export const u32: Codec<number> = { enc: (w, v) => w.u32(v), dec: (r) => r.u32() };
export const i32: Codec<number> = { enc: (w, v) => w.i32(v), dec: (r) => r.i32() };
export const u64: Codec<number> = { enc: (w, v) => w.u64(v), dec: (r) => r.u64() };
export const u64big: Codec<bigint> = { enc: (w, v) => w.u64big(v), dec: (r) => r.u64big() };
export const bool: Codec<boolean> = { enc: (w, v) => w.bool(v), dec: (r) => r.bool() };
export const xvoid: Codec<object> = { enc: () => undefined, dec: () => ({}) };

export function fixed(n: number): Codec<Uint8Array> {
  return { enc: (w, v) => w.fixed(v, n), dec: (r) => r.fixed(n) };
}
export function opaque(max: number): Codec<Uint8Array> {
  return { enc: (w, v) => w.opaque(v, max), dec: (r) => r.opaque(max) };
}
export function string(max: number): Codec<string> {
  return { enc: (w, v) => w.string(v, max), dec: (r) => r.string(max) };
}

export function struct<S extends Record<string, AnyCodec>>(fields: S): Codec<{ [K in keyof S]: CodecType<S[K]> }> {
  const entries = Object.entries(fields);
  return {
    enc(w, v) {
      for (const [k, c] of entries) c.enc(w, (v as Record<string, unknown>)[k]);
    },
    dec(r) {
      const o: Record<string, unknown> = {};
      for (const [k, c] of entries) o[k] = c.dec(r);
      return o as { [K in keyof S]: CodecType<S[K]> };
    },
  };
}

/** XDR optional-data (`T *x`): a bool, then the value when present. */
export function optional<T>(c: Codec<T>): Codec<T | undefined> {
  return {
    enc(w, v) {
      w.bool(v !== undefined);
      if (v !== undefined) c.enc(w, v);
    },
    dec(r) {
      return r.bool() ? c.dec(r) : undefined;
    },
  };
}

/** Counted array `T x<max>`. */
export function array<T>(c: Codec<T>, max: number): Codec<T[]> {
  return {
    enc(w, v) {
      if (v.length > max) throw new InvalidArgumentError('ERR_XDR_RANGE', `XDR: array of ${v.length} exceeds ${max}`);
      w.u32(v.length);
      for (const x of v) c.enc(w, x);
    },
    dec(r) {
      const n = r.u32();
      if (n > max) throw new DecodeError('ERR_XDR_TOO_LONG', `XDR: array of ${n} exceeds ${max}`);
      const out: T[] = [];
      for (let i = 0; i < n; i++) out.push(c.dec(r));
      return out;
    },
  };
}

/** A linked list written as optional-data entries (`entry *next`), as portmap and MOUNT use. */
export function list<T>(c: Codec<T>, max: number): Codec<T[]> {
  return {
    enc(w, v) {
      for (const x of v) {
        w.bool(true);
        c.enc(w, x);
      }
      w.bool(false);
    },
    dec(r) {
      const out: T[] = [];
      while (r.bool()) {
        if (out.length >= max) throw new DecodeError('ERR_XDR_TOO_LONG', `XDR: list longer than ${max}`);
        out.push(c.dec(r));
      }
      return out;
    },
  };
}

/** Encodes one value to fresh bytes. */
export function encode<T>(c: Codec<T>, v: T): Uint8Array {
  const w = new XdrWriter(256);
  c.enc(w, v);
  return w.bytes().slice();
}

/** Decodes one value that must span `b` exactly. */
export function decode<T>(c: Codec<T>, b: Uint8Array): T {
  const r = new XdrReader(b);
  const v = c.dec(r);
  r.done();
  return v;
}
