// The reference in-memory file system: the simplest obviously-correct implementation of
// the FileSystem contract (fsapi/ops.ts). The NFS tests serve it, and the storage tests use
// it as the model that the copy-on-write file system must agree with.
//
// Semantics chosen here (the real file system must match them):
// - Inode numbers come from a counter and are never reused; every generation is 1.
// - Directory cookies: "." is 1, ".." is 2, each entry gets the next number of its directory
//   when it is linked in; readdir after a cookie returns the entries with larger cookies, so
//   a removed entry's cookie still resumes correctly. A cookie never issued is BAD_COOKIE.
// - A directory's size is 4096; `used` is the size rounded up to 4096 for files.
// - Permissions are checked against the change's credentials (uid 0 may do anything).
// - File data is kept in 64 KiB chunks, so sparse files cost only what was written.
// - An exclusive create stores the verifier in atime.sec (first 4 bytes) and mtime.sec
//   (last 4), as Linux does, and a retry with the same verifier succeeds.
import { assert } from '../core/assert.ts';
import { utf8Encode } from '../core/bytes.ts';
import {
  type Attr,
  type ChangeOp,
  type ChangeResult,
  type Cred,
  type DirEntry,
  type FileSystem,
  type FsStat,
  type InodeRef,
  type SetAttr,
  type Time,
  type WccAttr,
  FileType,
  FsError,
  FsStatus,
  fsLimits,
} from './ops.ts';

const CHUNK = 64 * 1024;
/** What a hole reads as in readParts (never written to). */
const zeroChunk = new Uint8Array(CHUNK);

/** The pieces of [offset, offset + n) of a file, one per chunk touched (`chunk` undefined: a hole). */
function* chunkSpans(chunks: ReadonlyMap<number, Uint8Array>, offset: number, n: number): Generator<{ chunk: Uint8Array | undefined; within: number; length: number; pos: number }> {
  let pos = 0;
  while (pos < n) {
    const abs = offset + pos;
    const idx = Math.floor(abs / CHUNK);
    const within = abs - idx * CHUNK;
    const length = Math.min(CHUNK - within, n - pos);
    yield { chunk: chunks.get(idx), within, length, pos };
    pos += length;
  }
}
const DIR_SIZE = 4096;

interface Inode {
  ino: number;
  gen: number;
  type: FileType;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  rdev: { major: number; minor: number };
  atime: Time;
  mtime: Time;
  ctime: Time;
  /** Regular files: chunk index → 64 KiB chunk (absent chunks read as zeros). */
  chunks: Map<number, Uint8Array>;
  /** Symbolic links. */
  target: string;
  /** Directories: name → entry, in cookie order (Map keeps insertion order). */
  entries: Map<string, { ino: number; cookie: bigint }>;
  parent: number;
  nextCookie: bigint;
}

export interface MemFsOptions {
  fsid?: bigint;
  /** Capacity reported by fsstat and enforced on file data (NOSPC beyond it). */
  totalBytes?: number;
  totalFiles?: number;
  /** Owner, group and mode of the root directory. */
  rootUid?: number;
  rootGid?: number;
  rootMode?: number;
  /** Creation time of the root directory. */
  time?: Time;
}

export class MemFs implements FileSystem {
  readonly fsid: bigint;
  readonly rootIno: InodeRef;
  private readonly inodes = new Map<number, Inode>();
  private nextIno = 2;
  private readonly totalBytes: number;
  private readonly totalFiles: number;
  private chunkCount = 0;
  /** Chunks handed out by readParts: changed only through a copy (ownChunk). */
  private readonly lent = new WeakSet<Uint8Array>();

  constructor(opts: MemFsOptions = {}) {
    this.fsid = opts.fsid ?? 1n;
    this.totalBytes = opts.totalBytes ?? 1024 ** 4;
    this.totalFiles = opts.totalFiles ?? 1 << 24;
    const t = opts.time ?? { sec: 0, nsec: 0 };
    const root = this.newInode(1, 1, FileType.DIR, opts.rootMode ?? 0o755, opts.rootUid ?? 0, opts.rootGid ?? 0, t);
    root.parent = 1;
    root.nlink = 2;
    this.rootIno = { ino: 1, gen: 1 };
  }

  // ---- queries -------------------------------------------------------------------------

  async getattr(ref: InodeRef): Promise<Attr> {
    return attrOf(this.get(ref));
  }

  async lookup(dir: InodeRef, name: string): Promise<Attr> {
    const d = this.getDir(dir);
    if (name === '.') return attrOf(d);
    if (name === '..') return attrOf(this.byIno(d.parent));
    const e = d.entries.get(name);
    if (e === undefined) throw new FsError(FsStatus.NOENT, `no entry ${name}`);
    return attrOf(this.byIno(e.ino));
  }

  async read(ref: InodeRef, offset: number, count: number): Promise<{ data: Uint8Array; eof: boolean }> {
    const f = this.get(ref);
    if (f.type === FileType.DIR) throw new FsError(FsStatus.ISDIR);
    if (f.type !== FileType.REG) throw new FsError(FsStatus.INVAL);
    if (offset >= f.size) return { data: new Uint8Array(0), eof: true };
    const n = Math.min(count, f.size - offset);
    const data = new Uint8Array(n);
    for (const s of chunkSpans(f.chunks, offset, n)) if (s.chunk !== undefined) data.set(s.chunk.subarray(s.within, s.within + s.length), s.pos);
    return { data, eof: offset + n >= f.size };
  }

  /**
   * `read` without a copy: views of the file's chunks, which are lent (the next change of a
   * lent chunk writes a copy of it instead, `ownChunk`), and one shared zero chunk for holes.
   */
  async readParts(
    ref: InodeRef,
    offset: number,
    count: number,
    check?: (attr: Attr) => void,
  ): Promise<{ parts: Uint8Array[]; length: number; eof: boolean; attr: Attr }> {
    const f = this.get(ref);
    const attr = attrOf(f);
    check?.(attr);
    if (f.type === FileType.DIR) throw new FsError(FsStatus.ISDIR);
    if (f.type !== FileType.REG) throw new FsError(FsStatus.INVAL);
    if (offset >= f.size) return { parts: [], length: 0, eof: true, attr };
    const n = Math.min(count, f.size - offset);
    const parts: Uint8Array[] = [];
    for (const s of chunkSpans(f.chunks, offset, n)) {
      if (s.chunk !== undefined) this.lent.add(s.chunk);
      parts.push((s.chunk ?? zeroChunk).subarray(s.within, s.within + s.length));
    }
    return { parts, length: n, eof: offset + n >= f.size, attr };
  }

  async readlink(ref: InodeRef): Promise<string> {
    const f = this.get(ref);
    if (f.type !== FileType.LNK) throw new FsError(FsStatus.INVAL, 'not a symbolic link');
    return f.target;
  }

  async readdir(dir: InodeRef, cookie: bigint, maxEntries: number): Promise<{ entries: DirEntry[]; eof: boolean }> {
    const d = this.getDir(dir);
    if (cookie < 0n || cookie >= d.nextCookie) throw new FsError(FsStatus.BAD_COOKIE, `cookie ${cookie} never issued`);
    const all: DirEntry[] = [];
    const out: DirEntry[] = [];
    if (cookie < 1n) all.push({ name: '.', ino: d.ino, cookie: 1n });
    if (cookie < 2n) all.push({ name: '..', ino: d.parent, cookie: 2n });
    for (const x of all) if (out.length < maxEntries) out.push(x);
    let more = all.length > out.length;
    for (const [name, e] of d.entries) {
      if (e.cookie <= cookie) continue;
      if (out.length >= maxEntries) {
        more = true;
        break;
      }
      out.push({ name, ino: e.ino, cookie: e.cookie });
    }
    return { entries: out, eof: !more };
  }

  async fsstat(): Promise<FsStat> {
    const used = this.chunkCount * CHUNK;
    const free = Math.max(0, this.totalBytes - used);
    const freeFiles = Math.max(0, this.totalFiles - this.inodes.size);
    return { totalBytes: this.totalBytes, freeBytes: free, availBytes: free, totalFiles: this.totalFiles, freeFiles, availFiles: freeFiles };
  }

  allocInode(): InodeRef {
    return { ino: this.nextIno++, gen: 1 };
  }

  /** Number of live inodes (for tests). */
  get inodeCount(): number {
    return this.inodes.size;
  }

  // ---- changes -------------------------------------------------------------------------

  async apply(c: ChangeOp): Promise<ChangeResult> {
    switch (c.op) {
      case 'setattr': {
        const f = this.get(c.target);
        const pre = wccOf(f);
        if (c.guardCtime !== undefined && (c.guardCtime.sec !== f.ctime.sec || c.guardCtime.nsec !== f.ctime.nsec)) {
          throw new FsError(FsStatus.NOT_SYNC, 'ctime guard mismatch');
        }
        this.checkSetAttr(c.cred, f, c.attrs, false);
        this.setAttrs(f, c.attrs, c.time);
        return { op: 'setattr', pre, post: attrOf(f) };
      }
      case 'write': {
        const f = this.get(c.target);
        if (f.type === FileType.DIR) throw new FsError(FsStatus.ISDIR);
        if (f.type !== FileType.REG) throw new FsError(FsStatus.INVAL);
        if (c.data.length > fsLimits.writeBytesMax) throw new FsError(FsStatus.INVAL, 'write too large');
        if (c.offset + c.data.length > fsLimits.fileSizeBytesMax) throw new FsError(FsStatus.FBIG);
        if (c.cred.uid !== f.uid && !may(c.cred, f, 2)) throw new FsError(FsStatus.ACCES);
        const pre = wccOf(f);
        this.writeData(f, c.offset, c.data);
        if (c.data.length > 0) {
          f.mtime = c.time;
          f.ctime = c.time;
        }
        return { op: 'write', pre, post: attrOf(f), count: c.data.length };
      }
      case 'create':
      case 'mkdir':
      case 'symlink':
      case 'mknod':
        return this.applyNew(c);
      case 'remove':
      case 'rmdir': {
        const d = this.getDir(c.dir);
        const dirPre = wccOf(d);
        const fail = (s: FsStatus): never => {
          throw new FsError(s, undefined, { dirPre, dirPost: attrOf(d) });
        };
        if (c.name === '.' || c.name === '..') fail(c.op === 'rmdir' ? (c.name === '.' ? FsStatus.INVAL : FsStatus.NOTEMPTY) : FsStatus.ISDIR);
        checkName(c.name, fail);
        if (!may(c.cred, d, 3)) fail(FsStatus.ACCES);
        const e = d.entries.get(c.name);
        if (e === undefined) return fail(FsStatus.NOENT);
        const f = this.byIno(e.ino);
        if (c.op === 'remove' && f.type === FileType.DIR) fail(FsStatus.ISDIR);
        if (c.op === 'rmdir' && f.type !== FileType.DIR) fail(FsStatus.NOTDIR);
        if (c.op === 'rmdir' && f.entries.size > 0) fail(FsStatus.NOTEMPTY);
        if (!this.stickyAllows(c.cred, d, f)) fail(FsStatus.ACCES);
        d.entries.delete(c.name);
        this.unlinkInode(f, d, c.time);
        d.mtime = c.time;
        d.ctime = c.time;
        return { op: c.op, dirPre, dirPost: attrOf(d) };
      }
      case 'rename':
        return this.applyRename(c);
      case 'link': {
        const d = this.getDir(c.dir);
        const dirPre = wccOf(d);
        const fail = (s: FsStatus): never => {
          throw new FsError(s, undefined, { dirPre, dirPost: attrOf(d) });
        };
        const f = this.get(c.target);
        checkName(c.name, fail);
        if (c.name === '.' || c.name === '..') fail(FsStatus.EXIST);
        if (f.type === FileType.DIR) fail(FsStatus.ISDIR);
        if (!may(c.cred, d, 3)) fail(FsStatus.ACCES);
        if (d.entries.has(c.name)) fail(FsStatus.EXIST);
        if (f.nlink >= fsLimits.linkCountMax) fail(FsStatus.MLINK);
        d.entries.set(c.name, { ino: f.ino, cookie: d.nextCookie++ });
        f.nlink++;
        f.ctime = c.time;
        d.mtime = c.time;
        d.ctime = c.time;
        return { op: 'link', obj: attrOf(f), dirPre, dirPost: attrOf(d) };
      }
    }
  }

  // ---- helpers -------------------------------------------------------------------------

  private applyNew(c: Extract<ChangeOp, { op: 'create' | 'mkdir' | 'symlink' | 'mknod' }>): ChangeResult {
    const d = this.getDir(c.dir);
    const dirPre = wccOf(d);
    const fail = (s: FsStatus): never => {
      throw new FsError(s, undefined, { dirPre, dirPost: attrOf(d) });
    };
    checkName(c.name, fail);
    if (c.name === '.' || c.name === '..') fail(FsStatus.EXIST);
    if (!may(c.cred, d, 3)) fail(FsStatus.ACCES);
    const existing = d.entries.get(c.name);
    if (existing !== undefined) {
      const f = this.byIno(existing.ino);
      if (c.op === 'create' && c.how === 'unchecked' && f.type === FileType.REG) {
        // UNCHECKED create of an existing file opens it: only a size (truncation) applies.
        if (c.attrs.size !== undefined) {
          this.checkSetAttr(c.cred, f, { size: c.attrs.size }, false);
          this.setAttrs(f, { size: c.attrs.size }, c.time);
        }
        return { op: 'create', obj: attrOf(f), dirPre, dirPost: attrOf(d) };
      }
      if (c.op === 'create' && c.how === 'exclusive' && c.verifier !== undefined && f.type === FileType.REG) {
        const [a, m] = verifierTimes(c.verifier);
        if (f.atime.sec === a && f.mtime.sec === m) return { op: 'create', obj: attrOf(f), dirPre, dirPost: attrOf(d) };
      }
      fail(FsStatus.EXIST);
    }
    if (c.op === 'symlink' && utf8Encode(c.target).length > fsLimits.pathBytesMax) fail(FsStatus.NAMETOOLONG);
    if (c.op === 'mknod' && (c.type === FileType.BLK || c.type === FileType.CHR) && c.cred.uid !== 0) fail(FsStatus.PERM);
    if (this.inodes.size >= this.totalFiles) fail(FsStatus.NOSPC);
    assert(!this.inodes.has(c.newIno), `memfs: inode ${c.newIno} is in use`);
    // Replaying a log into a fresh file system: the numbers were reserved before the crash.
    if (c.newIno >= this.nextIno) this.nextIno = c.newIno + 1;
    const type = c.op === 'create' ? FileType.REG : c.op === 'mkdir' ? FileType.DIR : c.op === 'symlink' ? FileType.LNK : c.type;
    const defaultMode = type === FileType.DIR ? 0o755 : type === FileType.LNK ? 0o777 : 0o644;
    const ownerCheck: SetAttr = {};
    if (c.attrs.uid !== undefined) ownerCheck.uid = c.attrs.uid;
    if (c.attrs.gid !== undefined) ownerCheck.gid = c.attrs.gid;
    const probe = { uid: c.cred.uid, gid: c.cred.gid } as Inode;
    this.checkSetAttr(c.cred, probe, ownerCheck, true, fail);
    const f = this.newInode(c.newIno, c.newGen, type, (c.attrs.mode ?? defaultMode) & 0o7777, c.attrs.uid ?? c.cred.uid, c.attrs.gid ?? c.cred.gid, c.time);
    if (c.op === 'symlink') f.size = utf8Encode(c.target).length;
    if (c.op === 'symlink') f.target = c.target;
    if (c.op === 'mknod') f.rdev = { ...c.rdev };
    if (c.op === 'mkdir') {
      f.parent = d.ino;
      f.nlink = 2;
      d.nlink++;
    }
    if (c.op === 'create' && c.how === 'exclusive' && c.verifier !== undefined) {
      const [a, m] = verifierTimes(c.verifier);
      f.atime = { sec: a, nsec: 0 };
      f.mtime = { sec: m, nsec: 0 };
    } else if (c.op === 'create' && c.attrs.size !== undefined && c.attrs.size > 0) {
      this.setAttrs(f, { size: c.attrs.size }, c.time);
    }
    d.entries.set(c.name, { ino: f.ino, cookie: d.nextCookie++ });
    d.mtime = c.time;
    d.ctime = c.time;
    return { op: c.op, obj: attrOf(f), dirPre, dirPost: attrOf(d) };
  }

  private applyRename(c: Extract<ChangeOp, { op: 'rename' }>): ChangeResult {
    const from = this.getDir(c.fromDir);
    const to = this.getDir(c.toDir);
    const fromPre = wccOf(from);
    const toPre = wccOf(to);
    const fail = (s: FsStatus): never => {
      throw new FsError(s, undefined, { dirPre: fromPre, dirPost: attrOf(from) });
    };
    for (const n of [c.fromName, c.toName]) {
      checkName(n, fail);
      if (n === '.' || n === '..') fail(FsStatus.INVAL);
    }
    if (!may(c.cred, from, 3) || !may(c.cred, to, 3)) fail(FsStatus.ACCES);
    const e = from.entries.get(c.fromName);
    if (e === undefined) return fail(FsStatus.NOENT);
    const f = this.byIno(e.ino);
    if (!this.stickyAllows(c.cred, from, f)) fail(FsStatus.ACCES);
    const done = (): ChangeResult => ({ op: 'rename', fromPre, fromPost: attrOf(from), toPre, toPost: attrOf(to) });
    const te = to.entries.get(c.toName);
    if (te !== undefined && te.ino === f.ino) return done(); // same file: POSIX says do nothing
    if (f.type === FileType.DIR) {
      // A directory cannot move into its own subtree.
      for (let p = to; ; p = this.byIno(p.parent)) {
        if (p.ino === f.ino) fail(FsStatus.INVAL);
        if (p.ino === this.rootIno.ino) break;
      }
    }
    if (te !== undefined) {
      const t = this.byIno(te.ino);
      if (!this.stickyAllows(c.cred, to, t)) fail(FsStatus.ACCES);
      if (f.type === FileType.DIR && t.type !== FileType.DIR) fail(FsStatus.NOTDIR);
      if (f.type !== FileType.DIR && t.type === FileType.DIR) fail(FsStatus.ISDIR);
      if (t.type === FileType.DIR && t.entries.size > 0) fail(FsStatus.NOTEMPTY);
      to.entries.delete(c.toName);
      this.unlinkInode(t, to, c.time);
    }
    from.entries.delete(c.fromName);
    to.entries.set(c.toName, { ino: f.ino, cookie: to.nextCookie++ });
    if (f.type === FileType.DIR && from.ino !== to.ino) {
      f.parent = to.ino;
      from.nlink--;
      to.nlink++;
    }
    f.ctime = c.time;
    from.mtime = c.time;
    from.ctime = c.time;
    to.mtime = c.time;
    to.ctime = c.time;
    return done();
  }

  private newInode(ino: number, gen: number, type: FileType, mode: number, uid: number, gid: number, t: Time): Inode {
    const n: Inode = {
      ino,
      gen,
      type,
      mode,
      nlink: 1,
      uid,
      gid,
      size: type === FileType.DIR ? DIR_SIZE : 0,
      rdev: { major: 0, minor: 0 },
      atime: t,
      mtime: t,
      ctime: t,
      chunks: new Map(),
      target: '',
      entries: new Map(),
      parent: 0,
      nextCookie: 3n,
    };
    this.inodes.set(ino, n);
    return n;
  }

  private unlinkInode(f: Inode, dir: Inode, t: Time): void {
    if (f.type === FileType.DIR) {
      dir.nlink--;
      f.nlink = 0;
    } else {
      f.nlink--;
    }
    if (f.nlink === 0) {
      this.chunkCount -= f.chunks.size;
      this.inodes.delete(f.ino);
    } else {
      f.ctime = t;
    }
  }

  /** Sticky directories: only the owner of the entry, of the directory, or root may unlink. */
  private stickyAllows(cred: Cred, dir: Inode, f: Inode): boolean {
    return (dir.mode & 0o1000) === 0 || cred.uid === 0 || cred.uid === f.uid || cred.uid === dir.uid;
  }

  private checkSetAttr(cred: Cred, f: Inode, a: SetAttr, creating: boolean, fail?: (s: FsStatus) => never): void {
    const no = fail ?? ((s: FsStatus): never => {
      throw new FsError(s);
    });
    if (cred.uid === 0) {
      if (a.size !== undefined) this.checkSize(f, a.size, no);
      return;
    }
    const owner = cred.uid === f.uid;
    if (a.uid !== undefined && a.uid !== f.uid) no(FsStatus.PERM);
    if (a.gid !== undefined && a.gid !== f.gid && !(owner && (cred.gid === a.gid || cred.gids.includes(a.gid)))) no(FsStatus.PERM);
    if (creating) return;
    if (a.mode !== undefined && !owner) no(FsStatus.PERM);
    if (a.size !== undefined) {
      this.checkSize(f, a.size, no);
      if (!owner && !may(cred, f, 2)) no(FsStatus.ACCES);
    }
    if ((a.atime !== undefined || a.mtime !== undefined) && !owner && !may(cred, f, 2)) no(FsStatus.PERM);
  }

  private checkSize(f: Inode, size: number, no: (s: FsStatus) => never): void {
    if (f.type === FileType.DIR) no(FsStatus.ISDIR);
    if (f.type !== FileType.REG) no(FsStatus.INVAL);
    if (size > fsLimits.fileSizeBytesMax) no(FsStatus.FBIG);
  }

  private setAttrs(f: Inode, a: SetAttr, t: Time): void {
    let changed = false;
    if (a.mode !== undefined) {
      f.mode = a.mode & 0o7777;
      changed = true;
    }
    if (a.uid !== undefined) {
      f.uid = a.uid;
      changed = true;
    }
    if (a.gid !== undefined) {
      f.gid = a.gid;
      changed = true;
    }
    if (a.size !== undefined) {
      this.truncate(f, a.size);
      f.mtime = t;
      changed = true;
    }
    if (a.atime !== undefined) {
      f.atime = a.atime;
      changed = true;
    }
    if (a.mtime !== undefined) {
      f.mtime = a.mtime;
      changed = true;
    }
    if (changed) f.ctime = t;
  }

  private truncate(f: Inode, size: number): void {
    if (size < f.size) {
      for (const idx of [...f.chunks.keys()]) {
        if (idx * CHUNK >= size) {
          f.chunks.delete(idx);
          this.chunkCount--;
        }
      }
      const lastIdx = Math.floor(size / CHUNK);
      if (f.chunks.has(lastIdx)) this.ownChunk(f, lastIdx).fill(0, size - lastIdx * CHUNK);
    }
    f.size = size;
  }

  private writeData(f: Inode, offset: number, data: Uint8Array): void {
    let newChunks = 0;
    const firstIdx = Math.floor(offset / CHUNK);
    const lastIdx = Math.floor((offset + data.length - 1) / CHUNK);
    for (let i = firstIdx; data.length > 0 && i <= lastIdx; i++) if (!f.chunks.has(i)) newChunks++;
    if ((this.chunkCount + newChunks) * CHUNK > this.totalBytes) throw new FsError(FsStatus.NOSPC);
    let pos = 0;
    while (pos < data.length) {
      const abs = offset + pos;
      const idx = Math.floor(abs / CHUNK);
      const within = abs - idx * CHUNK;
      const k = Math.min(CHUNK - within, data.length - pos);
      let chunk = f.chunks.get(idx);
      if (chunk === undefined) {
        chunk = new Uint8Array(CHUNK);
        f.chunks.set(idx, chunk);
        this.chunkCount++;
      } else chunk = this.ownChunk(f, idx);
      chunk.set(data.subarray(pos, pos + k), within);
      pos += k;
    }
    if (offset + data.length > f.size) f.size = offset + data.length;
  }

  /** Chunk `idx` of `f` (present) ready to change in place: a copy if readParts lent it. */
  private ownChunk(f: Inode, idx: number): Uint8Array {
    const chunk = f.chunks.get(idx) as Uint8Array;
    if (!this.lent.has(chunk)) return chunk;
    const own = chunk.slice();
    f.chunks.set(idx, own);
    return own;
  }

  private byIno(ino: number): Inode {
    const f = this.inodes.get(ino);
    assert(f !== undefined, () => `memfs: directory entry names missing inode ${ino}`);
    return f;
  }

  private get(ref: InodeRef): Inode {
    const f = this.inodes.get(ref.ino);
    if (f === undefined || f.gen !== ref.gen) throw new FsError(FsStatus.STALE, `inode ${ref.ino}/${ref.gen} does not exist`);
    return f;
  }

  private getDir(ref: InodeRef): Inode {
    const d = this.get(ref);
    if (d.type !== FileType.DIR) throw new FsError(FsStatus.NOTDIR);
    return d;
  }
}

function checkName(name: string, fail: (s: FsStatus) => never): void {
  if (name.length === 0 || name.includes('/') || name.includes('\0')) fail(FsStatus.INVAL);
  if (utf8Encode(name).length > fsLimits.nameBytesMax) fail(FsStatus.NAMETOOLONG);
}

/** Unix permission check of `want` (bits of rwx: 4 read, 2 write, 1 exec) for `cred`. */
function may(cred: Cred, f: Inode, want: number): boolean {
  if (cred.uid === 0) return true;
  let bits: number;
  if (cred.uid === f.uid) bits = (f.mode >> 6) & 7;
  else if (cred.gid === f.gid || cred.gids.includes(f.gid)) bits = (f.mode >> 3) & 7;
  else bits = f.mode & 7;
  return (bits & want) === want;
}

function verifierTimes(v: Uint8Array): [number, number] {
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  return [dv.getUint32(0), dv.getUint32(4)];
}

function attrOf(f: Inode): Attr {
  return {
    type: f.type,
    mode: f.mode,
    nlink: f.nlink,
    uid: f.uid,
    gid: f.gid,
    size: f.size,
    used: f.type === FileType.REG ? Math.ceil(f.size / 4096) * 4096 : f.size,
    rdev: { ...f.rdev },
    ino: f.ino,
    gen: f.gen,
    atime: f.atime,
    mtime: f.mtime,
    ctime: f.ctime,
  };
}

function wccOf(f: Inode): WccAttr {
  return { size: f.size, mtime: f.mtime, ctime: f.ctime };
}
