// The RAID layer's entry points: format new disks into a volume (createVolume) and
// assemble a volume from whatever disks are present (openVolume).

import { InvalidArgumentError } from '../../core/errors.ts';
import type { BlockDevice } from '../../hal/block/block-device.ts';
import { labelIdBytesMax, labelMemberCountMax, readLabel, sparePosition, writeLabel } from '../label.ts';
import type { DiskLabel } from '../label.ts';
import { utf8Encode } from '../../core/bytes.ts';
import { planAssembly } from './assemble.ts';
import { encodeIntent } from './intent.ts';
import { diskLayout } from '../layout.ts';
import { RaidError, RaidErrorCode } from './errors.ts';
import { diskByteOffset, makeGeometry, stripesThatFit } from './geometry.ts';
import { RaidVolume, newDiskUuid } from './raid-volume.ts';
import type { RaidRuntimeOptions } from './raid-volume.ts';

export { RaidVolume, defaultRaidLimits } from './raid-volume.ts';
export type { RaidCounters, RaidEvent, RaidLimits, RaidRuntimeOptions, RaidStatus } from './raid-volume.ts';
export { RaidError, RaidErrorCode } from './errors.ts';
export type { DiskVerdict } from './errors.ts';
export { makeGeometry, locateBlock, volumeBlockOf, diskByteOffset, raidBlockBytes } from './geometry.ts';
export type { RaidGeometry } from './geometry.ts';

export const defaultStripeUnitBytes = 64 * 1024;

export interface CreateVolumeOptions extends RaidRuntimeOptions {
  pairId: string;
  volumeId: string;
  /** Bytes per member per stripe (a multiple of 4096); default 64 KiB. */
  stripeUnitBytes?: number;
  /** Hot spares, formatted as spares of the new volume. */
  spares?: readonly BlockDevice[];
  /** Caps the volume size (default: as many stripes as the smallest member holds). */
  stripeCountMax?: number;
  /** Format even disks that hold a label or other data (default: refuse with ERR_RAID_DISK_IN_USE). */
  overwrite?: boolean;
  /**
   * Zero the RAID data area first so that parity is consistent on never-written stripes
   * too. Not needed by a file system that reads only blocks it wrote (ours); useful for
   * tests and scrubs. Default false.
   */
  zeroData?: boolean;
}

export interface OpenVolumeOptions extends RaidRuntimeOptions {
  pairId: string;
  volumeId: string;
  /**
   * Format blank disks among `disks` (all-zero label slot, e.g. a disk hot-swapped in for a
   * failed one) as hot spares (default false: they are only reported). Disks holding
   * anything else are never formatted.
   */
  adoptBlankDisks?: boolean;
}

function checkId(id: string, what: string): void {
  const n = utf8Encode(id).length;
  if (n === 0 || n > labelIdBytesMax || id.includes('\0')) {
    throw new InvalidArgumentError(RaidErrorCode.badConfig, `${what} must be 1..${labelIdBytesMax} UTF-8 bytes without NUL`);
  }
}

/**
 * Formats `members` (data disks in order, the parity disk last) and `spares` into a new
 * volume and opens it. Refuses disks that hold a label or any non-zero label slot unless
 * `overwrite`: formatting over a live disk is the one mistake a RAID layer must not make.
 */
export async function createVolume(members: readonly BlockDevice[], opts: CreateVolumeOptions): Promise<RaidVolume> {
  checkId(opts.pairId, 'pairId');
  checkId(opts.volumeId, 'volumeId');
  if (members.length < 2 || members.length > labelMemberCountMax) {
    throw new InvalidArgumentError(RaidErrorCode.badConfig, `createVolume: need 2..${labelMemberCountMax} members, got ${members.length}`);
  }
  const spares = opts.spares ?? [];
  const all = [...members, ...spares];
  if (new Set(all).size !== all.length) throw new InvalidArgumentError(RaidErrorCode.badConfig, 'createVolume: a disk is listed twice');
  const unit = opts.stripeUnitBytes ?? defaultStripeUnitBytes;
  makeGeometry(members.length, unit, 1); // validates the stripe unit and member count
  let stripeCount = Math.min(...members.map((d) => stripesThatFit(d.sizeBytes, unit)));
  if (opts.stripeCountMax !== undefined) stripeCount = Math.min(stripeCount, opts.stripeCountMax);
  if (stripeCount < 1) throw new RaidError(RaidErrorCode.diskTooSmall, 'invalid-argument', 'createVolume: a member has no room for one stripe after the reserved region');
  const geometry = makeGeometry(members.length, unit, stripeCount);
  for (const d of spares) {
    if (d.sizeBytes < geometry.memberBytesMin) {
      throw new RaidError(RaidErrorCode.diskTooSmall, 'invalid-argument', `createVolume: spare ${d.name} has ${d.sizeBytes} bytes, needs ${geometry.memberBytesMin}`);
    }
  }
  if (opts.overwrite !== true) {
    const reads = await Promise.all(all.map((d) => readLabel(d)));
    reads.forEach((r, i) => {
      const name = (all[i] as BlockDevice).name;
      if (r.kind === 'unreadable') throw new RaidError(r.code, 'io', `createVolume: ${name}: ${r.message}`);
      if (r.kind === 'label') {
        throw new RaidError(RaidErrorCode.diskInUse, 'invalid-argument', `createVolume: ${name} holds the label of ${r.label.pairId}/${r.label.volumeId}; refusing to format over it`);
      }
      if (r.kind === 'invalid') {
        throw new RaidError(RaidErrorCode.diskInUse, 'invalid-argument', `createVolume: ${name} holds data in its label slot (${r.code}); refusing to format over it`);
      }
    });
  }
  if (opts.zeroData === true) await zeroDataArea(members, geometry.memberBytesMin);
  const uuids = members.map(() => newDiskUuid(opts.prng));
  const table = uuids.map((uuid) => ({ uuid, state: 'ok' as const }));
  const base = {
    generation: 1,
    pairId: opts.pairId,
    volumeId: opts.volumeId,
    memberCount: members.length,
    stripeUnitBytes: unit,
    stripeCount,
    rebuildCursorStripe: 0,
    members: table,
  };
  const labels: DiskLabel[] = [
    ...members.map((_, p) => ({ ...base, diskUuid: uuids[p] as string, role: p === members.length - 1 ? ('parity' as const) : ('data' as const), position: p })),
    ...spares.map(() => ({ ...base, diskUuid: newDiskUuid(opts.prng), role: 'spare' as const, position: sparePosition })),
  ];
  const cleanIntent = encodeIntent({ regionStripes: 1, dirty: [] });
  await Promise.all(
    all.map(async (d, i) => {
      await d.write(diskLayout.raidIntentOffsetBytes, cleanIntent);
      await writeLabel(d, labels[i] as DiskLabel);
      await d.flush();
    }),
  );
  return openVolume(all, opts);
}

async function zeroDataArea(disks: readonly BlockDevice[], endBytes: number): Promise<void> {
  const chunk = new Uint8Array(1024 * 1024);
  await Promise.all(
    disks.map(async (d) => {
      for (let off = diskByteOffset(0); off < endBytes; off += chunk.length) {
        await d.write(off, off + chunk.length <= endBytes ? chunk : chunk.subarray(0, endBytes - off));
      }
      await d.flush();
    }),
  );
}

/**
 * Assembles the volume `pairId`/`volumeId` from `disks` (members and spares, in any order,
 * other disks allowed: they are reported in `volume.assembly` and left untouched). Opens
 * degraded when one position is missing or stale, recording that in the labels before
 * returning, and resumes or starts a rebuild when a spare is at hand. Throws RaidError
 * (ERR_RAID_MEMBERS_MISSING, ERR_RAID_LABEL_CONFLICT) with per-disk verdicts otherwise.
 */
export async function openVolume(disks: readonly BlockDevice[], opts: OpenVolumeOptions): Promise<RaidVolume> {
  checkId(opts.pairId, 'pairId');
  checkId(opts.volumeId, 'volumeId');
  if (new Set(disks).size !== disks.length) throw new InvalidArgumentError(RaidErrorCode.badConfig, 'openVolume: a disk is listed twice');
  const reads = await Promise.all(disks.map(async (d) => ({ name: d.name, read: await readLabel(d) })));
  const plan = planAssembly(reads, opts.pairId, opts.volumeId);
  const ref = plan.reference;
  const geometry = makeGeometry(ref.memberCount, ref.stripeUnitBytes, ref.stripeCount);
  // A member smaller than the geometry (a replaced disk of another model) cannot serve.
  plan.members.forEach((m, p) => {
    const d = m === undefined ? undefined : disks[m.disk];
    if (d !== undefined && d.sizeBytes < geometry.memberBytesMin) {
      plan.verdicts[m?.disk as number] = { name: d.name, use: 'rejected', code: RaidErrorCode.diskTooSmall, message: `smaller than the volume needs at position ${p}` };
      plan.members[p] = undefined;
    }
  });
  if (plan.members.filter((m) => m === undefined || m.state !== 'ok').length > 1) {
    throw new RaidError(RaidErrorCode.membersMissing, 'io', `assemble ${opts.pairId}/${opts.volumeId}: more than one position unavailable`, plan.verdicts);
  }
  const slots = plan.members.map((m, p) => {
    const entry = ref.members[p] as { uuid: string };
    if (m === undefined) return { disk: undefined, uuid: entry.uuid, state: (plan.tableStates[p] === 'failed' ? 'failed' : 'missing') as 'missing' | 'failed', cursorStripe: 0 };
    return { disk: disks[m.disk] as BlockDevice, uuid: m.uuid, state: m.state, cursorStripe: m.rebuildCursorStripe };
  });
  const volume = new RaidVolume(
    {
      geometry,
      pairId: opts.pairId,
      volumeId: opts.volumeId,
      generation: ref.generation,
      slots,
      spares: plan.spares.map((s) => ({ disk: disks[s.disk] as BlockDevice, uuid: s.uuid })),
      verdicts: plan.verdicts,
    },
    opts,
  );
  // A member listed as current (ok, or rebuilding with a checkpoint) but absent must be
  // recorded as failed before any write is acknowledged: if it came back later, its data
  // (below its checkpoint, for a rebuilding one) would be stale.
  const recorded = (p: number): string => ref.members[p]?.state ?? 'failed';
  if (slots.some((s, p) => (s.state === 'missing' || s.state === 'failed') && recorded(p) !== 'failed')) await volume.persistMembership();
  await volume.resyncAfterUncleanShutdown();
  if (opts.adoptBlankDisks === true) {
    for (const [i, v] of plan.verdicts.entries()) {
      const d = disks[i] as BlockDevice;
      if (v.code !== RaidErrorCode.noLabel || d.sizeBytes < geometry.memberBytesMin) continue;
      await volume.addSpare(d);
      plan.verdicts[i] = { name: d.name, use: 'spare' };
    }
  }
  if (opts.autoRebuild !== false) volume.startRebuild();
  return volume;
}

/** Bytes of RAID data per member (what a rebuild writes) for a geometry. */
export function memberDataBytes(volume: RaidVolume): number {
  return volume.geometry.stripeCount * volume.geometry.stripeUnitBytes;
}
