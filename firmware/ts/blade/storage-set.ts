// A disk set's file system: assembles the RAID volume from the set's disks and mounts its
// copy-on-write file system — formatting both only when every disk is blank. A set that
// holds another pair's or volume's disks is refused with a clear message, never formatted.
// While the set is open, a disk of the set the volume does not use (failed out, or refused at
// assembly) is probed until it is replaced, and then becomes the volume's hot spare.
import { crc32c } from '../core/crc32c.ts';
import { utf8Encode } from '../core/bytes.ts';
import { TwinbladeError } from '../core/errors.ts';
import type { Clock, TimerHandle, Timers } from '../core/clock.ts';
import type { Prng } from '../core/prng.ts';
import type { BlockDevice } from '../hal/block/block-device.ts';
import { readLabel } from '../storage/label.ts';
import { createVolume, openVolume, type RaidEvent, type RaidVolume } from '../storage/raid/index.ts';
import { CowFs, mkfs, type CpInfo, type FsProblem } from '../storage/fs/cowfs.ts';
import type { BlockCacheStats } from '../storage/fs/block-cache.ts';
import type { MetricsRegistry } from './metrics.ts';
import type { Time } from '../fsapi/ops.ts';
import { computeLayout } from '../nvlog/core/layout.ts';
import { cowFsDefaults } from '../storage/fs/limits.ts';

export const storageSetLimits = {
  /**
   * How often a disk of the set that the volume does not use is probed for a replacement (a
   * readable blank disk, or the failed-out one readable again). One label read per such disk:
   * cheap, and a replaced disk is a spare within seconds of the swap.
   */
  replacedDiskProbeIntervalMs: 2000,
} as const;

/**
 * How much memory a disk set's clean-block cache may hold when the board descriptor does not
 * say (`service.readCacheBytes`). A storage appliance uses its memory as cache: the file data
 * clients read back (or wrote recently) is served from memory, as a kernel page cache serves
 * it for a file server on a local file system. The bound only caps growth; the cache holds
 * nothing until data is read or written, so many daemons on one host (the rig, the tests)
 * take only what their own traffic brings in.
 */
export const readCacheLimits = {
  /**
   * Share of the board's RAM per disk set: a blade serving both sets after a takeover keeps
   * at most a quarter, and the rig's two blades on one host at most half of it between them.
   */
  ramFraction: 1 / 8,
  /** Never less than the file system's own default (small boards, containers with little RAM). */
  bytesMin: 64 * 1024 * 1024,
  /**
   * Never more than this: each cached block is a Map entry the garbage collector walks, and
   * the buffers are memory outside the JavaScript heap that V8 accounts for in its GC heuristics.
   */
  bytesMax: 2 * 1024 * 1024 * 1024,
} as const;

/** The block cache bound of one disk set: `configured` when given, else a share of `totalMemBytes`. */
export function readCacheBytesFor(totalMemBytes: number, configured?: number): number {
  if (configured !== undefined) return configured;
  const share = Math.floor((totalMemBytes * readCacheLimits.ramFraction) / (1024 * 1024)) * 1024 * 1024;
  return Math.min(readCacheLimits.bytesMax, Math.max(readCacheLimits.bytesMin, share));
}

/**
 * The dirty-data bound of a disk set's file system on a blade whose NVRAM has `nvramBytes`:
 * one log half, and never less than the file system's own default. Every dirty block comes from
 * a logged change, and the change log starts a CP when half of a log half is used
 * (change-path.ts), so for large writes the log decides when CPs run; the dirty bound stays the
 * guard against metadata-heavy changes (a 200-byte CREATE dirties whole directory and inode
 * blocks) and against memory. At the file system's fixed default (64 MiB) a 1 GiB NVRAM,
 * which takes a 128 MiB burst of writes without a CP, still started one every 64 MiB.
 */
export function dirtyBytesFor(nvramBytes: number): number {
  return Math.max(cowFsDefaults.dirtyBytesMax, computeLayout(nvramBytes).halfBytes);
}

/**
 * Registers the read cache's figures of the disk sets `sets()` returns at each scrape (labelled
 * by whose set it is): hits, misses and blocks read ahead since mount, bytes held and the bound.
 */
export function collectReadCacheMetrics(r: MetricsRegistry, sets: () => ReadonlyArray<{ blade: 'a' | 'b'; fs: CowFs }>): void {
  const each = (value: (s: BlockCacheStats) => number) => () => sets().map((s) => ({ labels: { set: s.blade }, value: value(s.fs.readCacheStats) }));
  r.collect('twinblade_read_cache_hits_total', 'Blocks read from the block cache (since mount)', 'counter', each((s) => s.hits + s.pendingHits));
  r.collect('twinblade_read_cache_misses_total', 'Blocks read from the disks by a reader (since mount)', 'counter', each((s) => s.misses));
  r.collect('twinblade_read_ahead_blocks_total', 'Blocks read ahead (since mount)', 'counter', each((s) => s.readAheadBlocks));
  r.collect('twinblade_read_cache_bytes', 'Bytes of read buffers the block cache keeps', 'gauge', each((s) => s.bytes));
  r.collect('twinblade_read_cache_bytes_max', 'Bound of the block cache (service.readCacheBytes or a share of RAM)', 'gauge', each((s) => s.bytesMax));
}

export const StorageSetErrorCode = {
  foreign: 'ERR_SET_FOREIGN_DISKS',
  partlyBlank: 'ERR_SET_PARTLY_BLANK',
} as const;

/** The file-system id of a blade's volume: stable, derived from the pair and the blade. */
export function volumeFsid(pairId: string, blade: 'a' | 'b'): bigint {
  const hi = BigInt(crc32c(utf8Encode(`twinblade:${pairId}`)));
  const lo = BigInt(crc32c(utf8Encode(`volume:${blade}`)));
  return (hi << 32n) | lo;
}

export interface StorageSetOptions {
  pairId: string;
  /** Whose set this is (the volume id is `vol-<blade>`). */
  blade: 'a' | 'b';
  clock: Clock;
  timers: Timers;
  prng: Prng;
  onRaidEvent?: (e: RaidEvent) => void;
  cpIntervalMs: number;
  /** Format the set when every disk is blank (first start). */
  formatIfBlank: boolean;
  now: () => Time;
  onCpCommitted?: (cp: CpInfo) => void;
  onProblem?: (p: FsProblem) => void;
  /** A disk outside the volume was probed readable but refused as a spare (reported once per message). */
  onDiskRefused?: (disk: string, message: string) => void;
  /** Override of storageSetLimits.replacedDiskProbeIntervalMs; 0 turns replacement probing off. */
  replacedDiskProbeIntervalMs?: number;
  /** Bytes the file system's clean-block cache may hold (readCacheBytesFor); default the file system's own. */
  readCacheBytes?: number;
  /** Dirty bytes beyond which the file system starts a CP (dirtyBytesFor); default the file system's own. */
  dirtyBytesMax?: number;
}

export interface StorageSet {
  volume: RaidVolume;
  fs: CowFs;
  formatted: boolean;
  close(): Promise<void>;
}

export async function openStorageSet(members: readonly BlockDevice[], spares: readonly BlockDevice[], o: StorageSetOptions): Promise<StorageSet> {
  const volumeId = `vol-${o.blade}`;
  const all = [...members, ...spares];
  const labels = await Promise.all(all.map(async (d) => ({ d, r: await readLabel(d) })));
  const blank = labels.filter((l) => l.r.kind === 'blank');
  let volume: RaidVolume;
  let formatted = false;
  const runtime = { clock: o.clock, timers: o.timers, prng: o.prng, ...(o.onRaidEvent ? { onEvent: o.onRaidEvent } : {}) };
  if (blank.length === all.length) {
    if (!o.formatIfBlank) throw new TwinbladeError(StorageSetErrorCode.partlyBlank, 'invalid-argument', `the disks of ${volumeId} are blank and formatting is off`);
    volume = await createVolume(members, { pairId: o.pairId, volumeId, spares, ...runtime });
    await mkfs(volume, { fsid: volumeFsid(o.pairId, o.blade), time: o.now(), rootMode: 0o777 });
    formatted = true;
  } else {
    const foreign = labels.filter((l) => l.r.kind === 'label' && (l.r.label.pairId !== o.pairId || l.r.label.volumeId !== volumeId));
    if (foreign.length > 0) {
      const names = foreign.map((l) => (l.r.kind === 'label' ? `${l.d.name} (pair ${l.r.label.pairId}, volume ${l.r.label.volumeId})` : l.d.name));
      throw new TwinbladeError(StorageSetErrorCode.foreign, 'invalid-argument', `refusing to use disks that belong elsewhere: ${names.join(', ')}; expected pair ${o.pairId}, volume ${volumeId}`);
    }
    volume = await openVolume(all, { pairId: o.pairId, volumeId, ...runtime });
  }
  const fs = await CowFs.mount(volume, {
    timers: o.timers,
    cpIntervalMs: o.cpIntervalMs,
    ...(o.dirtyBytesMax !== undefined ? { dirtyBytesMax: o.dirtyBytesMax } : {}),
    ...(o.readCacheBytes !== undefined ? { readCache: { blockCacheBytesMax: o.readCacheBytes } } : {}),
    ...(o.onCpCommitted ? { onCpCommitted: o.onCpCommitted } : {}),
    ...(o.onProblem ? { onProblem: o.onProblem } : {}),
  });
  const probeMs = o.replacedDiskProbeIntervalMs ?? storageSetLimits.replacedDiskProbeIntervalMs;
  const replacements = probeMs > 0 ? new ReplacementWatch(volume, all, o.timers, probeMs, o.onDiskRefused) : undefined;
  return {
    volume,
    fs,
    formatted,
    close: async () => {
      await replacements?.stop();
      await fs.close();
      await volume.close();
    },
  };
}

/**
 * Hot-swap for the set's disks: every `intervalMs`, each disk of the set that the volume
 * does not hold as a working member or a spare (a failed member included) is offered to `addSpare`. The volume formats a blank
 * disk or one it failed out earlier (its data is stale by then, docs/raid.md), which starts a
 * rebuild if a position is lost; an unreadable disk (still dead, not yet swapped) is tried
 * again next time; a disk holding anything else is refused and left untouched.
 */
class ReplacementWatch {
  private timer: TimerHandle | undefined;
  private probing: Promise<void> | undefined;
  private stopped = false;
  private readonly reported = new Map<BlockDevice, string>();

  constructor(
    private readonly volume: RaidVolume,
    private readonly disks: readonly BlockDevice[],
    timers: Timers,
    intervalMs: number,
    private readonly onRefused: ((disk: string, message: string) => void) | undefined,
  ) {
    this.timer = timers.after(intervalMs, () => {
      this.probing = this.probe()
        // Only addSpare's refusals are expected (handled in probe); anything else is reported
        // the same way rather than left as an unhandled rejection in a timer.
        .catch((e: unknown) => this.onRefused?.('(replacement probe)', (e as Error).message ?? String(e)))
        .finally(() => {
          this.probing = undefined;
          if (!this.stopped) this.timer?.refresh();
        });
    });
  }

  private async probe(): Promise<void> {
    const st = this.volume.status();
    // An offline volume accepts nothing; reassembly (a reboot) sorts its disks out.
    if (st.state === 'offline') return;
    // A member the volume failed out still sits in its position; RaidVolume.addSpare takes
    // it back (a swapped-in blank disk, or the same disk healed) and rebuilds onto it.
    const used = new Set(st.disks.filter((d) => d.state !== 'failed').map((d) => d.name));
    for (const d of this.disks) {
      if (this.stopped) return;
      if (used.has(d.name)) continue;
      try {
        await this.volume.addSpare(d);
        this.reported.delete(d);
      } catch (e) {
        const err = e as { kind?: string; message?: string };
        // 'io': the disk is still dead (or gone); it is probed again next time.
        if (err.kind === 'io') continue;
        const message = err.message ?? String(e);
        if (this.reported.get(d) !== message) {
          this.reported.set(d, message);
          this.onRefused?.(d.name, message);
        }
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    await this.probing;
  }
}
