// Round-trip and corruption tests of the file system's on-disk records: superblock, block
// header, inode record, directory block, map blocks (docs/formats.md, "File system").
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DecodeError } from '../../firmware/ts/core/errors.ts';
import { FileType } from '../../firmware/ts/fsapi/ops.ts';
import { Bitmap } from '../../firmware/ts/storage/fs/bitmap.ts';
import { FreeSpaceTree, initDirBlock, insertRecord, largestFree, parseDirBlock, removeRecord } from '../../firmware/ts/storage/fs/dir.ts';
import {
  BlockType,
  FsCorruptError,
  type Inode,
  type Superblock,
  SuperblockErrorCode,
  checkBlock,
  decodeInode,
  decodeSuperblock,
  encodeInode,
  encodeSuperblock,
  freeInode,
  mapBitsPerBlock,
  sealBlock,
  superblockBytesUsed,
  verifyBlock,
} from '../../firmware/ts/storage/fs/format.ts';

const sb: Superblock = {
  cpNumber: 12345,
  fsid: 0xfeedfacecafen,
  blockCount: 1 << 20,
  stripeBlocks: 48,
  inodeCountMax: 65536,
  inodeFileRoot: 9999,
  inodeFileHeight: 2,
  genCounter: 77,
  usedBlocks: 5000,
  usedInodes: 300,
  applied: new Map([
    [0, 10n],
    [1, 2n ** 60n],
  ]),
};

describe('file system formats', () => {
  it('superblock round-trips, and any flipped byte in its checksummed range is rejected', () => {
    const b = encodeSuperblock(sb);
    expect(decodeSuperblock(b)).toEqual(sb);
    for (let i = 0; i < superblockBytesUsed; i++) {
      const c = b.slice();
      c[i] = (c[i] as number) ^ 0x10;
      expect(() => decodeSuperblock(c)).toThrow(DecodeError);
    }
    const wrongMagic = b.slice();
    wrongMagic[0] = 0;
    expect(() => decodeSuperblock(wrongMagic)).toThrowError(expect.objectContaining({ code: SuperblockErrorCode.magic }) as Error);
    expect(() => decodeSuperblock(new Uint8Array(100))).toThrowError(expect.objectContaining({ code: SuperblockErrorCode.length }) as Error);
  });

  it('a sealed block verifies only as the block its pointer promised', () => {
    const b = new Uint8Array(4096).map((_, i) => i & 0xff);
    const id = { type: BlockType.indirect, owner: 42, level: 1, index: 7 };
    sealBlock(b, id, 3);
    expect(checkBlock(b, id)).toBeUndefined();
    expect(checkBlock(b, { ...id, index: 8 })?.code).toBe('ERR_FS_MISPLACED_BLOCK');
    expect(checkBlock(b, { ...id, owner: 43 })?.code).toBe('ERR_FS_MISPLACED_BLOCK');
    expect(checkBlock(b, { ...id, type: BlockType.dir })?.code).toBe('ERR_FS_MISPLACED_BLOCK');
    const flipped = b.slice();
    flipped[4000] = (flipped[4000] as number) ^ 1;
    expect(checkBlock(flipped, id)?.code).toBe('ERR_FS_BAD_CRC');
    expect(() => verifyBlock(flipped, 555, id)).toThrow(FsCorruptError);
    expect(checkBlock(new Uint8Array(4096), id)?.code).toBe('ERR_FS_BAD_MAGIC');
  });

  it('inode records round-trip in every slot without touching their neighbours', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 2 ** 50 }), fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), (ino, size, sec) => {
        const block = new Uint8Array(4096);
        const n: Inode = {
          ...freeInode(ino, 9),
          type: FileType.REG,
          mode: 0o4755,
          nlink: 3,
          uid: 4294967295,
          gid: 20,
          size,
          rdevMajor: 8,
          rdevMinor: 1,
          atime: { sec, nsec: 999_999_999 },
          mtime: { sec: 1, nsec: 2 },
          ctime: { sec: 3, nsec: 4 },
          root: 123456,
          height: 3,
          blocks: 77,
          parent: 5,
        };
        encodeInode(block, n);
        const neighbour = { ...freeInode(ino + 1, 4), type: FileType.DIR as FileType };
        encodeInode(block, neighbour);
        expect(decodeInode(block, ino, 0)).toEqual(n);
        expect(decodeInode(block, ino + 1, 0)).toEqual(neighbour);
      }),
      { numRuns: 200 },
    );
  });

  it('an inode record with an impossible field is reported as corrupt', () => {
    const block = new Uint8Array(4096);
    encodeInode(block, { ...freeInode(3, 1), type: FileType.REG });
    block[32 + 3 * 128] = 9;
    expect(() => decodeInode(block, 3, 77)).toThrow(FsCorruptError);
  });

  it('directory blocks: random inserts and removals keep the records tiling the block', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.string({ minLength: 1, maxLength: 60 })), { maxLength: 300 }), (ops) => {
        const block = new Uint8Array(4096);
        initDirBlock(block);
        const live = new Map<string, number>();
        let ino = 10;
        for (const [add, raw] of ops) {
          const name = raw.replace(/[/\0]/g, '_');
          if (name === '.' || name === '..') continue;
          if (add && !live.has(name)) {
            const off = insertRecord(block, new TextEncoder().encode(name), ino++, FileType.REG);
            if (off >= 0) live.set(name, off);
            else expect(largestFree(block)).toBeLessThan(8 + new TextEncoder().encode(name).length + 4);
          } else if (!add && live.size > 0) {
            const [victim, off] = [...live][0] as [string, number];
            removeRecord(block, off);
            live.delete(victim);
          }
          const seen = new Map<string, number>();
          expect(parseDirBlock(block, (r) => (r.ino !== 0 ? seen.set(r.name, r.off) : undefined))).toBeUndefined();
          expect(seen).toEqual(live);
        }
      }),
      { numRuns: 100 },
    );
  });

  it('a directory block whose records do not tile the block is rejected', () => {
    const block = new Uint8Array(4096);
    initDirBlock(block);
    insertRecord(block, new TextEncoder().encode('abc'), 5, FileType.REG);
    block[32] = 6; // recLen of the first record no longer a multiple of 4
    expect(parseDirBlock(block)).toMatch(/bad length/);
  });

  it('FreeSpaceTree finds the lowest block with room', () => {
    const t = new FreeSpaceTree();
    const values = [10, 300, 40, 4064, 300];
    values.forEach((v, i) => t.set(i, v));
    expect(t.firstAtLeast(300)).toBe(1);
    expect(t.firstAtLeast(301)).toBe(3);
    expect(t.firstAtLeast(5000)).toBe(-1);
    for (let i = 5; i < 3000; i++) t.set(i, 8);
    t.set(2999, 999);
    t.set(3, 0);
    expect(t.firstAtLeast(500)).toBe(2999);
  });

  it('map blocks round-trip and a bit past the end is refused', () => {
    const m = new Bitmap(mapBitsPerBlock + 100);
    for (const i of [0, 1, 31, 32, 4095, mapBitsPerBlock - 1, mapBitsPerBlock, mapBitsPerBlock + 99]) m.set(i);
    const back = new Bitmap(m.size);
    for (const k of [0, 1]) {
      const block = new Uint8Array(4096);
      m.writeSlice(block, k);
      expect(back.readSlice(block, k)).toBe(true);
    }
    expect(back.words).toEqual(m.words);
    expect(back.count).toBe(m.count);
    const block = new Uint8Array(4096);
    m.writeSlice(block, 1);
    block[32 + 20] = 0xff; // bits beyond size
    expect(new Bitmap(m.size).readSlice(block, 1)).toBe(false);
  });
});
