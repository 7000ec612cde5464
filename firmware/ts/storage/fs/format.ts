// On-disk format of the copy-on-write file system: block header, superblock, inode record
// and the fixed layout of a volume. The format is described in docs/formats.md ("File system").
import { crc32c } from '../../core/crc32c.ts';
import { dataView } from '../../core/bytes.ts';
import { DecodeError } from '../../core/errors.ts';
import { FsError, FsStatus, type FileType, type Time } from '../../fsapi/ops.ts';

export const fsBlockBytes = 4096;
/** Every metadata block (indirect, inode, directory, map) starts with this header. */
export const blockHeaderBytes = 32;
export const blockMagic = 0x5442_4b31; // "TBK1"
export const superblockMagic = 0x5442_5342; // "TBSB"
export const formatVersion = 1;

/** Block pointers are 32-bit block numbers: an indirect block holds this many. */
export const indirectFanout = (fsBlockBytes - blockHeaderBytes) / 4; // 1016
export const inodeRecordBytes = 128;
export const inodesPerBlock = Math.floor((fsBlockBytes - blockHeaderBytes) / inodeRecordBytes); // 31
/** Bits of a map block (block map and inode map): the payload after the header. */
export const mapBitsPerBlock = (fsBlockBytes - blockHeaderBytes) * 8; // 32512
/** Origins (blades) whose last applied log sequence a superblock can record. */
export const originCountMax = 8;
export const superblockBytesUsed = 80 + originCountMax * 16;

/** The root directory (generation 1), as in the reference model fsapi/memfs.ts. */
export const rootIno = 1;
/** Inode 0 is the inode file itself: its root is in the superblock, never in a directory. */
export const inodeFileIno = 0;
export const firstUserIno = 2;

export const BlockType = {
  indirect: 2,
  inodes: 3,
  dir: 4,
  blockMap: 5,
  inodeMap: 6,
} as const;
export type BlockType = (typeof BlockType)[keyof typeof BlockType];

/** Stable reasons for a rejected on-disk block (in `FsCorruptError.reason` and fsck problems). */
export const FsCorruptReason = {
  badMagic: 'ERR_FS_BAD_MAGIC',
  badVersion: 'ERR_FS_BAD_VERSION',
  badCrc: 'ERR_FS_BAD_CRC',
  /** A valid block that is not the block the pointer promised (wrong type, owner, level or index). */
  misplaced: 'ERR_FS_MISPLACED_BLOCK',
  badRecord: 'ERR_FS_BAD_RECORD',
  badPointer: 'ERR_FS_BAD_POINTER',
} as const;

/** Stable codes of file-system errors that are not NFS statuses (mount, CP, misuse). */
export const CowFsErrorCode = {
  noSuperblock: 'ERR_FS_NO_VALID_SUPERBLOCK',
  geometry: 'ERR_FS_GEOMETRY_MISMATCH',
  cpNoSpace: 'ERR_FS_CP_NO_SPACE',
  failed: 'ERR_FS_FAILED',
  closed: 'ERR_FS_CLOSED',
  seqOrder: 'ERR_FS_SEQ_ORDER',
  tooSmall: 'ERR_FS_VOLUME_TOO_SMALL',
} as const;

/**
 * A block failed its checksum or identity check. It is an NFS `IO` error for the caller;
 * `reason` and `block` say what was wrong and where, for logs and fsck.
 */
export class FsCorruptError extends FsError {
  readonly reason: string;
  readonly block: number;
  constructor(reason: string, block: number, message: string) {
    super(FsStatus.IO, `${reason} at block ${block}: ${message}`);
    this.name = 'FsCorruptError';
    this.reason = reason;
    this.block = block;
  }
}

export interface BlockIdentity {
  type: BlockType;
  owner: number;
  level: number;
  index: number;
}

function blockCrc(block: Uint8Array): number {
  return crc32c(block.subarray(blockHeaderBytes), crc32c(block.subarray(0, 28)));
}

/** Fills the header of `block` (in place) and seals it with its CRC32C. */
export function sealBlock(block: Uint8Array, id: BlockIdentity, cp: number): void {
  const v = dataView(block);
  v.setUint32(0, blockMagic, true);
  v.setUint8(4, formatVersion);
  v.setUint8(5, id.type);
  v.setUint16(6, 0, true);
  v.setUint32(8, id.owner >>> 0, true);
  v.setUint32(12, id.index >>> 0, true);
  v.setUint8(16, id.level);
  v.setUint8(17, 0);
  v.setUint16(18, 0, true);
  v.setUint32(20, cp >>> 0, true);
  v.setUint32(24, fsBlockBytes - blockHeaderBytes, true);
  v.setUint32(28, blockCrc(block), true);
}

/** The CP number recorded in a sealed block's header. */
export function blockCp(block: Uint8Array): number {
  return dataView(block).getUint32(20, true);
}

/** Checks magic, version, CRC and identity; throws FsCorruptError naming what was wrong. */
export function verifyBlock(block: Uint8Array, addr: number, id: BlockIdentity): void {
  const reason = checkBlock(block, id);
  if (reason !== undefined) throw new FsCorruptError(reason.code, addr, reason.message);
}

export function checkBlock(block: Uint8Array, id: BlockIdentity): { code: string; message: string } | undefined {
  if (block.length !== fsBlockBytes) return { code: FsCorruptReason.badRecord, message: `block of ${block.length} bytes` };
  const v = dataView(block);
  if (v.getUint32(0, true) !== blockMagic) return { code: FsCorruptReason.badMagic, message: 'bad magic' };
  if (v.getUint8(4) !== formatVersion) return { code: FsCorruptReason.badVersion, message: `version ${v.getUint8(4)}` };
  if (v.getUint32(28, true) !== blockCrc(block)) return { code: FsCorruptReason.badCrc, message: 'checksum mismatch' };
  const type = v.getUint8(5);
  const owner = v.getUint32(8, true);
  const index = v.getUint32(12, true);
  const level = v.getUint8(16);
  if (type !== id.type || owner !== id.owner >>> 0 || index !== id.index >>> 0 || level !== id.level) {
    return {
      code: FsCorruptReason.misplaced,
      message: `expected type ${id.type} owner ${id.owner} level ${id.level} index ${id.index}, found type ${type} owner ${owner} level ${level} index ${index}`,
    };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Volume layout: [superblock slot 0 stripe][slot 1 stripe][map region 0][map region 1][data]

export interface FsGeometry {
  blockCount: number;
  stripeBlocks: number;
  inodeCountMax: number;
  blockMapBlocks: number;
  inodeMapBlocks: number;
  /** Stripes of one map region (block map then inode map). */
  regionStripes: number;
  /** First block of map region 0 and 1. */
  regionStart: [number, number];
  /** First block of the data area (stripe aligned). */
  dataStart: number;
}

export function makeGeometry(blockCount: number, stripeBlocks: number, inodeCountMax: number): FsGeometry {
  const blockMapBlocks = Math.ceil(blockCount / mapBitsPerBlock);
  const inodeMapBlocks = Math.ceil(inodeCountMax / mapBitsPerBlock);
  const regionStripes = Math.ceil((blockMapBlocks + inodeMapBlocks) / stripeBlocks);
  const r0 = 2 * stripeBlocks;
  const r1 = r0 + regionStripes * stripeBlocks;
  return {
    blockCount,
    stripeBlocks,
    inodeCountMax,
    blockMapBlocks,
    inodeMapBlocks,
    regionStripes,
    regionStart: [r0, r1],
    dataStart: r1 + regionStripes * stripeBlocks,
  };
}

// ---------------------------------------------------------------------------------------
// Superblock

export interface Superblock {
  cpNumber: number;
  fsid: bigint;
  blockCount: number;
  stripeBlocks: number;
  inodeCountMax: number;
  inodeFileRoot: number;
  inodeFileHeight: number;
  genCounter: number;
  usedBlocks: number;
  usedInodes: number;
  /** Last applied log sequence per origin (blade), for exactly the changes inside this CP. */
  applied: Map<number, bigint>;
}

export const SuperblockErrorCode = {
  magic: 'ERR_FS_SUPERBLOCK_MAGIC',
  version: 'ERR_FS_SUPERBLOCK_VERSION',
  length: 'ERR_FS_SUPERBLOCK_LENGTH',
  crc: 'ERR_FS_SUPERBLOCK_CRC',
  field: 'ERR_FS_SUPERBLOCK_FIELD',
} as const;

export function encodeSuperblock(sb: Superblock): Uint8Array {
  if (sb.applied.size > originCountMax) throw new RangeError(`superblock: at most ${originCountMax} origins`);
  const b = new Uint8Array(fsBlockBytes);
  const v = dataView(b);
  v.setUint32(0, superblockMagic, true);
  v.setUint16(4, formatVersion, true);
  v.setUint16(6, 0, true);
  v.setUint32(8, superblockBytesUsed, true);
  v.setBigUint64(16, BigInt(sb.cpNumber), true);
  v.setBigUint64(24, sb.fsid, true);
  v.setUint32(32, fsBlockBytes, true);
  v.setUint32(36, sb.blockCount, true);
  v.setUint32(40, sb.stripeBlocks, true);
  v.setUint32(44, sb.inodeCountMax, true);
  v.setUint32(48, sb.inodeFileRoot, true);
  v.setUint8(52, sb.inodeFileHeight);
  v.setUint16(54, sb.applied.size, true);
  v.setUint32(56, sb.genCounter >>> 0, true);
  v.setUint32(60, rootIno, true);
  v.setUint32(64, sb.usedBlocks, true);
  v.setUint32(68, sb.usedInodes, true);
  let off = 80;
  for (const [origin, seq] of [...sb.applied].sort((x, y) => x[0] - y[0])) {
    v.setUint32(off, origin, true);
    v.setBigUint64(off + 8, seq, true);
    off += 16;
  }
  v.setUint32(12, superblockCrc(b), true);
  return b;
}

function superblockCrc(b: Uint8Array): number {
  return crc32c(b.subarray(16, superblockBytesUsed), crc32c(b.subarray(0, 12)));
}

export function decodeSuperblock(b: Uint8Array): Superblock {
  if (b.length < fsBlockBytes) throw new DecodeError(SuperblockErrorCode.length, `superblock: ${b.length} bytes`);
  const v = dataView(b);
  if (v.getUint32(0, true) !== superblockMagic) throw new DecodeError(SuperblockErrorCode.magic, 'superblock: bad magic');
  if (v.getUint16(4, true) !== formatVersion) throw new DecodeError(SuperblockErrorCode.version, `superblock: version ${v.getUint16(4, true)}`);
  if (v.getUint32(8, true) !== superblockBytesUsed) throw new DecodeError(SuperblockErrorCode.length, `superblock: length ${v.getUint32(8, true)}`);
  if (v.getUint32(12, true) !== superblockCrc(b)) throw new DecodeError(SuperblockErrorCode.crc, 'superblock: checksum mismatch');
  const originCount = v.getUint16(54, true);
  if (v.getUint32(32, true) !== fsBlockBytes || originCount > originCountMax || v.getUint8(52) > 6) {
    throw new DecodeError(SuperblockErrorCode.field, 'superblock: field out of range');
  }
  const applied = new Map<number, bigint>();
  for (let i = 0; i < originCount; i++) applied.set(v.getUint32(80 + i * 16, true), v.getBigUint64(88 + i * 16, true));
  const cp = v.getBigUint64(16, true);
  if (cp > BigInt(Number.MAX_SAFE_INTEGER)) throw new DecodeError(SuperblockErrorCode.field, 'superblock: CP number too large');
  return {
    cpNumber: Number(cp),
    fsid: v.getBigUint64(24, true),
    blockCount: v.getUint32(36, true),
    stripeBlocks: v.getUint32(40, true),
    inodeCountMax: v.getUint32(44, true),
    inodeFileRoot: v.getUint32(48, true),
    inodeFileHeight: v.getUint8(52),
    genCounter: v.getUint32(56, true),
    usedBlocks: v.getUint32(64, true),
    usedInodes: v.getUint32(68, true),
    applied,
  };
}

// ---------------------------------------------------------------------------------------
// Inode record (128 bytes, `inodesPerBlock` per inode-file block after the header)

export interface Inode {
  ino: number;
  /** 0 = free. */
  type: FileType | 0;
  gen: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
  /** Block-map root (0: none) and height (0: the root is data block 0). */
  root: number;
  height: number;
  /** Data and indirect blocks the file owns. */
  blocks: number;
  /** Directories: the parent directory (".."). */
  parent: number;
}

export function freeInode(ino: number, gen = 0): Inode {
  const t = { sec: 0, nsec: 0 };
  return {
    ino, type: 0, gen, mode: 0, nlink: 0, uid: 0, gid: 0, size: 0, rdevMajor: 0, rdevMinor: 0,
    atime: t, mtime: { ...t }, ctime: { ...t }, root: 0, height: 0, blocks: 0, parent: 0,
  };
}

export function inodeOffset(ino: number): number {
  return blockHeaderBytes + (ino % inodesPerBlock) * inodeRecordBytes;
}

export function encodeInode(block: Uint8Array, n: Inode): void {
  const off = inodeOffset(n.ino);
  const v = dataView(block);
  block.fill(0, off, off + inodeRecordBytes);
  v.setUint8(off, n.type);
  v.setUint16(off + 2, n.mode, true);
  v.setUint32(off + 4, n.nlink, true);
  v.setUint32(off + 8, n.uid >>> 0, true);
  v.setUint32(off + 12, n.gid >>> 0, true);
  v.setFloat64(off + 16, n.size, true);
  v.setUint32(off + 24, n.gen >>> 0, true);
  v.setUint32(off + 28, n.rdevMajor >>> 0, true);
  v.setUint32(off + 32, n.rdevMinor >>> 0, true);
  setTime(v, off + 36, n.atime);
  setTime(v, off + 48, n.mtime);
  setTime(v, off + 60, n.ctime);
  v.setUint32(off + 72, n.root, true);
  v.setUint8(off + 76, n.height);
  v.setFloat64(off + 80, n.blocks, true);
  v.setUint32(off + 88, n.parent, true);
}

/** Decodes one inode slot; a record with impossible fields is reported as corrupt. */
export function decodeInode(block: Uint8Array, ino: number, addr: number): Inode {
  const off = inodeOffset(ino);
  const v = dataView(block);
  const type = v.getUint8(off);
  const n: Inode = {
    ino,
    type: type as FileType | 0,
    mode: v.getUint16(off + 2, true),
    nlink: v.getUint32(off + 4, true),
    uid: v.getUint32(off + 8, true),
    gid: v.getUint32(off + 12, true),
    size: v.getFloat64(off + 16, true),
    gen: v.getUint32(off + 24, true),
    rdevMajor: v.getUint32(off + 28, true),
    rdevMinor: v.getUint32(off + 32, true),
    atime: getTime(v, off + 36),
    mtime: getTime(v, off + 48),
    ctime: getTime(v, off + 60),
    root: v.getUint32(off + 72, true),
    height: v.getUint8(off + 76),
    blocks: v.getFloat64(off + 80, true),
    parent: v.getUint32(off + 88, true),
  };
  if (type > 7 || !Number.isSafeInteger(n.size) || n.size < 0 || n.height > 6 || !Number.isSafeInteger(n.blocks) || n.blocks < 0) {
    throw new FsCorruptError(FsCorruptReason.badRecord, addr, `inode ${ino}: impossible field`);
  }
  return n;
}

function setTime(v: DataView, off: number, t: Time): void {
  v.setBigInt64(off, BigInt(t.sec), true);
  v.setUint32(off + 8, t.nsec >>> 0, true);
}

function getTime(v: DataView, off: number): Time {
  return { sec: Number(v.getBigInt64(off, true)), nsec: v.getUint32(off + 8, true) };
}

/** Blocks a tree of `height` levels can address. */
export function treeCapacity(height: number): number {
  return indirectFanout ** height;
}

/**
 * Pointer `slot` of an indirect block (little-endian u32). Byte arithmetic rather than a
 * DataView: a 1 MiB WRITE reads or writes 256 pointers, and a DataView made per call was most
 * of their cost (profiled on the blade: ~0.05 ms per MiB written, and garbage for the GC).
 */
export function readPtr(block: Uint8Array, slot: number): number {
  const o = blockHeaderBytes + slot * 4;
  if (slot < 0 || o + 4 > block.length) throw new RangeError(`readPtr: slot ${slot} outside the block`);
  return ((block[o] as number) | ((block[o + 1] as number) << 8) | ((block[o + 2] as number) << 16) | ((block[o + 3] as number) << 24)) >>> 0;
}

export function writePtr(block: Uint8Array, slot: number, addr: number): void {
  const o = blockHeaderBytes + slot * 4;
  if (slot < 0 || o + 4 > block.length) throw new RangeError(`writePtr: slot ${slot} outside the block`);
  if (!Number.isInteger(addr) || addr < 0 || addr > 0xffffffff) throw new RangeError(`writePtr: address ${addr} is not a u32`);
  block[o] = addr & 0xff;
  block[o + 1] = (addr >>> 8) & 0xff;
  block[o + 2] = (addr >>> 16) & 0xff;
  block[o + 3] = addr >>> 24;
}
