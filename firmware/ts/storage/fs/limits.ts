// Named limits of the copy-on-write file system, and the FSINFO / PATHCONF values the NFS
// service reports for it (so NFS and the file system agree on one set of numbers).
import { fsLimits } from '../../fsapi/ops.ts';
import { fsBlockBytes } from './format.ts';

export const cowFsDefaults = {
  /** A CP is taken at least this often while there are changes (issue: default 10 s). */
  cpIntervalMs: 10_000,
  /** Dirty data beyond this starts a CP; beyond twice this, changes wait for the running CP. */
  dirtyBytesMax: 64 * 1024 * 1024,
  /** Clean cached blocks kept in memory (dirty and in-flight blocks are never evicted). */
  cachePagesMax: 16_384,
  /** Clean inodes kept in memory. */
  inodeCacheMax: 65_536,
  /** Directory-index entries kept in memory across all directories (rebuilt from blocks on demand). */
  dirIndexEntriesMax: 1_000_000,
  /** Writes a CP keeps in flight to the volume at once. */
  cpWriteConcurrencyMax: 2,
  /**
   * A CP's writes start while it is still freezing (`CowFsOptions.cpFreezeOverlap`): the freeze
   * hands each complete volume write to the writers and yields a few microtask turns, so the
   * disks work while the rest is frozen.
   */
  cpFreezeOverlap: true,
  /**
   * Writes a CP keeps in flight while its freeze still runs (with `cpFreezeOverlap`): the
   * freeze is one synchronous pass that handles no completions, so the writers it has started
   * keep the disks busy only as long as they have work queued. The freeze holds the lock, so
   * no client request is queued behind them meanwhile; after it, `cpWriteConcurrencyMax`.
   * 8 writes of 4 MiB cover a 192 MiB CP's freeze on a quiet host (~11 ms; a write takes the
   * benchmark host's disks ~1.6 ms); more only adds pool threads' work (parity) competing with
   * the freeze for the CPU, which on 2 shared vCPUs made it last longer.
   */
  cpFreezeWritesMax: 8,
  /** Bytes per volume write call during a CP (rounded to whole stripes). */
  cpWriteBytesMax: 4 * 1024 * 1024,
  /** Inodes per volume byte at mkfs: one inode per 16 KiB of volume by default. */
  bytesPerInode: 16 * 1024,
} as const;

/** NFSv3 FSINFO values for this file system. */
export const fsInfo = {
  readBytesMax: 1024 * 1024,
  readBytesPreferred: 1024 * 1024,
  readBytesMultiple: fsBlockBytes,
  writeBytesMax: fsLimits.writeBytesMax,
  writeBytesPreferred: fsLimits.writeBytesMax,
  writeBytesMultiple: fsBlockBytes,
  readdirBytesPreferred: 64 * 1024,
  fileSizeBytesMax: fsLimits.fileSizeBytesMax,
  /** Timestamps are stored with nanoseconds. */
  timeDelta: { sec: 0, nsec: 1 },
  supportsHardLinks: true,
  supportsSymlinks: true,
  homogeneous: true,
  canSetTime: true,
} as const;

/** NFSv3 PATHCONF values for this file system. */
export const pathConf = {
  linkCountMax: fsLimits.linkCountMax,
  nameBytesMax: fsLimits.nameBytesMax,
  noTrunc: true,
  chownRestricted: true,
  caseInsensitive: false,
  casePreserving: true,
} as const;
