// The NFSv3 program (RFC 1813): all 22 procedures over the FileSystem port. Reads go straight
// to the file system; every change becomes a descriptor with server-assigned values (time,
// inode numbers) that is committed through the ChangeLog port (in the blade: appended to the
// mirrored NVRAM log, applied, reply recorded), behind the duplicate-request cache (SM-2).
import type { Clock } from '../core/clock.ts';
import { AssertionFailure } from '../core/assert.ts';
import { crc32c } from '../core/crc32c.ts';
import { utf8Encode } from '../core/bytes.ts';
import {
  type Attr,
  type ChangeOp,
  type ChangeResult,
  type Cred,
  type FileSystem,
  type InodeRef,
  type SetAttr,
  type Time,
  type WccAttr,
  FileType,
  FsError,
  FsStatus,
  fsLimits,
} from '../fsapi/ops.ts';
import { handOverWriteData } from '../fsapi/codec.ts';
import { AcceptStat, beginAcceptedReply, replyBody } from './core/rpc.ts';
import { type Codec, XdrReader, XdrWriter } from './core/xdr.ts';
import * as x from './core/nfs3.ts';
import { Access3, Fsf3, NFS_PROGRAM, NFS_V3, Nfs3Proc, StableHow, entry3Bytes, POST_OP_ATTR_BYTES } from './core/nfs3.ts';
import { drcLimits, type ChangeOutcome, type DuplicateRequestCache, type RequestKey } from './core/drc.ts';
import type { ExportPolicy } from './core/exports.ts';
import { FH_BYTES, type FileHandleCodec } from './fh.ts';
import type { CallContext, RpcProgram, Transport } from './rpc-server.ts';
import { procUnavail } from './rpc-server.ts';

/**
 * The mutation path. In the blade: append the descriptor (with the request key, so the
 * state-machine log can answer a retransmission after takeover) to the mirrored NVRAM log,
 * wait until both copies are durable, apply it, and resolve with the result. Rejects with
 * FsError when the change failed (it then changed nothing); any other rejection means the
 * change was not logged (the client is told to retry: NFS3ERR_JUKEBOX). `fsid` names the
 * exported file system (volume) the change is for.
 */
export interface ChangeLog {
  commit(change: ChangeOp, key: RequestKey, fsid: bigint): Promise<ChangeResult>;
}

/** A ChangeLog that applies changes directly, one at a time in order (tests, standalone). */
export class DirectChangeLog implements ChangeLog {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly byFsid = new Map<bigint, FileSystem>();
  constructor(filesystems: readonly FileSystem[]) {
    for (const fs of filesystems) this.byFsid.set(fs.fsid, fs);
  }
  commit(change: ChangeOp, _key: RequestKey, fsid: bigint): Promise<ChangeResult> {
    const fs = this.byFsid.get(fsid);
    if (fs === undefined) return Promise.reject(new FsError(FsStatus.STALE, `no file system ${fsid}`));
    const run = this.tail.then(() => fs.apply(change));
    this.tail = run.catch(() => undefined);
    return run;
  }
}

export interface NfsExport {
  /** The path clients mount, e.g. "/export". */
  path: string;
  fs: FileSystem;
  policy: ExportPolicy;
}

export const nfs3ServiceLimits = {
  /** READ and WRITE sizes advertised in FSINFO (TCP): one write descriptor's worth. */
  tcpTransferBytesMax: fsLimits.writeBytesMax,
  /** READ and WRITE sizes advertised in FSINFO (UDP): fits a datagram with headers. */
  udpTransferBytesMax: 32 * 1024,
  /** Preferred READDIR size. */
  dirTransferBytesPref: 64 * 1024,
  /** Entries the service asks the file system for per READDIR(PLUS) call at most. */
  dirEntriesPerCallMax: 4096,
  /** Argument bytes covered by the duplicate-request checksum (Linux nfsd uses 256 too). */
  drcChecksumBytes: 256,
} as const;

export interface Nfs3ServiceOptions {
  exports: readonly NfsExport[];
  changeLog: ChangeLog;
  drc: DuplicateRequestCache;
  clock: Clock;
  handles: FileHandleCodec;
  /**
   * The 8-byte WRITE/COMMIT verifier, derived from the boot epoch: it stays the same across
   * takeover and giveback and changes only when acknowledged unstable data could be lost.
   */
  writeVerifier: Uint8Array;
}

interface Resolved {
  exp: NfsExport;
  ref: InodeRef;
}

/** Status of a failure: FsError's status, or SERVERFAULT for anything unexpected. */
function statusOf(e: unknown): x.Nfsstat3Err {
  if (e instanceof FsError && e.status !== 0) return e.status as x.Nfsstat3Err;
  throw e;
}

const noWcc: x.WccData = { before: undefined, after: undefined };

export class Nfs3Service implements RpcProgram {
  readonly prog = NFS_PROGRAM;
  readonly versLow = NFS_V3;
  readonly versHigh = NFS_V3;
  private readonly byFsid = new Map<bigint, NfsExport>();

  constructor(private readonly o: Nfs3ServiceOptions) {
    if (o.writeVerifier.length !== 8) throw new RangeError('writeVerifier must be 8 bytes');
    for (const e of o.exports) {
      if (this.byFsid.has(e.fs.fsid)) throw new RangeError(`two exports share fsid ${e.fs.fsid}`);
      this.byFsid.set(e.fs.fsid, e);
    }
  }

  async handle(ctx: CallContext): Promise<XdrWriter | null> {
    const { call } = ctx;
    const r = new XdrReader(call.record, call.argsOffset);
    switch (call.proc) {
      case Nfs3Proc.NULL:
        r.done();
        return beginAcceptedReply(call.xid, AcceptStat.SUCCESS);
      case Nfs3Proc.GETATTR:
        return this.reply(ctx, x.getattrRes, await this.getattr(ctx, args(r, x.getattrArgs)));
      case Nfs3Proc.SETATTR:
        return this.setattr(ctx, args(r, x.setattrArgs));
      case Nfs3Proc.LOOKUP:
        return this.reply(ctx, x.lookupRes, await this.lookup(ctx, args(r, x.lookupArgs)));
      case Nfs3Proc.ACCESS:
        return this.reply(ctx, x.accessRes, await this.access(ctx, args(r, x.accessArgs)));
      case Nfs3Proc.READLINK:
        return this.reply(ctx, x.readlinkRes, await this.readlink(ctx, args(r, x.readlinkArgs)));
      case Nfs3Proc.READ:
        return this.read(ctx, args(r, x.readArgs));
      case Nfs3Proc.WRITE:
        return this.write(ctx, args(r, x.writeArgs));
      case Nfs3Proc.CREATE:
        return this.create(ctx, args(r, x.createArgs));
      case Nfs3Proc.MKDIR:
        return this.mkdir(ctx, args(r, x.mkdirArgs));
      case Nfs3Proc.SYMLINK:
        return this.symlink(ctx, args(r, x.symlinkArgs));
      case Nfs3Proc.MKNOD:
        return this.mknod(ctx, args(r, x.mknodArgs));
      case Nfs3Proc.REMOVE:
      case Nfs3Proc.RMDIR:
        return this.remove(ctx, args(r, x.removeArgs), call.proc === Nfs3Proc.RMDIR ? 'rmdir' : 'remove');
      case Nfs3Proc.RENAME:
        return this.rename(ctx, args(r, x.renameArgs));
      case Nfs3Proc.LINK:
        return this.link(ctx, args(r, x.linkArgs));
      case Nfs3Proc.READDIR:
        return this.reply(ctx, x.readdirRes, await this.readdir(ctx, args(r, x.readdirArgs)));
      case Nfs3Proc.READDIRPLUS:
        return this.reply(ctx, x.readdirplusRes, await this.readdirplus(ctx, args(r, x.readdirplusArgs)));
      case Nfs3Proc.FSSTAT:
        return this.reply(ctx, x.fsstatRes, await this.fsstat(ctx, args(r, x.fsstatArgs)));
      case Nfs3Proc.FSINFO:
        return this.reply(ctx, x.fsinfoRes, await this.fsinfo(ctx, args(r, x.fsinfoArgs)));
      case Nfs3Proc.PATHCONF:
        return this.reply(ctx, x.pathconfRes, await this.pathconf(ctx, args(r, x.pathconfArgs)));
      case Nfs3Proc.COMMIT:
        return this.reply(ctx, x.commitRes, await this.commit(ctx, args(r, x.commitArgs)));
      default:
        return procUnavail(ctx);
    }
  }

  // ---- helpers -------------------------------------------------------------------------

  private reply<T>(ctx: CallContext, c: Codec<T>, v: T, sizeHint = 256): XdrWriter {
    const w = beginAcceptedReply(ctx.call.xid, AcceptStat.SUCCESS, sizeHint);
    c.enc(w, v);
    return w;
  }

  /** Decodes and authenticates a handle and checks the client may use its export. */
  private resolve(ctx: CallContext, fh: Uint8Array): Resolved {
    const h = this.o.handles.decode(fh);
    const exp = this.byFsid.get(h.fsid);
    if (exp === undefined) throw new FsError(FsStatus.STALE, 'no export with this fsid');
    if (!exp.policy.allows(ctx.client)) throw new FsError(FsStatus.ACCES, 'client not allowed by the export');
    return { exp, ref: { ino: h.ino, gen: h.gen } };
  }

  private cred(ctx: CallContext, exp: NfsExport): Cred {
    return exp.policy.cred(ctx.call.authSys);
  }

  private fattr(exp: NfsExport, a: Attr): x.Fattr3 {
    return {
      type: a.type,
      mode: a.mode,
      nlink: a.nlink,
      uid: a.uid,
      gid: a.gid,
      size: a.size,
      used: a.used,
      rdev: a.rdev,
      fsid: exp.fs.fsid,
      fileid: a.ino,
      atime: a.atime,
      mtime: a.mtime,
      ctime: a.ctime,
    };
  }

  private fh(exp: NfsExport, a: Attr): Uint8Array {
    return this.o.handles.encode({ fsid: exp.fs.fsid, ino: a.ino, gen: a.gen });
  }

  private async postOp(exp: NfsExport, ref: InodeRef): Promise<x.Fattr3 | undefined> {
    try {
      return this.fattr(exp, await exp.fs.getattr(ref));
    } catch (e) {
      if (e instanceof FsError) return undefined;
      throw e;
    }
  }

  private wcc(exp: NfsExport, pre: WccAttr | undefined, post: Attr | undefined): x.WccData {
    return { before: pre, after: post === undefined ? undefined : this.fattr(exp, post) };
  }

  private now(): Time {
    const ns = this.o.clock.wallNs();
    return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
  }

  private transferMax(t: Transport): number {
    return t === 'tcp' ? nfs3ServiceLimits.tcpTransferBytesMax : nfs3ServiceLimits.udpTransferBytesMax;
  }

  // ---- queries -------------------------------------------------------------------------

  private async getattr(ctx: CallContext, a: { fh: Uint8Array }): Promise<x.CodecTypeOf<typeof x.getattrRes>> {
    try {
      const { exp, ref } = this.resolve(ctx, a.fh);
      return { status: 0, attr: this.fattr(exp, await exp.fs.getattr(ref)) };
    } catch (e) {
      return { status: statusOf(e) };
    }
  }

  private async lookup(ctx: CallContext, a: { dir: Uint8Array; name: string }): Promise<x.CodecTypeOf<typeof x.lookupRes>> {
    let dirAttr: x.Fattr3 | undefined;
    try {
      const { exp, ref } = this.resolve(ctx, a.dir);
      const d = await exp.fs.getattr(ref);
      dirAttr = this.fattr(exp, d);
      if (d.type !== FileType.DIR) throw new FsError(FsStatus.NOTDIR);
      if (!permits(this.cred(ctx, exp), d, 1)) throw new FsError(FsStatus.ACCES);
      checkNameLength(a.name);
      const obj = await exp.fs.lookup(ref, a.name);
      return { status: 0, fh: this.fh(exp, obj), attr: this.fattr(exp, obj), dirAttr };
    } catch (e) {
      return { status: statusOf(e), dirAttr };
    }
  }

  private async access(ctx: CallContext, a: { fh: Uint8Array; access: number }): Promise<x.CodecTypeOf<typeof x.accessRes>> {
    try {
      const { exp, ref } = this.resolve(ctx, a.fh);
      const attr = await exp.fs.getattr(ref);
      const cred = this.cred(ctx, exp);
      let granted = 0;
      const isDir = attr.type === FileType.DIR;
      if (permits(cred, attr, 4)) granted |= Access3.READ;
      if (isDir && permits(cred, attr, 1)) granted |= Access3.LOOKUP;
      if (!exp.policy.readOnly && permits(cred, attr, 2)) granted |= Access3.MODIFY | Access3.EXTEND | (isDir ? Access3.DELETE : 0);
      if (!isDir && permits(cred, attr, 1) && (cred.uid !== 0 || (attr.mode & 0o111) !== 0)) granted |= Access3.EXECUTE;
      return { status: 0, attr: this.fattr(exp, attr), access: granted & a.access };
    } catch (e) {
      return { status: statusOf(e), attr: undefined };
    }
  }

  private async readlink(ctx: CallContext, a: { fh: Uint8Array }): Promise<x.CodecTypeOf<typeof x.readlinkRes>> {
    let attr: x.Fattr3 | undefined;
    try {
      const { exp, ref } = this.resolve(ctx, a.fh);
      attr = await this.postOp(exp, ref);
      const path = await exp.fs.readlink(ref);
      return { status: 0, attr, path };
    } catch (e) {
      return { status: statusOf(e), attr };
    }
  }

  private async read(ctx: CallContext, a: { fh: Uint8Array; offset: number; count: number }): Promise<XdrWriter> {
    let v: x.CodecTypeOf<typeof x.readRes>;
    let attr: x.Fattr3 | undefined;
    try {
      const { exp, ref } = this.resolve(ctx, a.fh);
      const count = Math.min(a.count, this.transferMax(ctx.transport));
      if (exp.fs.readParts !== undefined) {
        // One query: the permission check runs inside it, and the data goes out where it lies
        // (cached blocks, lent pages): no GETATTR of its own, no copy into one buffer.
        const cred = this.cred(ctx, exp);
        const r = await exp.fs.readParts(ref, a.offset, count, (before) => {
          attr = this.fattr(exp, before);
          checkReadable(cred, before);
        });
        const w = beginAcceptedReply(ctx.call.xid, AcceptStat.SUCCESS, 160);
        w.u32(0);
        x.postOpAttr.enc(w, attr);
        w.u32(r.length);
        w.bool(r.eof);
        w.opaqueTailParts(r.parts);
        return w;
      }
      const before = await exp.fs.getattr(ref);
      attr = this.fattr(exp, before);
      checkReadable(this.cred(ctx, exp), before);
      const { data, eof } = await exp.fs.read(ref, a.offset, count);
      // The data goes out by reference after the header (no copy into the reply buffer).
      const w = beginAcceptedReply(ctx.call.xid, AcceptStat.SUCCESS, 160);
      w.u32(0);
      x.postOpAttr.enc(w, attr);
      w.u32(data.length);
      w.bool(eof);
      w.opaqueTail(data);
      return w;
    } catch (e) {
      v = { status: statusOf(e), attr };
    }
    return this.reply(ctx, x.readRes, v);
  }

  private async readdir(ctx: CallContext, a: { dir: Uint8Array; cookie: bigint; count: number }): Promise<x.CodecTypeOf<typeof x.readdirRes>> {
    let dirAttr: x.Fattr3 | undefined;
    try {
      const { exp, ref } = this.resolve(ctx, a.dir);
      const d = await exp.fs.getattr(ref);
      dirAttr = this.fattr(exp, d);
      if (d.type !== FileType.DIR) throw new FsError(FsStatus.NOTDIR);
      if (!permits(this.cred(ctx, exp), d, 4)) throw new FsError(FsStatus.ACCES);
      const budget = Math.min(a.count, this.transferMax(ctx.transport));
      // Fixed part: status, post_op_attr, cookie verifier, end-of-list bool, eof bool.
      let used = 4 + POST_OP_ATTR_BYTES + 8 + 4 + 4;
      const want = Math.max(1, Math.min(nfs3ServiceLimits.dirEntriesPerCallMax, Math.floor((budget - used) / 24)));
      const got = await exp.fs.readdir(ref, a.cookie, want);
      const entries: x.Entry3[] = [];
      let eof = got.eof;
      for (const e of got.entries) {
        const size = entry3Bytes(utf8Encode(e.name).length);
        if (used + size > budget) {
          eof = false;
          break;
        }
        used += size;
        entries.push({ fileid: e.ino, name: e.name, cookie: e.cookie });
      }
      if (entries.length === 0 && got.entries.length > 0) throw new FsError(FsStatus.TOOSMALL);
      return { status: 0, dirAttr, verf: new Uint8Array(8), entries, eof };
    } catch (e) {
      return { status: statusOf(e), dirAttr };
    }
  }

  private async readdirplus(
    ctx: CallContext,
    a: { dir: Uint8Array; cookie: bigint; dircount: number; maxcount: number },
  ): Promise<x.CodecTypeOf<typeof x.readdirplusRes>> {
    let dirAttr: x.Fattr3 | undefined;
    try {
      const { exp, ref } = this.resolve(ctx, a.dir);
      const d = await exp.fs.getattr(ref);
      dirAttr = this.fattr(exp, d);
      if (d.type !== FileType.DIR) throw new FsError(FsStatus.NOTDIR);
      if (!permits(this.cred(ctx, exp), d, 4)) throw new FsError(FsStatus.ACCES);
      const budget = Math.min(a.maxcount, this.transferMax(ctx.transport));
      const dirBudget = a.dircount > 0 ? a.dircount : budget;
      let used = 4 + POST_OP_ATTR_BYTES + 8 + 4 + 4;
      let dirUsed = 0;
      const perEntry = 24 + POST_OP_ATTR_BYTES + 8 + FH_BYTES;
      const want = Math.max(1, Math.min(nfs3ServiceLimits.dirEntriesPerCallMax, Math.floor((budget - used) / perEntry)));
      const got = await exp.fs.readdir(ref, a.cookie, want);
      const entries: x.Entryplus3[] = [];
      let eof = got.eof;
      for (const e of got.entries) {
        const base = entry3Bytes(utf8Encode(e.name).length);
        const size = base + POST_OP_ATTR_BYTES + 8 + FH_BYTES;
        if (used + size > budget || (entries.length > 0 && dirUsed + base > dirBudget)) {
          eof = false;
          break;
        }
        used += size;
        dirUsed += base;
        let attr: x.Fattr3 | undefined;
        let fh: Uint8Array | undefined;
        try {
          const obj = await exp.fs.lookup(ref, e.name);
          attr = this.fattr(exp, obj);
          fh = this.fh(exp, obj);
        } catch (err) {
          if (!(err instanceof FsError)) throw err;
        }
        entries.push({ fileid: e.ino, name: e.name, cookie: e.cookie, attr, fh });
      }
      if (entries.length === 0 && got.entries.length > 0) throw new FsError(FsStatus.TOOSMALL);
      return { status: 0, dirAttr, verf: new Uint8Array(8), entries, eof };
    } catch (e) {
      return { status: statusOf(e), dirAttr };
    }
  }

  private async fsstat(ctx: CallContext, a: { fh: Uint8Array }): Promise<x.CodecTypeOf<typeof x.fsstatRes>> {
    try {
      const { exp, ref } = this.resolve(ctx, a.fh);
      const attr = this.fattr(exp, await exp.fs.getattr(ref));
      const s = await exp.fs.fsstat();
      return {
        status: 0,
        attr,
        tbytes: s.totalBytes,
        fbytes: s.freeBytes,
        abytes: s.availBytes,
        tfiles: s.totalFiles,
        ffiles: s.freeFiles,
        afiles: s.availFiles,
        invarsec: 0,
      };
    } catch (e) {
      return { status: statusOf(e), attr: undefined };
    }
  }

  private async fsinfo(ctx: CallContext, a: { fh: Uint8Array }): Promise<x.CodecTypeOf<typeof x.fsinfoRes>> {
    try {
      const { exp, ref } = this.resolve(ctx, a.fh);
      const attr = this.fattr(exp, await exp.fs.getattr(ref));
      const max = this.transferMax(ctx.transport);
      return {
        status: 0,
        attr,
        rtmax: max,
        rtpref: max,
        rtmult: 4096,
        wtmax: max,
        wtpref: max,
        wtmult: 4096,
        dtpref: ctx.transport === 'tcp' ? nfs3ServiceLimits.dirTransferBytesPref : 8192,
        maxfilesize: fsLimits.fileSizeBytesMax,
        timeDelta: { sec: 0, nsec: 1 },
        properties: Fsf3.LINK | Fsf3.SYMLINK | Fsf3.HOMOGENEOUS | Fsf3.CANSETTIME,
      };
    } catch (e) {
      return { status: statusOf(e), attr: undefined };
    }
  }

  private async pathconf(ctx: CallContext, a: { fh: Uint8Array }): Promise<x.CodecTypeOf<typeof x.pathconfRes>> {
    try {
      const { exp, ref } = this.resolve(ctx, a.fh);
      const attr = this.fattr(exp, await exp.fs.getattr(ref));
      return {
        status: 0,
        attr,
        linkmax: fsLimits.linkCountMax,
        nameMax: fsLimits.nameBytesMax,
        noTrunc: true,
        chownRestricted: true,
        caseInsensitive: false,
        casePreserving: true,
      };
    } catch (e) {
      return { status: statusOf(e), attr: undefined };
    }
  }

  /** Every WRITE is already stable (logged in NVRAM), so COMMIT only reports the verifier. */
  private async commit(ctx: CallContext, a: { fh: Uint8Array }): Promise<x.CodecTypeOf<typeof x.commitRes>> {
    try {
      const { exp, ref } = this.resolve(ctx, a.fh);
      const attr = await exp.fs.getattr(ref);
      if (attr.type !== FileType.REG) throw new FsError(attr.type === FileType.DIR ? FsStatus.ISDIR : FsStatus.INVAL);
      return { status: 0, wcc: this.wcc(exp, { size: attr.size, mtime: attr.mtime, ctime: attr.ctime }, attr), verf: this.o.writeVerifier };
    } catch (e) {
      return { status: statusOf(e), wcc: noWcc };
    }
  }

  // ---- changes -------------------------------------------------------------------------

  /**
   * Runs one change behind the duplicate-request cache: a retransmission of a call that
   * already ran gets the original reply; the change itself is committed at most once.
   * `build` makes the descriptor (it may throw FsError: a deterministic refusal, not logged).
   */
  private async change(ctx: CallContext, exp: NfsExport, build: () => ChangeOp): Promise<XdrWriter | null> {
    const { call } = ctx;
    const args = call.record.subarray(call.argsOffset);
    const key: RequestKey = {
      client: ctx.client,
      xid: call.xid,
      prog: call.prog,
      vers: call.vers,
      proc: call.proc,
      // Like Linux nfsd, checksum only the head of the arguments (handles, names, offsets):
      // with the xid and the total length it tells a reused xid from a retransmission,
      // without checksumming every byte of a 1 MiB WRITE.
      argsCrc: crc32c(args.subarray(0, nfs3ServiceLimits.drcChecksumBytes)),
      argsBytes: args.length,
    };
    let prior = this.o.drc.begin(key);
    for (let held = 0; prior?.state === 'busy'; held++) {
      if (held >= drcLimits.drcBusyRetryMax) return null;
      await prior.retry;
      prior = this.o.drc.begin(key);
    }
    if (prior !== undefined) {
      if (prior.state === 'in-progress') return null;
      if (prior.state === 'replied') {
        const w = new XdrWriter(prior.reply.length + 8, 4);
        w.raw(prior.reply);
        return w;
      }
      const w = this.encodeOutcome(ctx, exp, prior.outcome);
      this.o.drc.complete(key, replyBody(w));
      return w;
    }
    let outcome: ChangeOutcome;
    try {
      const change = build();
      outcome = { ok: true, result: await this.o.changeLog.commit(change, key, exp.fs.fsid) };
    } catch (e) {
      if (e instanceof FsError) {
        outcome = { ok: false, status: e.status };
        if (e.dirPre !== undefined) outcome.dirPre = e.dirPre;
        if (e.dirPost !== undefined) outcome.dirPost = e.dirPost;
      } else {
        // Not logged, so nothing changed: forget the call and let the client retry later.
        this.o.drc.abandon(key);
        if (e instanceof AssertionFailure) throw e;
        return this.refuse(ctx, new FsError(FsStatus.JUKEBOX, 'change log refused the change', {}));
      }
    }
    const w = this.encodeOutcome(ctx, exp, outcome);
    this.o.drc.complete(key, replyBody(w));
    return w;
  }

  /**
   * Encodes the reply of a change from its outcome alone, so that the reply rebuilt after a
   * takeover (from a replayed log entry) is byte for byte the original one.
   */
  encodeOutcome(ctx: CallContext, exp: NfsExport, o: ChangeOutcome): XdrWriter {
    const proc = ctx.call.proc;
    if (!o.ok) {
      const status = o.status as x.Nfsstat3Err;
      const dirWcc = this.wcc(exp, o.dirPre, o.dirPost);
      switch (proc) {
        case Nfs3Proc.SETATTR:
          return this.reply(ctx, x.setattrRes, { status, wcc: noWcc });
        case Nfs3Proc.WRITE:
          return this.reply(ctx, x.writeRes, { status, wcc: noWcc });
        case Nfs3Proc.RENAME:
          return this.reply(ctx, x.renameRes, { status, fromWcc: dirWcc, toWcc: noWcc });
        case Nfs3Proc.LINK:
          return this.reply(ctx, x.linkRes, { status, attr: undefined, dirWcc });
        default:
          return this.reply(ctx, x.createRes, { status, dirWcc });
      }
    }
    const r = o.result;
    switch (r.op) {
      case 'setattr':
        return this.reply(ctx, x.setattrRes, { status: 0, wcc: this.wcc(exp, r.pre, r.post) });
      case 'write':
        return this.reply(ctx, x.writeRes, {
          status: 0,
          wcc: this.wcc(exp, r.pre, r.post),
          count: r.count,
          committed: StableHow.FILE_SYNC,
          verf: this.o.writeVerifier,
        });
      case 'create':
      case 'mkdir':
      case 'symlink':
      case 'mknod':
        return this.reply(ctx, x.createRes, {
          status: 0,
          fh: this.fh(exp, r.obj),
          attr: this.fattr(exp, r.obj),
          dirWcc: this.wcc(exp, r.dirPre, r.dirPost),
        });
      case 'remove':
      case 'rmdir':
        return this.reply(ctx, x.removeRes, { status: 0, dirWcc: this.wcc(exp, r.dirPre, r.dirPost) });
      case 'rename':
        return this.reply(ctx, x.renameRes, {
          status: 0,
          fromWcc: this.wcc(exp, r.fromPre, r.fromPost),
          toWcc: this.wcc(exp, r.toPre, r.toPost),
        });
      case 'link':
        return this.reply(ctx, x.linkRes, { status: 0, attr: this.fattr(exp, r.obj), dirWcc: this.wcc(exp, r.dirPre, r.dirPost) });
    }
  }

  /** Resolves the handle of a change and refuses read-only exports, replying at once on failure. */
  private changeTarget(ctx: CallContext, fh: Uint8Array): Resolved | FsError {
    try {
      const res = this.resolve(ctx, fh);
      if (res.exp.policy.readOnly) return new FsError(FsStatus.ROFS);
      return res;
    } catch (e) {
      if (e instanceof FsError) return e;
      throw e;
    }
  }

  private refuse(ctx: CallContext, err: FsError): XdrWriter {
    const status = statusOf(err);
    switch (ctx.call.proc) {
      case Nfs3Proc.SETATTR:
        return this.reply(ctx, x.setattrRes, { status, wcc: noWcc });
      case Nfs3Proc.WRITE:
        return this.reply(ctx, x.writeRes, { status, wcc: noWcc });
      case Nfs3Proc.RENAME:
        return this.reply(ctx, x.renameRes, { status, fromWcc: noWcc, toWcc: noWcc });
      case Nfs3Proc.LINK:
        return this.reply(ctx, x.linkRes, { status, attr: undefined, dirWcc: noWcc });
      default:
        return this.reply(ctx, x.createRes, { status, dirWcc: noWcc });
    }
  }

  private base(ctx: CallContext, exp: NfsExport): { time: Time; cred: Cred } {
    return { time: this.now(), cred: this.cred(ctx, exp) };
  }

  private setAttrFrom(s: x.Sattr3, now: Time): SetAttr {
    const a: SetAttr = {};
    if (s.mode !== undefined) a.mode = s.mode & 0o7777;
    if (s.uid !== undefined) a.uid = s.uid;
    if (s.gid !== undefined) a.gid = s.gid;
    if (s.size !== undefined) a.size = s.size;
    if (s.atime !== 'dont') a.atime = s.atime === 'server' ? now : s.atime;
    if (s.mtime !== 'dont') a.mtime = s.mtime === 'server' ? now : s.mtime;
    return a;
  }

  private async setattr(ctx: CallContext, a: { fh: Uint8Array; attrs: x.Sattr3; guard: Time | undefined }): Promise<XdrWriter | null> {
    const t = this.changeTarget(ctx, a.fh);
    if (t instanceof FsError) return this.refuse(ctx, t);
    return this.change(ctx, t.exp, () => {
      const b = this.base(ctx, t.exp);
      const c: ChangeOp = { op: 'setattr', ...b, target: t.ref, attrs: this.setAttrFrom(a.attrs, b.time) };
      if (a.guard !== undefined) c.guardCtime = a.guard;
      return c;
    });
  }

  private async write(ctx: CallContext, a: { fh: Uint8Array; offset: number; count: number; data: Uint8Array }): Promise<XdrWriter | null> {
    const t = this.changeTarget(ctx, a.fh);
    if (t instanceof FsError) return this.refuse(ctx, t);
    if (a.data.length < a.count || a.count > this.transferMax(ctx.transport)) return this.refuse(ctx, new FsError(FsStatus.INVAL));
    // The data is a view of the call's RPC record, which nothing writes to again (the record
    // decoder never reuses a record's memory): handed over, the file system keeps it as its
    // page buffers rather than copying it.
    return this.change(ctx, t.exp, () => ({ op: 'write', ...this.base(ctx, t.exp), target: t.ref, offset: a.offset, data: handOverWriteData(a.data.subarray(0, a.count)) }));
  }

  private newObject(ctx: CallContext, where: { dir: Uint8Array; name: string }, make: (exp: NfsExport, dir: InodeRef, ino: InodeRef) => ChangeOp): Promise<XdrWriter | null> | XdrWriter {
    const t = this.changeTarget(ctx, where.dir);
    if (t instanceof FsError) return this.refuse(ctx, t);
    try {
      checkNameLength(where.name);
    } catch (e) {
      return this.refuse(ctx, e as FsError);
    }
    return this.change(ctx, t.exp, () => make(t.exp, t.ref, t.exp.fs.allocInode()));
  }

  private create(ctx: CallContext, a: { where: { dir: Uint8Array; name: string }; how: x.CreateHow }): Promise<XdrWriter | null> | XdrWriter {
    return this.newObject(ctx, a.where, (exp, dir, ino) => {
      const b = this.base(ctx, exp);
      const common = { op: 'create' as const, ...b, dir, name: a.where.name, newIno: ino.ino, newGen: ino.gen };
      if (a.how.mode === 2) return { ...common, how: 'exclusive', attrs: {}, verifier: a.how.verf.slice() };
      return { ...common, how: a.how.mode === 0 ? 'unchecked' : 'guarded', attrs: this.setAttrFrom(a.how.attrs, b.time) };
    });
  }

  private mkdir(ctx: CallContext, a: { where: { dir: Uint8Array; name: string }; attrs: x.Sattr3 }): Promise<XdrWriter | null> | XdrWriter {
    return this.newObject(ctx, a.where, (exp, dir, ino) => {
      const b = this.base(ctx, exp);
      return { op: 'mkdir', ...b, dir, name: a.where.name, attrs: this.setAttrFrom(a.attrs, b.time), newIno: ino.ino, newGen: ino.gen };
    });
  }

  private symlink(ctx: CallContext, a: { where: { dir: Uint8Array; name: string }; attrs: x.Sattr3; path: string }): Promise<XdrWriter | null> | XdrWriter {
    return this.newObject(ctx, a.where, (exp, dir, ino) => {
      const b = this.base(ctx, exp);
      return { op: 'symlink', ...b, dir, name: a.where.name, target: a.path, attrs: this.setAttrFrom(a.attrs, b.time), newIno: ino.ino, newGen: ino.gen };
    });
  }

  private mknod(ctx: CallContext, a: { where: { dir: Uint8Array; name: string }; what: x.MknodWhat }): Promise<XdrWriter | null> | XdrWriter {
    const what = a.what;
    if (what.type !== 3 && what.type !== 4 && what.type !== 6 && what.type !== 7) return this.refuse(ctx, new FsError(FsStatus.BADTYPE));
    return this.newObject(ctx, a.where, (exp, dir, ino) => {
      const b = this.base(ctx, exp);
      const rdev = what.type === 3 || what.type === 4 ? { ...what.spec } : { major: 0, minor: 0 };
      return { op: 'mknod', ...b, dir, name: a.where.name, type: what.type, attrs: this.setAttrFrom(what.attrs, b.time), rdev, newIno: ino.ino, newGen: ino.gen };
    });
  }

  private async remove(ctx: CallContext, a: { dir: Uint8Array; name: string }, op: 'remove' | 'rmdir'): Promise<XdrWriter | null> {
    const t = this.changeTarget(ctx, a.dir);
    if (t instanceof FsError) return this.refuse(ctx, t);
    try {
      checkNameLength(a.name);
    } catch (e) {
      return this.refuse(ctx, e as FsError);
    }
    return this.change(ctx, t.exp, () => ({ op, ...this.base(ctx, t.exp), dir: t.ref, name: a.name }));
  }

  private async rename(ctx: CallContext, a: { from: { dir: Uint8Array; name: string }; to: { dir: Uint8Array; name: string } }): Promise<XdrWriter | null> {
    const f = this.changeTarget(ctx, a.from.dir);
    if (f instanceof FsError) return this.refuse(ctx, f);
    const t = this.changeTarget(ctx, a.to.dir);
    if (t instanceof FsError) return this.refuse(ctx, t);
    if (f.exp !== t.exp) return this.refuse(ctx, new FsError(FsStatus.XDEV));
    try {
      checkNameLength(a.from.name);
      checkNameLength(a.to.name);
    } catch (e) {
      return this.refuse(ctx, e as FsError);
    }
    return this.change(ctx, f.exp, () => ({ op: 'rename', ...this.base(ctx, f.exp), fromDir: f.ref, fromName: a.from.name, toDir: t.ref, toName: a.to.name }));
  }

  private async link(ctx: CallContext, a: { fh: Uint8Array; link: { dir: Uint8Array; name: string } }): Promise<XdrWriter | null> {
    const f = this.changeTarget(ctx, a.fh);
    if (f instanceof FsError) return this.refuse(ctx, f);
    const d = this.changeTarget(ctx, a.link.dir);
    if (d instanceof FsError) return this.refuse(ctx, d);
    if (f.exp !== d.exp) return this.refuse(ctx, new FsError(FsStatus.XDEV));
    try {
      checkNameLength(a.link.name);
    } catch (e) {
      return this.refuse(ctx, e as FsError);
    }
    return this.change(ctx, f.exp, () => ({ op: 'link', ...this.base(ctx, f.exp), target: f.ref, dir: d.ref, name: a.link.name }));
  }
}

function args<T>(r: XdrReader, c: Codec<T>): T {
  const v = c.dec(r);
  r.done();
  return v;
}

function checkNameLength(name: string): void {
  if (utf8Encode(name).length > fsLimits.nameBytesMax) throw new FsError(FsStatus.NAMETOOLONG);
}

/**
 * Whether `cred` may READ the file `a` (the owner always may: NFS clients check the mode at
 * open and then read through their own handle); throws the READ's answer when not.
 */
function checkReadable(cred: Cred, a: Attr): void {
  if (a.type === FileType.DIR) throw new FsError(FsStatus.ISDIR);
  if (a.type !== FileType.REG) throw new FsError(FsStatus.INVAL);
  if (cred.uid !== a.uid && !permits(cred, a, 4)) throw new FsError(FsStatus.ACCES);
}

/** Unix permission check (4 read, 2 write, 1 execute); uid 0 may read and write anything. */
export function permits(cred: Cred, a: Attr, want: number): boolean {
  if (cred.uid === 0) return want !== 1 || a.type === FileType.DIR || (a.mode & 0o111) !== 0;
  let bits: number;
  if (cred.uid === a.uid) bits = (a.mode >> 6) & 7;
  else if (cred.gid === a.gid || cred.gids.includes(a.gid)) bits = (a.mode >> 3) & 7;
  else bits = a.mode & 7;
  return (bits & want) === want;
}
