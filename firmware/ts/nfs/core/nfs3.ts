// NFS version 3 (RFC 1813): program constants, and two-way XDR codecs for the arguments
// and results of all 22 procedures. The server decodes arguments and encodes results; the
// client library (tools/nfs-client) does the opposite with the same codecs.
import type { FsStatus, Time } from '../../fsapi/ops.ts';
import { DecodeError } from '../../core/errors.ts';
import {
  type Codec,
  type CodecType,
  type XdrReader,
  type XdrWriter,
  bool,
  fixed,
  list,
  opaque,
  optional,
  string,
  struct,
  u32,
  u64,
  u64big,
  xvoid,
} from './xdr.ts';

export const NFS_PROGRAM = 100003;
export const NFS_V3 = 3;

export const Nfs3Proc = {
  NULL: 0,
  GETATTR: 1,
  SETATTR: 2,
  LOOKUP: 3,
  ACCESS: 4,
  READLINK: 5,
  READ: 6,
  WRITE: 7,
  CREATE: 8,
  MKDIR: 9,
  SYMLINK: 10,
  MKNOD: 11,
  REMOVE: 12,
  RMDIR: 13,
  RENAME: 14,
  LINK: 15,
  READDIR: 16,
  READDIRPLUS: 17,
  FSSTAT: 18,
  FSINFO: 19,
  PATHCONF: 20,
  COMMIT: 21,
} as const;

export const nfs3ProcName: readonly string[] = Object.keys(Nfs3Proc);

export const Access3 = { READ: 0x1, LOOKUP: 0x2, MODIFY: 0x4, EXTEND: 0x8, DELETE: 0x10, EXECUTE: 0x20 } as const;
export const StableHow = { UNSTABLE: 0, DATA_SYNC: 1, FILE_SYNC: 2 } as const;
export const CreateHow3 = { UNCHECKED: 0, GUARDED: 1, EXCLUSIVE: 2 } as const;
export const Fsf3 = { LINK: 0x1, SYMLINK: 0x2, HOMOGENEOUS: 0x8, CANSETTIME: 0x10 } as const;

export const nfs3Limits = {
  /** NFS3_FHSIZE: the largest file handle on the wire. */
  fhBytesMax: 64,
  /**
   * Names and paths are decoded up to these sizes so that an over-long one gets the
   * protocol's NAMETOOLONG rather than GARBAGE_ARGS; the file system enforces its own limits.
   */
  nameWireBytesMax: 1024,
  pathWireBytesMax: 8192,
  /** The largest data opaque a WRITE call or READ reply may carry on the wire. */
  dataWireBytesMax: 4 * 1024 * 1024,
  /** Entries in one decoded READDIR(PLUS) reply (client side; the server sizes by bytes). */
  dirEntriesWireMax: 1 << 16,
} as const;

export type Nfsstat3Err = Exclude<FsStatus, 0>;
/** An NFSv3 result: the OK arm's fields when status is 0, the failure arm's otherwise. */
export type Res<Ok, Fail> = ({ status: 0 } & Ok) | ({ status: Nfsstat3Err } & Fail);

export function res<Ok extends object, Fail extends object>(ok: Codec<Ok>, fail: Codec<Fail>): Codec<Res<Ok, Fail>> {
  return {
    enc(w, v) {
      w.u32(v.status);
      if (v.status === 0) ok.enc(w, v as Ok);
      else fail.enc(w, v as Fail);
    },
    dec(r) {
      const status = r.u32();
      const body = (status === 0 ? ok.dec(r) : fail.dec(r)) as Record<string, unknown>;
      body['status'] = status;
      return body as Res<Ok, Fail>;
    },
  };
}

// ---- basic types -------------------------------------------------------------------

export const fh3 = opaque(nfs3Limits.fhBytesMax);
export const filename3 = string(nfs3Limits.nameWireBytesMax);
export const nfspath3 = string(nfs3Limits.pathWireBytesMax);
export const verf8 = fixed(8);
export const nfstime3: Codec<Time> = struct({ sec: u32, nsec: u32 });
export const specdata3 = struct({ major: u32, minor: u32 });

export const fattr3 = struct({
  type: u32,
  mode: u32,
  nlink: u32,
  uid: u32,
  gid: u32,
  size: u64,
  used: u64,
  rdev: specdata3,
  fsid: u64big,
  fileid: u64,
  atime: nfstime3,
  mtime: nfstime3,
  ctime: nfstime3,
});
export type Fattr3 = CodecType<typeof fattr3>;
export const postOpAttr = optional(fattr3);
export const wccAttr = struct({ size: u64, mtime: nfstime3, ctime: nfstime3 });
export type WccAttr3 = CodecType<typeof wccAttr>;
export const wccData = struct({ before: optional(wccAttr), after: postOpAttr });
export type WccData = CodecType<typeof wccData>;
export const postOpFh3 = optional(fh3);

/** How SETATTR sets a time: leave it, the server's time, or the client's time. */
export type SetTime = 'dont' | 'server' | Time;
export const setTime: Codec<SetTime> = {
  enc(w, v) {
    if (v === 'dont') w.u32(0);
    else if (v === 'server') w.u32(1);
    else {
      w.u32(2);
      nfstime3.enc(w, v);
    }
  },
  dec(r) {
    const how = r.u32();
    if (how === 0) return 'dont';
    if (how === 1) return 'server';
    if (how === 2) return nfstime3.dec(r);
    throw new DecodeError('ERR_NFS3_TIME_HOW', `time_how ${how}`);
  },
};
export const sattr3 = struct({
  mode: optional(u32),
  uid: optional(u32),
  gid: optional(u32),
  size: optional(u64),
  atime: setTime,
  mtime: setTime,
});
export type Sattr3 = CodecType<typeof sattr3>;

/** A sattr3 with only the given fields set. */
export function sattr(set: Partial<Sattr3> = {}): Sattr3 {
  return {
    mode: set.mode,
    uid: set.uid,
    gid: set.gid,
    size: set.size,
    atime: set.atime ?? 'dont',
    mtime: set.mtime ?? 'dont',
  };
}

export const diropargs3 = struct({ dir: fh3, name: filename3 });

// ---- procedure arguments and results -------------------------------------------------

const attrOnly = struct({ attr: postOpAttr });
const wccOnly = struct({ wcc: wccData });
const nothing = xvoid;

export const getattrArgs = struct({ fh: fh3 });
export const getattrRes = res(struct({ attr: fattr3 }), nothing);

export const setattrArgs = struct({ fh: fh3, attrs: sattr3, guard: optional(nfstime3) });
export const setattrRes = res(wccOnly, wccOnly);

export const lookupArgs = diropargs3;
export const lookupRes = res(struct({ fh: fh3, attr: postOpAttr, dirAttr: postOpAttr }), struct({ dirAttr: postOpAttr }));

export const accessArgs = struct({ fh: fh3, access: u32 });
export const accessRes = res(struct({ attr: postOpAttr, access: u32 }), attrOnly);

export const readlinkArgs = struct({ fh: fh3 });
export const readlinkRes = res(struct({ attr: postOpAttr, path: nfspath3 }), attrOnly);

export const readArgs = struct({ fh: fh3, offset: u64, count: u32 });
export const readRes = res(struct({ attr: postOpAttr, count: u32, eof: bool, data: opaque(nfs3Limits.dataWireBytesMax) }), attrOnly);

export const writeArgs = struct({ fh: fh3, offset: u64, count: u32, stable: u32, data: opaque(nfs3Limits.dataWireBytesMax) });
export const writeRes = res(struct({ wcc: wccData, count: u32, committed: u32, verf: verf8 }), wccOnly);

export type CreateHow = { mode: 0 | 1; attrs: Sattr3 } | { mode: 2; verf: Uint8Array };
export const createHow: Codec<CreateHow> = {
  enc(w, v) {
    w.u32(v.mode);
    if (v.mode === 2) verf8.enc(w, v.verf);
    else sattr3.enc(w, v.attrs);
  },
  dec(r) {
    const mode = r.u32();
    if (mode === 0 || mode === 1) return { mode, attrs: sattr3.dec(r) };
    if (mode === 2) return { mode, verf: verf8.dec(r) };
    throw new DecodeError('ERR_NFS3_CREATEHOW', `createmode3 ${mode}`);
  },
};
export const createArgs = struct({ where: diropargs3, how: createHow });
const newObjOk = struct({ fh: postOpFh3, attr: postOpAttr, dirWcc: wccData });
const dirWccOnly = struct({ dirWcc: wccData });
export const createRes = res(newObjOk, dirWccOnly);

export const mkdirArgs = struct({ where: diropargs3, attrs: sattr3 });
export const mkdirRes = createRes;

export const symlinkArgs = struct({ where: diropargs3, attrs: sattr3, path: nfspath3 });
export const symlinkRes = createRes;

export type MknodWhat =
  | { type: 3 | 4; attrs: Sattr3; spec: { major: number; minor: number } }
  | { type: 6 | 7; attrs: Sattr3 }
  | { type: 1 | 2 | 5 };
export const mknodWhat: Codec<MknodWhat> = {
  enc(w, v) {
    w.u32(v.type);
    if (v.type === 3 || v.type === 4) {
      sattr3.enc(w, v.attrs);
      specdata3.enc(w, v.spec);
    } else if (v.type === 6 || v.type === 7) sattr3.enc(w, v.attrs);
  },
  dec(r) {
    const type = r.u32();
    if (type === 3 || type === 4) return { type, attrs: sattr3.dec(r), spec: specdata3.dec(r) };
    if (type === 6 || type === 7) return { type, attrs: sattr3.dec(r) };
    if (type === 1 || type === 2 || type === 5) return { type };
    throw new DecodeError('ERR_NFS3_FTYPE', `ftype3 ${type}`);
  },
};
export const mknodArgs = struct({ where: diropargs3, what: mknodWhat });
export const mknodRes = createRes;

export const removeArgs = diropargs3;
export const removeRes = res(dirWccOnly, dirWccOnly);
export const rmdirArgs = diropargs3;
export const rmdirRes = removeRes;

export const renameArgs = struct({ from: diropargs3, to: diropargs3 });
const renameWcc = struct({ fromWcc: wccData, toWcc: wccData });
export const renameRes = res(renameWcc, renameWcc);

export const linkArgs = struct({ fh: fh3, link: diropargs3 });
const linkBody = struct({ attr: postOpAttr, dirWcc: wccData });
export const linkRes = res(linkBody, linkBody);

export const readdirArgs = struct({ dir: fh3, cookie: u64big, verf: verf8, count: u32 });
export const entry3 = struct({ fileid: u64, name: filename3, cookie: u64big });
export type Entry3 = CodecType<typeof entry3>;
export const readdirRes = res(
  struct({ dirAttr: postOpAttr, verf: verf8, entries: list(entry3, nfs3Limits.dirEntriesWireMax), eof: bool }),
  struct({ dirAttr: postOpAttr }),
);

export const readdirplusArgs = struct({ dir: fh3, cookie: u64big, verf: verf8, dircount: u32, maxcount: u32 });
export const entryplus3 = struct({ fileid: u64, name: filename3, cookie: u64big, attr: postOpAttr, fh: postOpFh3 });
export type Entryplus3 = CodecType<typeof entryplus3>;
export const readdirplusRes = res(
  struct({ dirAttr: postOpAttr, verf: verf8, entries: list(entryplus3, nfs3Limits.dirEntriesWireMax), eof: bool }),
  struct({ dirAttr: postOpAttr }),
);

export const fsstatArgs = struct({ fh: fh3 });
export const fsstatRes = res(
  struct({ attr: postOpAttr, tbytes: u64, fbytes: u64, abytes: u64, tfiles: u64, ffiles: u64, afiles: u64, invarsec: u32 }),
  attrOnly,
);

export const fsinfoArgs = struct({ fh: fh3 });
export const fsinfoRes = res(
  struct({
    attr: postOpAttr,
    rtmax: u32,
    rtpref: u32,
    rtmult: u32,
    wtmax: u32,
    wtpref: u32,
    wtmult: u32,
    dtpref: u32,
    maxfilesize: u64,
    timeDelta: nfstime3,
    properties: u32,
  }),
  attrOnly,
);

export const pathconfArgs = struct({ fh: fh3 });
export const pathconfRes = res(
  struct({
    attr: postOpAttr,
    linkmax: u32,
    nameMax: u32,
    noTrunc: bool,
    chownRestricted: bool,
    caseInsensitive: bool,
    casePreserving: bool,
  }),
  attrOnly,
);

export const commitArgs = struct({ fh: fh3, offset: u64, count: u32 });
export const commitRes = res(struct({ wcc: wccData, verf: verf8 }), wccOnly);

/** Argument and result codecs per procedure number, for generic dispatch and tests. */
export const nfs3Codecs = [
  { args: xvoid, res: xvoid },
  { args: getattrArgs, res: getattrRes },
  { args: setattrArgs, res: setattrRes },
  { args: lookupArgs, res: lookupRes },
  { args: accessArgs, res: accessRes },
  { args: readlinkArgs, res: readlinkRes },
  { args: readArgs, res: readRes },
  { args: writeArgs, res: writeRes },
  { args: createArgs, res: createRes },
  { args: mkdirArgs, res: mkdirRes },
  { args: symlinkArgs, res: symlinkRes },
  { args: mknodArgs, res: mknodRes },
  { args: removeArgs, res: removeRes },
  { args: rmdirArgs, res: rmdirRes },
  { args: renameArgs, res: renameRes },
  { args: linkArgs, res: linkRes },
  { args: readdirArgs, res: readdirRes },
  { args: readdirplusArgs, res: readdirplusRes },
  { args: fsstatArgs, res: fsstatRes },
  { args: fsinfoArgs, res: fsinfoRes },
  { args: pathconfArgs, res: pathconfRes },
  { args: commitArgs, res: commitRes },
] as const;

/** Encoded size of an entry3 in a READDIR reply (value-follows bool included). */
export function entry3Bytes(nameBytes: number): number {
  return 4 + 8 + 4 + ((nameBytes + 3) & ~3) + 8;
}

/** Bytes of a post_op_attr that is present. */
export const POST_OP_ATTR_BYTES = 4 + 84;

export type { XdrReader, XdrWriter };

/** The value type of a codec (re-exported for the service's result types). */
export type CodecTypeOf<C> = CodecType<C>;

/** A codec for a void result (UMNT replies). */
export const xvoidCodec = xvoid;
