// The copy-on-write file system (a small WAFL) on a RAID volume: the FileSystem contract of
// fsapi/ops.ts plus consistency points. Changes live in memory until a CP writes every
// changed block to free full stripes and then flips to the other superblock. The design is
// in docs/filesystem.md; the on-disk format in format.ts and docs/formats.md.
import { assert } from '../../core/assert.ts';
import type { Clock, TimerHandle, Timers } from '../../core/clock.ts';
import { dataView, utf8Decode, utf8Encode } from '../../core/bytes.ts';
import { DecodeError, TwinbladeError } from '../../core/errors.ts';
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
} from '../../fsapi/ops.ts';
import { isHandedOver } from '../../fsapi/codec.ts';
import type { Volume } from '../volume.ts';
import { Bitmap } from './bitmap.ts';
import {
  FreeSpaceTree,
  initDirBlock,
  insertRecord,
  largestFree,
  parseDirBlock,
  recordBytesFor,
  removeRecord,
} from './dir.ts';
import {
  type BlockIdentity,
  BlockType,
  CowFsErrorCode,
  FsCorruptError,
  type FsGeometry,
  type Inode,
  type Superblock,
  SuperblockErrorCode,
  blockCp,
  blockHeaderBytes,
  checkBlock,
  decodeInode,
  decodeSuperblock,
  encodeInode,
  encodeSuperblock,
  freeInode,
  fsBlockBytes,
  indirectFanout,
  inodeFileIno,
  inodesPerBlock,
  makeGeometry,
  readPtr,
  rootIno,
  sealBlock,
  treeCapacity,
  verifyBlock,
  writePtr,
} from './format.ts';
import { cowFsDefaults } from './limits.ts';
import { BlockCache, blockCacheDefaults, blockViews, ReadStreams, type BlockCacheStats, type Fill } from './block-cache.ts';
import { scanCp } from './fsck.ts';
import { CpWriteQueue } from './cp-queue.ts';

const F = indirectFanout;

export interface CowFsOptions {
  /** Needed for the CP timer (`startCpTimer`). */
  timers?: Timers;
  /** When given, each CP's freeze and write times are kept in `lastCpStats`. */
  clock?: Clock;
  cpIntervalMs?: number;
  dirtyBytesMax?: number;
  cachePagesMax?: number;
  inodeCacheMax?: number;
  dirIndexEntriesMax?: number;
  cpWriteConcurrencyMax?: number;
  /** Writes in flight while the freeze still runs, with `cpFreezeOverlap` (see limits.ts). */
  cpFreezeWritesMax?: number;
  cpWriteBytesMax?: number;
  /**
   * Start a CP's writes while it is still freezing (default true, `cowFsDefaults`): the freeze
   * yields after handing each complete run to the writers, so their I/O overlaps the rest of
   * it, up to `cpFreezeWritesMax` writes. Costs the freeze (during which changes wait) the
   * writers' issue work, a few hundred microseconds per 192 MiB now that parity is computed
   * on the thread pool (docs/filesystem.md).
   */
  cpFreezeOverlap?: boolean;
  /** The clean-block cache and read-ahead of the read path (block-cache.ts; 0 bytes turns both off). */
  readCache?: Partial<typeof blockCacheDefaults>;
  /** Called after every committed CP (the change log releases the entries it contains). */
  onCpCommitted?: (cp: CpInfo) => void;
  /** Called for every problem found (a corrupt block, a superblock rejected at mount). */
  onProblem?: (problem: FsProblem) => void;
}

export interface MkfsOptions {
  fsid: bigint;
  inodeCountMax?: number;
  /** Creation time of the root directory. */
  time?: Time;
  rootUid?: number;
  rootGid?: number;
  rootMode?: number;
}

export interface CpInfo {
  cpNumber: number;
  /** Last applied log sequence per origin blade contained in this CP. */
  appliedSeq: Map<number, bigint>;
}

/** What the last CP did (times only when a clock was given). */
export interface CpStats {
  cpNumber: number;
  /** Blocks written to the data area (file data and metadata). */
  blocks: number;
  /** Map-region blocks rewritten. */
  mapBlocks: number;
  /** Partly used stripes the CP had to read and rewrite (free space is fragmented). */
  partialStripes: number;
  freezeMs: number;
  writeMs: number;
}

export interface FsProblem {
  code: string;
  message: string;
  block?: number;
}

/** A cached block of one file's block tree (level 0 = data). */
interface Page {
  ino: number;
  level: number;
  index: number;
  data: Uint8Array;
  /** Where the block is on disk in the committed or in-flight CP; 0 when dirty or new. */
  addr: number;
  dirty: boolean;
  /** Written by the CP in flight: it must stay cached until that CP is on disk. */
  pinned: boolean;
  /** `data` is also the in-flight CP's image of this block: copy it before changing it. */
  shared: boolean;
  /** Clean, unpinned and listed (once counted) in `lruPending`: evictable from there. */
  pending: boolean;
  /**
   * Left the page map (dropped or evicted): this object is never listed or evicted again, so
   * the pages of a CP need no page-map lookup when they become evictable.
   */
  gone: boolean;
}

interface CpWrite {
  first: number;
  blocks: number;
  /** Ready-made content (map region, superblock). */
  data?: Uint8Array;
  /**
   * Or the frozen block images by position in the write (undefined: unused), handed to the
   * volume as they are or copied into a buffer just before the write. Parallel arrays rather
   * than an object per block: a 192 MiB CP freezes 49,152 blocks.
   */
  images?: Array<Uint8Array | undefined> | undefined;
  /** The identity to seal each metadata image with (sparse; made only when a write has metadata). */
  seals?: Array<BlockIdentity | undefined> | undefined;
  /** Positions the freeze may fill (a partly used stripe's free blocks); all of them when absent. */
  slots?: number[];
  /** A partly used stripe: read it first, so its live blocks are rewritten unchanged. */
  readFirst?: boolean;
  /**
   * The pages whose buffers this write holds: pinned (not evicted, copied before a change)
   * until the write settles, then handed back at once, while the rest of the CP is written.
   */
  pages?: Page[] | undefined;
}

interface DirIndex {
  names: Map<string, { ino: number; off: number; type: number }>;
  free: FreeSpaceTree;
}

interface PreparedCp {
  cp: number;
  dataBlocks: number;
  partialStripes: number;
  mapBlocks: number;
  freezeMs: number;
  slot: number;
  /** The writes the freeze did not hand to the writers already (the last data run, the maps). */
  writes: CpWrite[];
  superblock: Uint8Array;
  blocks: Bitmap;
  inodes: Bitmap;
  applied: Map<number, bigint>;
}

const pageKey = (level: number, index: number): number => index * 8 + level;

/** One volume write of a CP, for the CP's writers. */
interface CpJob {
  cp: number;
  w: CpWrite;
}

/**
 * Microtask turns the freeze yields after handing a write to the writers: about what a
 * writer takes from the queue to the volume's gather being queued on the thread pool, so
 * that gather (and the writes before it) overlap the rest of the freeze. Microtasks only,
 * so a simulation's schedule stays its own; changes still wait (the freeze holds the lock).
 */
const cpFreezeYieldTurns = 16;

function toFsError(e: unknown): FsError {
  if (e instanceof FsError) return e;
  const err = new FsError(FsStatus.IO, e instanceof Error ? e.message : String(e));
  return err;
}

/** Creates an empty file system on `volume`: CP 1 holding the root directory. */
export async function mkfs(volume: Volume, opts: MkfsOptions): Promise<void> {
  const inodeCountMax =
    opts.inodeCountMax ?? Math.max(1024, Math.min(2 ** 32 - 1, Math.floor((volume.blockCount * fsBlockBytes) / cowFsDefaults.bytesPerInode)));
  const geo = makeGeometry(volume.blockCount, volume.stripeBlocks, inodeCountMax);
  if (geo.dataStart + 4 * volume.stripeBlocks > volume.blockCount) {
    throw new TwinbladeError(CowFsErrorCode.tooSmall, 'no-space', `volume of ${volume.blockCount} blocks is too small`);
  }
  // Invalidate any older file system's superblocks first, so that none can win at mount.
  const zero = new Uint8Array(volume.stripeBlocks * fsBlockBytes);
  await volume.writeStripes(0, zero);
  await volume.writeStripes(volume.stripeBlocks, zero);
  await volume.flush();
  const fs = new CowFs(volume, geo, opts.fsid, {}, 0, new Map(), 0, 0, 0, [undefined, undefined], [undefined, undefined]);
  const t = opts.time ?? { sec: 0, nsec: 0 };
  const root: Inode = {
    ...freeInode(rootIno, 1),
    type: FileType.DIR,
    mode: (opts.rootMode ?? 0o755) & 0o7777,
    nlink: 2,
    uid: opts.rootUid ?? 0,
    gid: opts.rootGid ?? 0,
    atime: { ...t },
    mtime: { ...t },
    ctime: { ...t },
    parent: rootIno,
  };
  fs.liveInodes.set(rootIno);
  fs.installInode(root);
  await fs.locked(async () => {
    await fs.dirtyInode(root);
    await fs.dirNewBlock(root);
  });
  await fs.takeCp();
  await fs.close();
}

export class CowFs implements FileSystem {
  readonly fsid: bigint;
  readonly rootIno: InodeRef = { ino: rootIno, gen: 1 };
  readonly geometry: FsGeometry;
  /** Problems found so far (corrupt blocks, rejected superblocks). */
  readonly problems: FsProblem[] = [];

  /** Blocks in use by the live file system (committed ones not yet freed, plus allocated by CPs). */
  readonly liveBlocks: Bitmap;
  readonly liveInodes: Bitmap;
  /** What each map region on disk holds: the block/inode maps of the CP in that superblock slot. */
  private readonly regionBlocks: [Bitmap | undefined, Bitmap | undefined];
  private readonly regionInodes: [Bitmap | undefined, Bitmap | undefined];

  private committedCp: number;
  private readonly applied: Map<number, bigint>;
  private committedApplied: Map<number, bigint>;
  private genCounter: number;
  private readonly ifile: Inode;

  private readonly inodes = new Map<number, Inode>();
  private readonly dirtyInodes = new Set<number>();
  /** Cached inodes that may be evicted (clean, not the root), oldest first. */
  private readonly cleanInodes = new Set<number>();
  private readonly pages = new Map<number, Map<number, Page>>();
  private readonly dirtyPages = new Map<number, Set<Page>>();
  private dirtyCount = 0;
  private pageCount = 0;
  private readonly lru = new Set<Page>();
  /**
   * The pages of settled CP writes, as the writes' own arrays, oldest first: clean pages that
   * may be evicted, not added to `lru` one by one when unpinned (a 192 MiB CP unpins 49,152;
   * a Set insert each cost more than the rest of the CP's per-page work). A page counts
   * (`pending`) from its first listing until it is evicted, moved to `lru`, dirtied or dropped;
   * entries of pages no longer pending are skipped. Trimming evicts from here before `lru`.
   */
  private readonly lruPending: Page[][] = [];
  /** Position in `lruPending[0]`, and the pages pending (not the entries: a page may be listed twice). */
  private lruPendingAt = 0;
  private lruPendingCount = 0;
  /**
   * Entries left in `lruPending`, stale ones included. Trimming consumes them only while the
   * cache is over its bound, so a working set that fits, rewritten CP after CP, would leave
   * stale entries behind forever: past twice the pending pages (plus a slack), the lists are
   * compacted to one entry per pending page.
   */
  private lruPendingEntries = 0;
  private readonly dirs = new Map<number, DirIndex>();
  private dirEntryCount = 0;
  private readonly reserved = new Set<number>();
  private inoCursor = 2;
  private stripeCursor = 0;
  /** Blocks freed since the last CP froze, and in the interval before: still protected on disk. */
  private freedCurrent = 0;
  private freedPrevious = 0;

  private lockTail: Promise<void> = Promise.resolve();
  private cpChain: Promise<unknown> = Promise.resolve();
  private cpRunning: Promise<unknown> | undefined;
  /**
   * Buffers the CP writer materializes runs into, reused from run to run and CP to CP: a
   * fresh multi-MiB buffer costs a page fault per 4 KiB on first touch, more than the copy.
   */
  private readonly cpBuffers: Uint8Array[] = [];
  private cpQueued = false;
  private opMutated = false;
  private failure: Error | undefined;
  private closed = false;
  private timer: TimerHandle | undefined;
  private readonly opts: Required<Omit<CowFsOptions, 'timers' | 'clock' | 'onCpCommitted' | 'onProblem' | 'readCache'>> & CowFsOptions;
  /** Clean data blocks by physical address, and the read-ahead that fills it (read path only). */
  private readonly blockCache: BlockCache;
  private readonly readStreams: ReadStreams;
  private readonly readCache: typeof blockCacheDefaults;
  /** Figures of the last committed CP. */
  lastCpStats: CpStats | undefined;

  /** @internal use mkfs() and CowFs.mount(). */
  constructor(
    readonly volume: Volume,
    geo: FsGeometry,
    fsid: bigint,
    opts: CowFsOptions,
    committedCp: number,
    applied: Map<number, bigint>,
    genCounter: number,
    ifileRoot: number,
    ifileHeight: number,
    regionBlocks: [Bitmap | undefined, Bitmap | undefined],
    regionInodes: [Bitmap | undefined, Bitmap | undefined],
    live?: { blocks: Bitmap; inodes: Bitmap },
  ) {
    this.fsid = fsid;
    this.geometry = geo;
    this.opts = {
      cpIntervalMs: opts.cpIntervalMs ?? cowFsDefaults.cpIntervalMs,
      dirtyBytesMax: opts.dirtyBytesMax ?? cowFsDefaults.dirtyBytesMax,
      cachePagesMax: opts.cachePagesMax ?? cowFsDefaults.cachePagesMax,
      inodeCacheMax: opts.inodeCacheMax ?? cowFsDefaults.inodeCacheMax,
      dirIndexEntriesMax: opts.dirIndexEntriesMax ?? cowFsDefaults.dirIndexEntriesMax,
      cpWriteConcurrencyMax: opts.cpWriteConcurrencyMax ?? cowFsDefaults.cpWriteConcurrencyMax,
      cpFreezeWritesMax: opts.cpFreezeWritesMax ?? cowFsDefaults.cpFreezeWritesMax,
      cpWriteBytesMax: opts.cpWriteBytesMax ?? cowFsDefaults.cpWriteBytesMax,
      cpFreezeOverlap: opts.cpFreezeOverlap ?? cowFsDefaults.cpFreezeOverlap,
      ...opts,
    };
    this.readCache = { ...blockCacheDefaults, ...opts.readCache };
    this.blockCache = new BlockCache(this.readCache.blockCacheBytesMax);
    this.readStreams = new ReadStreams(this.readCache);
    this.committedCp = committedCp;
    this.applied = new Map(applied);
    this.committedApplied = new Map(applied);
    this.genCounter = genCounter;
    this.regionBlocks = regionBlocks;
    this.regionInodes = regionInodes;
    if (live !== undefined) {
      this.liveBlocks = live.blocks;
      this.liveInodes = live.inodes;
    } else {
      this.liveBlocks = new Bitmap(geo.blockCount);
      this.liveBlocks.setRange(0, geo.dataStart);
      this.liveInodes = new Bitmap(geo.inodeCountMax);
      this.liveInodes.set(inodeFileIno);
    }
    this.ifile = { ...freeInode(inodeFileIno, 0), type: FileType.REG, root: ifileRoot, height: ifileHeight };
    this.stripeCursor = Math.ceil(geo.dataStart / geo.stripeBlocks);
  }

  /**
   * Mounts the newest valid CP: reads both superblocks, takes the valid one with the highest
   * CP number, and loads its block and inode maps (rebuilt by a scan if they are damaged).
   * The caller then replays the change log after `appliedSeq(origin)`.
   */
  static async mount(volume: Volume, opts: CowFsOptions = {}): Promise<CowFs> {
    const S = volume.stripeBlocks;
    const problems: FsProblem[] = [];
    const sbs: Array<Superblock | undefined> = [];
    const zeroSlots: number[] = [];
    for (const slot of [0, 1]) {
      try {
        const block = await volume.readBlocks(slot * S, 1);
        // All zeros: no CP has written this slot since mkfs zeroed it, or damage (decided
        // below, once the newest superblock is known).
        if (block.every((b) => b === 0)) {
          zeroSlots.push(slot);
          sbs.push(undefined);
          continue;
        }
        const sb = decodeSuperblock(block);
        if (sb.cpNumber % 2 !== slot) throw new DecodeError('ERR_FS_SUPERBLOCK_FIELD', `CP ${sb.cpNumber} in slot ${slot}`);
        sbs.push(sb);
      } catch (e) {
        if (!(e instanceof DecodeError)) throw e;
        problems.push({ code: e.code, message: `superblock slot ${slot}: ${e.message}`, block: slot * S });
        sbs.push(undefined);
      }
    }
    const valid = sbs.filter((s): s is Superblock => s !== undefined).sort((a, b) => b.cpNumber - a.cpNumber);
    const sb = valid[0];
    // Only a file system still at mkfs's CP (number 1, in slot 1) has a slot no CP has written
    // yet; a fresh one's first mount reported it as a bad superblock.
    for (const slot of zeroSlots) {
      if (sb?.cpNumber !== 1 || slot !== 0) problems.push({ code: SuperblockErrorCode.magic, message: `superblock slot ${slot}: all zeros`, block: slot * S });
    }
    if (sb === undefined) throw new TwinbladeError(CowFsErrorCode.noSuperblock, 'corrupt', 'no valid superblock in either slot');
    if (sb.blockCount !== volume.blockCount || sb.stripeBlocks !== S) {
      throw new TwinbladeError(
        CowFsErrorCode.geometry,
        'corrupt',
        `superblock says ${sb.blockCount} blocks / stripe ${sb.stripeBlocks}, volume has ${volume.blockCount} / ${S}`,
      );
    }
    const geo = makeGeometry(sb.blockCount, S, sb.inodeCountMax);
    const slot = sb.cpNumber % 2;
    const regionBlocks: [Bitmap | undefined, Bitmap | undefined] = [undefined, undefined];
    const regionInodes: [Bitmap | undefined, Bitmap | undefined] = [undefined, undefined];
    const mine = await loadRegion(volume, geo, slot, sb.cpNumber);
    if (mine.ok) {
      regionBlocks[slot] = mine.blocks;
      regionInodes[slot] = mine.inodes;
    } else {
      problems.push({ code: mine.code, message: `map region ${slot} of CP ${sb.cpNumber}: ${mine.message}; rebuilt by a scan` });
      const scan = await scanCp(volume, sb);
      for (const p of scan.problems) problems.push(p);
      // The rebuilt maps are not what region `slot` holds: leave it undefined so the next CP
      // that uses this slot rewrites it whole.
      mine.blocks = scan.blocks;
      mine.inodes = scan.inodes;
    }
    const other = valid[1];
    if (other !== undefined) {
      const o = await loadRegion(volume, geo, other.cpNumber % 2, other.cpNumber);
      if (o.ok) {
        regionBlocks[other.cpNumber % 2] = o.blocks;
        regionInodes[other.cpNumber % 2] = o.inodes;
      }
    }
    installPageSlabAllocator(volume.allocateBuffer);
    const fs = new CowFs(volume, geo, sb.fsid, opts, sb.cpNumber, sb.applied, sb.genCounter, sb.inodeFileRoot, sb.inodeFileHeight, regionBlocks, regionInodes, {
      blocks: mine.blocks.clone(),
      inodes: mine.inodes.clone(),
    });
    for (const p of problems) fs.report(p);
    return fs;
  }

  // ---- public state --------------------------------------------------------------------

  /** The CP the disks hold (the last committed one). */
  get cpNumber(): number {
    return this.committedCp;
  }

  /** Last applied sequence of `origin` in the live state (0n if none). */
  appliedSeq(origin: number): bigint {
    return this.applied.get(origin) ?? 0n;
  }

  /** Per-origin sequences contained in the last committed CP. */
  committedSeq(): Map<number, bigint> {
    return new Map(this.committedApplied);
  }

  /** Dirty blocks waiting for the next CP (for scheduling and tests). */
  get dirtyBlocks(): number {
    return this.dirtyCount;
  }

  /** Figures of the read path's block cache and read-ahead. */
  get readCacheStats(): Readonly<BlockCacheStats> {
    return this.blockCache.stats;
  }

  /** The error that stopped the file system, if any. */
  get failedWith(): Error | undefined {
    return this.failure;
  }

  // ---- queries -------------------------------------------------------------------------

  async getattr(ref: InodeRef): Promise<Attr> {
    return this.query(async () => attrOf(await this.get(ref)));
  }

  async lookup(dirRef: InodeRef, name: string): Promise<Attr> {
    return this.query(async () => {
      const d = await this.getDir(dirRef);
      if (name === '.') return attrOf(d);
      if (name === '..') return attrOf(await this.byIno(d.parent));
      const e = (await this.dirIndex(d)).names.get(name);
      if (e === undefined) throw new FsError(FsStatus.NOENT, `no entry ${name}`);
      return attrOf(await this.byIno(e.ino));
    });
  }

  async read(ref: InodeRef, offset: number, count: number): Promise<{ data: Uint8Array; eof: boolean }> {
    return this.query(async () => {
      const f = await this.get(ref);
      if (f.type === FileType.DIR) throw new FsError(FsStatus.ISDIR);
      if (f.type !== FileType.REG) throw new FsError(FsStatus.INVAL);
      if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(count) || count < 0) throw new FsError(FsStatus.INVAL);
      if (offset >= f.size) return { data: new Uint8Array(0), eof: true };
      const n = Math.min(count, f.size - offset);
      return { data: await this.readRange(f, offset, n), eof: offset + n >= f.size };
    });
  }

  /**
   * `read` without a copy (FileSystem.readParts): the data as views of the buffers it lies in
   * — the block cache's, a read-ahead's, a clean page's (lent: the page's next change copies
   * it first) — and copies only of blocks a change may still alter in place (dirty pages, and
   * pages a CP in flight is writing). Adjacent views of one buffer are merged.
   */
  async readParts(
    ref: InodeRef,
    offset: number,
    count: number,
    check?: (attr: Attr) => void,
  ): Promise<{ parts: Uint8Array[]; length: number; eof: boolean; attr: Attr }> {
    return this.query(async () => {
      const f = await this.get(ref);
      const attr = attrOf(f);
      check?.(attr);
      if (f.type === FileType.DIR) throw new FsError(FsStatus.ISDIR);
      if (f.type !== FileType.REG) throw new FsError(FsStatus.INVAL);
      if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(count) || count < 0) throw new FsError(FsStatus.INVAL);
      if (offset >= f.size) return { parts: [], length: 0, eof: true, attr };
      const n = Math.min(count, f.size - offset);
      return { parts: await this.readRangeParts(f, offset, n), length: n, eof: offset + n >= f.size, attr };
    });
  }

  async readlink(ref: InodeRef): Promise<string> {
    return this.query(async () => {
      const f = await this.get(ref);
      if (f.type !== FileType.LNK) throw new FsError(FsStatus.INVAL, 'not a symbolic link');
      return utf8Decode(await this.readRange(f, 0, f.size));
    });
  }

  async readdir(dirRef: InodeRef, cookie: bigint, maxEntries: number): Promise<{ entries: DirEntry[]; eof: boolean }> {
    return this.query(async () => {
      const d = await this.getDir(dirRef);
      const size = BigInt(d.size);
      if (cookie < 0n || (cookie > 2n && (cookie >= size || Number(cookie % BigInt(fsBlockBytes)) < blockHeaderBytes))) {
        throw new FsError(FsStatus.BAD_COOKIE, `cookie ${cookie} is not in this directory`);
      }
      const out: DirEntry[] = [];
      let more = false;
      const push = (e: DirEntry): void => {
        if (out.length < maxEntries) out.push(e);
        else more = true;
      };
      if (cookie < 1n) push({ name: '.', ino: d.ino, cookie: 1n });
      if (cookie < 2n) push({ name: '..', ino: d.parent, cookie: 2n });
      const after = cookie > 2n ? Number(cookie) : -1;
      const nblocks = d.size / fsBlockBytes;
      for (let b = after < 0 ? 0 : Math.floor(after / fsBlockBytes); b < nblocks && !more; b++) {
        const page = await this.getPage(d, 0, b);
        if (page === null) continue;
        const err = parseDirBlock(page.data, (r) => {
          const off = b * fsBlockBytes + r.off;
          if (r.ino !== 0 && off > after && !more) push({ name: r.name, ino: r.ino, cookie: BigInt(off) });
        });
        if (err !== undefined) throw this.corrupt(new FsCorruptError('ERR_FS_BAD_RECORD', page.addr, `directory ${d.ino} block ${b}: ${err}`));
      }
      return { entries: out, eof: !more };
    });
  }

  async fsstat(): Promise<FsStat> {
    return this.query(async () => {
      const dataBlocks = this.geometry.blockCount - this.geometry.dataStart;
      const freeBlocks = Math.max(0, this.availableBlocks());
      const freeFiles = this.geometry.inodeCountMax - this.liveInodes.count - this.reserved.size;
      return {
        totalBytes: dataBlocks * fsBlockBytes,
        freeBytes: freeBlocks * fsBlockBytes,
        availBytes: freeBlocks * fsBlockBytes,
        totalFiles: this.geometry.inodeCountMax - 1,
        freeFiles,
        availFiles: freeFiles,
      };
    });
  }

  allocInode(): InodeRef {
    this.checkUsable();
    const ino = this.liveInodes.findClear(this.inoCursor, [this.reserved]);
    if (ino < 0) throw new FsError(FsStatus.NOSPC, 'no free inode');
    this.reserved.add(ino);
    this.inoCursor = ino + 1 >= this.geometry.inodeCountMax ? 2 : ino + 1;
    this.genCounter = (this.genCounter + 1) >>> 0 || 1;
    return { ino, gen: this.genCounter };
  }

  // ---- changes -------------------------------------------------------------------------

  async apply(change: ChangeOp): Promise<ChangeResult> {
    return this.applyLogged(undefined, undefined, change);
  }

  /**
   * Applies a change taken from the log of `origin` at sequence `seq`, and records the
   * sequence in the same step, so a CP contains exactly the changes up to its recorded
   * sequences. A change that fails (FsError) is still recorded: replay fails it the same way.
   */
  async applyLogged(origin: number | undefined, seq: bigint | undefined, change: ChangeOp): Promise<ChangeResult> {
    this.checkUsable();
    if (this.dirtyCount * fsBlockBytes > 2 * this.opts.dirtyBytesMax && this.cpRunning !== undefined) {
      // Back-pressure: do not let dirty data outrun the CP writer without bound.
      await this.cpRunning.catch(() => undefined);
    }
    const result = await this.locked(async () => {
      this.checkUsable();
      if (origin !== undefined && seq !== undefined && seq <= this.appliedSeq(origin)) {
        throw new TwinbladeError(CowFsErrorCode.seqOrder, 'invalid-argument', `origin ${origin}: sequence ${seq} is not after ${this.appliedSeq(origin)}`);
      }
      const note = (): void => {
        if (origin !== undefined && seq !== undefined) this.applied.set(origin, seq);
      };
      this.opMutated = false;
      try {
        const r = await this.applyInner(change);
        note();
        return r;
      } catch (e) {
        if (e instanceof FsError && !this.opMutated) {
          // Refused before anything changed (a failed check, or a corrupt block met while
          // looking): the change did nothing, and replay refuses it the same way.
          note();
          throw e;
        }
        // A failure half-way through a change (a corrupt block, a disk error) leaves memory
        // inconsistent: stop, so that recovery (mount + replay) takes over.
        this.fail(e);
        throw toFsError(e);
      } finally {
        this.trimCaches();
      }
    });
    if (this.dirtyCount * fsBlockBytes > this.opts.dirtyBytesMax && !this.cpQueued) {
      this.takeCp().catch((e: unknown) => this.fail(e));
    }
    return result;
  }

  private async applyInner(c: ChangeOp): Promise<ChangeResult> {
    switch (c.op) {
      case 'setattr': {
        const f = await this.get(c.target);
        const pre = wccOf(f);
        if (c.guardCtime !== undefined && (c.guardCtime.sec !== f.ctime.sec || c.guardCtime.nsec !== f.ctime.nsec)) {
          throw new FsError(FsStatus.NOT_SYNC, 'ctime guard mismatch');
        }
        checkSetAttr(c.cred, f, c.attrs, false);
        this.checkMetadataRoom((s: FsStatus): never => {
          throw new FsError(s);
        });
        await this.setAttrs(f, c.attrs, c.time);
        return { op: 'setattr', pre, post: attrOf(f) };
      }
      case 'write': {
        const f = await this.get(c.target);
        if (f.type === FileType.DIR) throw new FsError(FsStatus.ISDIR);
        if (f.type !== FileType.REG) throw new FsError(FsStatus.INVAL);
        if (c.data.length > fsLimits.writeBytesMax) throw new FsError(FsStatus.INVAL, 'write too large');
        if (!Number.isSafeInteger(c.offset) || c.offset < 0) throw new FsError(FsStatus.INVAL, 'bad offset');
        if (c.offset + c.data.length > fsLimits.fileSizeBytesMax) throw new FsError(FsStatus.FBIG);
        if (c.cred.uid !== f.uid && !may(c.cred, f, 2)) throw new FsError(FsStatus.ACCES);
        if (c.data.length > 0 && Math.ceil(c.data.length / fsBlockBytes) + 2 > this.availableBlocks()) throw new FsError(FsStatus.NOSPC);
        const pre = wccOf(f);
        if (c.data.length > 0) {
          await this.writeData(f, c.offset, c.data);
          f.mtime = { ...c.time };
          f.ctime = { ...c.time };
          await this.dirtyInode(f);
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
        const d = await this.getDir(c.dir);
        const dirPre = wccOf(d);
        const fail = (s: FsStatus): never => {
          throw new FsError(s, undefined, { dirPre, dirPost: attrOf(d) });
        };
        if (c.name === '.' || c.name === '..') fail(c.op === 'rmdir' ? (c.name === '.' ? FsStatus.INVAL : FsStatus.NOTEMPTY) : FsStatus.ISDIR);
        checkName(c.name, fail);
        if (!may(c.cred, d, 3)) fail(FsStatus.ACCES);
        const idx = await this.dirIndex(d);
        const e = idx.names.get(c.name);
        if (e === undefined) return fail(FsStatus.NOENT);
        const f = await this.byIno(e.ino);
        if (c.op === 'remove' && f.type === FileType.DIR) fail(FsStatus.ISDIR);
        if (c.op === 'rmdir' && f.type !== FileType.DIR) fail(FsStatus.NOTDIR);
        if (c.op === 'rmdir' && (await this.dirIndex(f)).names.size > 0) fail(FsStatus.NOTEMPTY);
        if (!stickyAllows(c.cred, d, f)) fail(FsStatus.ACCES);
        this.checkMetadataRoom(fail);
        await this.dirRemove(d, c.name);
        await this.unlinkInode(f, d, c.time);
        d.mtime = { ...c.time };
        d.ctime = { ...c.time };
        await this.dirtyInode(d);
        return { op: c.op, dirPre, dirPost: attrOf(d) };
      }
      case 'rename':
        return this.applyRename(c);
      case 'link': {
        const d = await this.getDir(c.dir);
        const dirPre = wccOf(d);
        const fail = (s: FsStatus): never => {
          throw new FsError(s, undefined, { dirPre, dirPost: attrOf(d) });
        };
        const f = await this.get(c.target);
        checkName(c.name, fail);
        if (c.name === '.' || c.name === '..') fail(FsStatus.EXIST);
        if (f.type === FileType.DIR) fail(FsStatus.ISDIR);
        if (!may(c.cred, d, 3)) fail(FsStatus.ACCES);
        if ((await this.dirIndex(d)).names.has(c.name)) fail(FsStatus.EXIST);
        if (f.nlink >= fsLimits.linkCountMax) fail(FsStatus.MLINK);
        this.checkMetadataRoom(fail);
        await this.dirAdd(d, c.name, f.ino, f.type as FileType);
        f.nlink++;
        f.ctime = { ...c.time };
        d.mtime = { ...c.time };
        d.ctime = { ...c.time };
        await this.dirtyInode(f);
        await this.dirtyInode(d);
        return { op: 'link', obj: attrOf(f), dirPre, dirPost: attrOf(d) };
      }
    }
  }

  private async applyNew(c: Extract<ChangeOp, { op: 'create' | 'mkdir' | 'symlink' | 'mknod' }>): Promise<ChangeResult> {
    const d = await this.getDir(c.dir);
    const dirPre = wccOf(d);
    const fail = (s: FsStatus): never => {
      throw new FsError(s, undefined, { dirPre, dirPost: attrOf(d) });
    };
    checkName(c.name, fail);
    if (c.name === '.' || c.name === '..') fail(FsStatus.EXIST);
    if (!may(c.cred, d, 3)) fail(FsStatus.ACCES);
    const existing = (await this.dirIndex(d)).names.get(c.name);
    if (existing !== undefined) {
      const f = await this.byIno(existing.ino);
      if (c.op === 'create' && c.how === 'unchecked' && f.type === FileType.REG) {
        // UNCHECKED create of an existing file opens it: only a size (truncation) applies.
        if (c.attrs.size !== undefined) {
          checkSetAttr(c.cred, f, { size: c.attrs.size }, false);
          await this.setAttrs(f, { size: c.attrs.size }, c.time);
        }
        return { op: 'create', obj: attrOf(f), dirPre, dirPost: attrOf(d) };
      }
      if (c.op === 'create' && c.how === 'exclusive' && c.verifier !== undefined && f.type === FileType.REG) {
        const [a, m] = verifierTimes(c.verifier);
        if (f.atime.sec === a && f.mtime.sec === m) return { op: 'create', obj: attrOf(f), dirPre, dirPost: attrOf(d) };
      }
      fail(FsStatus.EXIST);
    }
    const targetBytes = c.op === 'symlink' ? utf8Encode(c.target) : undefined;
    if (targetBytes !== undefined && targetBytes.length > fsLimits.pathBytesMax) fail(FsStatus.NAMETOOLONG);
    if (c.op === 'mknod' && (c.type === FileType.BLK || c.type === FileType.CHR) && c.cred.uid !== 0) fail(FsStatus.PERM);
    if (this.liveInodes.count >= this.geometry.inodeCountMax || this.availableBlocks() < 4) fail(FsStatus.NOSPC);
    assert(
      Number.isInteger(c.newIno) && c.newIno >= 2 && c.newIno < this.geometry.inodeCountMax && !this.liveInodes.get(c.newIno),
      () => `cowfs: inode ${c.newIno} is out of range or in use`,
    );
    const type = c.op === 'create' ? FileType.REG : c.op === 'mkdir' ? FileType.DIR : c.op === 'symlink' ? FileType.LNK : c.type;
    const defaultMode = type === FileType.DIR ? 0o755 : type === FileType.LNK ? 0o777 : 0o644;
    const ownerCheck: SetAttr = {};
    if (c.attrs.uid !== undefined) ownerCheck.uid = c.attrs.uid;
    if (c.attrs.gid !== undefined) ownerCheck.gid = c.attrs.gid;
    checkSetAttr(c.cred, { ...freeInode(0), uid: c.cred.uid, gid: c.cred.gid }, ownerCheck, true, fail);
    // Every check has passed: from here on the change happens.
    this.reserved.delete(c.newIno);
    this.liveInodes.set(c.newIno);
    if (c.newGen > this.genCounter) this.genCounter = c.newGen >>> 0;
    const t = c.time;
    const f: Inode = {
      ...freeInode(c.newIno, c.newGen),
      type,
      mode: (c.attrs.mode ?? defaultMode) & 0o7777,
      nlink: 1,
      uid: c.attrs.uid ?? c.cred.uid,
      gid: c.attrs.gid ?? c.cred.gid,
      atime: { ...t },
      mtime: { ...t },
      ctime: { ...t },
    };
    this.installInode(f);
    await this.dirtyInode(f);
    if (targetBytes !== undefined && targetBytes.length > 0) {
      await this.writeData(f, 0, targetBytes);
    }
    if (c.op === 'mknod') {
      f.rdevMajor = c.rdev.major;
      f.rdevMinor = c.rdev.minor;
    }
    if (c.op === 'mkdir') {
      f.parent = d.ino;
      f.nlink = 2;
      d.nlink++;
      await this.dirNewBlock(f);
    }
    if (c.op === 'create' && c.how === 'exclusive' && c.verifier !== undefined) {
      const [a, m] = verifierTimes(c.verifier);
      f.atime = { sec: a, nsec: 0 };
      f.mtime = { sec: m, nsec: 0 };
    } else if (c.op === 'create' && c.attrs.size !== undefined && c.attrs.size > 0) {
      await this.setAttrs(f, { size: c.attrs.size }, c.time);
    }
    await this.dirAdd(d, c.name, f.ino, type);
    d.mtime = { ...t };
    d.ctime = { ...t };
    await this.dirtyInode(d);
    return { op: c.op, obj: attrOf(f), dirPre, dirPost: attrOf(d) };
  }

  private async applyRename(c: Extract<ChangeOp, { op: 'rename' }>): Promise<ChangeResult> {
    const from = await this.getDir(c.fromDir);
    const to = await this.getDir(c.toDir);
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
    const e = (await this.dirIndex(from)).names.get(c.fromName);
    if (e === undefined) return fail(FsStatus.NOENT);
    const f = await this.byIno(e.ino);
    if (!stickyAllows(c.cred, from, f)) fail(FsStatus.ACCES);
    const done = (): ChangeResult => ({ op: 'rename', fromPre, fromPost: attrOf(from), toPre, toPost: attrOf(to) });
    const te = (await this.dirIndex(to)).names.get(c.toName);
    if (te !== undefined && te.ino === f.ino) return done(); // same file: POSIX says do nothing
    if (f.type === FileType.DIR) {
      // A directory cannot move into its own subtree.
      for (let p = to; ; p = await this.byIno(p.parent)) {
        if (p.ino === f.ino) fail(FsStatus.INVAL);
        if (p.ino === rootIno) break;
      }
    }
    let victim: Inode | undefined;
    if (te !== undefined) {
      const t = await this.byIno(te.ino);
      if (!stickyAllows(c.cred, to, t)) fail(FsStatus.ACCES);
      if (f.type === FileType.DIR && t.type !== FileType.DIR) fail(FsStatus.NOTDIR);
      if (f.type !== FileType.DIR && t.type === FileType.DIR) fail(FsStatus.ISDIR);
      if (t.type === FileType.DIR && (await this.dirIndex(t)).names.size > 0) fail(FsStatus.NOTEMPTY);
      victim = t;
    }
    this.checkMetadataRoom(fail);
    if (victim !== undefined) {
      await this.dirRemove(to, c.toName);
      await this.unlinkInode(victim, to, c.time);
    }
    await this.dirRemove(from, c.fromName);
    await this.dirAdd(to, c.toName, f.ino, f.type as FileType);
    if (f.type === FileType.DIR && from.ino !== to.ino) {
      f.parent = to.ino;
      from.nlink--;
      to.nlink++;
    }
    f.ctime = { ...c.time };
    from.mtime = { ...c.time };
    from.ctime = { ...c.time };
    to.mtime = { ...c.time };
    to.ctime = { ...c.time };
    await this.dirtyInode(f);
    await this.dirtyInode(from);
    await this.dirtyInode(to);
    return done();
  }

  private async unlinkInode(f: Inode, dir: Inode, t: Time): Promise<void> {
    if (f.type === FileType.DIR) {
      dir.nlink--;
      f.nlink = 0;
    } else {
      f.nlink--;
    }
    await this.dirtyInode(f);
    if (f.nlink === 0) {
      await this.freeFrom(f, 0);
      this.dropDirIndex(f.ino);
      const gen = f.gen;
      Object.assign(f, freeInode(f.ino, gen));
      this.liveInodes.clear(f.ino);
    } else {
      f.ctime = { ...t };
    }
  }

  private async setAttrs(f: Inode, a: SetAttr, t: Time): Promise<void> {
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
      await this.truncate(f, a.size);
      f.mtime = { ...t };
      changed = true;
    }
    if (a.atime !== undefined) {
      f.atime = { ...a.atime };
      changed = true;
    }
    if (a.mtime !== undefined) {
      f.mtime = { ...a.mtime };
      changed = true;
    }
    if (changed) f.ctime = { ...t };
    await this.dirtyInode(f);
  }

  private async truncate(f: Inode, size: number): Promise<void> {
    await this.dirtyInode(f);
    if (size < f.size) {
      await this.freeFrom(f, Math.ceil(size / fsBlockBytes));
      const within = size % fsBlockBytes;
      const last = Math.floor(size / fsBlockBytes);
      if (within !== 0 && (await this.ptrOrCached(f, 0, last))) {
        const page = await this.pageForWrite(f, last, 'read');
        page.data.fill(0, within);
      }
    }
    f.size = size;
  }

  private async writeData(f: Inode, offset: number, data: Uint8Array): Promise<void> {
    // Handed-over data (a WRITE's bytes in its RPC record, a replayed descriptor's own copy:
    // nobody writes to them again) becomes the page buffer of every block it overwrites
    // whole: a 1 MiB write then allocates no page buffers and copies nothing here. Only when
    // the data is most of the memory it lives in: a 4 KiB WRITE's bytes sit in a 64 KiB socket
    // read, which a page must not keep alive (16 times the memory dirty data is counted as).
    const adopt = isHandedOver(data) && 2 * data.length >= data.buffer.byteLength;
    // The level-1 parent of the blocks being written, looked up once per parent (a 1 MiB write
    // has one or two) rather than once per block; forgotten after any await (the general path
    // may create or dirty it).
    const parent: { index: number; page: Page | undefined } = { index: -1, page: undefined };
    let pos = 0;
    while (pos < data.length) {
      const abs = offset + pos;
      const fbn = Math.floor(abs / fsBlockBytes);
      const within = abs - fbn * fsBlockBytes;
      const k = Math.min(fsBlockBytes - within, data.length - pos);
      const whole = within === 0 && k === fsBlockBytes;
      const block = data.subarray(pos, pos + k);
      let page = this.dataPageForWriteSync(f, fbn, whole ? 'zero' : 'read', whole && adopt ? block : undefined, parent);
      if (page === undefined) {
        page = await this.pageForWrite(f, fbn, whole ? 'zero' : 'read');
        parent.index = -1;
      }
      if (page.data !== block) page.data.set(block, within);
      pos += k;
    }
    if (offset + data.length > f.size) f.size = offset + data.length;
    await this.dirtyInode(f);
  }

  /**
   * The common case of `pageForWrite` for file data, done synchronously: the tree is tall
   * enough and the block is already dirty, or is overwritten whole and its level-1 parent is
   * cached and already dirty (every block after the first of a large write). The same steps
   * as getPageForWrite + dirtyPage, without their async walk per block, which profiled as
   * most of a 1 MiB write's apply. Undefined: take the general path. With `adopt` (the whole
   * new content of the block, handed over) the page's buffer becomes `adopt` itself: a dirty
   * page is private (a CP's image or a reader's loan is always another buffer), so replacing
   * its buffer is as good as overwriting it, and a reader holding the old one keeps a
   * consistent block. `parentHint` remembers the level-1 page looked up last (the caller's
   * loop passes the same object for every block and resets it after an await).
   */
  private dataPageForWriteSync(t: Inode, fbn: number, fill: 'read' | 'zero', adopt?: Uint8Array, parentHint?: { index: number; page: Page | undefined }): Page | undefined {
    if (t.type !== FileType.REG || t.ino === inodeFileIno || t.height < 1 || fbn >= treeCapacity(t.height)) return undefined;
    const cached = this.cachedPage(t.ino, 0, fbn);
    if (cached !== undefined) {
      if (!cached.dirty) return undefined;
      if (adopt !== undefined && !cached.shared) cached.data = adopt;
      return cached;
    }
    if (fill !== 'zero') return undefined;
    const parentIndex = Math.floor(fbn / F);
    let parent: Page | undefined;
    if (parentHint !== undefined && parentHint.index === parentIndex) {
      parent = parentHint.page;
    } else {
      parent = this.cachedPage(t.ino, 1, parentIndex);
      if (parentHint !== undefined) {
        parentHint.index = parentIndex;
        parentHint.page = parent;
      }
    }
    if (parent === undefined || !parent.dirty) return undefined;
    const addr = readPtr(parent.data, fbn % F);
    // Made dirty at once: inserted clean, it would enter the LRU only for markDirty to take it out.
    const p: Page = { ino: t.ino, level: 0, index: fbn, data: adopt ?? newPageBuffer(), addr, dirty: true, pinned: false, shared: false, pending: false, gone: false };
    this.insertPage(p);
    if (addr === 0) t.blocks++;
    this.opMutated = true;
    this.markDirty(p);
    if (addr !== 0) {
      this.freeBlock(addr);
      p.addr = 0;
      writePtr(parent.data, fbn % F, 0);
    }
    return p;
  }

  /**
   * The bytes [offset, offset + n) of `f`. When every block comes from one immutable read
   * buffer (the block cache's, a read-ahead's or this call's own volume read) laid out
   * contiguously, the result is a view of it, not a copy: a sequential 64 KiB READ served from
   * read-ahead then costs neither a fresh allocation nor a copy. Callers never write to it.
   */
  private async readRange(f: Inode, offset: number, n: number): Promise<Uint8Array> {
    if (n === 0) return new Uint8Array(0);
    const first = Math.floor(offset / fsBlockBytes);
    const { src, pages } = await this.gatherBlocks(f, offset, n);
    const head = offset - first * fsBlockBytes;
    const one = src[0];
    if (pages === undefined && one !== undefined && one.length === fsBlockBytes) {
      let contiguous = true;
      for (let i = 1; i < src.length && contiguous; i++) {
        const b = src[i];
        contiguous = b !== undefined && b.buffer === one.buffer && b.byteOffset === one.byteOffset + i * fsBlockBytes;
      }
      if (contiguous) return new Uint8Array(one.buffer, one.byteOffset + head, n);
    }
    const out = new Uint8Array(n);
    for (let i = 0; i < src.length; i++) {
      const b = src[i];
      if (b === undefined) continue;
      const lo = Math.max(offset, (first + i) * fsBlockBytes);
      const hi = Math.min(offset + n, (first + i + 1) * fsBlockBytes);
      out.set(b.subarray(lo - (first + i) * fsBlockBytes, hi - (first + i) * fsBlockBytes), lo - offset);
    }
    return out;
  }

  /** Like `readRange`, as views of where the bytes lie (see `readParts`); n > 0. */
  private async readRangeParts(f: Inode, offset: number, n: number): Promise<Uint8Array[]> {
    const first = Math.floor(offset / fsBlockBytes);
    const { src, pages } = await this.gatherBlocks(f, offset, n);
    const parts: Uint8Array[] = [];
    // The run of bytes being gathered: `len` bytes at `at` of `run`'s buffer, made one view
    // when it ends (one allocation per run, not one per block).
    let run: Uint8Array | undefined;
    let at = 0;
    let len = 0;
    for (let i = 0; i < src.length; i++) {
      let b = src[i] ?? readZeros;
      const p = pages?.[i];
      if (p !== undefined) {
        // A dirty page changes in place on the next write, and a pinned one is the CP's image
        // until it commits (which then clears `shared`): those are copied. A clean page is
        // lent: marked shared, its next change copies it first (dirtyPage).
        if (p.dirty || p.pinned) b = b.slice();
        else p.shared = true;
      }
      const base = (first + i) * fsBlockBytes;
      const lo = Math.max(offset, base) - base;
      const hi = Math.min(offset + n, base + fsBlockBytes) - base;
      if (run !== undefined && run.buffer === b.buffer && at + len === b.byteOffset + lo) {
        len += hi - lo;
        continue;
      }
      if (run !== undefined) parts.push(viewOf(run, at, len));
      run = b;
      at = b.byteOffset + lo;
      len = hi - lo;
    }
    if (run !== undefined) parts.push(viewOf(run, at, len));
    return parts;
  }

  /**
   * Where each block of [offset, offset + n) of `f` is (undefined: a hole, zeros), one entry
   * per block from the first: the file's own pages first (dirty, or clean and recently used;
   * `pages` says which blocks came from one, undefined when none did), then the clean-block
   * cache and the read-ahead in flight; what is left is gathered into contiguous on-disk runs,
   * each read with one volume call. Starts the read-ahead of sequential reads.
   *
   * Per block the work is a few Map lookups and no await (profiled: an await per block for its
   * pointer, and a second page-map lookup, were a third of a cached READ's file-system CPU).
   */
  private async gatherBlocks(f: Inode, offset: number, n: number): Promise<{ src: Array<Uint8Array | undefined>; pages: Array<Page | undefined> | undefined }> {
    const first = Math.floor(offset / fsBlockBytes);
    const last = Math.floor((offset + n - 1) / fsBlockBytes);
    const src = new Array<Uint8Array | undefined>(last - first + 1);
    let fromPages: Array<Page | undefined> | undefined;
    const cache = this.readCache.blockCacheBytesMax > 0 ? this.blockCache : undefined;
    let runs: Array<{ fbn: number; addr: number; count: number }> | undefined;
    let waits: Array<{ fbn: number; addr: number; fill: Readonly<Fill> }> | undefined;
    const ptrs = new DataPtrs(this, f);
    // The file's cached pages, looked up once: under the lock no data page of the file comes or
    // goes during the walk (fetching an indirect block may create the map, never a data page).
    const pages = this.pages.get(f.ino);
    for (let fbn = first; fbn <= last; fbn++) {
      const cached = pages?.get(pageKey(0, fbn));
      if (cached !== undefined) {
        src[fbn - first] = cached.data;
        (fromPages ??= new Array<Page | undefined>(src.length))[fbn - first] = cached;
        continue;
      }
      const addr = ptrs.cached(fbn) ?? (await ptrs.at(fbn));
      if (addr === 0) continue; // a hole reads as zeros
      if (cache !== undefined) {
        const hit = cache.get(addr);
        if (hit !== undefined) {
          src[fbn - first] = hit;
          continue;
        }
        const fill = cache.pendingFill(addr);
        if (fill !== undefined) {
          (waits ??= []).push({ fbn, addr, fill });
          continue;
        }
      }
      const r = runs?.[runs.length - 1];
      if (r !== undefined && r.fbn + r.count === fbn && r.addr + r.count === addr) r.count++;
      else (runs ??= []).push({ fbn, addr, count: 1 });
    }
    // The reads this call needs go out first, then the read-ahead, so both are in flight together.
    const reads = runs?.map((r) => this.readVolumeBlocks(r.addr, r.count));
    reads?.forEach((p) => p.catch(() => undefined));
    if (cache !== undefined) await this.readAhead(f, offset, n);
    if (waits !== undefined) {
      for (const w of waits) {
        const blocks = await w.fill.promise;
        // A read-ahead that failed is read again here, which reports the error (or reconstructs).
        src[w.fbn - first] = blocks?.[w.addr - w.fill.first] ?? (await this.volume.readBlocks(w.addr, 1));
      }
    }
    if (runs !== undefined && reads !== undefined) {
      for (let k = 0; k < runs.length; k++) {
        const r = runs[k] as { fbn: number; addr: number; count: number };
        const data = await (reads[k] as Promise<Uint8Array | Uint8Array[]>);
        const blocks = blockViews(data, r.count, fsBlockBytes);
        for (let i = 0; i < r.count; i++) src[r.fbn + i - first] = blocks[i];
        // Under the lock: these blocks are in use, so their addresses hold exactly this data
        // until they are freed (which invalidates them).
        cache?.noteMiss(r.count);
        cache?.put(r.addr, data, fsBlockBytes);
      }
    }
    return { src, pages: fromPages };
  }

  /**
   * Sequential read-ahead: when the reads of `f` are sequential, reads the next window of
   * its blocks into the block cache in the background, in contiguous runs of at most
   * `readAheadCallBytesMax`. The block addresses are taken now, under the lock, from the
   * live tree; a block freed before its read lands is invalidated and never cached.
   */
  private async readAhead(f: Inode, offset: number, n: number): Promise<void> {
    const ahead = this.readStreams.note(f.ino, offset, n, f.size);
    if (ahead === undefined) return;
    const g = this.geometry;
    const cache = this.blockCache;
    const callBlocksMax = Math.max(1, Math.floor(this.readCache.readAheadCallBytesMax / fsBlockBytes));
    // The run being gathered (count 0: none); issued when it cannot grow any more.
    let runAddr = 0;
    let runCount = 0;
    const lastFbn = Math.floor((ahead.to - 1) / fsBlockBytes);
    const ptrs = new DataPtrs(this, f);
    const pages = this.pages.get(f.ino);
    for (let fbn = Math.floor(ahead.from / fsBlockBytes); fbn <= lastFbn; fbn++) {
      let addr = 0;
      if (pages?.get(pageKey(0, fbn)) === undefined) {
        addr = ptrs.cached(fbn) ?? (await ptrs.at(fbn));
        // Holes, blocks already here or coming, and pointers outside the data area (the
        // foreground read reports those as corrupt) are not read ahead.
        if (addr < g.dataStart || addr >= g.blockCount || cache.has(addr)) addr = 0;
      }
      if (addr !== 0 && runCount > 0 && runAddr + runCount === addr && runCount < callBlocksMax) {
        runCount++;
        continue;
      }
      if (runCount > 0) this.fillFromVolume(runAddr, runCount);
      runAddr = addr;
      runCount = addr !== 0 ? 1 : 0;
    }
    if (runCount > 0) this.fillFromVolume(runAddr, runCount);
  }

  /** Starts a background read of blocks [addr, addr + count) into the block cache. */
  private fillFromVolume(addr: number, count: number): void {
    this.blockCache.fill(addr, count, fsBlockBytes, () => this.readVolumeBlocks(addr, count));
  }

  /**
   * File data blocks from the volume for the read path: as the pieces the disks were read
   * into when the volume offers that (RAID: no copy of each member's read into one buffer;
   * the block cache keeps the pieces as they are), else as one buffer.
   */
  private readVolumeBlocks(addr: number, count: number): Promise<Uint8Array | Uint8Array[]> {
    return this.volume.readBlockParts !== undefined ? this.volume.readBlockParts(addr, count) : this.volume.readBlocks(addr, count);
  }

  // ---- directories ---------------------------------------------------------------------

  private async dirIndex(d: Inode): Promise<DirIndex> {
    const cached = this.dirs.get(d.ino);
    if (cached !== undefined) {
      this.dirs.delete(d.ino);
      this.dirs.set(d.ino, cached);
      return cached;
    }
    const idx: DirIndex = { names: new Map(), free: new FreeSpaceTree() };
    const nblocks = d.size / fsBlockBytes;
    for (let b = 0; b < nblocks; b++) {
      const page = await this.getPage(d, 0, b);
      if (page === null) throw this.corrupt(new FsCorruptError('ERR_FS_BAD_RECORD', 0, `directory ${d.ino} has a hole at block ${b}`));
      let dup: string | undefined;
      const err = parseDirBlock(page.data, (r) => {
        if (r.ino === 0) return;
        if (idx.names.has(r.name)) dup = r.name;
        idx.names.set(r.name, { ino: r.ino, off: b * fsBlockBytes + r.off, type: r.type });
      });
      if (err !== undefined || dup !== undefined) {
        throw this.corrupt(new FsCorruptError('ERR_FS_BAD_RECORD', page.addr, `directory ${d.ino} block ${b}: ${err ?? `duplicate name ${dup}`}`));
      }
      idx.free.set(b, largestFree(page.data));
    }
    this.dirs.set(d.ino, idx);
    this.dirEntryCount += idx.names.size;
    return idx;
  }

  private dropDirIndex(ino: number): void {
    const idx = this.dirs.get(ino);
    if (idx !== undefined) {
      this.dirEntryCount -= idx.names.size;
      this.dirs.delete(ino);
    }
  }

  /** Appends an empty block to directory `d` (mkdir makes the first one). */
  async dirNewBlock(d: Inode): Promise<number> {
    const b = d.size / fsBlockBytes;
    const page = await this.pageForWrite(d, b, 'zero');
    initDirBlock(page.data);
    d.size += fsBlockBytes;
    await this.dirtyInode(d);
    this.dirs.get(d.ino)?.free.set(b, largestFree(page.data));
    return b;
  }

  private async dirAdd(d: Inode, name: string, ino: number, type: FileType): Promise<void> {
    const idx = await this.dirIndex(d);
    const nameBytes = utf8Encode(name);
    let b = idx.free.firstAtLeast(recordBytesFor(nameBytes.length));
    if (b < 0) b = await this.dirNewBlock(d);
    const page = await this.pageForWrite(d, b, 'read');
    const off = insertRecord(page.data, nameBytes, ino, type);
    assert(off >= 0, () => `cowfs: directory ${d.ino} block ${b} had no room although its free space said so`);
    idx.names.set(name, { ino, off: b * fsBlockBytes + off, type });
    this.dirEntryCount++;
    idx.free.set(b, largestFree(page.data));
  }

  private async dirRemove(d: Inode, name: string): Promise<void> {
    const idx = await this.dirIndex(d);
    const e = idx.names.get(name);
    assert(e !== undefined, () => `cowfs: removing missing entry ${name}`);
    const b = Math.floor(e.off / fsBlockBytes);
    const page = await this.pageForWrite(d, b, 'read');
    removeRecord(page.data, e.off % fsBlockBytes);
    idx.names.delete(name);
    this.dirEntryCount--;
    idx.free.set(b, largestFree(page.data));
  }

  // ---- inodes --------------------------------------------------------------------------

  /** @internal */
  installInode(n: Inode): void {
    this.inodes.set(n.ino, n);
  }

  private async loadInode(ino: number): Promise<Inode> {
    // The inode cache evicts clean inodes oldest-loaded first (no reordering on each hit:
    // re-inserting into a large Map on every access costs more than it saves).
    const cached = this.inodes.get(ino);
    if (cached !== undefined) return cached;
    const page = await this.getPage(this.ifile, 0, Math.floor(ino / inodesPerBlock));
    let n: Inode;
    try {
      n = page === null ? freeInode(ino) : decodeInode(page.data, ino, page.addr);
    } catch (e) {
      throw e instanceof FsCorruptError ? this.corrupt(e) : e;
    }
    this.inodes.set(ino, n);
    if (ino !== rootIno && !this.dirtyInodes.has(ino)) this.cleanInodes.add(ino);
    return n;
  }

  private async get(ref: InodeRef): Promise<Inode> {
    if (!Number.isInteger(ref.ino) || ref.ino < 1 || ref.ino >= this.geometry.inodeCountMax) {
      throw new FsError(FsStatus.STALE, `inode ${ref.ino} does not exist`);
    }
    const n = await this.loadInode(ref.ino);
    if (n.type === 0 || n.gen !== ref.gen) throw new FsError(FsStatus.STALE, `inode ${ref.ino}/${ref.gen} does not exist`);
    return n;
  }

  private async getDir(ref: InodeRef): Promise<Inode> {
    const d = await this.get(ref);
    if (d.type !== FileType.DIR) throw new FsError(FsStatus.NOTDIR);
    return d;
  }

  /** An inode a directory entry names; a free one means the directory is corrupt. */
  private async byIno(ino: number): Promise<Inode> {
    const n = ino > 0 && ino < this.geometry.inodeCountMax ? await this.loadInode(ino) : undefined;
    if (n === undefined || n.type === 0) {
      throw this.corrupt(new FsCorruptError('ERR_FS_BAD_RECORD', 0, `a directory entry names free inode ${ino}`));
    }
    return n;
  }

  /** Marks an inode changed: its inode-file block becomes dirty (so the CP can write it without I/O). */
  async dirtyInode(n: Inode): Promise<void> {
    this.opMutated = true;
    if (n.ino === inodeFileIno || this.dirtyInodes.has(n.ino)) return;
    this.cleanInodes.delete(n.ino);
    const fbn = Math.floor(n.ino / inodesPerBlock);
    await this.pageForWrite(this.ifile, fbn, 'read');
    this.dirtyInodes.add(n.ino);
  }

  // ---- block trees ---------------------------------------------------------------------

  private cachedPage(ino: number, level: number, index: number): Page | undefined {
    return this.pages.get(ino)?.get(pageKey(level, index));
  }

  private insertPage(p: Page): void {
    let m = this.pages.get(p.ino);
    if (m === undefined) {
      m = new Map();
      this.pages.set(p.ino, m);
    }
    m.set(pageKey(p.level, p.index), p);
    this.pageCount++;
    if (!p.dirty && !p.pinned) this.lru.add(p);
  }

  private dropPage(p: Page): void {
    const m = this.pages.get(p.ino);
    if (m?.delete(pageKey(p.level, p.index)) === true) {
      this.pageCount--;
      if (m.size === 0) this.pages.delete(p.ino);
    }
    p.gone = true;
    this.unlistPending(p);
    this.lru.delete(p);
    if (p.dirty) {
      const set = this.dirtyPages.get(p.ino);
      set?.delete(p);
      if (set?.size === 0) this.dirtyPages.delete(p.ino);
      this.dirtyCount--;
      p.dirty = false;
    }
  }

  private kindOf(t: Inode, level: number): BlockType | 'raw' {
    if (level > 0) return BlockType.indirect;
    if (t.ino === inodeFileIno) return BlockType.inodes;
    if (t.type === FileType.DIR) return BlockType.dir;
    return 'raw';
  }

  private async readBlock(t: Inode, level: number, index: number, addr: number): Promise<Uint8Array> {
    if (addr < this.geometry.dataStart || addr >= this.geometry.blockCount) {
      throw this.corrupt(new FsCorruptError('ERR_FS_BAD_POINTER', addr, `inode ${t.ino} level ${level} index ${index} points outside the data area`));
    }
    let data = await this.volume.readBlocks(addr, 1);
    if (data.length !== fsBlockBytes) data = data.slice(0, fsBlockBytes);
    const kind = this.kindOf(t, level);
    if (kind !== 'raw') {
      try {
        verifyBlock(data, addr, { type: kind, owner: t.ino, level, index });
      } catch (e) {
        throw this.corrupt(e as FsCorruptError);
      }
    }
    return data;
  }

  /** @internal The on-disk pointer to a block (0: hole, or a dirty/new block that only memory has). */
  async ptrOf(t: Inode, level: number, index: number): Promise<number> {
    if (level > t.height || index >= treeCapacity(t.height - level)) return 0;
    if (level === t.height) return t.root;
    const parent = await this.getPage(t, level + 1, Math.floor(index / F));
    return parent === null ? 0 : readPtr(parent.data, index % F);
  }

  private async ptrOrCached(t: Inode, level: number, index: number): Promise<boolean> {
    return this.cachedPage(t.ino, level, index) !== undefined || (await this.ptrOf(t, level, index)) !== 0;
  }

  /** @internal A block of a tree for reading (null: a hole); callers hold the lock. */
  async getPage(t: Inode, level: number, index: number): Promise<Page | null> {
    const c = this.cachedPage(t.ino, level, index);
    if (c !== undefined) {
      if (this.lru.delete(c)) this.lru.add(c);
      return c;
    }
    const addr = await this.ptrOf(t, level, index);
    if (addr === 0) return null;
    const p: Page = { ino: t.ino, level, index, data: await this.readBlock(t, level, index, addr), addr, dirty: false, pinned: false, shared: false, pending: false, gone: false };
    this.insertPage(p);
    return p;
  }

  /** Grows a tree until it can address block `fbn`. */
  private async ensureHeight(t: Inode, fbn: number): Promise<void> {
    while (fbn >= treeCapacity(t.height)) {
      const rootPage = this.cachedPage(t.ino, t.height, 0);
      if (t.root === 0 && rootPage === undefined) {
        t.height++;
        await this.dirtyInode(t);
        continue;
      }
      const p: Page = { ino: t.ino, level: t.height + 1, index: 0, data: new Uint8Array(fsBlockBytes), addr: 0, dirty: true, pinned: false, shared: false, pending: false, gone: false };
      writePtr(p.data, 0, t.root);
      this.insertPage(p);
      this.markDirty(p);
      t.blocks++;
      t.root = 0;
      t.height++;
      await this.dirtyInode(t);
    }
  }

  private markDirty(p: Page): void {
    p.dirty = true;
    this.lru.delete(p);
    this.unlistPending(p);
    let s = this.dirtyPages.get(p.ino);
    if (s === undefined) {
      s = new Set();
      this.dirtyPages.set(p.ino, s);
    }
    s.add(p);
    this.dirtyCount++;
  }

  /** Data block `fbn` of `t`, dirty and ready to modify ('zero': the caller overwrites it whole). */
  private async pageForWrite(t: Inode, fbn: number, fill: 'read' | 'zero'): Promise<Page> {
    await this.ensureHeight(t, fbn);
    return this.getPageForWrite(t, 0, fbn, fill);
  }

  private async getPageForWrite(t: Inode, level: number, index: number, fill: 'read' | 'zero'): Promise<Page> {
    let p = this.cachedPage(t.ino, level, index);
    if (p === undefined) {
      let addr: number;
      if (level === t.height) addr = t.root;
      else addr = readPtr((await this.getPageForWrite(t, level + 1, Math.floor(index / F), 'read')).data, index % F);
      const data = addr !== 0 && (fill === 'read' || level > 0) ? await this.readBlock(t, level, index, addr) : newPageBuffer();
      p = { ino: t.ino, level, index, data, addr, dirty: false, pinned: false, shared: false, pending: false, gone: false };
      this.insertPage(p);
      if (addr === 0) {
        t.blocks++;
        if (this.kindOf(t, level) === BlockType.dir) initDirBlock(p.data);
      }
    }
    await this.dirtyPage(t, p);
    return p;
  }

  private async dirtyPage(t: Inode, p: Page): Promise<void> {
    if (p.dirty) return;
    this.opMutated = true;
    if (p.shared) {
      p.data = p.data.slice();
      p.shared = false;
    }
    this.markDirty(p);
    if (p.addr !== 0) {
      this.freeBlock(p.addr);
      p.addr = 0;
    }
    if (p.level === t.height) {
      t.root = 0;
      await this.dirtyInode(t);
    } else {
      const parent = await this.getPageForWrite(t, p.level + 1, Math.floor(p.index / F), 'read');
      writePtr(parent.data, p.index % F, 0);
    }
  }

  private freeBlock(addr: number): void {
    assert(addr >= this.geometry.dataStart && this.liveBlocks.get(addr), () => `cowfs: freeing block ${addr} that is not in use`);
    this.opMutated = true;
    // The address may be reused by a later CP: its cached contents are no longer the block's.
    this.blockCache.invalidate(addr);
    this.liveBlocks.clear(addr);
    this.freedCurrent++;
  }

  /** Frees every block of `t` at file block `fromFbn` and after (and indirect blocks left empty). */
  private async freeFrom(t: Inode, fromFbn: number): Promise<void> {
    if (fromFbn >= treeCapacity(t.height)) return;
    if (t.root === 0 && this.cachedPage(t.ino, t.height, 0) === undefined) return;
    await this.freeNode(t, t.height, 0, t.root, fromFbn);
    if (fromFbn === 0) {
      t.root = 0;
      t.height = 0;
    }
    await this.dirtyInode(t);
  }

  private async freeNode(t: Inode, level: number, index: number, ptr: number, fromFbn: number): Promise<void> {
    const span = treeCapacity(level);
    const first = index * span;
    let p = this.cachedPage(t.ino, level, index);
    if (p === undefined && ptr === 0) return;
    const whole = first >= fromFbn;
    if (level > 0) {
      if (p === undefined) {
        p = { ino: t.ino, level, index, data: await this.readBlock(t, level, index, ptr), addr: ptr, dirty: false, pinned: false, shared: false, pending: false, gone: false };
        this.insertPage(p);
      }
      if (!whole) await this.dirtyPage(t, p);
      const childSpan = treeCapacity(level - 1);
      const from = whole ? 0 : Math.floor((fromFbn - first) / childSpan);
      for (let i = from; i < F; i++) {
        const child = readPtr(p.data, i);
        const childIndex = index * F + i;
        if (child === 0 && this.cachedPage(t.ino, level - 1, childIndex) === undefined) continue;
        await this.freeNode(t, level - 1, childIndex, child, fromFbn);
        if (!whole) writePtr(p.data, i, 0);
      }
    }
    if (whole) {
      this.opMutated = true;
      const addr = p !== undefined ? p.addr : ptr;
      if (p !== undefined) this.dropPage(p);
      if (addr !== 0) this.freeBlock(addr);
      t.blocks--;
    }
  }

  // ---- consistency points --------------------------------------------------------------

  /**
   * Takes a consistency point: freezes the changes applied so far (new changes keep being
   * accepted meanwhile), writes them to free full stripes, flushes, writes the other
   * superblock and flushes again. Resolves once the CP is committed on disk.
   */
  async takeCp(): Promise<CpInfo> {
    this.checkUsable();
    // With no CP running, the freeze is queued on the lock right now, so the CP holds exactly
    // the changes applied before this call; otherwise it freezes once the running CP commits.
    // The writers start with the freeze and take each write as soon as it is complete.
    const startFreeze = (): { frozen: Promise<PreparedCp>; queue: CpWriteQueue<CpJob>; writers: Promise<CpWrite[]> } => {
      const queue = new CpWriteQueue<CpJob>();
      const freezing = { running: true };
      const writers = this.cpWriters(queue, freezing);
      writers.catch(() => undefined);
      const frozen = this.locked(async () => this.freeze(queue));
      void frozen.then(
        () => (freezing.running = false),
        () => (freezing.running = false),
      );
      // A failed freeze hands over nothing more: the writers finish what they hold and stop.
      frozen.catch(() => queue.close());
      return { frozen, queue, writers };
    };
    const early = this.cpRunning === undefined ? startFreeze() : undefined;
    early?.frozen.catch(() => undefined);
    this.cpQueued = true;
    const run = this.cpChain.then(async () => {
      this.cpQueued = false;
      const { frozen, queue, writers } = early ?? startFreeze();
      const prepared = await frozen;
      try {
        await this.writeCp(prepared, queue, writers);
      } catch (e) {
        this.fail(e);
        throw e;
      }
      return { cpNumber: prepared.cp, appliedSeq: new Map(prepared.applied) };
    });
    this.cpChain = run.catch(() => undefined);
    this.cpRunning = run;
    try {
      return await run;
    } finally {
      if (this.cpRunning === run) this.cpRunning = undefined;
    }
  }

  /** @internal Pages in memory (dirty, pinned by a CP, clean): for tests of the cache bound. */
  get cachedPageCount(): number {
    return this.pageCount;
  }

  /** @internal Entries of the settled CP writes' page lists, stale ones included: for tests. */
  get pendingListEntryCount(): number {
    return this.lruPendingEntries;
  }

  /** Takes a CP every `cpIntervalMs` while there are changes (needs `timers`). */
  startCpTimer(): void {
    const timers = this.opts.timers;
    if (timers === undefined) throw new TwinbladeError('ERR_FS_NO_TIMERS', 'invalid-argument', 'startCpTimer needs options.timers');
    if (this.timer !== undefined) return;
    this.timer = timers.after(this.opts.cpIntervalMs, () => {
      if (this.closed || this.failure !== undefined) return;
      const changed = this.dirtyCount > 0 || this.dirtyInodes.size > 0 || !sameSeqs(this.applied, this.committedApplied);
      const next = (): void => {
        if (!this.closed && this.failure === undefined) this.timer?.refresh();
      };
      if (!changed) return next();
      this.takeCp().then(next, (e: unknown) => this.fail(e));
    });
  }

  /**
   * Snapshot of every change so far into CP writes (under the lock, so no change interleaves).
   * Each data write is handed to `queue` as soon as all of its blocks are placed; with
   * `cpFreezeOverlap` the freeze then yields a few microtask turns so its gather and I/O
   * start while the rest is frozen (otherwise it runs through, and the writers start after).
   */
  private freeze(queue: CpWriteQueue<CpJob>): PreparedCp | Promise<PreparedCp> {
    const steps = this.freezeSteps(queue);
    let r = steps.next();
    // Without cpFreezeOverlap the steps never yield: the freeze is one synchronous run.
    if (r.done === true) return r.value;
    return (async (): Promise<PreparedCp> => {
      while (r.done !== true) {
        for (let k = 0; k < cpFreezeYieldTurns; k++) await undefined;
        r = steps.next();
      }
      return r.value;
    })();
  }

  /** The freeze, yielding after each hand-over to the writers when `cpFreezeOverlap` is set. */
  private *freezeSteps(queue: CpWriteQueue<CpJob>): Generator<void, PreparedCp, void> {
    this.checkUsable();
    const t0 = this.opts.clock?.nowMs() ?? 0;
    const dataBlocks = this.dirtyCount;
    const cp = this.committedCp + 1;
    const slot = cp % 2;
    const S = this.geometry.stripeBlocks;
    const room = this.allocate(this.dirtyCount);
    // Contiguous free stripes become one write of up to `cpRunBlocks` blocks.
    const runs: Array<{ first: number; blocks: number }> = [];
    const runBlocksMax = cpRunBlocks(S, this.opts.cpWriteBytesMax);
    for (const st of room.full) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last.first + last.blocks === st * S && last.blocks + S <= runBlocksMax) last.blocks += S;
      else runs.push({ first: st * S, blocks: S });
    }
    const writes: CpWrite[] = runs.map((r) => ({ first: r.first, blocks: r.blocks, images: new Array<Uint8Array | undefined>(r.blocks) }));
    for (const p of room.partial) {
      writes.push({ first: p.stripe * S, blocks: S, images: new Array<Uint8Array | undefined>(S), slots: p.free, readFirst: true });
    }
    // Every stripe this CP may write, announced before the first write: the RAID volume marks
    // their write-intent regions in one record update now, so that no write waits for one of
    // its own mid-CP (the map region and superblock stripe of this slot included).
    if (this.volume.prepareWrites !== undefined) {
      const g = this.geometry;
      const ranges = writes.map((w) => ({ first: w.first, count: w.blocks }));
      ranges.push({ first: g.regionStart[slot as 0 | 1], count: g.regionStripes * S });
      ranges.push({ first: slot * S, count: S });
      // Only an optimisation: a volume that cannot (offline, fenced) fails the writes instead.
      try {
        this.volume.prepareWrites(ranges).catch(() => undefined);
      } catch {
        // The writes report it.
      }
    }
    // The next free position: write `wi`, its `si`-th fillable block (index math, no per-block
    // target objects).
    let wi = 0;
    let si = 0;
    let handed = 0;
    const overlap = this.opts.cpFreezeOverlap;
    // The generator steps once per write, not per block: each step places as many pages of
    // the tree as the current write has room for (placePages, a plain function, so the
    // per-block loop runs as ordinary optimised code rather than inside a generator).
    const placeLevel = function* (fs: CowFs, t: Inode, kind0: BlockType | 'raw', level: readonly Page[]): Generator<void, void, void> {
      for (let k = 0; k < level.length; ) {
        let w = writes[wi];
        let complete = false;
        while (w !== undefined && si >= (w.slots?.length ?? w.blocks)) {
          // Every block of write `wi` is placed (children before parents: none changes again).
          queue.push({ cp, w });
          handed++;
          complete = true;
          w = writes[++wi];
          si = 0;
        }
        if (complete && overlap) yield;
        assert(w !== undefined && w.images !== undefined, 'cowfs: CP ran out of allocated blocks');
        const n = Math.min(level.length - k, (w.slots?.length ?? w.blocks) - si);
        fs.placePages(t, kind0, level, k, n, w, si);
        k += n;
        si += n;
      }
    };
    // A tree's pages go by level (children before parents), each level by index. Data pages
    // stream straight from the dirty set while they come in index order (sequential writes
    // dirty them so), a write's worth at a time, so the first write is handed over after its
    // own pages rather than after a pass over the whole tree (1-8 ms for 49,152 pages); the
    // data pages after the first one out of order are sorted and placed after them, and the
    // higher levels, collected meanwhile, after all data pages.
    const writeTree = function* (fs: CowFs, t: Inode, set: Set<Page>): Generator<void, void, void> {
      const kind0 = fs.kindOf(t, 0);
      const upper: Page[][] = [];
      let batch: Page[] = [];
      let rest: Page[] | undefined;
      let lastIndex = -1;
      for (const p of set) {
        if (p.level !== 0) (upper[p.level] ??= []).push(p);
        else if (rest !== undefined) rest.push(p);
        else if (p.index <= lastIndex) rest = [p];
        else {
          lastIndex = p.index;
          batch.push(p);
          if (batch.length >= cpStreamPagesMax) {
            yield* placeLevel(fs, t, kind0, batch);
            batch = [];
          }
        }
      }
      yield* placeLevel(fs, t, kind0, batch);
      if (rest !== undefined) yield* placeLevel(fs, t, kind0, rest.sort((a, b) => a.index - b.index));
      for (const level of upper) {
        if (level === undefined) continue;
        let sorted = true;
        for (let i = 1; i < level.length && sorted; i++) sorted = (level[i - 1] as Page).index < (level[i] as Page).index;
        yield* placeLevel(fs, t, kind0, sorted ? level : level.sort((a, b) => a.index - b.index));
      }
      fs.dirtyCount -= set.size;
      fs.dirtyPages.delete(t.ino);
    };
    const inos = [...this.dirtyPages.keys()].filter((i) => i !== inodeFileIno).sort((a, b) => a - b);
    for (const ino of inos) {
      const t = this.inodes.get(ino);
      assert(t !== undefined, () => `cowfs: inode ${ino} has dirty blocks but is not cached`);
      yield* writeTree(this, t, this.dirtyPages.get(ino) as Set<Page>);
    }
    for (const ino of [...this.dirtyInodes].sort((a, b) => a - b)) {
      const n = this.inodes.get(ino);
      const page = this.cachedPage(inodeFileIno, 0, Math.floor(ino / inodesPerBlock));
      assert(n !== undefined && page !== undefined && page.dirty, () => `cowfs: dirty inode ${ino} without its dirty inode-file block`);
      encodeInode(page.data, n);
      if (ino !== rootIno) this.cleanInodes.add(ino);
    }
    this.dirtyInodes.clear();
    const ifilePages = this.dirtyPages.get(inodeFileIno);
    if (ifilePages !== undefined) yield* writeTree(this, this.ifile, ifilePages);
    assert(this.dirtyCount === 0, () => `cowfs: ${this.dirtyCount} dirty blocks left after freezing CP ${cp}`);

    // The map region of this slot: rewrite the stripes whose map blocks changed since the
    // CP that last used the slot (all of them when its contents are unknown).
    const blocks = this.liveBlocks.clone();
    const inodes = this.liveInodes.clone();
    const g = this.geometry;
    const oldB = this.regionBlocks[slot];
    const oldI = this.regionInodes[slot];
    const changedStripes = new Set<number>();
    for (let i = 0; i < g.blockMapBlocks; i++) if (oldB === undefined || !blocks.equalsSlice(oldB, i)) changedStripes.add(Math.floor(i / S));
    for (let j = 0; j < g.inodeMapBlocks; j++) {
      if (oldI === undefined || !inodes.equalsSlice(oldI, j)) changedStripes.add(Math.floor((g.blockMapBlocks + j) / S));
    }
    for (const rs of [...changedStripes].sort((a, b) => a - b)) {
      const data = new Uint8Array(S * fsBlockBytes);
      for (let k = 0; k < S; k++) {
        const r = rs * S + k;
        const buf = data.subarray(k * fsBlockBytes, (k + 1) * fsBlockBytes);
        if (r < g.blockMapBlocks) {
          blocks.writeSlice(buf, r);
          sealBlock(buf, { type: BlockType.blockMap, owner: slot, level: 0, index: r }, cp);
        } else if (r < g.blockMapBlocks + g.inodeMapBlocks) {
          inodes.writeSlice(buf, r - g.blockMapBlocks);
          sealBlock(buf, { type: BlockType.inodeMap, owner: slot, level: 0, index: r - g.blockMapBlocks }, cp);
        }
      }
      writes.push({ first: g.regionStart[slot as 0 | 1] + rs * S, blocks: S, data });
    }
    const applied = new Map(this.applied);
    const sb = encodeSuperblock({
      cpNumber: cp,
      fsid: this.fsid,
      blockCount: g.blockCount,
      stripeBlocks: S,
      inodeCountMax: g.inodeCountMax,
      inodeFileRoot: this.ifile.root,
      inodeFileHeight: this.ifile.height,
      genCounter: this.genCounter,
      usedBlocks: blocks.count,
      usedInodes: inodes.count,
      applied,
    });
    const superblock = new Uint8Array(S * fsBlockBytes);
    superblock.set(sb);
    this.freedPrevious = this.freedCurrent;
    this.freedCurrent = 0;
    const mapBlocks = changedStripes.size * S;
    const freezeMs = (this.opts.clock?.nowMs() ?? 0) - t0;
    return { cp, dataBlocks, partialStripes: room.partial.length, mapBlocks, freezeMs, slot, writes: writes.slice(handed), superblock, blocks, inodes, applied };
  }

  /**
   * `cpWriteConcurrencyMax` writers: each takes the next CP write from `queue` and writes it,
   * until the queue is closed and empty. Rejects with the first failed write. Resolves with the
   * writes whose pages are still to be unpinned (each writer's last), for the caller to unpin
   * once its next I/O is issued.
   */
  private async cpWriters(queue: CpWriteQueue<CpJob>, freezing: { readonly running: boolean }): Promise<CpWrite[]> {
    const writeBlocks = this.volume.writeStripeBlocks?.bind(this.volume);
    // What unused blocks of a write hold: from the volume's allocator too, so that it is
    // written in place like the pages (it is never written to).
    const zero = this.volume.allocateBuffer?.(fsBlockBytes) ?? zeroBlock;
    const leftovers: CpWrite[] = [];
    const writers = Math.max(1, this.opts.cpWriteConcurrencyMax);
    // While the freeze runs (and hands writes over as it goes) more writers keep the disks
    // busy: no completion is handled until it ends. They stop taking writes once it has.
    const freezeWriters = this.opts.cpFreezeOverlap ? Math.max(writers, this.opts.cpFreezeWritesMax) : writers;
    const worker = async (k: number): Promise<void> => {
      // The write this writer finished last, its pages not yet unpinned: that waits until the
      // next write is issued (the volume queues its member writes before returning when it
      // need not wait), so the disks get the next write as soon as one completes.
      let settled: CpWrite | undefined;
      const unpinSettled = (): void => {
        if (settled !== undefined) this.unpinPages(settled);
        settled = undefined;
      };
      for (let job = await queue.next(); job !== undefined; job = k >= writers && !freezing.running ? undefined : await queue.next()) {
        const { cp, w } = job;
        if (writeBlocks !== undefined && w.data === undefined && w.readFirst !== true) {
          // The volume writes the blocks where they are (or gathers them): no copy here.
          const written = writeBlocks(w.first, cpBlocks(w, cp, zero));
          unpinSettled();
          await written;
          settled = w;
          continue;
        }
        unpinSettled();
        const base = w.readFirst === true ? (await this.volume.readBlocks(w.first, w.blocks)).slice() : undefined;
        const bytes = w.blocks * fsBlockBytes;
        const at = w.data === undefined && base === undefined ? this.cpBuffers.findIndex((b) => b.length === bytes) : -1;
        const scratch = at >= 0 ? this.cpBuffers.splice(at, 1)[0] : undefined;
        const buf = materialize(w, cp, base, scratch);
        await this.volume.writeStripes(w.first, buf);
        settled = w;
        // The volume is done with the buffer once the write settles (the Volume contract).
        if (w.data === undefined && base === undefined && this.cpBuffers.length < Math.max(1, this.opts.cpWriteConcurrencyMax)) this.cpBuffers.push(buf);
      }
      // A writer that stops after the freeze leaves the others writing: it unpins now.
      if (k >= writers) unpinSettled();
      else if (settled !== undefined) leftovers.push(settled);
    };
    await Promise.all(Array.from({ length: freezeWriters }, (_, k) => worker(k)));
    return leftovers;
  }

  /**
   * The freeze's per-block work: gives `n` pages of one tree level (`pages[k..k+n)`, in index
   * order) the next free positions of write `w` from its `si`-th fillable block on, writes each
   * new address into the parent's pointer (or the tree root) and keeps the block's buffer as
   * the CP's image of it (no copy: the live block is marked shared and copies its buffer before
   * its next change, so the freeze stays short however much data is dirty).
   */
  private placePages(t: Inode, kind0: BlockType | 'raw', pages: readonly Page[], k: number, n: number, w: CpWrite, si: number): void {
    const images = w.images as Array<Uint8Array | undefined>;
    const slots = w.slots;
    const placed = (w.pages ??= []);
    // Consecutive pages share their parent: look it up once per run of siblings.
    let parentKey = -1;
    let parent: Page | undefined;
    for (let j = 0; j < n; j++) {
      const p = pages[k + j] as Page;
      const i = slots !== undefined ? (slots[si + j] as number) : si + j;
      const addr = w.first + i;
      this.liveBlocks.set(addr);
      this.blockCache.invalidate(addr);
      images[i] = p.data;
      const kind = p.level === 0 ? kind0 : BlockType.indirect;
      if (kind !== 'raw') (w.seals ??= new Array<BlockIdentity | undefined>(w.blocks))[i] = { type: kind, owner: t.ino, level: p.level, index: p.index };
      p.shared = true;
      if (p.level === t.height) t.root = addr;
      else {
        const pIndex = Math.floor(p.index / F);
        const key = pageKey(p.level + 1, pIndex);
        if (key !== parentKey) {
          parent = this.cachedPage(t.ino, p.level + 1, pIndex);
          parentKey = key;
        }
        // Checked without building a message closure per block (49,152 per 192 MiB).
        if (parent === undefined || !parent.dirty) assert(false, `cowfs: dirty block of inode ${t.ino} has a clean or missing parent`);
        putPtr(parent.data, p.index % F, addr);
      }
      p.addr = addr;
      p.dirty = false;
      p.pinned = true;
      placed.push(p);
    }
  }

  /**
   * A CP write has settled: the volume is done with its pages' buffers, so they are the live
   * pages' own again (a change writes in place, a reader need not copy) and clean ones may be
   * evicted — while the rest of the CP is still being written, not all at its commit (49,152
   * pages for a 192 MiB CP). A failed CP fails the file system, so nothing needs them after.
   */
  private unpinPages(w: CpWrite): void {
    const pages = w.pages;
    if (pages === undefined) return;
    w.pages = undefined;
    let listed = 0;
    for (const page of pages) {
      page.pinned = false;
      page.shared = false;
      // Evictable from now on (see lruPending), unless changed or dropped meanwhile.
      if (page.dirty || page.gone || page.pending) continue;
      page.pending = true;
      listed++;
    }
    if (listed === 0) return;
    this.lruPending.push(pages);
    this.lruPendingCount += listed;
    this.lruPendingEntries += pages.length;
    if (this.lruPendingEntries > 2 * this.lruPendingCount + lruPendingSlackEntries) this.compactLruPending();
  }

  /** Rebuilds `lruPending` as one list of the pending pages, each at its newest place, in order. */
  private compactLruPending(): void {
    const seen = new Set<Page>();
    const kept: Page[] = [];
    for (let a = this.lruPending.length - 1; a >= 0; a--) {
      const list = this.lruPending[a] as Page[];
      const from = a === 0 ? this.lruPendingAt : 0;
      for (let j = list.length - 1; j >= from; j--) {
        const p = list[j] as Page;
        if (p.pending && !seen.has(p)) {
          seen.add(p);
          kept.push(p);
        }
      }
    }
    kept.reverse();
    assert(kept.length === this.lruPendingCount, () => `cowfs: ${kept.length} pending pages listed, ${this.lruPendingCount} counted`);
    this.lruPending.length = 0;
    this.lruPendingAt = 0;
    if (kept.length > 0) this.lruPending.push(kept);
    this.lruPendingEntries = kept.length;
  }

  /** `p` is no longer evictable from `lruPending` (its entries there are skipped). */
  private unlistPending(p: Page): void {
    if (!p.pending) return;
    p.pending = false;
    this.lruPendingCount--;
  }

  private async writeCp(p: PreparedCp, queue: CpWriteQueue<CpJob>, writers: Promise<CpWrite[]>): Promise<void> {
    const t0 = this.opts.clock?.nowMs() ?? 0;
    for (const w of p.writes) queue.push({ cp: p.cp, w });
    queue.close();
    const leftovers = await writers;
    const flushed = this.volume.flush();
    for (const w of leftovers) this.unpinPages(w);
    await flushed;
    await this.volume.writeStripes(p.slot * this.geometry.stripeBlocks, p.superblock);
    await this.volume.flush();
    // Committed: the slot's region now holds this CP's maps, and the blocks this CP stopped
    // using stay protected until the next CP commits (the other slot still names them).
    this.committedCp = p.cp;
    this.regionBlocks[p.slot] = p.blocks;
    this.regionInodes[p.slot] = p.inodes;
    this.committedApplied = p.applied;
    this.lastCpStats = { cpNumber: p.cp, blocks: p.dataBlocks, mapBlocks: p.mapBlocks, partialStripes: p.partialStripes, freezeMs: p.freezeMs, writeMs: (this.opts.clock?.nowMs() ?? 0) - t0 };
    this.opts.onCpCommitted?.({ cpNumber: p.cp, appliedSeq: new Map(p.applied) });
  }

  /**
   * Finds room for `n` blocks: fully free stripes (free in the live map and in both
   * committed map regions) when there are enough; otherwise, as a last resort against
   * fragmentation, also the free blocks of partly used stripes, which the CP then writes
   * by reading the stripe and rewriting its live blocks unchanged.
   */
  private allocate(n: number): { full: number[]; partial: Array<{ stripe: number; free: number[] }> } {
    const S = this.geometry.stripeBlocks;
    const firstStripe = Math.ceil(this.geometry.dataStart / S);
    const endStripe = Math.floor(this.geometry.blockCount / S);
    const span = endStripe - firstStripe;
    const want = Math.ceil(n / S);
    const full: number[] = [];
    const others = [this.regionBlocks[0], this.regionBlocks[1]];
    let s = this.stripeCursor < firstStripe || this.stripeCursor >= endStripe ? firstStripe : this.stripeCursor;
    for (let tried = 0; full.length < want && tried < span; tried++) {
      if (this.liveBlocks.rangeClear(s * S, S, others)) full.push(s);
      s = s + 1 >= endStripe ? firstStripe : s + 1;
    }
    this.stripeCursor = s;
    full.sort((a, b) => a - b);
    const partial: Array<{ stripe: number; free: number[] }> = [];
    let missing = n - full.length * S;
    if (missing > 0) {
      const taken = new Set(full);
      for (let st = firstStripe; st < endStripe && missing > 0; st++) {
        if (taken.has(st)) continue;
        const free: number[] = [];
        for (let i = 0; i < S; i++) if (this.liveBlocks.rangeClear(st * S + i, 1, others)) free.push(i);
        if (free.length === 0) continue;
        partial.push({ stripe: st, free: free.slice(0, missing) });
        missing -= Math.min(missing, free.length);
      }
      if (missing > 0) {
        throw new TwinbladeError(CowFsErrorCode.cpNoSpace, 'no-space', `CP needs ${n} blocks, found room for ${n - missing}`);
      }
    }
    return { full, partial };
  }

  /**
   * Blocks new data may still use: free blocks minus dirty ones, those still protected, and
   * a reserve. The reserve (two stripes, 1 % of the data area, and as many blocks as the
   * inode file uses) is what changes that only rewrite metadata — removes above all, which
   * in a copy-on-write file system need space before they free any — may dip into.
   */
  private availableBlocks(): number {
    return this.unreservedBlocks() - this.metadataReserveBlocks();
  }

  private metadataReserveBlocks(): number {
    const g = this.geometry;
    return 2 * g.stripeBlocks + Math.ceil((g.blockCount - g.dataStart) / 100) + Math.ceil(this.liveInodes.count / inodesPerBlock) + 8;
  }

  private unreservedBlocks(): number {
    return this.geometry.blockCount - this.liveBlocks.count - this.dirtyCount - this.freedCurrent - this.freedPrevious;
  }

  /** Metadata-only changes (remove, rename, link, setattr) fail with NOSPC only when even the reserve is gone. */
  private checkMetadataRoom(fail: (s: FsStatus) => never): void {
    if (this.unreservedBlocks() < this.geometry.stripeBlocks + 8) fail(FsStatus.NOSPC);
  }

  // ---- plumbing ------------------------------------------------------------------------

  /** @internal runs `fn` alone: changes, queries and CP freezes never interleave. */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.lockTail;
    let release!: () => void;
    this.lockTail = new Promise<void>((r) => {
      release = r;
    });
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private async query<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new FsError(FsStatus.IO, 'file system is closed');
    return this.locked(async () => {
      try {
        return await fn();
      } catch (e) {
        throw toFsError(e);
      } finally {
        this.trimCaches();
      }
    });
  }

  private trimCaches(): void {
    const keep = this.readCache.blockCacheBytesMax > 0;
    // The bound is on clean pages (the LRU and lruPending hold those not pinned by a CP), as
    // cachePagesMax says: dirty ones are bounded by dirtyBytesMax, and counting them here made
    // a burst of writes drop every clean page, the file's indirect blocks included.
    // Runs after every query and change: start no iteration of the LRU unless it is over its
    // bound (a Set iterator walks the holes its deletions left at the front, profiled at 4 % of
    // a READ).
    const clean = this.lru;
    const max = this.opts.cachePagesMax;
    // Pages of settled CP writes first (mostly file data: see lruPending).
    while (this.lruPendingCount > 0 && this.lruPending.length > 0 && clean.size + this.lruPendingCount > max) {
      const pages = this.lruPending[0] as Page[];
      const p = pages[this.lruPendingAt++] as Page;
      this.lruPendingEntries--;
      if (this.lruPendingAt === pages.length) {
        this.lruPending.shift();
        this.lruPendingAt = 0;
      }
      if (!p.pending) continue;
      this.unlistPending(p);
      const data = p.level === 0 && p.ino !== inodeFileIno && this.inodes.get(p.ino)?.type === FileType.REG;
      // Metadata stays cached longer, as below: it joins the LRU.
      if (!data) {
        clean.add(p);
        continue;
      }
      this.dropPage(p);
      if (keep && p.addr !== 0) this.blockCache.put(p.addr, p.data, fsBlockBytes);
    }
    let requeues = 0;
    for (const p of clean.size > max ? clean : []) {
      if (clean.size <= max) break;
      const data = p.level === 0 && p.ino !== inodeFileIno && this.inodes.get(p.ino)?.type === FileType.REG;
      // File data leaves first: it goes on to the block cache below, still in memory, whereas a
      // dropped indirect, directory or inode block costs a disk read, under the lock, when next
      // needed (profiled: reading back a file just written stalled on each of its indirect
      // blocks, one per 4 MiB, which the newer data pages had pushed out). Such a page at the
      // head is moved to the tail instead, a bounded number of times per trim.
      if (!data && requeues < trimMetadataRequeuesMax) {
        requeues++;
        this.lru.delete(p);
        this.lru.add(p);
        continue;
      }
      this.dropPage(p);
      // A clean data block of a regular file holds exactly what the disks hold at its address
      // (a CP wrote it, or it was read from there), and nothing changes its buffer any more
      // (clean pages are not pinned, and one lent to a READ by readParts is no longer written):
      // hand it to the block cache, so recently written data is read back from memory while the
      // cache has room.
      if (keep && data && p.addr !== 0) this.blockCache.put(p.addr, p.data, fsBlockBytes);
    }
    while (this.inodes.size > this.opts.inodeCacheMax) {
      const first = this.cleanInodes.values().next();
      if (first.done === true) break;
      this.cleanInodes.delete(first.value);
      this.inodes.delete(first.value);
    }
    for (const [ino, idx] of this.dirs) {
      if (this.dirEntryCount <= this.opts.dirIndexEntriesMax) break;
      this.dirEntryCount -= idx.names.size;
      this.dirs.delete(ino);
    }
  }

  private report(p: FsProblem): void {
    this.problems.push(p);
    this.opts.onProblem?.(p);
  }

  private corrupt(e: FsCorruptError): FsCorruptError {
    this.report({ code: e.reason, message: e.message, block: e.block });
    return e;
  }

  private fail(e: unknown): void {
    if (this.failure === undefined) this.failure = e instanceof Error ? e : new Error(String(e));
  }

  private checkUsable(): void {
    if (this.closed) throw new TwinbladeError(CowFsErrorCode.closed, 'closed', 'file system is closed');
    if (this.failure !== undefined) {
      throw new TwinbladeError(CowFsErrorCode.failed, 'io', `file system stopped: ${this.failure.message}`, { cause: this.failure });
    }
  }

  /** Stops the CP timer and waits for a running CP. Changes not in a CP stay only in the log. */
  async close(): Promise<void> {
    this.timer?.cancel();
    this.timer = undefined;
    await this.cpChain;
    this.closed = true;
    // Read-ahead in flight must land before the caller closes the volume under it.
    await this.blockCache.settled();
    this.blockCache.clear();
  }
}

/**
 * Metadata pages (indirect, directory, inode-file blocks) a trim of the page cache moves from
 * the head of its LRU to the tail rather than dropping, before it drops whatever is oldest:
 * bounds a trim's work when metadata is all there is to drop.
 */
const trimMetadataRequeuesMax = 16;
/** Data pages the freeze collects from a dirty set before placing them (a 4 MiB write's worth). */
const cpStreamPagesMax = 1024;
/** Stale `lruPending` entries tolerated beyond the pending pages before it is compacted. */
const lruPendingSlackEntries = 4096;

/** What a hole reads as in `readParts` (never written to). */
const readZeros = new Uint8Array(fsBlockBytes);

/** `len` bytes at byte offset `at` of `b`'s buffer: `b` itself when that is all of it. */
function viewOf(b: Uint8Array, at: number, len: number): Uint8Array {
  return at === b.byteOffset && len === b.length ? b : new Uint8Array(b.buffer, at, len);
}

/**
 * The on-disk pointers of one file's data blocks, for a read that walks many consecutive
 * blocks: the level-1 indirect block is looked up once per 1016 data blocks rather than once
 * per block (the same answers as `ptrOf`), and read without an await while it stays the same.
 */
class DataPtrs {
  private parentIndex = -1;
  /** The level-1 block covering `parentIndex` (null: a hole there). */
  private parent: DataView | null = null;
  private readonly capacity: number;
  constructor(
    private readonly fs: CowFs,
    private readonly t: Inode,
  ) {
    this.capacity = treeCapacity(t.height);
  }

  /** The pointer of block `fbn` when the answer needs no block fetched (else undefined: use `at`). */
  cached(fbn: number): number | undefined {
    if (this.t.height < 1) return undefined;
    if (fbn >= this.capacity) return 0;
    if (Math.floor(fbn / F) !== this.parentIndex) return undefined;
    return this.parent === null ? 0 : this.parent.getUint32(blockHeaderBytes + (fbn % F) * 4, true);
  }

  async at(fbn: number): Promise<number> {
    const t = this.t;
    if (t.height < 1) return this.fs.ptrOf(t, 0, fbn);
    if (fbn >= this.capacity) return 0;
    const pi = Math.floor(fbn / F);
    if (pi !== this.parentIndex) {
      const data = (await this.fs.getPage(t, 1, pi))?.data;
      this.parent = data === undefined ? null : dataView(data);
      this.parentIndex = pi;
    }
    return this.parent === null ? 0 : this.parent.getUint32(blockHeaderBytes + (fbn % F) * 4, true);
  }
}

function materialize(w: CpWrite, cp: number, base: Uint8Array | undefined, scratch?: Uint8Array): Uint8Array {
  if (w.data !== undefined) return w.data;
  const buf = base ?? scratch ?? new Uint8Array(w.blocks * fsBlockBytes);
  const images = w.images ?? [];
  const seals = w.seals;
  for (let i = 0; i < w.blocks; i++) {
    const img = images[i];
    if (img === undefined) {
      if (base === undefined && scratch !== undefined) buf.fill(0, i * fsBlockBytes, (i + 1) * fsBlockBytes);
      continue;
    }
    const sub = buf.subarray(i * fsBlockBytes, (i + 1) * fsBlockBytes);
    sub.set(img);
    const seal = seals?.[i];
    if (seal !== undefined) sealBlock(sub, seal, cp);
  }
  w.images = undefined;
  w.seals = undefined;
  return buf;
}

/** Never written to: what a CP write holds in blocks it does not use. */
const zeroBlock = new Uint8Array(fsBlockBytes);

/**
 * Fresh page buffers are carved out of shared slabs of this many bytes rather than allocated
 * one ArrayBuffer per 4 KiB: a 1 MiB WRITE made 256 buffers, each a separate backing store
 * the garbage collector tracks (8-13 % GC in the blade's profile of 1 MiB writes). A slab is
 * never reused: a piece stays the page's until nothing refers to it (a CP may hold a page's
 * buffer until it commits; a clean page evicted into the block cache keeps it), and the slab
 * is freed when all of its pieces are. Small, so that one long-lived page holds little else.
 */
const pageSlabBytes = 16 * fsBlockBytes;
let pageSlab: Uint8Array = new Uint8Array(0);
let pageSlabOffset = 0;
/**
 * Where slabs come from: the volume's `allocateBuffer` when it has one (`CowFs.mount` installs
 * it; O_DIRECT-aligned on the Linux driver), so that a CP writes its pages to the disks in place
 * (RAID's `writeStripeBlocks` with `writev`) instead of copying them into per-disk buffers.
 */
let pageSlabAllocate: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes);

/** Page slabs from `allocate` from now on (undefined: plain memory). Any allocator is correct; only alignment differs. */
function installPageSlabAllocator(allocate: ((bytes: number) => Uint8Array) | undefined): void {
  pageSlabAllocate = allocate ?? ((bytes) => new Uint8Array(bytes));
}

/** A zeroed 4 KiB page buffer of its own (a view of a slab no other page shares bytes of). */
function newPageBuffer(): Uint8Array {
  if (pageSlabOffset + fsBlockBytes > pageSlab.length) {
    pageSlab = pageSlabAllocate(pageSlabBytes);
    pageSlabOffset = 0;
  }
  const b = pageSlab.subarray(pageSlabOffset, pageSlabOffset + fsBlockBytes);
  pageSlabOffset += fsBlockBytes;
  return b;
}

/**
 * One CP write as separate blocks: file data as it is (the CP holds those buffers until it
 * commits; the live page copies before changing one), metadata copied and sealed, unused
 * blocks zero. Fills in the write's own image array rather than building another.
 */
function cpBlocks(w: CpWrite, cp: number, zero: Uint8Array): Uint8Array[] {
  const out = w.images ?? [];
  const seals = w.seals;
  for (let i = 0; i < w.blocks; i++) {
    const img = out[i];
    if (img === undefined) out[i] = zero;
    else {
      const seal = seals?.[i];
      if (seal !== undefined) {
        const sealed = img.slice();
        sealBlock(sealed, seal, cp);
        out[i] = sealed;
      }
    }
  }
  w.images = undefined;
  w.seals = undefined;
  return out as Uint8Array[];
}

/**
 * `writePtr` by index math: the freeze writes one pointer per frozen block, and a DataView
 * per call was a tenth of its time. Same little-endian bytes.
 */
function putPtr(block: Uint8Array, slot: number, addr: number): void {
  const o = blockHeaderBytes + slot * 4;
  block[o] = addr & 0xff;
  block[o + 1] = (addr >>> 8) & 0xff;
  block[o + 2] = (addr >>> 16) & 0xff;
  block[o + 3] = (addr >>> 24) & 0xff;
}

/** Blocks per volume write during a CP: whole stripes, about `cpWriteBytesMax`. */
function cpRunBlocks(S: number, cpWriteBytesMax: number): number {
  return Math.max(1, Math.floor(cpWriteBytesMax / fsBlockBytes / S)) * S;
}

async function loadRegion(
  volume: Volume,
  geo: FsGeometry,
  slot: number,
  cp: number,
): Promise<{ ok: true; blocks: Bitmap; inodes: Bitmap } | { ok: false; code: string; message: string; blocks: Bitmap; inodes: Bitmap }> {
  const blocks = new Bitmap(geo.blockCount);
  const inodes = new Bitmap(geo.inodeCountMax);
  const n = geo.blockMapBlocks + geo.inodeMapBlocks;
  const data = await volume.readBlocks(geo.regionStart[slot as 0 | 1], n);
  for (let r = 0; r < n; r++) {
    const buf = data.subarray(r * fsBlockBytes, (r + 1) * fsBlockBytes);
    const isBlockMap = r < geo.blockMapBlocks;
    const index = isBlockMap ? r : r - geo.blockMapBlocks;
    const bad = checkBlock(buf, { type: isBlockMap ? BlockType.blockMap : BlockType.inodeMap, owner: slot, level: 0, index });
    if (bad !== undefined) return { ok: false, code: bad.code, message: `map block ${r}: ${bad.message}`, blocks, inodes };
    if (blockCp(buf) > cp) return { ok: false, code: 'ERR_FS_MAP_FROM_LATER_CP', message: `map block ${r} written by CP ${blockCp(buf)}`, blocks, inodes };
    const fits = isBlockMap ? blocks.readSlice(buf, index) : inodes.readSlice(buf, index);
    if (!fits) return { ok: false, code: 'ERR_FS_BAD_RECORD', message: `map block ${r} has bits past the end`, blocks, inodes };
  }
  return { ok: true, blocks, inodes };
}

function sameSeqs(a: Map<number, bigint>, b: Map<number, bigint>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

export function attrOf(n: Inode): Attr {
  return {
    type: n.type as FileType,
    mode: n.mode,
    nlink: n.nlink,
    uid: n.uid,
    gid: n.gid,
    size: n.size,
    used: n.blocks * fsBlockBytes,
    rdev: { major: n.rdevMajor, minor: n.rdevMinor },
    ino: n.ino,
    gen: n.gen,
    atime: { ...n.atime },
    mtime: { ...n.mtime },
    ctime: { ...n.ctime },
  };
}

function wccOf(n: Inode): WccAttr {
  return { size: n.size, mtime: { ...n.mtime }, ctime: { ...n.ctime } };
}

function checkName(name: string, fail: (s: FsStatus) => never): void {
  if (name.length === 0 || name.includes('/') || name.includes('\0')) fail(FsStatus.INVAL);
  if (utf8Encode(name).length > fsLimits.nameBytesMax) fail(FsStatus.NAMETOOLONG);
}

/** Unix permission check of `want` (4 read, 2 write, 1 exec) for `cred`; uid 0 may do anything. */
function may(cred: Cred, f: Inode, want: number): boolean {
  if (cred.uid === 0) return true;
  let bits: number;
  if (cred.uid === f.uid) bits = (f.mode >> 6) & 7;
  else if (cred.gid === f.gid || cred.gids.includes(f.gid)) bits = (f.mode >> 3) & 7;
  else bits = f.mode & 7;
  return (bits & want) === want;
}

/** Sticky directories: only the owner of the entry, of the directory, or root may unlink. */
function stickyAllows(cred: Cred, dir: Inode, f: Inode): boolean {
  return (dir.mode & 0o1000) === 0 || cred.uid === 0 || cred.uid === f.uid || cred.uid === dir.uid;
}

function checkSetAttr(cred: Cred, f: Inode, a: SetAttr, creating: boolean, fail?: (s: FsStatus) => never): void {
  const no =
    fail ??
    ((s: FsStatus): never => {
      throw new FsError(s);
    });
  if (cred.uid === 0) {
    if (a.size !== undefined) checkSize(f, a.size, no);
    return;
  }
  const owner = cred.uid === f.uid;
  if (a.uid !== undefined && a.uid !== f.uid) no(FsStatus.PERM);
  if (a.gid !== undefined && a.gid !== f.gid && !(owner && (cred.gid === a.gid || cred.gids.includes(a.gid)))) no(FsStatus.PERM);
  if (creating) return;
  if (a.mode !== undefined && !owner) no(FsStatus.PERM);
  if (a.size !== undefined) {
    checkSize(f, a.size, no);
    if (!owner && !may(cred, f, 2)) no(FsStatus.ACCES);
  }
  if ((a.atime !== undefined || a.mtime !== undefined) && !owner && !may(cred, f, 2)) no(FsStatus.PERM);
}

function checkSize(f: Inode, size: number, no: (s: FsStatus) => never): void {
  if (f.type === FileType.DIR) no(FsStatus.ISDIR);
  if (f.type !== FileType.REG) no(FsStatus.INVAL);
  if (!Number.isSafeInteger(size) || size < 0) no(FsStatus.INVAL);
  if (size > fsLimits.fileSizeBytesMax) no(FsStatus.FBIG);
}

function verifierTimes(v: Uint8Array): [number, number] {
  const dv = dataView(v);
  return [dv.getUint32(0), dv.getUint32(4)];
}
