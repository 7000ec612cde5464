// Directory blocks: variable-length entry records that tile the payload of each 4 KiB block
// (ext2 style), so an entry never moves and its byte offset in the directory is its readdir
// cookie, stable across CPs, remounts and takeover. Lookups use an in-memory hash index
// built from the blocks (FreeBSD dirhash style); the blocks stay the only persistent truth.
import { dataView, utf8Decode } from '../../core/bytes.ts';
import { blockHeaderBytes, fsBlockBytes } from './format.ts';

/** recLen u16, nameLen u8, type u8, ino u32, then the name, padded to 4 bytes. */
export const dirRecordHeaderBytes = 8;
export const dirPayloadBytes = fsBlockBytes - blockHeaderBytes;

export function recordBytesFor(nameLen: number): number {
  return (dirRecordHeaderBytes + nameLen + 3) & ~3;
}

export interface DirRecord {
  /** Offset within the block. */
  off: number;
  recLen: number;
  ino: number;
  type: number;
  name: string;
}

/** Makes `block` an empty directory block: one free record covering the payload. */
export function initDirBlock(block: Uint8Array): void {
  block.fill(0);
  const v = dataView(block);
  v.setUint16(blockHeaderBytes, dirPayloadBytes, true);
}

/** Walks the records of a block; returns an error message if they do not tile the payload. */
export function parseDirBlock(block: Uint8Array, onRecord?: (r: DirRecord) => void): string | undefined {
  const v = dataView(block);
  let off = blockHeaderBytes;
  while (off < fsBlockBytes) {
    if (off + dirRecordHeaderBytes > fsBlockBytes) return `record at ${off} runs past the block`;
    const recLen = v.getUint16(off, true);
    const nameLen = v.getUint8(off + 2);
    const type = v.getUint8(off + 3);
    const ino = v.getUint32(off + 4, true);
    if (recLen < dirRecordHeaderBytes || recLen % 4 !== 0 || off + recLen > fsBlockBytes) return `record at ${off}: bad length ${recLen}`;
    let name = '';
    if (ino !== 0) {
      if (nameLen === 0 || recordBytesFor(nameLen) > recLen) return `record at ${off}: bad name length ${nameLen}`;
      try {
        name = utf8Decode(block.subarray(off + dirRecordHeaderBytes, off + dirRecordHeaderBytes + nameLen));
      } catch {
        return `record at ${off}: name is not UTF-8`;
      }
      if (name.includes('/') || name.includes('\0') || name === '.' || name === '..') return `record at ${off}: invalid name`;
      if (type < 1 || type > 7) return `record at ${off}: bad file type ${type}`;
    }
    onRecord?.({ off, recLen, ino, type, name });
    off += recLen;
  }
  return undefined;
}

/** Largest record (bytes) that `insertRecord` can place in this block (block assumed well-formed). */
export function largestFree(block: Uint8Array): number {
  const v = dataView(block);
  let best = 0;
  let off = blockHeaderBytes;
  while (off < fsBlockBytes) {
    const recLen = v.getUint16(off, true);
    if (recLen < dirRecordHeaderBytes) return best;
    const free = v.getUint32(off + 4, true) === 0 ? recLen : recLen - recordBytesFor(v.getUint8(off + 2));
    if (free > best) best = free;
    off += recLen;
  }
  return best;
}

/** Inserts an entry into the first record with room; returns its offset in the block, or -1. */
export function insertRecord(block: Uint8Array, nameBytes: Uint8Array, ino: number, type: number): number {
  const need = recordBytesFor(nameBytes.length);
  const v = dataView(block);
  let off = blockHeaderBytes;
  while (off < fsBlockBytes) {
    const recLen = v.getUint16(off, true);
    const curIno = v.getUint32(off + 4, true);
    if (curIno === 0 && recLen >= need) {
      writeRecord(block, off, recLen, nameBytes, ino, type);
      return off;
    }
    if (curIno !== 0) {
      const used = recordBytesFor(v.getUint8(off + 2));
      if (recLen - used >= need) {
        v.setUint16(off, used, true);
        writeRecord(block, off + used, recLen - used, nameBytes, ino, type);
        return off + used;
      }
    }
    off += recLen;
  }
  return -1;
}

function writeRecord(block: Uint8Array, off: number, recLen: number, nameBytes: Uint8Array, ino: number, type: number): void {
  const v = dataView(block);
  block.fill(0, off, off + recLen);
  v.setUint16(off, recLen, true);
  v.setUint8(off + 2, nameBytes.length);
  v.setUint8(off + 3, type);
  v.setUint32(off + 4, ino, true);
  block.set(nameBytes, off + dirRecordHeaderBytes);
}

/** Removes the record at `off`: merged into the previous record, or freed if it is the first. */
export function removeRecord(block: Uint8Array, off: number): void {
  const v = dataView(block);
  let prev = -1;
  let cur = blockHeaderBytes;
  while (cur < off) {
    prev = cur;
    cur += v.getUint16(cur, true);
  }
  if (cur !== off) throw new RangeError(`dir: no record at ${off}`);
  const recLen = v.getUint16(off, true);
  if (prev < 0) {
    block.fill(0, off + 2, off + recLen);
  } else {
    v.setUint16(prev, v.getUint16(prev, true) + recLen, true);
    block.fill(0, off, off + recLen);
  }
}

/** Changes the inode an existing record names (rename over an existing entry keeps its slot). */
export function retargetRecord(block: Uint8Array, off: number, ino: number, type: number): void {
  const v = dataView(block);
  v.setUint32(off + 4, ino, true);
  v.setUint8(off + 3, type);
}

const encoder = new TextEncoder();
export function utf8Len(s: string): number {
  return encoder.encode(s).length;
}

/**
 * Max-segment tree over per-block free space: finds the lowest-numbered block with room for
 * a record, in O(log n). Choosing the lowest block makes insertion a function of the
 * directory's contents only, so replay on either blade places entries identically.
 */
export class FreeSpaceTree {
  private cap = 1;
  private tree = new Int32Array(2);
  private n = 0;

  get length(): number {
    return this.n;
  }

  set(i: number, value: number): void {
    while (i >= this.cap) this.grow();
    if (i >= this.n) this.n = i + 1;
    let p = i + this.cap;
    this.tree[p] = value;
    for (p >>= 1; p >= 1; p >>= 1) this.tree[p] = Math.max(this.tree[2 * p] as number, this.tree[2 * p + 1] as number);
  }

  /** Lowest index whose value is at least `need`, or -1. */
  firstAtLeast(need: number): number {
    if ((this.tree[1] as number) < need) return -1;
    let p = 1;
    while (p < this.cap) p = (this.tree[2 * p] as number) >= need ? 2 * p : 2 * p + 1;
    const i = p - this.cap;
    return i < this.n ? i : -1;
  }

  private grow(): void {
    const old = this.tree;
    const oldCap = this.cap;
    this.cap *= 2;
    this.tree = new Int32Array(2 * this.cap);
    for (let i = 0; i < oldCap; i++) this.tree[this.cap + i] = old[oldCap + i] as number;
    for (let p = this.cap - 1; p >= 1; p--) this.tree[p] = Math.max(this.tree[2 * p] as number, this.tree[2 * p + 1] as number);
  }
}
