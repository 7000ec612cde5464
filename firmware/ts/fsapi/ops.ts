// The file-system operation set: the contract between the NFS service (nfs/), the change
// log (nvlog/, which stores change descriptors) and the file systems (storage/fs, and the
// reference model fsapi/memfs.ts).
//
// A *change descriptor* (`ChangeOp`) carries everything needed to apply a change
// deterministically on either blade: pre-assigned inode numbers and generations, the
// timestamp to set, the exclusive-create verifier. Applying the same descriptors in the
// same order to the same consistency point gives the same file system, byte for byte.

/** File types, numbered as NFSv3 ftype3. */
export const FileType = { REG: 1, DIR: 2, BLK: 3, CHR: 4, LNK: 5, SOCK: 6, FIFO: 7 } as const;
export type FileType = (typeof FileType)[keyof typeof FileType];

/** Status codes, numbered as NFSv3 nfsstat3, so the NFS layer passes them through. */
export const FsStatus = {
  OK: 0,
  PERM: 1,
  NOENT: 2,
  IO: 5,
  NXIO: 6,
  ACCES: 13,
  EXIST: 17,
  XDEV: 18,
  NODEV: 19,
  NOTDIR: 20,
  ISDIR: 21,
  INVAL: 22,
  FBIG: 27,
  NOSPC: 28,
  ROFS: 30,
  MLINK: 31,
  NAMETOOLONG: 63,
  NOTEMPTY: 66,
  DQUOT: 69,
  STALE: 70,
  BADHANDLE: 10001,
  NOT_SYNC: 10002,
  BAD_COOKIE: 10003,
  NOTSUPP: 10004,
  TOOSMALL: 10005,
  SERVERFAULT: 10006,
  BADTYPE: 10007,
  JUKEBOX: 10008,
} as const;
export type FsStatus = (typeof FsStatus)[keyof typeof FsStatus];

/** A point in time: seconds and nanoseconds since the Unix epoch (NFSv3 nfstime3). */
export interface Time {
  sec: number;
  nsec: number;
}

/** Inode number and generation: with the fsid, the identity a file handle carries. */
export interface InodeRef {
  ino: number;
  gen: number;
}

export interface Attr {
  type: FileType;
  /** Permission and set-id bits (07777); the type is in `type`. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  /** Bytes of storage in use. */
  used: number;
  rdev: { major: number; minor: number };
  ino: number;
  gen: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
}

/** The attributes NFSv3 weak cache consistency reports before an operation. */
export interface WccAttr {
  size: number;
  mtime: Time;
  ctime: Time;
}

/** Attributes a change may set; `undefined` leaves one unchanged. Times are already resolved (no "server time"). */
export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Time;
  mtime?: Time;
}

/** Who asked, for permission checks done while applying (AUTH_SYS credentials, after squashing). */
export interface Cred {
  uid: number;
  gid: number;
  gids: number[];
}

/** Fields common to every change descriptor. */
export interface ChangeBase {
  /** The time this change happened (ctime/mtime it sets), assigned when the descriptor was built. */
  time: Time;
  cred: Cred;
}

export type CreateMode = 'unchecked' | 'guarded' | 'exclusive';

export type ChangeOp =
  | (ChangeBase & { op: 'setattr'; target: InodeRef; attrs: SetAttr; guardCtime?: Time })
  | (ChangeBase & { op: 'write'; target: InodeRef; offset: number; data: Uint8Array })
  | (ChangeBase & {
      op: 'create';
      dir: InodeRef;
      name: string;
      how: CreateMode;
      attrs: SetAttr;
      /** 8-byte verifier of an exclusive create (stored in the inode's atime/mtime as Linux does). */
      verifier?: Uint8Array;
      newIno: number;
      newGen: number;
    })
  | (ChangeBase & { op: 'mkdir'; dir: InodeRef; name: string; attrs: SetAttr; newIno: number; newGen: number })
  | (ChangeBase & { op: 'symlink'; dir: InodeRef; name: string; target: string; attrs: SetAttr; newIno: number; newGen: number })
  | (ChangeBase & {
      op: 'mknod';
      dir: InodeRef;
      name: string;
      type: typeof FileType.BLK | typeof FileType.CHR | typeof FileType.SOCK | typeof FileType.FIFO;
      attrs: SetAttr;
      rdev: { major: number; minor: number };
      newIno: number;
      newGen: number;
    })
  | (ChangeBase & { op: 'remove'; dir: InodeRef; name: string })
  | (ChangeBase & { op: 'rmdir'; dir: InodeRef; name: string })
  | (ChangeBase & { op: 'rename'; fromDir: InodeRef; fromName: string; toDir: InodeRef; toName: string })
  | (ChangeBase & { op: 'link'; target: InodeRef; dir: InodeRef; name: string });

export type ChangeOpName = ChangeOp['op'];

/** Result of applying a change: the data an NFSv3 reply needs (weak cache consistency). */
export type ChangeResult =
  | { op: 'setattr'; pre: WccAttr; post: Attr }
  | { op: 'write'; pre: WccAttr; post: Attr; count: number }
  | { op: 'create' | 'mkdir' | 'symlink' | 'mknod'; obj: Attr; dirPre: WccAttr; dirPost: Attr }
  | { op: 'remove' | 'rmdir'; dirPre: WccAttr; dirPost: Attr }
  | { op: 'rename'; fromPre: WccAttr; fromPost: Attr; toPre: WccAttr; toPost: Attr }
  | { op: 'link'; obj: Attr; dirPre: WccAttr; dirPost: Attr };

/**
 * A failed operation. `status` is the NFSv3 status; for a failed change the directory's
 * weak cache consistency data is attached when the file system had it (dirPre/dirPost).
 * A change that fails changes nothing (and is still deterministic: replay fails the same way).
 */
export class FsError extends Error {
  readonly status: FsStatus;
  readonly code: string;
  readonly dirPre: WccAttr | undefined;
  readonly dirPost: Attr | undefined;
  constructor(status: FsStatus, message?: string, wcc?: { dirPre?: WccAttr; dirPost?: Attr }) {
    super(message ?? `file system error ${status}`);
    this.name = 'FsError';
    this.status = status;
    this.code = `ERR_FS_${statusName(status)}`;
    this.dirPre = wcc?.dirPre;
    this.dirPost = wcc?.dirPost;
  }
}

export function statusName(status: number): string {
  for (const [k, v] of Object.entries(FsStatus)) if (v === status) return k;
  return String(status);
}

export interface DirEntry {
  name: string;
  ino: number;
  /** Opaque, stable cookie: resuming readdir after it returns the entries after this one, across CPs and takeover. */
  cookie: bigint;
}

export interface FsStat {
  totalBytes: number;
  freeBytes: number;
  availBytes: number;
  totalFiles: number;
  freeFiles: number;
  availFiles: number;
}

export const fsLimits = {
  nameBytesMax: 255,
  pathBytesMax: 4095,
  linkCountMax: 65000,
  fileSizeBytesMax: 2 ** 44,
  /** A write descriptor carries at most this much data. */
  writeBytesMax: 1024 * 1024,
} as const;

/**
 * A file system: queries (asynchronous, they may read disks) plus `apply` of change
 * descriptors. `apply` calls are serialized by the caller in log order.
 * Queries name files by `InodeRef`; a wrong generation or a freed inode is `STALE`.
 */
export interface FileSystem {
  /** The volume's file-system id (stable across CPs, reboot, takeover). */
  readonly fsid: bigint;
  readonly rootIno: InodeRef;
  getattr(ref: InodeRef): Promise<Attr>;
  lookup(dir: InodeRef, name: string): Promise<Attr>;
  read(ref: InodeRef, offset: number, count: number): Promise<{ data: Uint8Array; eof: boolean }>;
  /**
   * Optional: `read` without copying, for a reply that sends the data where it lies. `parts`
   * are consecutive pieces of the data (`length` bytes in all), views of the file system's own
   * buffers that nobody writes to afterwards (a later change of the file goes elsewhere), so
   * they may be kept until sent. `check` runs first with the file's attributes (which are
   * returned too), and what it throws is the answer: a READ checks permission there without
   * a GETATTR of its own.
   */
  readParts?(
    ref: InodeRef,
    offset: number,
    count: number,
    check?: (attr: Attr) => void,
  ): Promise<{ parts: Uint8Array[]; length: number; eof: boolean; attr: Attr }>;
  readlink(ref: InodeRef): Promise<string>;
  /**
   * Up to `maxEntries` entries after `cookie` (0n: from the start; "." and ".." included
   * first). `eof` is true when no entries follow. An unknown cookie is `BAD_COOKIE`.
   */
  readdir(dir: InodeRef, cookie: bigint, maxEntries: number): Promise<{ entries: DirEntry[]; eof: boolean }>;
  fsstat(): Promise<FsStat>;
  /**
   * Reserves an inode number and a generation for a change descriptor about to be built.
   * Numbers are never handed out twice, even if the descriptor is never applied.
   */
  allocInode(): InodeRef;
  /** Applies one change. Throws FsError for an operating error (the change then did nothing). */
  apply(change: ChangeOp): Promise<ChangeResult>;
}
