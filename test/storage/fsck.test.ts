// fsck finds every kind of structural damage it promises to, in blocks whose checksums are
// valid (the damage a bug, not bit rot, would do): bad entries, link counts, leaked and
// doubly used blocks, unreachable inodes, data beyond the size.
import { beforeEach, describe, expect, it } from 'vitest';
import { dataView } from '../../firmware/ts/core/bytes.ts';
import type { InodeRef } from '../../firmware/ts/fsapi/ops.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { insertRecord, removeRecord, parseDirBlock } from '../../firmware/ts/storage/fs/dir.ts';
import { FsckCode, fsck, newestSuperblock, scanCp } from '../../firmware/ts/storage/fs/fsck.ts';
import {
  BlockType,
  blockCp,
  decodeInode,
  encodeInode,
  inodeFileIno,
  inodesPerBlock,
  makeGeometry,
  rootIno,
  sealBlock,
} from '../../firmware/ts/storage/fs/format.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';

const cred = { uid: 0, gid: 0, gids: [] };
const time = { sec: 5, nsec: 0 };

let vol: MemVolume;
let a: InodeRef;
let b: InodeRef;

async function rewrite(addr: number, edit: (block: Uint8Array) => void, id: Parameters<typeof sealBlock>[1]): Promise<void> {
  const block = (await vol.readBlocks(addr, 1)).slice();
  edit(block);
  sealBlock(block, id, blockCp(block));
  await vol.writeStripes(addr, block);
  await vol.flush();
}

async function scan(): Promise<Awaited<ReturnType<typeof scanCp>>> {
  return scanCp(vol, (await newestSuperblock(vol))!);
}

async function editInode(ino: number, edit: (n: ReturnType<typeof decodeInode>) => void): Promise<void> {
  const s = await scan();
  const fbn = Math.floor(ino / inodesPerBlock);
  const addr = s.inodeFileBlocks.get(fbn)!;
  await rewrite(
    addr,
    (block) => {
      const n = decodeInode(block, ino, addr);
      edit(n);
      encodeInode(block, n);
    },
    { type: BlockType.inodes, owner: inodeFileIno, level: 0, index: fbn },
  );
}

async function rootDirBlock(): Promise<number> {
  return (await scan()).files.get(rootIno)!.addrs.get(0)!;
}

const codes = async (): Promise<string[]> => (await fsck(vol)).map((p) => p.code);

describe('fsck', () => {
  beforeEach(async () => {
    vol = new MemVolume({ blockCount: 8192, stripeBlocks: 1 });
    await mkfs(vol, { fsid: 1n });
    const fs = await CowFs.mount(vol);
    a = fs.allocInode();
    await fs.apply({ op: 'create', dir: fs.rootIno, name: 'a', how: 'guarded', attrs: {}, newIno: a.ino, newGen: a.gen, time, cred });
    await fs.apply({ op: 'write', target: a, offset: 0, data: new Uint8Array(10_000).fill(1), time, cred });
    b = fs.allocInode();
    await fs.apply({ op: 'mkdir', dir: fs.rootIno, name: 'b', attrs: {}, newIno: b.ino, newGen: b.gen, time, cred });
    await fs.apply({ op: 'link', target: a, dir: b, name: 'a2', time, cred });
    await fs.takeCp();
    await fs.close();
  });

  it('ST-5 a freshly written CP is clean', async () => {
    expect(await fsck(vol)).toEqual([]);
  });

  it('finds an entry that names a free inode', async () => {
    await rewrite(await rootDirBlock(), (block) => insertRecord(block, new TextEncoder().encode('ghost'), 77, 1), { type: BlockType.dir, owner: rootIno, level: 0, index: 0 });
    expect(await codes()).toContain(FsckCode.dirEntry);
  });

  it('finds a wrong link count', async () => {
    await editInode(a.ino, (n) => {
      n.nlink = 1;
    });
    expect(await codes()).toContain(FsckCode.linkCount);
  });

  it('finds an inode that no directory names, and a directory whose nlink no longer matches', async () => {
    await rewrite(
      await rootDirBlock(),
      (block) => {
        let off = -1;
        parseDirBlock(block, (r) => {
          if (r.name === 'b') off = r.off;
        });
        removeRecord(block, off);
      },
      { type: BlockType.dir, owner: rootIno, level: 0, index: 0 },
    );
    const c = await codes();
    expect(c).toContain(FsckCode.unreachable);
    expect(c).toContain(FsckCode.linkCount);
  });

  it('finds a block marked in use that no tree uses (a leak)', async () => {
    const sb = (await newestSuperblock(vol))!;
    const g = makeGeometry(sb.blockCount, sb.stripeBlocks, sb.inodeCountMax);
    const slot = sb.cpNumber % 2;
    await rewrite(
      g.regionStart[slot as 0 | 1],
      (block) => {
        const v = dataView(block);
        const word = 32 + Math.floor((sb.blockCount - 40) / 32) * 4;
        v.setUint32(word, v.getUint32(word, true) | 1, true);
      },
      { type: BlockType.blockMap, owner: slot, level: 0, index: 0 },
    );
    expect(await codes()).toContain(FsckCode.blockMap);
  });

  it('finds a block used by two files, and data beyond a file size', async () => {
    const s = await scan();
    const aData = s.files.get(a.ino)!;
    const stolen = [...aData.addrs.values()][0]!;
    await editInode(b.ino, (n) => {
      n.root = stolen;
    });
    await editInode(a.ino, (n) => {
      n.size = 10;
    });
    const c = await codes();
    expect(c).toContain(FsckCode.doubleUse);
    expect(c).toContain(FsckCode.beyondSize);
  });
});
