// The RAID-4 volume: N-1 data disks and one dedicated parity disk behind the Volume
// interface, with degraded reads, bad-block repair, fail-out, a hot spare and a throttled,
// restartable rebuild. Design and failure handling: docs/raid.md.

import { assert } from '../../core/assert.ts';
import { buggify } from '../../core/buggify.ts';
import type { Clock, Timers } from '../../core/clock.ts';
import { InvalidArgumentError, TwinbladeError, isTwinbladeError } from '../../core/errors.ts';
import type { Prng } from '../../core/prng.ts';
import { toHex } from '../../core/bytes.ts';
import type { BlockDevice } from '../../hal/block/block-device.ts';
import { BlockErrorCode } from '../../hal/block/block-device.ts';
import { readLabel, sparePosition, writeLabel } from '../label.ts';
import type { DiskLabel, MemberState } from '../label.ts';
import { VolumeErrorCode } from '../volume.ts';
import type { Volume, VolumeStatus } from '../volume.ts';
import { RaidError, RaidErrorCode } from './errors.ts';
import type { DiskVerdict } from './errors.ts';
import { diskByteOffset, raidBlockBytes } from './geometry.ts';
import type { RaidGeometry } from './geometry.ts';
import { StripeLocks } from './stripe-lock.ts';
import { TokenBucket } from './token-bucket.ts';
import { coalesceViews, gatherStripesAsyncInstalled, gatherStripesOffThread, splitStripes, xorAll, xorConcat, xorInto } from './xor.ts';
import { BufferPool } from './buffer-pool.ts';
import { decodeIntent, encodeIntent, intentRegionStripes } from './intent.ts';
import { diskLayout } from '../layout.ts';

/** Named limits of the RAID layer. */
export interface RaidLimits {
  /** Average bytes per second the rebuild writes to the new disk (Infinity: unthrottled). */
  rebuildBandwidthBytesPerSec: number;
  /** Bytes per member the rebuild reconstructs per step (rounded to whole stripe units); also the stripe-lock granule. */
  rebuildChunkBytes: number;
  /** The rebuild flushes the new disk and records its cursor in that disk's label after this many bytes. */
  rebuildCheckpointBytes: number;
  /** Read errors (each one repaired) a member may return within `memberReadErrorWindowMs` before it is failed out. */
  memberReadErrorCountMax: number;
  /** The window over which a member's read errors are counted: a disk with an occasional bad sector is kept. */
  memberReadErrorWindowMs: number;
  /** Per-member bytes one write-intent bit covers: a bigger region means fewer intent updates, a longer resync. */
  intentRegionBytes: number;
  /**
   * A region's bit is cleared by a flush only once the region has had no write for this
   * long, so that back-to-back CPs into the same region (the superblock's, the current
   * allocation area) do not pay an intent flush each. A stale bit only costs a resync.
   */
  intentClearDelayMs: number;
  /** Scratch buffers (per-member runs and parity of full-stripe writes) kept for reuse, in bytes. */
  writeBufferPoolBytesMax: number;
  /**
   * Average bytes per second, per member, the background resync after a power cut reads
   * (Infinity: unthrottled). The volume serves meanwhile; only a disk failure before the
   * resync ends costs anything (see docs/raid.md), so it should not take long either.
   */
  resyncBandwidthBytesPerSec: number;
}

export const defaultRaidLimits: RaidLimits = {
  rebuildBandwidthBytesPerSec: 64 * 1024 * 1024,
  rebuildChunkBytes: 1024 * 1024,
  rebuildCheckpointBytes: 64 * 1024 * 1024,
  memberReadErrorCountMax: 16,
  memberReadErrorWindowMs: 10 * 60 * 1000,
  intentRegionBytes: 64 * 1024 * 1024,
  intentClearDelayMs: 5000,
  writeBufferPoolBytesMax: 64 * 1024 * 1024,
  resyncBandwidthBytesPerSec: 256 * 1024 * 1024,
};

/** What the volume reports as it happens (besides `status()`). */
export type RaidEvent =
  | { type: 'member-failed'; position: number; disk: string; code: string; message: string }
  | { type: 'read-error'; position: number; disk: string; code: string; errorCount: number }
  | { type: 'block-repaired'; position: number; disk: string; diskBlock: number }
  | { type: 'labels-written'; generation: number }
  | { type: 'spare-added'; disk: string }
  | { type: 'rebuild-started'; position: number; disk: string; fromStripe: number }
  | { type: 'rebuild-progress'; position: number; progress: number }
  | { type: 'rebuild-done'; position: number; disk: string }
  | { type: 'rebuild-failed'; position: number; code: string; message: string }
  | { type: 'offline'; code: string; message: string }
  /** After an unclean shutdown: the volume serves while the background resync checks these stripes. */
  | { type: 'resync-started'; stripes: number }
  /** After an unclean shutdown: parity recomputed in the regions with writes in flight. */
  | { type: 'resync-done'; stripes: number; repairedStripes: number }
  /** After an unclean shutdown on a degraded volume: those regions cannot be checked (see docs/raid.md). */
  | { type: 'resync-skipped'; stripes: number; code: string; message: string };

export interface RaidRuntimeOptions {
  clock: Clock;
  timers: Timers;
  /** Source of disk uuids for spares formatted later. */
  prng: Prng;
  onEvent?: (event: RaidEvent) => void;
  limits?: Partial<RaidLimits>;
  /** Start a rebuild as soon as a position is lost and a spare is at hand (default true). */
  autoRebuild?: boolean;
  /**
   * Allocates the buffers the volume writes (per-disk stripe data, parity, reconstructed
   * data). Pass the native addon's aligned allocator with O_DIRECT disks so that the driver
   * need not copy into bounce buffers. Default: `new Uint8Array(bytes)`.
   */
  allocate?: (bytes: number) => Uint8Array;
  /**
   * How `writeStripeBlocks` (a CP's write of separate blocks) reaches the members:
   * - `'auto'` (default): straight from the caller's blocks with the members' `writev` when
   *   every member being written offers it (only the parity is computed into a buffer; no
   *   copy of the data on this thread), otherwise gathered into per-member buffers first (and
   *   always gathered when an off-thread gather was opted in to, `installGatherStripesAsync`);
   * - `true`: always as blocks, concatenated per member for a disk without `writev` (tests
   *   run the zero-copy path on simulated disks this way);
   * - `false`: always gathered first (the path before `writev`; for side-by-side figures).
   */
  zeroCopyWrites?: boolean | 'auto';
}

export interface RaidCounters {
  /** Blocks returned by reconstruction from the other members (degraded or after an error). */
  reconstructedBlocks: number;
  /** Bad blocks rewritten from parity. */
  repairedBlocks: number;
  readErrors: number;
  writeErrors: number;
}

export interface RaidStatus extends VolumeStatus {
  generation: number;
  counters: RaidCounters;
  /** Set when the last rebuild stopped on an error (the volume stays degraded). */
  rebuildError?: { code: string; message: string };
  /** While the background resync after a power cut runs: stripes it has still to check. */
  resyncStripesLeft?: number;
}

type SlotState = 'ok' | 'rebuilding' | 'failed' | 'missing';

interface Slot {
  disk: BlockDevice | undefined;
  uuid: string;
  state: SlotState;
  /** Times (clock ms) of this disk's recent read errors, within the window. */
  readErrorTimes: number[];
  /** While rebuilding: stripes below this are rebuilt (and kept current by writes). */
  cursorStripe: number;
}

interface Spare {
  disk: BlockDevice;
  uuid: string;
}

/** Construction parameters (from createVolume/openVolume, after assembly). */
export interface RaidVolumeInit {
  geometry: RaidGeometry;
  pairId: string;
  volumeId: string;
  generation: number;
  slots: Array<{ disk: BlockDevice | undefined; uuid: string; state: SlotState; cursorStripe: number }>;
  spares: Spare[];
  verdicts: DiskVerdict[];
}

export function newDiskUuid(prng: Prng): string {
  return toHex(prng.bytes(16));
}

class StopRebuild extends Error {}
class StopResync extends Error {}

export class RaidVolume implements Volume {
  readonly blockSize = raidBlockBytes;
  readonly blockCount: number;
  readonly stripeBlocks: number;
  readonly geometry: RaidGeometry;
  readonly pairId: string;
  readonly volumeId: string;
  /** How each offered disk was used when the volume was assembled. */
  readonly assembly: readonly DiskVerdict[];

  private generation: number;
  private readonly slots: Slot[];
  private readonly spares: Spare[];
  private readonly limits: RaidLimits;
  private readonly locks = new StripeLocks();
  private readonly counters: RaidCounters = { reconstructedBlocks: 0, repairedBlocks: 0, readErrors: 0, writeErrors: 0 };
  private offlineError: TwinbladeError | undefined;
  /** Set when a label update was refused by a reservation: the partner owns these disks now. */
  private fencedError: unknown;
  private closed = false;
  /** Label updates, serialized: generations must land on each disk in order. */
  private labelChain: Promise<void> = Promise.resolve();
  private rebuildRun: { position: number; stop: boolean; done: Promise<void> } | undefined;
  private rebuildError: { code: string; message: string } | undefined;
  /** Write intent (see intent.ts): stripes per region, and per region what the next record says, what the last flushed one said, writes in flight, and the last completed write. */
  private readonly regionStripes: number;
  private readonly intentDirty: boolean[];
  private readonly intentDurable: boolean[];
  private readonly intentInFlight: number[];
  private readonly intentLastWrite: number[];
  private readonly intentLastWriteMs: number[];
  /** Per region: the record update in flight that will make its bit durable (prepareWrites). */
  private readonly intentPending: Array<Promise<void> | undefined>;
  private writeSeq = 0;
  private readonly pool: BufferPool;
  /**
   * Volume.allocateBuffer: the allocator the members write without bounce copies, as a plain
   * Uint8Array (never a Node Buffer, whose `slice` is a view, not a copy). A function of the
   * disk driver only, so that a caller keeping it (the file system's page slabs) does not keep
   * this volume alive.
   */
  readonly allocateBuffer: (bytes: number) => Uint8Array;
  /**
   * Per region: named dirty by an intent record at open and not yet resynced. Such a
   * region's bit stays set (on disk too) until its parity has been checked, whatever flushes.
   */
  private readonly resyncPending: boolean[];
  private resyncRun: { stop: boolean; done: Promise<void> } | undefined;
  /** writeSeq as of the start of the last successful flush: every write up to it is durable. */
  private flushedSeq = 0;

  constructor(
    init: RaidVolumeInit,
    private readonly options: RaidRuntimeOptions,
  ) {
    this.geometry = init.geometry;
    this.blockCount = init.geometry.blockCount;
    this.stripeBlocks = init.geometry.stripeBlocks;
    this.pairId = init.pairId;
    this.volumeId = init.volumeId;
    this.generation = init.generation;
    this.slots = init.slots.map((s) => ({ ...s, readErrorTimes: [] }));
    this.spares = [...init.spares];
    this.assembly = init.verdicts;
    this.limits = { ...defaultRaidLimits, ...options.limits };
    this.pool = new BufferPool((n) => this.allocate(n), this.limits.writeBufferPoolBytesMax);
    this.allocateBuffer = plainAllocator(options.allocate ?? diskAllocator(init.slots.map((s) => s.disk)));
    this.regionStripes = intentRegionStripes(this.geometry.stripeCount, this.geometry.stripeUnitBytes, this.limits.intentRegionBytes);
    const regions = Math.ceil(this.geometry.stripeCount / this.regionStripes);
    this.intentDirty = new Array<boolean>(regions).fill(false);
    this.intentDurable = new Array<boolean>(regions).fill(false);
    this.intentInFlight = new Array<number>(regions).fill(0);
    this.intentLastWrite = new Array<number>(regions).fill(0);
    // Never written since open: idle however young the clock (a monotonic clock may start near 0).
    this.intentLastWriteMs = new Array<number>(regions).fill(-Infinity);
    this.intentPending = new Array<Promise<void> | undefined>(regions).fill(undefined);
    this.resyncPending = new Array<boolean>(regions).fill(false);
    assert(this.slots.length === this.geometry.memberCount, 'one slot per member');
    assert(this.unavailablePositions().length <= 1, 'a volume is assembled with at most one position unavailable');
  }

  // ---------------------------------------------------------------- Volume interface

  readBlocks(firstBlock: number, count: number): Promise<Uint8Array> {
    this.checkRange(firstBlock, count);
    if (count === 0) return Promise.resolve(new Uint8Array(0));
    return this.readBlocksLocked(firstBlock, count);
  }

  /** Volume.readBlockParts: views of the member reads, one per stripe-unit run, no copy. */
  readBlockParts(firstBlock: number, count: number): Promise<Uint8Array[]> {
    this.checkRange(firstBlock, count);
    if (count === 0) return Promise.resolve([]);
    return this.readUnitRunsLocked(firstBlock, count);
  }

  writeStripes(firstBlock: number, data: Uint8Array): Promise<void> {
    const stripeBytes = this.stripeBlocks * raidBlockBytes;
    if (!Number.isInteger(firstBlock) || firstBlock % this.stripeBlocks !== 0 || data.length === 0 || data.length % stripeBytes !== 0) {
      throw new InvalidArgumentError(
        VolumeErrorCode.notFullStripe,
        `writeStripes: need whole stripes of ${this.stripeBlocks} blocks at a stripe boundary (firstBlock ${firstBlock}, ${data.length} bytes)`,
      );
    }
    this.checkRange(firstBlock, data.length / raidBlockBytes);
    const g = this.geometry;
    return this.writeStripesLocked(firstBlock / this.stripeBlocks, data.length / stripeBytes, (members, parity) =>
      splitStripes(data, g.stripeUnitBytes, members, parity),
    );
  }

  writeStripeBlocks(firstBlock: number, blocks: readonly Uint8Array[]): Promise<void> {
    if (!Number.isInteger(firstBlock) || firstBlock % this.stripeBlocks !== 0 || blocks.length === 0 || blocks.length % this.stripeBlocks !== 0) {
      throw new InvalidArgumentError(
        VolumeErrorCode.notFullStripe,
        `writeStripeBlocks: need whole stripes of ${this.stripeBlocks} blocks at a stripe boundary (firstBlock ${firstBlock}, ${blocks.length} blocks)`,
      );
    }
    for (const b of blocks) {
      if (!(b instanceof Uint8Array) || b.length !== raidBlockBytes) throw new InvalidArgumentError(VolumeErrorCode.notFullStripe, `writeStripeBlocks: every block must be ${raidBlockBytes} bytes`);
    }
    this.checkRange(firstBlock, blocks.length);
    const g = this.geometry;
    const firstStripe = firstBlock / this.stripeBlocks;
    const stripes = blocks.length / this.stripeBlocks;
    if (this.zeroCopy()) {
      // Each data member writes its units straight from the caller's blocks (pwritev on the
      // Linux driver): only the parity is computed into a buffer of ours. Blocks adjacent in
      // memory (pages of one slab) are merged first, so the addon sees a few parts per member.
      const perData: Uint8Array[][] = [];
      for (let m = 0; m < g.dataDisks; m++) {
        const run = new Array<Uint8Array>(stripes * g.unitBlocks);
        for (let s = 0; s < stripes; s++) {
          const from = (s * g.dataDisks + m) * g.unitBlocks;
          for (let o = 0; o < g.unitBlocks; o++) run[s * g.unitBlocks + o] = blocks[from + o] as Uint8Array;
        }
        perData.push(coalesceViews(run));
      }
      return this.writeStripesLocked(firstStripe, stripes, undefined, perData);
    }
    // Off the main thread when one is installed (installGatherStripesAsync): the CP issues its next
    // write meanwhile.
    return this.writeStripesLocked(firstStripe, stripes, (members, parity) => gatherStripesOffThread(blocks, g.unitBlocks, members, parity));
  }

  /**
   * Volume.prepareWrites: marks the write-intent regions of these block ranges in one record
   * update (written and flushed on every member), so that none of the writes that follow
   * waits for a record update of its own. A region marked this way counts as written now: a
   * flush clears its bit only after `intentClearDelayMs` without writes, as for a written one.
   */
  prepareWrites(ranges: ReadonlyArray<{ readonly first: number; readonly count: number }>): Promise<void> {
    this.checkUsable();
    const regions = new Set<number>();
    for (const { first, count } of ranges) {
      this.checkRange(first, count);
      if (count === 0) continue;
      const lo = Math.floor(first / this.stripeBlocks);
      const hi = Math.floor((first + count - 1) / this.stripeBlocks);
      for (let r = Math.floor(lo / this.regionStripes); r <= Math.floor(hi / this.regionStripes); r++) {
        if (this.intentDurable[r] !== true && this.intentPending[r] === undefined) regions.add(r);
      }
    }
    if (regions.size === 0) return Promise.resolve();
    const now = this.options.clock.nowMs();
    for (const r of regions) {
      this.intentDirty[r] = true;
      this.intentLastWriteMs[r] = now;
    }
    const done = this.persistIntent(true);
    for (const r of regions) this.intentPending[r] = done;
    const settle = (): void => {
      for (const r of regions) if (this.intentPending[r] === done) this.intentPending[r] = undefined;
    };
    done.then(settle, settle);
    return done;
  }

  /** Whether `writeStripeBlocks` writes the caller's blocks in place (see `zeroCopyWrites`). */
  private zeroCopy(): boolean {
    const mode = this.options.zeroCopyWrites ?? 'auto';
    if (mode !== 'auto') return mode;
    // An off-thread gather, when one was opted in to (installGatherStripesAsync), is kept.
    if (gatherStripesAsyncInstalled()) return false;
    return this.writablePositions().every((p) => this.slots[p]?.disk?.writev !== undefined);
  }

  async flush(): Promise<void> {
    this.checkUsable();
    const flushSeq = this.writeSeq;
    const writable = this.writablePositions();
    const disks = writable.map((p) => this.slots[p]?.disk as BlockDevice);
    const results = await Promise.allSettled(disks.map((d) => d.flush()));
    let fenced: unknown;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      if (isFenced(r.reason)) fenced ??= r.reason;
      else this.memberWriteFailed(writable[i] as number, disks[i] as BlockDevice, r.reason);
    });
    await this.labelsDurable();
    this.checkUsable();
    if (fenced !== undefined) throw fenced;
    // Regions whose every write is now durable need no resync: record them clean (the
    // record itself need not be flushed: a stale dirty bit only costs a resync).
    this.flushedSeq = Math.max(this.flushedSeq, flushSeq);
    let cleared = false;
    const idleSinceMs = this.options.clock.nowMs() - this.limits.intentClearDelayMs;
    this.intentDirty.forEach((dirty, r) => {
      if (dirty && this.resyncPending[r] !== true && this.intentInFlight[r] === 0 && (this.intentLastWrite[r] ?? 0) <= flushSeq && (this.intentLastWriteMs[r] ?? 0) <= idleSinceMs) {
        this.intentDirty[r] = false;
        cleared = true;
      }
    });
    if (cleared) await this.persistIntent(false);
    this.checkUsable();
  }

  status(): RaidStatus {
    const state = this.offlineError !== undefined || this.fencedError !== undefined
      ? 'offline'
      : this.rebuildRun !== undefined
        ? 'rebuilding'
        : this.unavailablePositions().length > 0
          ? 'degraded'
          : 'normal';
    const disks: VolumeStatus['disks'] = this.slots.map((s, p) => ({
      name: s.disk?.name ?? `(position ${p})`,
      role: p === this.geometry.parityPosition ? 'parity' : 'data',
      state: s.state,
    }));
    for (const sp of this.spares) disks.push({ name: sp.disk.name, role: 'spare', state: 'ok' });
    const status: RaidStatus = { state, disks, generation: this.generation, counters: { ...this.counters } };
    const rebuilding = this.slots.find((s) => s.state === 'rebuilding');
    if (rebuilding !== undefined) status.rebuildProgress = rebuilding.cursorStripe / this.geometry.stripeCount;
    if (this.rebuildError !== undefined) status.rebuildError = { ...this.rebuildError };
    if (this.resyncRun !== undefined) status.resyncStripesLeft = this.resyncStripesLeft();
    return status;
  }

  // ---------------------------------------------------------------- spares, rebuild, close

  /**
   * Adds a hot spare. A blank disk, or a disk this volume failed out earlier, is formatted
   * as a spare; a disk holding anything else (another volume's label, a corrupt label,
   * foreign data) is refused with ERR_RAID_DISK_IN_USE unless `force`.
   */
  async addSpare(disk: BlockDevice, opts: { force?: boolean } = {}): Promise<void> {
    this.checkUsable();
    if (disk.sizeBytes < this.geometry.memberBytesMin) {
      throw new RaidError(RaidErrorCode.diskTooSmall, 'invalid-argument', `spare ${disk.name}: ${disk.sizeBytes} bytes, the volume needs ${this.geometry.memberBytesMin}`);
    }
    // A disk the volume failed out may still sit in its position (no spare took it over yet):
    // it is no member any more, and is formatted like any disk this volume failed out.
    if (this.slots.some((s) => s.disk === disk && (s.state === 'ok' || s.state === 'rebuilding')) || this.spares.some((s) => s.disk === disk)) {
      throw new RaidError(RaidErrorCode.diskInUse, 'invalid-argument', `spare ${disk.name}: already part of this volume`);
    }
    const read = await readLabel(disk);
    if (read.kind === 'unreadable') throw new RaidError(read.code, 'io', `spare ${disk.name}: ${read.message}`);
    if (read.kind !== 'blank' && opts.force !== true) {
      const ours = read.kind === 'label' && read.label.pairId === this.pairId && read.label.volumeId === this.volumeId;
      const current = ours && this.slots.some((s) => s.uuid === read.label.diskUuid && (s.state === 'ok' || s.state === 'rebuilding'));
      if (!ours || current) {
        const what = read.kind === 'label' ? `holds the label of ${read.label.pairId}/${read.label.volumeId} position ${read.label.position}` : `holds data that is not a valid label (${read.code})`;
        throw new RaidError(RaidErrorCode.diskInUse, 'invalid-argument', `spare ${disk.name}: ${what}; refusing to format over it`);
      }
    }
    const spare: Spare = { disk, uuid: newDiskUuid(this.options.prng) };
    let failure: unknown;
    await this.enqueueLabels(async () => {
      try {
        await writeLabel(disk, this.labelFor(spare.uuid, 'spare', sparePosition, 0));
        await disk.flush();
      } catch (e) {
        failure = e;
      }
    });
    if (failure !== undefined) throw new RaidError(errorCode(failure), 'io', `spare ${disk.name}: writing its label failed: ${errorMessage(failure)}`, [], { cause: failure });
    this.spares.push(spare);
    this.emit({ type: 'spare-added', disk: disk.name });
    if (this.options.autoRebuild !== false) this.startRebuild();
  }

  /**
   * Starts (or resumes) rebuilding the unavailable position onto the spare, in the
   * background. Returns false when there is nothing to do or no spare.
   */
  startRebuild(): boolean {
    if (this.closed || this.offlineError !== undefined || this.rebuildRun !== undefined) return false;
    const lost = this.unavailablePositions();
    const position = lost[0];
    if (position === undefined) return false;
    const slot = this.slots[position] as Slot;
    if (slot.state !== 'rebuilding') {
      const spare = this.spares.shift();
      if (spare === undefined) return false;
      slot.disk = spare.disk;
      slot.uuid = spare.uuid;
      slot.state = 'rebuilding';
      slot.cursorStripe = 0;
      slot.readErrorTimes = [];
    }
    this.rebuildError = undefined;
    const run = { position, stop: false, done: Promise.resolve() };
    this.rebuildRun = run;
    run.done = this.rebuild(position, run).finally(() => {
      if (this.rebuildRun === run) this.rebuildRun = undefined;
      // The new disk failed during the rebuild: go on with the next spare, if any.
      if (this.options.autoRebuild !== false && this.rebuildError === undefined && !this.closed) this.startRebuild();
    });
    return true;
  }

  /** Resolves when the running rebuild (if any) has ended, successfully or not. */
  async whenRebuildDone(): Promise<void> {
    while (this.rebuildRun !== undefined) await this.rebuildRun.done;
  }

  /**
   * Stops background work and refuses further I/O. Waits for the rebuild to stop at a
   * stripe boundary. The member disks stay open: the caller owns them.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.rebuildRun !== undefined) {
      this.rebuildRun.stop = true;
      await this.rebuildRun.done;
    }
    if (this.resyncRun !== undefined) {
      this.resyncRun.stop = true;
      await this.resyncRun.done;
    }
    // Closed after a flush that covered every write: a clean shutdown, no resync next time
    // (unless regions named dirty at open were never resynced: their bits stay).
    const idle = this.intentInFlight.every((n) => n === 0) && this.writeSeq === this.flushedSeq && !this.resyncPending.some((x) => x);
    if (idle && this.intentDirty.some((d) => d) && this.offlineError === undefined && this.fencedError === undefined) {
      this.intentDirty.fill(false);
      await this.persistIntent(true).catch(() => undefined);
    }
    await this.labelChain;
  }

  /**
   * Checks that parity matches data on every stripe (a scrub). Reads through the normal
   * path, so bad blocks found on the way are repaired. Returns the stripes whose parity
   * disagrees; with `repair`, rewrites their parity from the data. Only on a normal volume.
   */
  async verifyParity(opts: { repair?: boolean } = {}): Promise<{ stripesChecked: number; mismatchedStripes: number[] }> {
    this.checkUsable();
    // Stripes torn by a power cut are the resync's to fix; a scrub reports what is left after it.
    await this.whenResyncDone();
    this.checkUsable();
    const mismatched: number[] = [];
    const g = this.geometry;
    const chunkStripes = this.chunkStripes();
    for (let lo = 0; lo < g.stripeCount; lo += chunkStripes) {
      const hi = Math.min(g.stripeCount, lo + chunkStripes);
      const release = await this.locks.acquire(lo, hi);
      try {
        this.checkUsable();
        if (this.unavailablePositions().length > 0) throw new TwinbladeError(VolumeErrorCode.io, 'busy', 'verifyParity: the volume is not normal');
        const parts = await Promise.all(this.slots.map((_, p) => this.readExtent(p, lo * g.unitBlocks, hi * g.unitBlocks - 1, 0)));
        const syndrome = xorAll(parts);
        for (let s = lo; s < hi; s++) {
          const at = (s - lo) * g.stripeUnitBytes;
          if (syndrome.subarray(at, at + g.stripeUnitBytes).some((b) => b !== 0)) mismatched.push(s);
        }
        if (opts.repair === true && mismatched.some((s) => s >= lo)) {
          const parity = xorAll(parts.slice(0, g.dataDisks));
          const regions = await this.beginIntent(lo, hi);
          try {
            await this.writeMember(g.parityPosition, lo * g.unitBlocks, parity);
          } finally {
            this.endIntent(regions);
          }
        }
      } finally {
        release();
      }
    }
    await this.labelsDurable();
    return { stripesChecked: g.stripeCount, mismatchedStripes: mismatched };
  }

  // ---------------------------------------------------------------- reads

  private async readBlocksLocked(first: number, count: number): Promise<Uint8Array> {
    const runs = await this.readUnitRunsLocked(first, count);
    const out = new Uint8Array(count * raidBlockBytes);
    let at = 0;
    for (const r of runs) {
      out.set(r, at);
      at += r.length;
    }
    return out;
  }

  /**
   * Blocks [first, first + count) as views of the member reads, in volume order, one per run
   * of a stripe unit (a unit is contiguous both in the volume and on its disk).
   */
  private async readUnitRunsLocked(first: number, count: number): Promise<Uint8Array[]> {
    const g = this.geometry;
    this.checkUsable();
    const firstStripe = Math.floor(first / g.stripeBlocks);
    const lastStripe = Math.floor((first + count - 1) / g.stripeBlocks);
    const release = await this.locks.acquire(firstStripe, lastStripe + 1);
    try {
      this.checkUsable();
      // Per data member, one read covering every block it must supply (the ends may over-read
      // up to a stripe unit); members are read in parallel.
      const extents = this.memberExtents(first, count);
      const buffers = await Promise.all(extents.map((e, m) => (e === undefined ? undefined : this.readExtent(m, e.lo, e.hi, 0))));
      this.checkUsable();
      const runs: Uint8Array[] = [];
      let b = first;
      const end = first + count;
      while (b < end) {
        const stripe = Math.floor(b / g.stripeBlocks);
        const within = b - stripe * g.stripeBlocks;
        const member = Math.floor(within / g.unitBlocks);
        const inUnit = within - member * g.unitBlocks;
        const run = Math.min(g.unitBlocks - inUnit, end - b);
        const diskBlock = stripe * g.unitBlocks + inUnit;
        const e = extents[member];
        const buf = buffers[member];
        assert(e !== undefined && buf !== undefined, 'every member that holds a requested block was read');
        const from = (diskBlock - e.lo) * raidBlockBytes;
        runs.push(buf.subarray(from, from + run * raidBlockBytes));
        b += run;
      }
      return runs;
    } finally {
      release();
    }
  }

  private memberExtents(first: number, count: number): Array<{ lo: number; hi: number } | undefined> {
    const g = this.geometry;
    const out: Array<{ lo: number; hi: number } | undefined> = new Array<{ lo: number; hi: number } | undefined>(g.dataDisks).fill(undefined);
    let b = first;
    const end = first + count;
    while (b < end) {
      const stripe = Math.floor(b / g.stripeBlocks);
      const within = b - stripe * g.stripeBlocks;
      const member = Math.floor(within / g.unitBlocks);
      const inUnit = within - member * g.unitBlocks;
      const run = Math.min(g.unitBlocks - inUnit, end - b);
      const lo = stripe * g.unitBlocks + inUnit;
      const hi = lo + run - 1;
      const e = out[member];
      if (e === undefined) out[member] = { lo, hi };
      else e.hi = hi;
      b += run;
    }
    return out;
  }

  /** True if position `p` holds current data for disk blocks [lo, hi]. */
  private readable(p: number, lo: number, hi: number): boolean {
    const s = this.slots[p] as Slot;
    if (s.state === 'ok') return true;
    return s.state === 'rebuilding' && hi < s.cursorStripe * this.geometry.unitBlocks;
  }

  /**
   * Disk blocks [lo, hi] of position `p`. At depth 0 a block that cannot be read is
   * reconstructed from the other members and rewritten (repair); at depth 1 (reading for a
   * reconstruction) it cannot be, and the read fails with ERR_VOLUME_IO.
   */
  private async readExtent(p: number, lo: number, hi: number, depth: 0 | 1): Promise<Uint8Array> {
    const slot = this.slots[p] as Slot;
    if (!this.readable(p, lo, hi)) return this.reconstructOrFail(p, lo, hi, depth);
    const disk = slot.disk as BlockDevice;
    try {
      return await disk.read(diskByteOffset(lo), (hi - lo + 1) * raidBlockBytes);
    } catch (e) {
      if (isFenced(e)) throw e;
      // A failed multi-block read only says that some block in it is bad; the block reads
      // below find (and count) which. A failed one-block read is that block's error.
      if (lo === hi || errorCode(e) === BlockErrorCode.closed) this.memberReadFailed(p, disk, e);
    }
    // The extent failed: find the bad blocks one by one, so that one bad sector costs one
    // reconstruction, not the whole extent.
    const out = new Uint8Array((hi - lo + 1) * raidBlockBytes);
    for (let b = lo; b <= hi; b++) {
      this.checkUsable();
      let block: Uint8Array | undefined;
      if (this.readable(p, b, b) && lo !== hi) {
        try {
          block = await disk.read(diskByteOffset(b), raidBlockBytes);
        } catch (e) {
          if (isFenced(e)) throw e;
          this.memberReadFailed(p, disk, e);
        }
      }
      if (block === undefined) {
        block = await this.reconstructOrFail(p, b, b, depth);
        if (this.readable(p, b, b)) await this.repairBlock(p, b, block);
      }
      out.set(block, (b - lo) * raidBlockBytes);
    }
    return out;
  }

  private async reconstructOrFail(p: number, lo: number, hi: number, depth: 0 | 1): Promise<Uint8Array> {
    this.checkUsable();
    if (depth === 1) {
      throw new TwinbladeError(VolumeErrorCode.io, 'io', `blocks ${lo}..${hi} of position ${p} are unreadable and a second member is needed to reconstruct them`);
    }
    const parts = await Promise.all(this.slots.map((_, q) => (q === p ? undefined : this.readExtent(q, lo, hi, 1))));
    this.checkUsable();
    this.counters.reconstructedBlocks += hi - lo + 1;
    return xorAll(
      parts.filter((x): x is Uint8Array => x !== undefined),
      this.allocate((hi - lo + 1) * raidBlockBytes),
    );
  }

  private async repairBlock(p: number, diskBlock: number, data: Uint8Array): Promise<void> {
    const slot = this.slots[p] as Slot;
    const disk = slot.disk as BlockDevice;
    try {
      await disk.write(diskByteOffset(diskBlock), data);
    } catch (e) {
      if (isFenced(e)) throw e;
      this.memberWriteFailed(p, disk, e);
      return;
    }
    this.counters.repairedBlocks++;
    this.emit({ type: 'block-repaired', position: p, disk: disk.name, diskBlock });
  }

  // ---------------------------------------------------------------- writes

  /**
   * Writes `stripes` whole stripes from `firstStripe`: `fill` puts each data member's units
   * (consecutive) into its buffer and their parity into the last, in one pass. Or, with
   * `dataParts` (and no `fill`), the data members write those blocks in place and the parity
   * member writes their XOR (see `writeMembers`).
   */
  private async writeStripesLocked(
    firstStripe: number,
    stripes: number,
    fill: ((members: Uint8Array[], parity: Uint8Array) => void | Promise<void>) | undefined,
    dataParts?: ReadonlyArray<readonly Uint8Array[]>,
  ): Promise<void> {
    const g = this.geometry;
    this.checkUsable();
    // Free lock and intent bits already durable (the usual case in a CP): no turn is awaited
    // before the member writes are issued, so a caller's next step runs after they are queued.
    const release = this.locks.tryAcquire(firstStripe, firstStripe + stripes) ?? (await this.locks.acquire(firstStripe, firstStripe + stripes));
    try {
      this.checkUsable();
      // One pass over the data: each member's units, consecutive, and their parity, into
      // reused buffers (aligned for O_DIRECT when the allocator is).
      const runBytes = stripes * g.stripeUnitBytes;
      const taken = fill === undefined ? [] : Array.from({ length: g.memberCount }, () => this.pool.take(runBytes));
      const perPosition: Member[] = fill === undefined ? [...(dataParts ?? []), { xorOf: dataParts ?? [] }] : taken;
      try {
        // Only an asynchronous fill (an off-thread gather) is awaited: a synchronous one adds no turn.
        const filled = fill?.(taken.slice(0, g.dataDisks), taken[g.dataDisks] as Uint8Array);
        if (filled !== undefined) await filled;
        const regions = this.beginIntentDurable(firstStripe, firstStripe + stripes) ?? (await this.beginIntent(firstStripe, firstStripe + stripes));
        try {
          await this.writeMembers(firstStripe * g.unitBlocks, perPosition);
        } finally {
          this.endIntent(regions);
        }
      } finally {
        // writeMembers settles every member write before returning: nothing references them.
        this.pool.give(...taken);
      }
    } finally {
      release();
    }
    // A member failed out during this write misses it: the write is acknowledged only once
    // the labels saying so are durable, so the stale member can never be assembled again.
    await this.labelsDurable();
    this.checkUsable();
  }

  /**
   * Writes `perPosition[p]` at disk block `diskBlock` of every writable position: one buffer,
   * blocks written in place with the disk's `writev` (concatenated first for a disk without
   * one), or the XOR of the data members' blocks (`xorOf`, the parity of an in-place write):
   * computed by the disk's `writeXor` where it has one (on the thread pool, off this thread),
   * else here into a pool buffer first.
   */
  private async writeMembers(diskBlock: number, perPosition: readonly Member[]): Promise<void> {
    const writable = this.writablePositions();
    const disks = writable.map((p) => this.slots[p]?.disk as BlockDevice);
    const offset = diskByteOffset(diskBlock);
    const concatenated: Uint8Array[] = [];
    const results = await Promise.allSettled(
      writable.map((p, i) => {
        const disk = disks[i] as BlockDevice;
        const data = perPosition[p] as Member;
        if (data instanceof Uint8Array) return disk.write(offset, data);
        if (!isXorOf(data)) {
          if (disk.writev !== undefined) return disk.writev(offset, data);
          const buf = this.pool.take(totalLength(data));
          let at = 0;
          for (const b of data) {
            buf.set(b, at);
            at += b.length;
          }
          concatenated.push(buf);
          return disk.write(offset, buf);
        }
        if (disk.writeXor !== undefined) return disk.writeXor(offset, data.xorOf);
        const buf = this.pool.take(totalLength(data.xorOf[0] ?? []));
        xorConcat(buf, data.xorOf);
        concatenated.push(buf);
        return disk.write(offset, buf);
      }),
    );
    this.pool.give(...concatenated);
    let fenced: unknown;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      if (isFenced(r.reason)) fenced ??= r.reason;
      else this.memberWriteFailed(writable[i] as number, disks[i] as BlockDevice, r.reason);
    });
    this.checkUsable();
    if (fenced !== undefined) throw fenced;
  }

  private async writeMember(p: number, diskBlock: number, data: Uint8Array): Promise<void> {
    const slot = this.slots[p] as Slot;
    if (slot.state !== 'ok' && slot.state !== 'rebuilding') return;
    const disk = slot.disk as BlockDevice;
    try {
      await disk.write(diskByteOffset(diskBlock), data);
    } catch (e) {
      if (isFenced(e)) throw e;
      this.memberWriteFailed(p, disk, e);
    }
    this.checkUsable();
  }

  // ---------------------------------------------------------------- failures

  private memberReadFailed(p: number, disk: BlockDevice, e: unknown): void {
    const slot = this.slots[p] as Slot;
    // An error from a disk that has already been replaced at this position says nothing about the new one.
    if (slot.disk !== disk) return;
    const now = this.options.clock.nowMs();
    slot.readErrorTimes = slot.readErrorTimes.filter((t) => t > now - this.limits.memberReadErrorWindowMs);
    slot.readErrorTimes.push(now);
    this.counters.readErrors++;
    const code = errorCode(e);
    const recent = slot.readErrorTimes.length;
    this.emit({ type: 'read-error', position: p, disk: slot.disk?.name ?? '', code, errorCount: recent });
    if (code === BlockErrorCode.closed || recent > this.limits.memberReadErrorCountMax) {
      this.failMember(p, disk, code, `${recent} read errors within ${this.limits.memberReadErrorWindowMs} ms (last: ${errorMessage(e)})`);
    }
  }

  private memberWriteFailed(p: number, disk: BlockDevice, e: unknown): void {
    if (this.slots[p]?.disk !== disk) return;
    // A disk remaps a bad sector on write; a write that still fails means the disk (or its
    // path) is gone, so it is failed out at once.
    this.counters.writeErrors++;
    this.failMember(p, disk, errorCode(e), `write failed: ${errorMessage(e)}`);
  }

  /**
   * Takes position `p` out of service. A second unavailable position takes the volume
   * offline (nothing more is written, so nothing is corrupted); otherwise the new member
   * table is written to the remaining members, and a rebuild starts if a spare is at hand.
   */
  private failMember(p: number, disk: BlockDevice, code: string, message: string): void {
    const slot = this.slots[p] as Slot;
    if (slot.disk !== disk || slot.state === 'failed' || slot.state === 'missing' || this.offlineError !== undefined) return;
    const wasRebuilding = slot.state === 'rebuilding';
    const others = this.unavailablePositions().filter((q) => q !== p);
    slot.state = 'failed';
    this.emit({ type: 'member-failed', position: p, disk: slot.disk?.name ?? '', code, message });
    if (wasRebuilding && this.rebuildRun?.position === p) this.rebuildRun.stop = true;
    if (others.length > 0) {
      this.goOffline(`position ${p} failed (${message}) while position ${others.join(', ')} was unavailable`);
      return;
    }
    void this.persistMembership().catch(() => undefined);
    // A failed rebuild target is replaced when its rebuild run unwinds (see startRebuild).
    if (this.options.autoRebuild !== false && !wasRebuilding) this.startRebuild();
  }

  private goOffline(message: string): void {
    if (this.offlineError !== undefined) return;
    this.offlineError = new TwinbladeError(VolumeErrorCode.offline, 'io', `volume ${this.pairId}/${this.volumeId} offline: ${message}`);
    if (this.rebuildRun !== undefined) this.rebuildRun.stop = true;
    this.emit({ type: 'offline', code: VolumeErrorCode.offline, message });
  }

  // ---------------------------------------------------------------- labels

  private labelFor(uuid: string, role: DiskLabel['role'], position: number, cursorStripe: number): DiskLabel {
    return {
      generation: this.generation,
      pairId: this.pairId,
      volumeId: this.volumeId,
      diskUuid: uuid,
      role,
      position,
      memberCount: this.geometry.memberCount,
      stripeUnitBytes: this.geometry.stripeUnitBytes,
      stripeCount: this.geometry.stripeCount,
      rebuildCursorStripe: cursorStripe,
      members: this.slots.map((s) => ({ uuid: s.uuid, state: tableState(s.state) })),
    };
  }

  /**
   * Queues a label update behind the previous ones. Work handles disk errors itself; if it
   * still throws (a fence, or a bug), membership can no longer be recorded, so the volume
   * stops rather than acknowledge writes whose protection it cannot vouch for.
   */
  private enqueueLabels(work: () => Promise<void>): Promise<void> {
    const next = this.labelChain.then(work).catch((e: unknown) => {
      if (isFenced(e)) this.fencedError ??= e;
      else this.goOffline(`label update failed: ${errorMessage(e)}`);
      throw e;
    });
    // The chain itself never rejects, so one failed update does not block the next.
    this.labelChain = next.catch(() => undefined);
    return next;
  }

  /** Writes the current member table, at a new generation, to every current member, and flushes. */
  persistMembership(): Promise<void> {
    return this.enqueueLabels(async () => {
      // In simulation, widen the window between a membership change and its durable record:
      // nothing that depends on it may be acknowledged inside that window.
      if (buggify('raid.labels.slow', 0.3)) await this.options.timers.sleep(3);
      if (this.offlineError !== undefined) return;
      this.generation++;
      const writable = this.writablePositions();
      const labels = writable.map((p) => {
        const s = this.slots[p] as Slot;
        return this.labelFor(s.uuid, p === this.geometry.parityPosition ? 'parity' : 'data', p, s.state === 'rebuilding' ? s.cursorStripe : 0);
      });
      const disks = writable.map((p) => this.slots[p]?.disk as BlockDevice);
      const results = await Promise.allSettled(
        disks.map(async (disk, i) => {
          await writeLabel(disk, labels[i] as DiskLabel);
          await disk.flush();
        }),
      );
      results.forEach((r, i) => {
        if (r.status === 'rejected' && isFenced(r.reason)) this.fencedError ??= r.reason;
        else if (r.status === 'rejected') this.memberWriteFailed(writable[i] as number, disks[i] as BlockDevice, r.reason);
      });
      if (this.offlineError === undefined) this.emit({ type: 'labels-written', generation: this.generation });
    });
  }

  /** Waits until every label update queued so far (including ones they queue) is durable. */
  private async labelsDurable(): Promise<void> {
    let seen: Promise<void> | undefined;
    while (seen !== this.labelChain) {
      seen = this.labelChain;
      await seen;
    }
  }

  // ---------------------------------------------------------------- write intent

  /**
   * Marks stripes [lo, hi) as having a write in flight, first making that durable on every
   * member if the record does not say so yet. Returns the regions, for endIntent.
   */
  /** beginIntent when every region of [lo, hi) is already durably marked (nothing to wait for), else undefined. */
  private beginIntentDurable(lo: number, hi: number): number[] | undefined {
    const r0 = Math.floor(lo / this.regionStripes);
    const r1 = Math.floor((hi - 1) / this.regionStripes);
    for (let r = r0; r <= r1; r++) if (this.intentDurable[r] !== true) return undefined;
    const regions: number[] = [];
    for (let r = r0; r <= r1; r++) {
      regions.push(r);
      this.intentInFlight[r] = (this.intentInFlight[r] ?? 0) + 1;
    }
    return regions;
  }

  private async beginIntent(lo: number, hi: number): Promise<number[]> {
    const regions: number[] = [];
    for (let r = Math.floor(lo / this.regionStripes); r <= Math.floor((hi - 1) / this.regionStripes); r++) regions.push(r);
    for (const r of regions) this.intentInFlight[r] = (this.intentInFlight[r] ?? 0) + 1;
    if (regions.every((r) => this.intentDurable[r] === true)) return regions;
    try {
      // A record update already on its way for these regions (prepareWrites) is waited for
      // rather than followed by another.
      const pending = regions.filter((r) => this.intentDurable[r] !== true).map((r) => this.intentPending[r]);
      if (pending.every((p) => p !== undefined)) await Promise.all(pending);
      if (!regions.every((r) => this.intentDurable[r] === true)) {
        for (const r of regions) this.intentDirty[r] = true;
        await this.persistIntent(true);
      }
      this.checkUsable();
    } catch (e) {
      this.endIntent(regions);
      throw e;
    }
    return regions;
  }

  private endIntent(regions: readonly number[]): void {
    this.writeSeq++;
    const now = this.options.clock.nowMs();
    for (const r of regions) {
      this.intentInFlight[r] = (this.intentInFlight[r] ?? 1) - 1;
      this.intentLastWrite[r] = this.writeSeq;
      this.intentLastWriteMs[r] = now;
    }
  }

  /** Writes the intent record to every current member (and flushes it when setting bits). */
  private persistIntent(flush: boolean): Promise<void> {
    return this.enqueueLabels(async () => {
      if (this.offlineError !== undefined) return;
      const snapshot = this.intentDirty.slice();
      const record = encodeIntent({ regionStripes: this.regionStripes, dirty: snapshot });
      const writable = this.writablePositions();
      const disks = writable.map((p) => this.slots[p]?.disk as BlockDevice);
      const results = await Promise.allSettled(
        disks.map(async (disk) => {
          await disk.write(diskLayout.raidIntentOffsetBytes, record);
          if (flush) await disk.flush();
        }),
      );
      results.forEach((r, i) => {
        if (r.status === 'rejected' && isFenced(r.reason)) this.fencedError ??= r.reason;
        else if (r.status === 'rejected') this.memberWriteFailed(writable[i] as number, disks[i] as BlockDevice, r.reason);
      });
      snapshot.forEach((dirty, r) => {
        if (!dirty) this.intentDurable[r] = false;
        else if (flush) this.intentDurable[r] = true;
      });
    });
  }

  /**
   * After an unclean shutdown: finds the regions a member's intent record marks dirty (a
   * record that cannot be read marks everything dirty) and starts recomputing their parity in
   * the background; the volume serves meanwhile (parity matters only once a position is
   * lost). A degraded volume cannot be checked: the regions are reported and cleared.
   * Called by openVolume before anything else runs; resolves once the volume may serve.
   */
  async resyncAfterUncleanShutdown(): Promise<void> {
    const g = this.geometry;
    const dirtyStripes = new Array<boolean>(g.stripeCount).fill(false);
    const ok = this.slots.flatMap((s, p) => (s.state === 'ok' ? [p] : []));
    await Promise.all(
      ok.map(async (p) => {
        const disk = this.slots[p]?.disk as BlockDevice;
        let record: { regionStripes: number; dirty: boolean[] } | undefined;
        try {
          record = decodeIntent(await disk.read(diskLayout.raidIntentOffsetBytes, diskLayout.raidIntentBytes));
        } catch (e) {
          if (isFenced(e)) throw e;
        }
        if (record === undefined) {
          dirtyStripes.fill(true);
          return;
        }
        const rs = record.regionStripes;
        record.dirty.forEach((d, r) => {
          if (d) dirtyStripes.fill(true, Math.min(g.stripeCount, r * rs), Math.min(g.stripeCount, (r + 1) * rs));
        });
      }),
    );
    const count = dirtyStripes.filter((d) => d).length;
    if (count === 0) {
      this.intentDurable.fill(false);
      return;
    }
    const lost = this.unavailablePositions();
    if (lost.length > 0) {
      this.emitResyncSkipped(count, lost);
      // Whatever could be done is done: the record starts clean.
      this.intentDirty.fill(false);
      await this.persistIntent(true);
      this.checkUsable();
      return;
    }
    // The regions (in this volume's region size, which a record of another size maps onto)
    // stay dirty until resynced. Every member's record names them, durably, before anything
    // is served: a cut before the resync ends finds them again whichever members survive.
    for (let r = 0; r < this.resyncPending.length; r++) {
      const lo = r * this.regionStripes;
      const pending = dirtyStripes.slice(lo, Math.min(g.stripeCount, lo + this.regionStripes)).some((d) => d);
      this.resyncPending[r] = pending;
      this.intentDirty[r] = pending;
    }
    await this.persistIntent(true);
    this.checkUsable();
    const stripes = this.resyncStripesLeft();
    this.emit({ type: 'resync-started', stripes });
    const run = { stop: false, done: Promise.resolve() };
    this.resyncRun = run;
    run.done = this.resync(run, stripes).finally(() => {
      if (this.resyncRun === run) this.resyncRun = undefined;
    });
  }

  /** Resolves when the background resync (if any) has ended: done, skipped, or stopped by close. */
  async whenResyncDone(): Promise<void> {
    while (this.resyncRun !== undefined) await this.resyncRun.done;
  }

  private resyncStripesLeft(): number {
    let n = 0;
    this.resyncPending.forEach((p, r) => {
      if (p) n += Math.min(this.geometry.stripeCount, (r + 1) * this.regionStripes) - r * this.regionStripes;
    });
    return n;
  }

  private emitResyncSkipped(stripes: number, lost: readonly number[]): void {
    const parityLost = lost[0] === this.geometry.parityPosition;
    this.emit({
      type: 'resync-skipped',
      stripes,
      code: VolumeErrorCode.io,
      message: parityLost
        ? 'the parity disk is missing: the rebuild recomputes it from the data'
        : `position ${lost.join(', ')} is missing: ${stripes} stripes written when the power failed cannot be checked, and blocks of that position in them are reconstructed from parity that may be stale`,
    });
  }

  /**
   * The background resync: region by region, chunk by chunk (throttled), recomputes parity
   * from the data under the chunk's stripe lock and rewrites it where it differs. A region
   * leaves `resyncPending` once checked; its bit is cleared by a later flush like any other.
   * If a position is lost first, the regions left cannot be checked any more: reported
   * (`resync-skipped`), as for a degraded open.
   */
  private async resync(run: { stop: boolean }, stripes: number): Promise<void> {
    const g = this.geometry;
    const chunk = this.chunkStripes();
    const bucket = new TokenBucket(this.options.clock, this.options.timers, this.limits.resyncBandwidthBytesPerSec, chunk * g.stripeUnitBytes);
    let repaired = 0;
    const check = (): void => {
      if (run.stop || this.closed || this.offlineError !== undefined || this.fencedError !== undefined) throw new StopResync();
    };
    const skipIfLost = (): boolean => {
      const lost = this.unavailablePositions();
      if (lost.length === 0) return false;
      this.emitResyncSkipped(this.resyncStripesLeft(), lost);
      this.resyncPending.fill(false);
      return true;
    };
    try {
      for (let r = 0; r < this.resyncPending.length; r++) {
        if (this.resyncPending[r] !== true) continue;
        const end = Math.min(g.stripeCount, (r + 1) * this.regionStripes);
        let unchecked = false;
        for (let lo = r * this.regionStripes; lo < end; lo += chunk) {
          const hi = Math.min(end, lo + chunk);
          await bucket.take((hi - lo) * g.stripeUnitBytes);
          check();
          if (skipIfLost()) return;
          let outcome: number | 'lost';
          try {
            outcome = await this.resyncStripes(r, lo, hi);
          } catch (e) {
            check();
            if (!isTwinbladeError(e) || e.code !== VolumeErrorCode.io) throw e;
            // A double fault in this chunk (a block unreadable on two members): it cannot be
            // checked now; the region keeps its bit, so the next open tries again.
            unchecked = true;
            continue;
          }
          check();
          if (outcome === 'lost') {
            if (skipIfLost()) return;
          } else {
            repaired += outcome;
          }
        }
        if (!unchecked) this.resyncPending[r] = false;
      }
      // The parity written is made durable; the regions' bits are cleared by this flush or a
      // later one (a region with client writes keeps its bit a while, as always), and the
      // record saying so is flushed too: a cut right after a resync need not repeat it.
      await this.flush();
      await this.persistIntent(true);
      this.checkUsable();
      this.emit({ type: 'resync-done', stripes, repairedStripes: repaired });
    } catch (e) {
      // Stopped (close, offline, fenced, or a flush that met one): the regions left stay
      // dirty on disk, so the next open resyncs them.
      if (e instanceof StopResync || isTwinbladeError(e)) return;
      // Anything else is a bug: stop serving rather than vouch for parity nobody checked.
      this.goOffline(`resync failed: ${errorMessage(e)}`);
    }
  }

  /**
   * Checks the parity of stripes [lo, hi) of region `r` and rewrites it where it differs.
   * Returns how many stripes were wrong, or 'lost' when a position became unavailable while
   * reading (the data read may then be a reconstruction from the very parity under check).
   */
  private async resyncStripes(r: number, lo: number, hi: number): Promise<number | 'lost'> {
    const g = this.geometry;
    const release = await this.locks.acquire(lo, hi);
    this.intentInFlight[r] = (this.intentInFlight[r] ?? 0) + 1;
    const syndrome = this.pool.take((hi - lo) * g.stripeUnitBytes);
    try {
      this.checkUsable();
      const parts = await Promise.all(this.slots.map((_, p) => this.readExtent(p, lo * g.unitBlocks, hi * g.unitBlocks - 1, 0)));
      this.checkUsable();
      if (this.unavailablePositions().length > 0) return 'lost';
      // data ^ parity is zero exactly where the parity is right.
      xorAll(parts, syndrome);
      let wrong = 0;
      for (let s = lo; s < hi; s++) {
        const at = (s - lo) * g.stripeUnitBytes;
        if (!isZero(syndrome.subarray(at, at + g.stripeUnitBytes))) wrong++;
      }
      if (wrong > 0) {
        // syndrome ^ old parity = the XOR of the data: the right parity.
        xorInto(syndrome, parts[g.parityPosition] as Uint8Array);
        await this.writeMember(g.parityPosition, lo * g.unitBlocks, syndrome);
      }
      return wrong;
    } finally {
      this.pool.give(syndrome);
      this.writeSeq++;
      this.intentInFlight[r] = (this.intentInFlight[r] ?? 1) - 1;
      this.intentLastWrite[r] = this.writeSeq;
      release();
    }
  }

  // ---------------------------------------------------------------- rebuild

  private chunkStripes(): number {
    return Math.max(1, Math.floor(this.limits.rebuildChunkBytes / this.geometry.stripeUnitBytes));
  }

  private async rebuild(position: number, run: { stop: boolean }): Promise<void> {
    const g = this.geometry;
    const slot = this.slots[position] as Slot;
    const disk = slot.disk as BlockDevice;
    const check = (): void => {
      if (run.stop || this.closed || this.offlineError !== undefined || slot.state !== 'rebuilding' || slot.disk !== disk) throw new StopRebuild();
    };
    try {
      // Record the new member first: from this generation on, the lost disk is stale. Then
      // give it the intent record: once it is a member, a blank record there would mark the
      // whole volume dirty at every open.
      await this.persistMembership();
      check();
      await this.persistIntent(false);
      check();
      this.emit({ type: 'rebuild-started', position, disk: disk.name, fromStripe: slot.cursorStripe });
      const bucket = new TokenBucket(this.options.clock, this.options.timers, this.limits.rebuildBandwidthBytesPerSec, this.limits.rebuildChunkBytes);
      const chunkStripes = this.chunkStripes();
      const checkpointStripes = Math.max(chunkStripes, Math.floor(this.limits.rebuildCheckpointBytes / g.stripeUnitBytes));
      let sinceCheckpoint = 0;
      // Two chunks in flight: the next chunk is read and reconstructed while the previous one
      // is written to the new disk. Each holds its stripe lock until it is written; the
      // cursor only ever moves past written chunks, in order.
      let writing: Promise<void> | undefined;
      const settle = async (): Promise<void> => {
        const w = writing;
        writing = undefined;
        if (w !== undefined) await w;
      };
      const progressed = async (): Promise<void> => {
        this.emit({ type: 'rebuild-progress', position, progress: slot.cursorStripe / g.stripeCount });
        if (sinceCheckpoint >= checkpointStripes && slot.cursorStripe < g.stripeCount) {
          sinceCheckpoint = 0;
          await this.checkpointRebuild(position);
          check();
        }
      };
      try {
        let next = slot.cursorStripe;
        while (next < g.stripeCount) {
          const lo = next;
          const hi = Math.min(g.stripeCount, lo + chunkStripes);
          await bucket.take((hi - lo) * g.stripeUnitBytes);
          // In simulation, let client I/O overtake the rebuild now and then.
          if (buggify('raid.rebuild.stall', 0.1)) await this.options.timers.sleep(5);
          check();
          const release = await this.locks.acquire(lo, hi);
          let data: Uint8Array;
          try {
            check();
            data = await this.reconstructOrFail(position, lo * g.unitBlocks, hi * g.unitBlocks - 1, 0);
            check();
            const hadPrevious = writing !== undefined;
            await settle();
            if (hadPrevious) await progressed();
          } catch (e) {
            release();
            throw e;
          }
          next = hi;
          sinceCheckpoint += hi - lo;
          writing = (async () => {
            try {
              await this.writeMember(position, lo * g.unitBlocks, data);
              check();
              slot.cursorStripe = hi;
            } finally {
              release();
            }
          })();
          // Awaited by settle(); this only keeps an early exit from reporting it as unhandled.
          writing.catch(() => undefined);
        }
        await settle();
        await progressed();
      } finally {
        // On an early exit, let the chunk in flight finish (and release its lock) first.
        await settle().catch(() => undefined);
      }
      try {
        await disk.flush();
      } catch (e) {
        if (isFenced(e)) throw e;
        this.memberWriteFailed(position, disk, e);
      }
      check();
      slot.state = 'ok';
      await this.persistMembership();
      this.emit({ type: 'rebuild-done', position, disk: disk.name });
    } catch (e) {
      if (e instanceof StopRebuild) return;
      const code = errorCode(e);
      this.rebuildError = { code: code === VolumeErrorCode.io ? RaidErrorCode.rebuildUnrecoverable : code, message: errorMessage(e) };
      this.emit({ type: 'rebuild-failed', position, code: this.rebuildError.code, message: this.rebuildError.message });
    }
  }

  /** Makes the rebuilt prefix durable, then records it in the new disk's own label. */
  private checkpointRebuild(position: number): Promise<void> {
    const slot = this.slots[position] as Slot;
    const disk = slot.disk as BlockDevice;
    const cursor = slot.cursorStripe;
    return this.enqueueLabels(async () => {
      if (slot.state !== 'rebuilding' || this.offlineError !== undefined) return;
      try {
        await disk.flush();
        await writeLabel(disk, this.labelFor(slot.uuid, position === this.geometry.parityPosition ? 'parity' : 'data', position, cursor));
        await disk.flush();
      } catch (e) {
        if (isFenced(e)) throw e;
        this.memberWriteFailed(position, disk, e);
      }
    });
  }

  // ---------------------------------------------------------------- helpers

  private unavailablePositions(): number[] {
    return this.slots.flatMap((s, p) => (s.state === 'ok' ? [] : [p]));
  }

  private writablePositions(): number[] {
    return this.slots.flatMap((s, p) => (s.state === 'ok' || s.state === 'rebuilding' ? [p] : []));
  }

  private checkUsable(): void {
    if (this.offlineError !== undefined) throw this.offlineError;
    if (this.fencedError !== undefined) throw this.fencedError;
    if (this.closed) throw new TwinbladeError(RaidErrorCode.closed, 'closed', `volume ${this.pairId}/${this.volumeId} is closed`);
  }

  private checkRange(first: number, count: number): void {
    if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 0 || first + count > this.blockCount) {
      throw new InvalidArgumentError(VolumeErrorCode.outOfRange, `blocks ${first}+${count} outside the volume of ${this.blockCount} blocks`);
    }
  }

  private allocate(bytes: number): Uint8Array {
    // The members' own buffers when they have them (aligned for O_DIRECT): written without a
    // bounce copy. A volume's members share one driver, so the first one present speaks for all.
    const disk = this.slots.find((s) => s.disk?.allocateBuffer !== undefined)?.disk;
    const buf = this.options.allocate?.(bytes) ?? disk?.allocateBuffer?.(bytes) ?? new Uint8Array(bytes);
    assert(buf.length === bytes, 'allocate returns a buffer of the requested size');
    return buf;
  }

  private emit(event: RaidEvent): void {
    this.options.onEvent?.(event);
  }
}

/** The first disk's own buffer allocator, bound to that disk alone (all members share one driver). */
function diskAllocator(disks: ReadonlyArray<BlockDevice | undefined>): ((bytes: number) => Uint8Array) | undefined {
  const disk = disks.find((d) => d?.allocateBuffer !== undefined);
  return disk?.allocateBuffer === undefined ? undefined : disk.allocateBuffer.bind(disk);
}

/** `allocate` (or `new Uint8Array`) returning plain Uint8Array views. */
function plainAllocator(allocate: ((bytes: number) => Uint8Array) | undefined): (bytes: number) => Uint8Array {
  if (allocate === undefined) return (bytes) => new Uint8Array(bytes);
  return (bytes) => {
    const b = allocate(bytes);
    return Object.getPrototypeOf(b) === Uint8Array.prototype ? b : new Uint8Array(b.buffer, b.byteOffset, b.length);
  };
}

function tableState(s: SlotState): MemberState {
  return s === 'ok' ? 'ok' : s === 'rebuilding' ? 'rebuilding' : 'failed';
}

function isFenced(e: unknown): boolean {
  return e instanceof TwinbladeError && e.kind === 'fenced';
}

function errorCode(e: unknown): string {
  return isTwinbladeError(e) ? e.code : BlockErrorCode.io;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Whether every byte is zero (a word at a time when the view is aligned). */
function isZero(b: Uint8Array): boolean {
  if (b.byteOffset % 4 === 0) {
    const words = new Int32Array(b.buffer, b.byteOffset, b.length >>> 2);
    for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
    for (let j = words.length << 2; j < b.length; j++) if (b[j] !== 0) return false;
    return true;
  }
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * What one position of a full-stripe write writes: a buffer, blocks to write in place, or the
 * XOR of the data members' blocks (the parity of an in-place write).
 */
type Member = Uint8Array | readonly Uint8Array[] | { readonly xorOf: ReadonlyArray<readonly Uint8Array[]> };

function isXorOf(m: Member): m is { readonly xorOf: ReadonlyArray<readonly Uint8Array[]> } {
  return !(m instanceof Uint8Array) && !Array.isArray(m);
}

function totalLength(parts: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of parts) n += b.length;
  return n;
}
