// fsck: checks every structural invariant of the committed CP on a volume, reading only the
// disks (never the in-memory state): block trees, reachability, link counts, directory
// integrity, sizes, and the block and inode maps against what the trees really use.
// `scanCp` is also what mount uses to rebuild damaged maps.
import { DecodeError } from '../../core/errors.ts';
import { FileType } from '../../fsapi/ops.ts';
import type { Volume } from '../volume.ts';
import { Bitmap } from './bitmap.ts';
import { parseDirBlock } from './dir.ts';
import {
  BlockType,
  type FsGeometry,
  type Inode,
  type Superblock,
  blockCp,
  checkBlock,
  decodeInode,
  decodeSuperblock,
  FsCorruptError,
  fsBlockBytes,
  indirectFanout,
  inodeFileIno,
  inodesPerBlock,
  makeGeometry,
  readPtr,
  rootIno,
  treeCapacity,
} from './format.ts';

export interface FsckProblem {
  code: string;
  message: string;
  block?: number;
}

export const FsckCode = {
  noSuperblock: 'FSCK_NO_SUPERBLOCK',
  badBlock: 'FSCK_BAD_BLOCK',
  pointerRange: 'FSCK_POINTER_OUT_OF_RANGE',
  doubleUse: 'FSCK_BLOCK_USED_TWICE',
  blockCount: 'FSCK_BLOCK_COUNT',
  beyondSize: 'FSCK_BLOCK_BEYOND_SIZE',
  dirShape: 'FSCK_DIR_SHAPE',
  dirEntry: 'FSCK_DIR_ENTRY',
  linkCount: 'FSCK_LINK_COUNT',
  unreachable: 'FSCK_UNREACHABLE_INODE',
  dirLinks: 'FSCK_DIR_MULTIPLY_LINKED',
  parent: 'FSCK_DIR_PARENT',
  blockMap: 'FSCK_BLOCK_MAP',
  inodeMap: 'FSCK_INODE_MAP',
  counts: 'FSCK_SUPERBLOCK_COUNTS',
  inode: 'FSCK_BAD_INODE',
  symlink: 'FSCK_SYMLINK',
} as const;

export interface CpScan {
  /** Blocks the CP's trees use, plus the reserved layout at the start of the volume. */
  blocks: Bitmap;
  /** In-use inodes, plus inode 0 (the inode file). */
  inodes: Bitmap;
  /** In-use inodes with the data blocks (fbn, and where each is) and their directory blocks by fbn. */
  files: Map<number, { inode: Inode; fbns: number[]; addrs: Map<number, number>; dirBlocks: Map<number, Uint8Array> }>;
  /** Inode-file blocks: fbn → address. */
  inodeFileBlocks: Map<number, number>;
  problems: FsckProblem[];
}

/** Walks every tree of the CP described by `sb`, checking block headers and pointers. */
export async function scanCp(volume: Volume, sb: Superblock): Promise<CpScan> {
  const geo = makeGeometry(sb.blockCount, sb.stripeBlocks, sb.inodeCountMax);
  const problems: FsckProblem[] = [];
  const blocks = new Bitmap(geo.blockCount);
  blocks.setRange(0, geo.dataStart);
  const inodes = new Bitmap(geo.inodeCountMax);
  inodes.set(inodeFileIno);
  const files: CpScan['files'] = new Map();

  const claim = (addr: number, what: string): boolean => {
    if (addr < geo.dataStart || addr >= geo.blockCount) {
      problems.push({ code: FsckCode.pointerRange, message: `${what} points to block ${addr} outside the data area`, block: addr });
      return false;
    }
    if (blocks.get(addr)) {
      problems.push({ code: FsckCode.doubleUse, message: `${what} uses block ${addr}, already in use`, block: addr });
      return false;
    }
    blocks.set(addr);
    return true;
  };

  const readChecked = async (addr: number, type: BlockType, owner: number, level: number, index: number, what: string): Promise<Uint8Array | undefined> => {
    const b = await volume.readBlocks(addr, 1);
    const bad = checkBlock(b, { type, owner, level, index });
    if (bad !== undefined) {
      problems.push({ code: FsckCode.badBlock, message: `${what}: ${bad.code} ${bad.message}`, block: addr });
      return undefined;
    }
    if (blockCp(b) > sb.cpNumber) {
      problems.push({ code: FsckCode.badBlock, message: `${what}: written by CP ${blockCp(b)}, after CP ${sb.cpNumber}`, block: addr });
      return undefined;
    }
    return b;
  };

  /** Walks one tree; calls `leaf` for each present data block with its address. Returns blocks used. */
  const walk = async (
    owner: number,
    root: number,
    height: number,
    leafType: BlockType | 'raw',
    leaf: (fbn: number, addr: number, data: Uint8Array | undefined) => void,
  ): Promise<number> => {
    let used = 0;
    const visit = async (addr: number, level: number, index: number): Promise<void> => {
      const what = `inode ${owner} level ${level} index ${index}`;
      if (!claim(addr, what)) return;
      used++;
      if (level === 0) {
        const data = leafType === 'raw' ? undefined : await readChecked(addr, leafType, owner, 0, index, what);
        leaf(index, addr, data);
        return;
      }
      const b = await readChecked(addr, BlockType.indirect, owner, level, index, what);
      if (b === undefined) return;
      for (let i = 0; i < indirectFanout; i++) {
        const child = readPtr(b, i);
        if (child !== 0) await visit(child, level - 1, index * indirectFanout + i);
      }
    };
    if (root !== 0) await visit(root, height, 0);
    return used;
  };

  const ifileBlocks: Array<{ fbn: number; data: Uint8Array; addr: number }> = [];
  await walk(inodeFileIno, sb.inodeFileRoot, sb.inodeFileHeight, BlockType.inodes, (fbn, addr, data) => {
    if (data !== undefined) ifileBlocks.push({ fbn, data, addr });
  });
  for (const { fbn, data, addr } of ifileBlocks) {
    for (let k = 0; k < inodesPerBlock; k++) {
      const ino = fbn * inodesPerBlock + k;
      if (ino === inodeFileIno) continue;
      let n: Inode;
      try {
        n = decodeInode(data, ino, addr);
      } catch (e) {
        if (!(e instanceof FsCorruptError)) throw e;
        problems.push({ code: FsckCode.inode, message: e.message, block: addr });
        continue;
      }
      if (n.type === 0) {
        if (n.root !== 0) problems.push({ code: FsckCode.inode, message: `free inode ${ino} has blocks`, block: addr });
        continue;
      }
      if (ino >= geo.inodeCountMax) {
        problems.push({ code: FsckCode.inode, message: `inode ${ino} beyond the inode count`, block: addr });
        continue;
      }
      inodes.set(ino);
      const leafType = n.type === FileType.DIR ? BlockType.dir : 'raw';
      const entry = { inode: n, fbns: [] as number[], addrs: new Map<number, number>(), dirBlocks: new Map<number, Uint8Array>() };
      files.set(ino, entry);
      const used = await walk(ino, n.root, n.height, leafType, (f, a, d) => {
        entry.fbns.push(f);
        entry.addrs.set(f, a);
        if (d !== undefined) entry.dirBlocks.set(f, d);
      });
      if (used !== n.blocks) problems.push({ code: FsckCode.blockCount, message: `inode ${ino} says ${n.blocks} blocks, its tree has ${used}` });
    }
  }
  return { blocks, inodes, files, inodeFileBlocks: new Map(ifileBlocks.map((b) => [b.fbn, b.addr])), problems };
}

/** The valid superblock with the highest CP number (what mount would use), if any. */
export async function newestSuperblock(volume: Volume): Promise<Superblock | undefined> {
  const S = volume.stripeBlocks;
  const sbs: Superblock[] = [];
  for (const slot of [0, 1]) {
    try {
      const sb = decodeSuperblock(await volume.readBlocks(slot * S, 1));
      if (sb.cpNumber % 2 === slot) sbs.push(sb);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
    }
  }
  sbs.sort((a, b) => b.cpNumber - a.cpNumber);
  return sbs[0];
}

/**
 * Checks the committed CP on `volume`. Returns the problems found; an empty list means the
 * file system is consistent.
 */
export async function fsck(volume: Volume): Promise<FsckProblem[]> {
  const sb = await newestSuperblock(volume);
  if (sb === undefined) return [{ code: FsckCode.noSuperblock, message: 'no valid superblock' }];
  const geo = makeGeometry(sb.blockCount, sb.stripeBlocks, sb.inodeCountMax);
  const scan = await scanCp(volume, sb);
  const problems = scan.problems;
  checkTrees(scan, problems);
  checkNamespace(scan, problems);
  await checkMaps(volume, geo, sb, scan, problems);
  return problems;
}

function checkTrees(scan: CpScan, problems: FsckProblem[]): void {
  for (const [ino, { inode: n, fbns, dirBlocks }] of scan.files) {
    if (n.gen === 0) problems.push({ code: FsckCode.inode, message: `inode ${ino} is in use with generation 0` });
    if (n.root !== 0 && fbns.length > 0 && Math.max(...fbns) >= treeCapacity(n.height)) {
      problems.push({ code: FsckCode.inode, message: `inode ${ino}: blocks beyond its tree height` });
    }
    const sizeBlocks = Math.ceil(n.size / fsBlockBytes);
    for (const f of fbns) {
      if (f >= sizeBlocks) problems.push({ code: FsckCode.beyondSize, message: `inode ${ino}: block ${f} lies beyond size ${n.size}` });
    }
    if (n.type === FileType.DIR) {
      if (n.size % fsBlockBytes !== 0 || n.size === 0 || fbns.length !== n.size / fsBlockBytes) {
        problems.push({ code: FsckCode.dirShape, message: `directory ${ino}: size ${n.size} with ${fbns.length} blocks` });
      }
    } else if (n.type === FileType.LNK) {
      if (n.size > 4095 || n.size === 0) problems.push({ code: FsckCode.symlink, message: `symlink ${ino}: size ${n.size}` });
      if (fbns.length !== (n.size > 0 ? 1 : 0)) problems.push({ code: FsckCode.symlink, message: `symlink ${ino}: ${fbns.length} blocks` });
    } else if (n.type !== FileType.REG && (n.root !== 0 || n.size !== 0)) {
      problems.push({ code: FsckCode.inode, message: `special file ${ino} has data` });
    }
    if (n.type !== FileType.DIR && dirBlocks.size > 0) problems.push({ code: FsckCode.inode, message: `inode ${ino} has directory blocks` });
  }
}

function checkNamespace(scan: CpScan, problems: FsckProblem[]): void {
  const root = scan.files.get(rootIno);
  if (root === undefined || root.inode.type !== FileType.DIR) {
    problems.push({ code: FsckCode.unreachable, message: 'the root directory is missing' });
    return;
  }
  const refs = new Map<number, number>();
  const subdirs = new Map<number, number>();
  const dirParent = new Map<number, number>();
  const seen = new Set<number>([rootIno]);
  const queue = [rootIno];
  while (queue.length > 0) {
    const d = queue.shift() as number;
    const entry = scan.files.get(d);
    if (entry === undefined) continue;
    const names = new Set<string>();
    for (const [fbn, block] of [...entry.dirBlocks].sort((a, b) => a[0] - b[0])) {
      const err = parseDirBlock(block, (r) => {
        if (r.ino === 0) return;
        if (names.has(r.name)) problems.push({ code: FsckCode.dirEntry, message: `directory ${d}: duplicate name ${r.name}` });
        names.add(r.name);
        const target = scan.files.get(r.ino);
        if (target === undefined) {
          problems.push({ code: FsckCode.dirEntry, message: `directory ${d}: ${r.name} names free inode ${r.ino}` });
          return;
        }
        if (target.inode.type !== r.type) {
          problems.push({ code: FsckCode.dirEntry, message: `directory ${d}: ${r.name} says type ${r.type}, inode ${r.ino} is ${target.inode.type}` });
        }
        refs.set(r.ino, (refs.get(r.ino) ?? 0) + 1);
        if (target.inode.type === FileType.DIR) {
          subdirs.set(d, (subdirs.get(d) ?? 0) + 1);
          if (dirParent.has(r.ino) || r.ino === rootIno) {
            problems.push({ code: FsckCode.dirLinks, message: `directory ${r.ino} is linked more than once` });
            return;
          }
          dirParent.set(r.ino, d);
        }
        if (!seen.has(r.ino)) {
          seen.add(r.ino);
          if (target.inode.type === FileType.DIR) queue.push(r.ino);
        }
      });
      if (err !== undefined) problems.push({ code: FsckCode.dirEntry, message: `directory ${d} block ${fbn}: ${err}` });
    }
  }
  for (const [ino, { inode: n }] of scan.files) {
    if (!seen.has(ino)) {
      problems.push({ code: FsckCode.unreachable, message: `inode ${ino} is in use but in no directory` });
      continue;
    }
    if (n.type === FileType.DIR) {
      const want = 2 + (subdirs.get(ino) ?? 0);
      if (n.nlink !== want) problems.push({ code: FsckCode.linkCount, message: `directory ${ino}: nlink ${n.nlink}, expected ${want}` });
      const parent = ino === rootIno ? rootIno : dirParent.get(ino);
      if (n.parent !== parent) problems.push({ code: FsckCode.parent, message: `directory ${ino}: parent ${n.parent}, found in ${parent}` });
    } else {
      const want = refs.get(ino) ?? 0;
      if (n.nlink !== want) problems.push({ code: FsckCode.linkCount, message: `inode ${ino}: nlink ${n.nlink}, ${want} entries` });
    }
  }
}

async function checkMaps(volume: Volume, geo: FsGeometry, sb: Superblock, scan: CpScan, problems: FsckProblem[]): Promise<void> {
  const slot = sb.cpNumber % 2;
  const n = geo.blockMapBlocks + geo.inodeMapBlocks;
  const data = await volume.readBlocks(geo.regionStart[slot as 0 | 1], n);
  const blocks = new Bitmap(geo.blockCount);
  const inodes = new Bitmap(geo.inodeCountMax);
  for (let r = 0; r < n; r++) {
    const buf = data.subarray(r * fsBlockBytes, (r + 1) * fsBlockBytes);
    const isBlockMap = r < geo.blockMapBlocks;
    const index = isBlockMap ? r : r - geo.blockMapBlocks;
    const bad = checkBlock(buf, { type: isBlockMap ? BlockType.blockMap : BlockType.inodeMap, owner: slot, level: 0, index });
    if (bad !== undefined || blockCp(buf) > sb.cpNumber) {
      problems.push({ code: FsckCode.badBlock, message: `map block ${r} of region ${slot}: ${bad?.code ?? `from CP ${blockCp(buf)}`}` });
      return;
    }
    if (isBlockMap) blocks.readSlice(buf, index);
    else inodes.readSlice(buf, index);
  }
  let blockDiff = 0;
  let example = -1;
  for (let w = 0; w < blocks.words.length; w++) {
    if (blocks.words[w] !== scan.blocks.words[w]) {
      blockDiff++;
      if (example < 0) example = w * 32;
    }
  }
  if (blockDiff > 0) {
    const leaked = describeDiff(blocks, scan.blocks);
    problems.push({ code: FsckCode.blockMap, message: `block map disagrees with the trees (${leaked}) near block ${example}` });
  }
  for (let w = 0; w < inodes.words.length; w++) {
    if (inodes.words[w] !== scan.inodes.words[w]) {
      problems.push({ code: FsckCode.inodeMap, message: `inode map disagrees with the inode file (${describeDiff(inodes, scan.inodes)})` });
      break;
    }
  }
  if (sb.usedBlocks !== scan.blocks.count || sb.usedInodes !== scan.inodes.count) {
    problems.push({
      code: FsckCode.counts,
      message: `superblock counts ${sb.usedBlocks} blocks / ${sb.usedInodes} inodes, trees use ${scan.blocks.count} / ${scan.inodes.count}`,
    });
  }
}

function describeDiff(onDisk: Bitmap, actual: Bitmap): string {
  let marked = 0;
  let missing = 0;
  for (let i = 0; i < onDisk.size; i++) {
    const a = onDisk.get(i);
    const b = actual.get(i);
    if (a && !b) marked++;
    if (!a && b) missing++;
  }
  return `${marked} marked but unused, ${missing} used but free`;
}
