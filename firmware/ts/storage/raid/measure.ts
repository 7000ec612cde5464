// Measurements for the storage benchmark (tools/bench/benches/storage.ts): raw sequential
// write bandwidth of the member disks, and rebuild bandwidth of a RAID volume. They report
// what they measured; they never judge it. Both DESTROY the data in the ranges they write.

import type { Clock, Timers } from '../../core/clock.ts';
import { InvalidArgumentError } from '../../core/errors.ts';
import type { Prng } from '../../core/prng.ts';
import type { BlockDevice } from '../../hal/block/block-device.ts';
import { diskLayout } from '../layout.ts';
import { RaidErrorCode } from './errors.ts';
import { createVolume, openVolume } from './index.ts';
import type { RaidLimits } from './raid-volume.ts';

export interface DiskWriteFigure {
  name: string;
  bytes: number;
  ms: number;
  bytesPerSec: number;
}

export interface SequentialWriteResult {
  /** Per disk: its own bytes over its own time (writes, then one flush). */
  disks: DiskWriteFigure[];
  /** All bytes over the wall time of the whole run (equals the sum of disks when `parallel`). */
  aggregateBytesPerSec: number;
  totalBytes: number;
  ms: number;
}

export interface SequentialWriteOptions {
  clock: Clock;
  /** Bytes written to each disk (a multiple of `chunkBytes`). */
  bytesPerDisk: number;
  /** Bytes per write call (default 1 MiB, like `dd bs=1M oflag=direct`). */
  chunkBytes?: number;
  /** Writes in flight per disk (default 1). */
  queueDepth?: number;
  /** Where on each disk to start (default: the RAID data area, so labels and mailboxes survive). */
  offsetBytes?: number;
  /** All disks at once (true) or one after another (false, default: each disk's own speed). */
  parallel?: boolean;
  /** Buffer allocator (pass the addon's aligned allocator for O_DIRECT disks). */
  allocate?: (bytes: number) => Uint8Array;
}

/**
 * Raw sequential write bandwidth: `bytesPerDisk` in `chunkBytes` writes from `offsetBytes`,
 * then a flush, timed on `clock`. Overwrites that range of every disk.
 */
export async function measureSequentialWrite(disks: readonly BlockDevice[], opts: SequentialWriteOptions): Promise<SequentialWriteResult> {
  const chunk = opts.chunkBytes ?? 1024 * 1024;
  const depth = opts.queueDepth ?? 1;
  const offset = opts.offsetBytes ?? diskLayout.raidDataOffsetBytes;
  const bad = (m: string): never => {
    throw new InvalidArgumentError(RaidErrorCode.badConfig, `measureSequentialWrite: ${m}`);
  };
  if (disks.length === 0) bad('no disks');
  if (!(chunk > 0) || chunk % 4096 !== 0) bad('chunkBytes must be a positive multiple of 4096');
  if (!(opts.bytesPerDisk > 0) || opts.bytesPerDisk % chunk !== 0) bad('bytesPerDisk must be a positive multiple of chunkBytes');
  if (!Number.isInteger(depth) || depth < 1) bad('queueDepth must be a positive integer');
  for (const d of disks) if (offset + opts.bytesPerDisk > d.sizeBytes) bad(`${d.name} is smaller than offsetBytes + bytesPerDisk`);

  const buffers = Array.from({ length: depth }, (_, i) => {
    const b = opts.allocate?.(chunk) ?? new Uint8Array(chunk);
    // A non-zero pattern, so that nothing on the way can skip the write as zeros.
    for (let j = 0; j < b.length; j++) b[j] = (j * 7 + i * 13 + 1) & 0xff;
    return b;
  });
  const one = async (d: BlockDevice): Promise<DiskWriteFigure> => {
    const t0 = opts.clock.nowMs();
    let next = 0;
    const lanes = buffers.map(async (buf) => {
      while (next < opts.bytesPerDisk) {
        const at = next;
        next += chunk;
        await d.write(offset + at, buf);
      }
    });
    await Promise.all(lanes);
    await d.flush();
    const ms = opts.clock.nowMs() - t0;
    return { name: d.name, bytes: opts.bytesPerDisk, ms, bytesPerSec: rate(opts.bytesPerDisk, ms) };
  };
  const t0 = opts.clock.nowMs();
  const figures: DiskWriteFigure[] = [];
  if (opts.parallel === true) {
    figures.push(...(await Promise.all(disks.map(one))));
  } else {
    for (const d of disks) figures.push(await one(d));
  }
  const ms = opts.clock.nowMs() - t0;
  const totalBytes = opts.bytesPerDisk * disks.length;
  return { disks: figures, aggregateBytesPerSec: rate(totalBytes, ms), totalBytes, ms };
}

export interface RebuildMeasureOptions {
  clock: Clock;
  timers: Timers;
  prng: Prng;
  /** Disks for a new volume (formatted with overwrite: any data on them is lost). */
  members: readonly BlockDevice[];
  /** The disk rebuilt onto (overwritten). */
  spare: BlockDevice;
  stripeUnitBytes?: number;
  /** Caps the volume (and so the bytes rebuilt). */
  stripeCountMax?: number;
  /** Rebuild limits; bandwidth defaults to unthrottled, to measure what the disks allow. */
  limits?: Partial<RaidLimits>;
  /** Position that is lost and rebuilt (default 0, a data disk). */
  lostPosition?: number;
  allocate?: (bytes: number) => Uint8Array;
}

export interface RebuildMeasureResult {
  /** Bytes written to the new disk (its whole share of the volume). */
  bytesRebuilt: number;
  ms: number;
  bytesPerSec: number;
  stripes: number;
  /** Time to fill the volume with full-stripe writes first (a by-product: full-stripe write bandwidth). */
  fillMs: number;
  fillBytesPerSec: number;
}

/**
 * Rebuild bandwidth: formats `members` into a volume, fills it with full-stripe writes,
 * loses `lostPosition`, and times the rebuild onto `spare` from start to the final label
 * update. Overwrites every disk.
 */
export async function measureRebuild(opts: RebuildMeasureOptions): Promise<RebuildMeasureResult> {
  const runtime = {
    clock: opts.clock,
    timers: opts.timers,
    prng: opts.prng,
    limits: { rebuildBandwidthBytesPerSec: Infinity, ...opts.limits },
    autoRebuild: false,
    ...(opts.allocate !== undefined ? { allocate: opts.allocate } : {}),
  };
  const ids = { pairId: 'bench', volumeId: 'rebuild' };
  const created = await createVolume(opts.members, {
    ...runtime,
    ...ids,
    overwrite: true,
    ...(opts.stripeUnitBytes !== undefined ? { stripeUnitBytes: opts.stripeUnitBytes } : {}),
    ...(opts.stripeCountMax !== undefined ? { stripeCountMax: opts.stripeCountMax } : {}),
  });
  const g = created.geometry;
  const lost = opts.lostPosition ?? 0;
  if (!Number.isInteger(lost) || lost < 0 || lost >= g.memberCount) throw new InvalidArgumentError(RaidErrorCode.badConfig, `measureRebuild: no position ${lost}`);

  // Fill in runs of whole stripes of about 1 MiB per disk.
  const runStripes = Math.max(1, Math.floor((1024 * 1024) / g.stripeUnitBytes));
  const data = opts.allocate?.(runStripes * g.stripeBlocks * 4096) ?? new Uint8Array(runStripes * g.stripeBlocks * 4096);
  for (let i = 0; i < data.length; i += 4) data[i] = (i >>> 12) & 0xff;
  const fill0 = opts.clock.nowMs();
  for (let s = 0; s < g.stripeCount; s += runStripes) {
    const n = Math.min(runStripes, g.stripeCount - s);
    await created.writeStripes(s * g.stripeBlocks, n === runStripes ? data : data.subarray(0, n * g.stripeBlocks * 4096));
  }
  await created.flush();
  const fillMs = opts.clock.nowMs() - fill0;
  await created.close();

  // Reassemble without the lost disk (it is recorded as failed), add the spare, rebuild.
  const survivors = opts.members.filter((_, i) => i !== lost);
  const degraded = await openVolume(survivors, { ...runtime, ...ids });
  await degraded.addSpare(opts.spare, { force: true });
  const t0 = opts.clock.nowMs();
  if (!degraded.startRebuild()) throw new Error('measureRebuild: the rebuild did not start');
  await degraded.whenRebuildDone();
  const ms = opts.clock.nowMs() - t0;
  const st = degraded.status();
  await degraded.close();
  if (st.state !== 'normal') throw new Error(`measureRebuild: the rebuild ended with the volume ${st.state}${st.rebuildError !== undefined ? ` (${st.rebuildError.code})` : ''}`);
  const bytesRebuilt = g.stripeCount * g.stripeUnitBytes;
  return {
    bytesRebuilt,
    ms,
    bytesPerSec: rate(bytesRebuilt, ms),
    stripes: g.stripeCount,
    fillMs,
    fillBytesPerSec: rate(g.stripeCount * g.stripeBlocks * 4096, fillMs),
  };
}

function rate(bytes: number, ms: number): number {
  return ms > 0 ? (bytes * 1000) / ms : Infinity;
}
