// The binary codecs of change descriptors (`ChangeOp`: what the change log stores and mirrors,
// so either blade applies a change deterministically) and of change outcomes (what answers a
// retransmission). Versioned, little-endian, bounded; the log entry carries the checksum.
// Format description: docs/formats.md, "Change descriptor" and "Change outcome".
import { dataView, utf8Decode, utf8Encode } from '../core/bytes.ts';
import { DecodeError, InvalidArgumentError } from '../core/errors.ts';
import { FileType, FsStatus, fsLimits, type Attr, type ChangeOp, type ChangeResult, type Cred, type CreateMode, type InodeRef, type SetAttr, type Time, type WccAttr } from './ops.ts';

export const CHANGE_CODEC_VERSION = 1;

export const ChangeCodecErrorCode = {
  truncated: 'ERR_CHANGE_TRUNCATED',
  version: 'ERR_CHANGE_VERSION',
  opcode: 'ERR_CHANGE_OPCODE',
  /** A field is out of its range (a length over its limit, bad UTF-8, nsec ≥ 1e9...). */
  field: 'ERR_CHANGE_FIELD',
  trailing: 'ERR_CHANGE_TRAILING',
  /** encode: the descriptor breaks a limit (thrown as InvalidArgumentError). */
  invalid: 'ERR_CHANGE_INVALID',
} as const;

export const changeCodecLimits = {
  /** AUTH_SYS carries at most 16 supplementary groups. */
  credGroupsMax: 16,
  verifierBytes: 8,
} as const;

const opcodes = ['setattr', 'write', 'create', 'mkdir', 'symlink', 'mknod', 'remove', 'rmdir', 'rename', 'link'] as const;
const createModes: readonly CreateMode[] = ['unchecked', 'guarded', 'exclusive'];
const mknodTypes = [FileType.BLK, FileType.CHR, FileType.SOCK, FileType.FIFO] as const;

const A_MODE = 1;
const A_UID = 2;
const A_GID = 4;
const A_SIZE = 8;
const A_ATIME = 16;
const A_MTIME = 32;

class Writer {
  private buf = new Uint8Array(256);
  private view = dataView(this.buf);
  len = 0;

  /** Starts over (the buffer stays, unless a large descriptor grew it past `keepBytesMax`). */
  reset(keepBytesMax: number): void {
    this.len = 0;
    if (this.buf.length > keepBytesMax) {
      this.buf = new Uint8Array(256);
      this.view = dataView(this.buf);
    }
  }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
    this.view = dataView(nb);
  }
  u8(x: number): void {
    this.room(1);
    this.view.setUint8(this.len, x);
    this.len += 1;
  }
  u16(x: number): void {
    this.room(2);
    this.view.setUint16(this.len, x, true);
    this.len += 2;
  }
  u32(x: number, what: string): void {
    if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) invalid(`${what} ${x} is not a 32-bit unsigned integer`);
    this.room(4);
    this.view.setUint32(this.len, x, true);
    this.len += 4;
  }
  u64(x: number, what: string): void {
    if (!Number.isSafeInteger(x) || x < 0) invalid(`${what} ${x} is not a non-negative safe integer`);
    this.room(8);
    this.view.setUint32(this.len, x % 2 ** 32, true);
    this.view.setUint32(this.len + 4, Math.floor(x / 2 ** 32), true);
    this.len += 8;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

function invalid(msg: string): never {
  throw new InvalidArgumentError(ChangeCodecErrorCode.invalid, `change descriptor: ${msg}`);
}

function bad(msg: string): never {
  throw new DecodeError(ChangeCodecErrorCode.field, `change descriptor: ${msg}`);
}

/** The decode errors of one binary format: its name in messages and its stable codes. */
interface ReaderErrors {
  name: string;
  truncated: string;
  field: string;
  trailing: string;
}

/** A bounded little-endian reader: every read past the end is `truncated`, never a RangeError. */
class Reader {
  protected off = 0;
  private readonly v: DataView;
  constructor(
    protected readonly b: Uint8Array,
    private readonly errors: ReaderErrors = descriptorErrors,
  ) {
    this.v = dataView(b);
  }
  /** A field out of its range (`field`). */
  bad(msg: string): never {
    throw new DecodeError(this.errors.field, `${this.errors.name}: ${msg}`);
  }
  private need(n: number): void {
    if (this.off + n > this.b.length) throw new DecodeError(this.errors.truncated, `${this.errors.name} truncated at byte ${this.off} (needs ${n} more)`);
  }
  u8(): number {
    this.need(1);
    return this.v.getUint8(this.off++);
  }
  u16(): number {
    this.need(2);
    const x = this.v.getUint16(this.off, true);
    this.off += 2;
    return x;
  }
  u32(): number {
    this.need(4);
    const x = this.v.getUint32(this.off, true);
    this.off += 4;
    return x;
  }
  u64(what: string): number {
    this.need(8);
    const x = this.v.getUint32(this.off, true) + this.v.getUint32(this.off + 4, true) * 2 ** 32;
    this.off += 8;
    if (!Number.isSafeInteger(x)) this.bad(`${what} beyond 2^53`);
    return x;
  }
  time(what: string): Time {
    const sec = this.u64(`${what}.sec`);
    const nsec = this.u32();
    if (nsec >= 1e9) this.bad(`${what}.nsec ${nsec} out of range`);
    return { sec, nsec };
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const out = this.b.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }
  end(): void {
    if (this.off !== this.b.length) throw new DecodeError(this.errors.trailing, `${this.errors.name} has ${this.b.length - this.off} trailing bytes`);
  }
}

const descriptorErrors: ReaderErrors = {
  name: 'change descriptor',
  truncated: ChangeCodecErrorCode.truncated,
  field: ChangeCodecErrorCode.field,
  trailing: ChangeCodecErrorCode.trailing,
};

// ---- field codecs ---------------------------------------------------------------------------

function wTime(w: Writer, t: Time, what: string): void {
  if (!Number.isInteger(t.nsec) || t.nsec < 0 || t.nsec >= 1e9) invalid(`${what}.nsec ${t.nsec} out of range`);
  w.u64(t.sec, `${what}.sec`);
  w.u32(t.nsec, `${what}.nsec`);
}
function rTime(r: Reader, what: string): Time {
  return r.time(what);
}

function wRef(w: Writer, x: InodeRef, what: string): void {
  w.u64(x.ino, `${what}.ino`);
  w.u32(x.gen, `${what}.gen`);
}
function rRef(r: Reader, what: string): InodeRef {
  return { ino: r.u64(`${what}.ino`), gen: r.u32() };
}

function wString(w: Writer, s: string, max: number, what: string, allowEmpty = false): void {
  const b = utf8Encode(s);
  if (b.length > max || (!allowEmpty && b.length === 0)) invalid(`${what} of ${b.length} bytes (1..${max})`);
  w.u16(b.length);
  w.bytes(b);
}
function wName(w: Writer, s: string, what = 'name'): void {
  wString(w, s, fsLimits.nameBytesMax, what);
}
function rString(r: Reader, max: number, what: string, allowEmpty = false): string {
  const n = r.u16();
  if (n > max || (!allowEmpty && n === 0)) bad(`${what} of ${n} bytes (1..${max})`);
  const b = r.bytes(n);
  try {
    return utf8Decode(b);
  } catch {
    bad(`${what} is not valid UTF-8`);
  }
}

function wCred(w: Writer, c: Cred): void {
  w.u32(c.uid, 'cred.uid');
  w.u32(c.gid, 'cred.gid');
  if (c.gids.length > changeCodecLimits.credGroupsMax) invalid(`${c.gids.length} groups (max ${changeCodecLimits.credGroupsMax})`);
  w.u8(c.gids.length);
  for (const g of c.gids) w.u32(g, 'cred.gids');
}
function rCred(r: Reader): Cred {
  const uid = r.u32();
  const gid = r.u32();
  const n = r.u8();
  if (n > changeCodecLimits.credGroupsMax) bad(`${n} groups (max ${changeCodecLimits.credGroupsMax})`);
  const gids: number[] = [];
  for (let i = 0; i < n; i++) gids.push(r.u32());
  return { uid, gid, gids };
}

function wAttrs(w: Writer, a: SetAttr): void {
  let mask = 0;
  if (a.mode !== undefined) mask |= A_MODE;
  if (a.uid !== undefined) mask |= A_UID;
  if (a.gid !== undefined) mask |= A_GID;
  if (a.size !== undefined) mask |= A_SIZE;
  if (a.atime !== undefined) mask |= A_ATIME;
  if (a.mtime !== undefined) mask |= A_MTIME;
  w.u8(mask);
  if (a.mode !== undefined) {
    if (a.mode > 0o7777) invalid(`mode 0${a.mode.toString(8)} has bits beyond 07777`);
    w.u32(a.mode, 'attrs.mode');
  }
  if (a.uid !== undefined) w.u32(a.uid, 'attrs.uid');
  if (a.gid !== undefined) w.u32(a.gid, 'attrs.gid');
  if (a.size !== undefined) {
    if (a.size > fsLimits.fileSizeBytesMax) invalid(`size ${a.size} beyond the file size limit`);
    w.u64(a.size, 'attrs.size');
  }
  if (a.atime !== undefined) wTime(w, a.atime, 'attrs.atime');
  if (a.mtime !== undefined) wTime(w, a.mtime, 'attrs.mtime');
}
function rAttrs(r: Reader): SetAttr {
  const mask = r.u8();
  if ((mask & ~63) !== 0) bad(`attribute mask 0x${mask.toString(16)} has unknown bits`);
  const a: SetAttr = {};
  if (mask & A_MODE) {
    a.mode = r.u32();
    if (a.mode > 0o7777) bad(`mode 0${a.mode.toString(8)} has bits beyond 07777`);
  }
  if (mask & A_UID) a.uid = r.u32();
  if (mask & A_GID) a.gid = r.u32();
  if (mask & A_SIZE) {
    a.size = r.u64('attrs.size');
    if (a.size > fsLimits.fileSizeBytesMax) bad(`size ${a.size} beyond the file size limit`);
  }
  if (mask & A_ATIME) a.atime = rTime(r, 'attrs.atime');
  if (mask & A_MTIME) a.mtime = rTime(r, 'attrs.mtime');
  return a;
}

function wNewInode(w: Writer, ino: number, gen: number): void {
  w.u64(ino, 'newIno');
  w.u32(gen, 'newGen');
}

// ---- the descriptor ---------------------------------------------------------------------------

/** Encodes a change descriptor; throws InvalidArgumentError (ERR_CHANGE_INVALID) if it breaks a limit. */
/**
 * The writer every encode reuses (encoding is synchronous and `done` copies out): a fresh
 * 256-byte buffer and DataView per change showed in the profile of 4 KiB FILE_SYNC writes.
 */
const sharedWriter = new Writer();
const sharedWriterKeepBytesMax = 64 * 1024;

export function encodeChangeOp(c: ChangeOp): Uint8Array {
  const w = sharedWriter;
  w.reset(sharedWriterKeepBytesMax);
  w.u8(CHANGE_CODEC_VERSION);
  w.u8(opcodes.indexOf(c.op) + 1);
  w.u16(0);
  wTime(w, c.time, 'time');
  wCred(w, c.cred);
  switch (c.op) {
    case 'setattr':
      wRef(w, c.target, 'target');
      wAttrs(w, c.attrs);
      w.u8(c.guardCtime === undefined ? 0 : 1);
      if (c.guardCtime !== undefined) wTime(w, c.guardCtime, 'guardCtime');
      break;
    case 'write':
      wRef(w, c.target, 'target');
      if (c.data.length > fsLimits.writeBytesMax) invalid(`write of ${c.data.length} bytes (max ${fsLimits.writeBytesMax})`);
      if (c.offset + c.data.length > fsLimits.fileSizeBytesMax) invalid(`write beyond the file size limit`);
      w.u64(c.offset, 'offset');
      w.u32(c.data.length, 'count');
      w.bytes(c.data);
      break;
    case 'create': {
      wRef(w, c.dir, 'dir');
      wName(w, c.name);
      w.u8(createModes.indexOf(c.how));
      wAttrs(w, c.attrs);
      const hasVerifier = c.verifier !== undefined;
      if (hasVerifier !== (c.how === 'exclusive')) invalid('an exclusive create, and only it, carries a verifier');
      if (c.verifier !== undefined) {
        if (c.verifier.length !== changeCodecLimits.verifierBytes) invalid(`verifier of ${c.verifier.length} bytes`);
        w.u8(1);
        w.bytes(c.verifier);
      } else w.u8(0);
      wNewInode(w, c.newIno, c.newGen);
      break;
    }
    case 'mkdir':
      wRef(w, c.dir, 'dir');
      wName(w, c.name);
      wAttrs(w, c.attrs);
      wNewInode(w, c.newIno, c.newGen);
      break;
    case 'symlink':
      wRef(w, c.dir, 'dir');
      wName(w, c.name);
      wString(w, c.target, fsLimits.pathBytesMax, 'symlink target', true);
      wAttrs(w, c.attrs);
      wNewInode(w, c.newIno, c.newGen);
      break;
    case 'mknod':
      wRef(w, c.dir, 'dir');
      wName(w, c.name);
      if (!(mknodTypes as readonly number[]).includes(c.type)) invalid(`mknod of type ${c.type}`);
      w.u8(c.type);
      wAttrs(w, c.attrs);
      w.u32(c.rdev.major, 'rdev.major');
      w.u32(c.rdev.minor, 'rdev.minor');
      wNewInode(w, c.newIno, c.newGen);
      break;
    case 'remove':
    case 'rmdir':
      wRef(w, c.dir, 'dir');
      wName(w, c.name);
      break;
    case 'rename':
      wRef(w, c.fromDir, 'fromDir');
      wName(w, c.fromName, 'fromName');
      wRef(w, c.toDir, 'toDir');
      wName(w, c.toName, 'toName');
      break;
    case 'link':
      wRef(w, c.target, 'target');
      wRef(w, c.dir, 'dir');
      wName(w, c.name);
      break;
  }
  return w.done();
}

/** Decodes a change descriptor; throws DecodeError with a stable ERR_CHANGE_* code on bad input. */
export function decodeChangeOp(b: Uint8Array): ChangeOp {
  const r = new Reader(b);
  const version = r.u8();
  if (version !== CHANGE_CODEC_VERSION) throw new DecodeError(ChangeCodecErrorCode.version, `change descriptor version ${version} is not ${CHANGE_CODEC_VERSION}`);
  const opc = r.u8();
  const op = opcodes[opc - 1];
  if (op === undefined) throw new DecodeError(ChangeCodecErrorCode.opcode, `unknown change opcode ${opc}`);
  if (r.u16() !== 0) bad('reserved field is not zero');
  const time = rTime(r, 'time');
  const cred = rCred(r);
  const name = (what = 'name'): string => rString(r, fsLimits.nameBytesMax, what);
  const newInode = (): { newIno: number; newGen: number } => ({ newIno: r.u64('newIno'), newGen: r.u32() });
  let c: ChangeOp;
  switch (op) {
    case 'setattr': {
      const target = rRef(r, 'target');
      const attrs = rAttrs(r);
      const g = r.u8();
      if (g > 1) bad('guard flag is not 0 or 1');
      c = g === 1 ? { op, time, cred, target, attrs, guardCtime: rTime(r, 'guardCtime') } : { op, time, cred, target, attrs };
      break;
    }
    case 'write': {
      const target = rRef(r, 'target');
      const offset = r.u64('offset');
      const count = r.u32();
      if (count > fsLimits.writeBytesMax) bad(`write of ${count} bytes (max ${fsLimits.writeBytesMax})`);
      if (offset + count > fsLimits.fileSizeBytesMax) bad('write beyond the file size limit');
      // Its own copy, which nothing else refers to: the file system may keep it (handOver).
      c = { op, time, cred, target, offset, data: handOverWriteData(r.bytes(count)) };
      break;
    }
    case 'create': {
      const dir = rRef(r, 'dir');
      const nm = name();
      const how = createModes[r.u8()];
      if (how === undefined) bad('unknown create mode');
      const attrs = rAttrs(r);
      const hv = r.u8();
      if (hv > 1 || (hv === 1) !== (how === 'exclusive')) bad('an exclusive create, and only it, carries a verifier');
      const verifier = hv === 1 ? r.bytes(changeCodecLimits.verifierBytes) : undefined;
      const ni = newInode();
      c = verifier !== undefined ? { op, time, cred, dir, name: nm, how, attrs, verifier, ...ni } : { op, time, cred, dir, name: nm, how, attrs, ...ni };
      break;
    }
    case 'mkdir': {
      const dir = rRef(r, 'dir');
      const nm = name();
      c = { op, time, cred, dir, name: nm, attrs: rAttrs(r), ...newInode() };
      break;
    }
    case 'symlink': {
      const dir = rRef(r, 'dir');
      const nm = name();
      const target = rString(r, fsLimits.pathBytesMax, 'symlink target', true);
      c = { op, time, cred, dir, name: nm, target, attrs: rAttrs(r), ...newInode() };
      break;
    }
    case 'mknod': {
      const dir = rRef(r, 'dir');
      const nm = name();
      const type = r.u8();
      if (!(mknodTypes as readonly number[]).includes(type)) bad(`mknod of type ${type}`);
      const attrs = rAttrs(r);
      const rdev = { major: r.u32(), minor: r.u32() };
      c = { op, time, cred, dir, name: nm, type: type as (typeof mknodTypes)[number], attrs, rdev, ...newInode() };
      break;
    }
    case 'remove':
    case 'rmdir': {
      const dir = rRef(r, 'dir');
      c = { op, time, cred, dir, name: name() };
      break;
    }
    case 'rename': {
      const fromDir = rRef(r, 'fromDir');
      const fromName = name('fromName');
      const toDir = rRef(r, 'toDir');
      c = { op, time, cred, fromDir, fromName, toDir, toName: name('toName') };
      break;
    }
    case 'link': {
      const target = rRef(r, 'target');
      const dir = rRef(r, 'dir');
      c = { op, time, cred, target, dir, name: name() };
      break;
    }
  }
  r.end();
  return c;
}

// ---- write data handed over --------------------------------------------------------------

/**
 * WRITE data whose producer hands it over with the change: nobody writes to these bytes
 * again (the NFS service's view of the WRITE's RPC record, which is never reused; a decoded
 * descriptor's own copy). The file system may then keep them as its page buffers instead of
 * copying them (storage/fs/cowfs.ts `writeData`). Data not handed over is copied as before,
 * so a caller that reuses its buffer after `apply` stays correct.
 */
const handedOver = new WeakSet<Uint8Array>();

/**
 * Marks `data` as handed over (see above) and returns it. Only data that is most of the
 * memory it lives in is marked: a file system keeping a 4 KiB view alive would keep its whole
 * 64 KiB socket read alive, so small writes are copied anyway (and the mark, a WeakSet entry
 * per WRITE, is not worth making for them).
 */
export function handOverWriteData(data: Uint8Array): Uint8Array {
  if (2 * data.length >= data.buffer.byteLength) handedOver.add(data);
  return data;
}

/** Whether `data` (this very view) was handed over. */
export function isHandedOver(data: Uint8Array): boolean {
  return handedOver.has(data);
}

// ---- change outcomes ----------------------------------------------------------------------

/**
 * What a change did, as the state-machine log keeps it (SM-2): the file system's result, or
 * the status it failed with and the directory's weak cache consistency data when it had it.
 * From this alone the NFS service rebuilds the reply byte for byte (nfs/core/drc.ts
 * `ChangeOutcome` is the same type).
 */
export type StoredChangeOutcome =
  | { ok: true; result: ChangeResult }
  | { ok: false; status: FsStatus; dirPre?: WccAttr; dirPost?: Attr };

export const OUTCOME_CODEC_VERSION = 1;

export const OutcomeCodecErrorCode = {
  truncated: 'ERR_OUTCOME_TRUNCATED',
  version: 'ERR_OUTCOME_VERSION',
  /** The kind byte names no result (nor a failure). */
  kind: 'ERR_OUTCOME_KIND',
  /** A field is out of its range (file type, status, flags, nsec ≥ 1e9, a u64 beyond 2^53). */
  field: 'ERR_OUTCOME_FIELD',
  trailing: 'ERR_OUTCOME_TRAILING',
  /** encode: a value does not fit its field (thrown as InvalidArgumentError). */
  invalid: 'ERR_OUTCOME_INVALID',
} as const;

/** Encoded sizes: a time is sec:u64 + nsec:u32; wcc = size:u64 + mtime + ctime. */
const TIME_BYTES = 12;
export const OUTCOME_WCC_BYTES = 8 + 2 * TIME_BYTES;
/** type:u8, mode, nlink, uid, gid:u32, size, used:u64, rdev major, minor:u32, ino:u64, gen:u32, atime, mtime, ctime. */
export const OUTCOME_ATTR_BYTES = 1 + 4 * 4 + 2 * 8 + 2 * 4 + 8 + 4 + 3 * TIME_BYTES;

const fileTypes: ReadonlySet<number> = new Set(Object.values(FileType));
const failStatuses: ReadonlySet<number> = new Set(Object.values(FsStatus).filter((s) => s !== FsStatus.OK));
const OUTCOME_FAILED = 0;
const FAIL_DIR_PRE = 1;
const FAIL_DIR_POST = 2;

/** The fields each result kind carries after the kind byte, in order ('w' wcc, 'a' attr, 'c' count:u32). */
const resultLayouts: Record<ChangeResult['op'], string> = {
  setattr: 'wa',
  write: 'wac',
  create: 'awa',
  mkdir: 'awa',
  symlink: 'awa',
  mknod: 'awa',
  remove: 'wa',
  rmdir: 'wa',
  rename: 'wawa',
  link: 'awa',
};

function outcomeInvalid(msg: string): never {
  throw new InvalidArgumentError(OutcomeCodecErrorCode.invalid, `change outcome: ${msg}`);
}
function outcomeBad(msg: string): never {
  throw new DecodeError(OutcomeCodecErrorCode.field, `change outcome: ${msg}`);
}

/** A fixed-size little-endian writer into `buf` from `off` (outcomes have no variable fields). */
class OutcomeWriter {
  private readonly v: DataView;
  constructor(
    readonly buf: Uint8Array,
    private off: number,
  ) {
    this.v = dataView(this.buf);
  }
  u8(x: number): void {
    this.v.setUint8(this.off, x);
    this.off += 1;
  }
  u32(x: number, what: string): void {
    if (!(Number.isInteger(x) && x >= 0 && x <= 0xffffffff)) outcomeInvalid(`${what} ${x} is not a 32-bit unsigned integer`);
    this.v.setUint32(this.off, x, true);
    this.off += 4;
  }
  u64(x: number, what: string): void {
    if (!(Number.isSafeInteger(x) && x >= 0)) outcomeInvalid(`${what} ${x} is not a non-negative safe integer`);
    this.v.setUint32(this.off, x % 2 ** 32, true);
    this.v.setUint32(this.off + 4, Math.floor(x / 2 ** 32), true);
    this.off += 8;
  }
  time(t: Time, what: string): void {
    if (!(Number.isInteger(t.nsec) && t.nsec >= 0 && t.nsec < 1e9)) outcomeInvalid(`${what}.nsec ${t.nsec} out of range`);
    this.u64(t.sec, `${what}.sec`);
    this.u32(t.nsec, `${what}.nsec`);
  }
  wcc(w: WccAttr): void {
    this.u64(w.size, 'wcc.size');
    this.time(w.mtime, 'wcc.mtime');
    this.time(w.ctime, 'wcc.ctime');
  }
  attr(a: Attr): void {
    if (!fileTypes.has(a.type)) outcomeInvalid(`file type ${a.type}`);
    this.u8(a.type);
    this.u32(a.mode, 'mode');
    this.u32(a.nlink, 'nlink');
    this.u32(a.uid, 'uid');
    this.u32(a.gid, 'gid');
    this.u64(a.size, 'size');
    this.u64(a.used, 'used');
    this.u32(a.rdev.major, 'rdev.major');
    this.u32(a.rdev.minor, 'rdev.minor');
    this.u64(a.ino, 'ino');
    this.u32(a.gen, 'gen');
    this.time(a.atime, 'atime');
    this.time(a.mtime, 'mtime');
    this.time(a.ctime, 'ctime');
  }
}

class OutcomeReader extends Reader {
  constructor(b: Uint8Array) {
    super(b, {
      name: 'change outcome',
      truncated: OutcomeCodecErrorCode.truncated,
      field: OutcomeCodecErrorCode.field,
      trailing: OutcomeCodecErrorCode.trailing,
    });
  }
  wcc(): WccAttr {
    return { size: this.u64('wcc.size'), mtime: this.time('wcc.mtime'), ctime: this.time('wcc.ctime') };
  }
  attr(): Attr {
    const type = this.u8();
    if (!fileTypes.has(type)) outcomeBad(`file type ${type}`);
    return {
      type: type as FileType,
      mode: this.u32(),
      nlink: this.u32(),
      uid: this.u32(),
      gid: this.u32(),
      size: this.u64('size'),
      used: this.u64('used'),
      rdev: { major: this.u32(), minor: this.u32() },
      ino: this.u64('ino'),
      gen: this.u32(),
      atime: this.time('atime'),
      mtime: this.time('mtime'),
      ctime: this.time('ctime'),
    };
  }
}

function layoutBytes(layout: string): number {
  let n = 0;
  for (const f of layout) n += f === 'w' ? OUTCOME_WCC_BYTES : f === 'a' ? OUTCOME_ATTR_BYTES : 4;
  return n;
}

/** The encoded size of `o` (see `encodeChangeOutcomeInto`). */
export function changeOutcomeBytes(o: StoredChangeOutcome): number {
  if (!o.ok) return 2 + 4 + 1 + (o.dirPre === undefined ? 0 : OUTCOME_WCC_BYTES) + (o.dirPost === undefined ? 0 : OUTCOME_ATTR_BYTES);
  const layout = resultLayouts[o.result.op];
  if (layout === undefined) outcomeInvalid(`result of unknown op ${String(o.result.op)}`);
  return 2 + layoutBytes(layout);
}

/**
 * Encodes a change outcome (docs/formats.md, "Change outcome"): fixed-size binary fields,
 * little-endian, no names or lengths, so it costs a few hundred nanoseconds per change where
 * the JSON it replaces cost several microseconds. Throws ERR_OUTCOME_INVALID for a value
 * that does not fit its field.
 */
export function encodeChangeOutcome(o: StoredChangeOutcome): Uint8Array {
  const out = new Uint8Array(changeOutcomeBytes(o));
  encodeChangeOutcomeInto(o, out, 0);
  return out;
}

/**
 * Encodes `o` into `out` at `at` (`changeOutcomeBytes(o)` bytes): for a caller that stores it
 * behind a prefix of its own without another buffer and copy. Throws like encodeChangeOutcome.
 */
export function encodeChangeOutcomeInto(o: StoredChangeOutcome, out: Uint8Array, at: number): void {
  if (out.length - at < changeOutcomeBytes(o)) outcomeInvalid('output buffer too small');
  const w = new OutcomeWriter(out, at);
  if (!o.ok) {
    if (!failStatuses.has(o.status)) outcomeInvalid(`failure status ${o.status}`);
    w.u8(OUTCOME_CODEC_VERSION);
    w.u8(OUTCOME_FAILED);
    w.u32(o.status, 'status');
    w.u8((o.dirPre === undefined ? 0 : FAIL_DIR_PRE) | (o.dirPost === undefined ? 0 : FAIL_DIR_POST));
    if (o.dirPre !== undefined) w.wcc(o.dirPre);
    if (o.dirPost !== undefined) w.attr(o.dirPost);
    return;
  }
  const r = o.result;
  w.u8(OUTCOME_CODEC_VERSION);
  w.u8(opcodes.indexOf(r.op) + 1);
  switch (r.op) {
    case 'setattr':
      w.wcc(r.pre);
      w.attr(r.post);
      break;
    case 'write':
      w.wcc(r.pre);
      w.attr(r.post);
      w.u32(r.count, 'count');
      break;
    case 'create':
    case 'mkdir':
    case 'symlink':
    case 'mknod':
    case 'link':
      w.attr(r.obj);
      w.wcc(r.dirPre);
      w.attr(r.dirPost);
      break;
    case 'remove':
    case 'rmdir':
      w.wcc(r.dirPre);
      w.attr(r.dirPost);
      break;
    case 'rename':
      w.wcc(r.fromPre);
      w.attr(r.fromPost);
      w.wcc(r.toPre);
      w.attr(r.toPost);
      break;
  }
}

/** Decodes a change outcome; anything malformed throws a DecodeError with an ERR_OUTCOME_* code. */
export function decodeChangeOutcome(b: Uint8Array): StoredChangeOutcome {
  const r = new OutcomeReader(b);
  const version = r.u8();
  if (version !== OUTCOME_CODEC_VERSION) throw new DecodeError(OutcomeCodecErrorCode.version, `change outcome version ${version} is not ${OUTCOME_CODEC_VERSION}`);
  const kind = r.u8();
  let o: StoredChangeOutcome;
  if (kind === OUTCOME_FAILED) {
    const status = r.u32();
    if (!failStatuses.has(status)) outcomeBad(`failure status ${status}`);
    const flags = r.u8();
    if ((flags & ~(FAIL_DIR_PRE | FAIL_DIR_POST)) !== 0) outcomeBad(`flags ${flags}`);
    const f: { ok: false; status: FsStatus; dirPre?: WccAttr; dirPost?: Attr } = { ok: false, status: status as FsStatus };
    if ((flags & FAIL_DIR_PRE) !== 0) f.dirPre = r.wcc();
    if ((flags & FAIL_DIR_POST) !== 0) f.dirPost = r.attr();
    o = f;
  } else {
    const op = opcodes[kind - 1];
    if (op === undefined) throw new DecodeError(OutcomeCodecErrorCode.kind, `unknown change outcome kind ${kind}`);
    let result: ChangeResult;
    switch (op) {
      case 'setattr':
        result = { op, pre: r.wcc(), post: r.attr() };
        break;
      case 'write':
        result = { op, pre: r.wcc(), post: r.attr(), count: r.u32() };
        break;
      case 'create':
      case 'mkdir':
      case 'symlink':
      case 'mknod':
      case 'link':
        result = { op, obj: r.attr(), dirPre: r.wcc(), dirPost: r.attr() };
        break;
      case 'remove':
      case 'rmdir':
        result = { op, dirPre: r.wcc(), dirPost: r.attr() };
        break;
      case 'rename':
        result = { op, fromPre: r.wcc(), fromPost: r.attr(), toPre: r.wcc(), toPost: r.attr() };
        break;
    }
    o = { ok: true, result };
  }
  r.end();
  return o;
}
