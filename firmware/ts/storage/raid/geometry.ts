// RAID-4 geometry: where each volume block lives on the member disks. Pure arithmetic.
//
// Members 0..dataDisks-1 hold data, member dataDisks holds parity. A stripe is one stripe
// unit (`unitBlocks` blocks) on every member at the same disk offset; volume blocks fill a
// stripe unit by unit, data disk 0 first. So stripe s, unit u covers disk blocks
// [s*unitBlocks, (s+1)*unitBlocks) of every member, and k consecutive whole stripes are one
// contiguous extent on every disk.

import { InvalidArgumentError } from '../../core/errors.ts';
import { diskLayout } from '../layout.ts';
import { RaidErrorCode } from './errors.ts';

export const raidBlockBytes = 4096;

export interface RaidGeometry {
  /** Members including the parity disk. */
  readonly memberCount: number;
  readonly dataDisks: number;
  readonly parityPosition: number;
  readonly stripeUnitBytes: number;
  readonly unitBlocks: number;
  /** Data blocks per stripe: unitBlocks * dataDisks. */
  readonly stripeBlocks: number;
  readonly stripeCount: number;
  readonly blockCount: number;
  /** Bytes every member needs: the reserved region plus its share of RAID data. */
  readonly memberBytesMin: number;
}

export function makeGeometry(memberCount: number, stripeUnitBytes: number, stripeCount: number): RaidGeometry {
  const bad = (m: string): never => {
    throw new InvalidArgumentError(RaidErrorCode.badConfig, `raid geometry: ${m}`);
  };
  if (!Number.isInteger(memberCount) || memberCount < 2) bad('need at least 2 members (1 data + parity)');
  if (!Number.isInteger(stripeUnitBytes) || stripeUnitBytes < raidBlockBytes || stripeUnitBytes % raidBlockBytes !== 0) bad('stripe unit must be a positive multiple of 4096');
  if (!Number.isSafeInteger(stripeCount) || stripeCount < 1) bad('need at least one stripe');
  const dataDisks = memberCount - 1;
  const unitBlocks = stripeUnitBytes / raidBlockBytes;
  return {
    memberCount,
    dataDisks,
    parityPosition: dataDisks,
    stripeUnitBytes,
    unitBlocks,
    stripeBlocks: unitBlocks * dataDisks,
    stripeCount,
    blockCount: unitBlocks * dataDisks * stripeCount,
    memberBytesMin: diskLayout.raidDataOffsetBytes + stripeCount * stripeUnitBytes,
  };
}

/** Stripes that fit on a disk of `sizeBytes` after the reserved region. */
export function stripesThatFit(sizeBytes: number, stripeUnitBytes: number): number {
  return Math.max(0, Math.floor((sizeBytes - diskLayout.raidDataOffsetBytes) / stripeUnitBytes));
}

/** Byte offset on a member of its disk block `diskBlock` (counted from the RAID data area). */
export function diskByteOffset(diskBlock: number): number {
  return diskLayout.raidDataOffsetBytes + diskBlock * raidBlockBytes;
}

export interface BlockLocation {
  /** Data member holding the block. */
  member: number;
  /** Block index on that member, counted from the start of the RAID data area. */
  diskBlock: number;
}

export function locateBlock(g: RaidGeometry, block: number): BlockLocation {
  const stripe = Math.floor(block / g.stripeBlocks);
  const within = block - stripe * g.stripeBlocks;
  const member = Math.floor(within / g.unitBlocks);
  return { member, diskBlock: stripe * g.unitBlocks + (within - member * g.unitBlocks) };
}

/** The inverse of locateBlock for data members. */
export function volumeBlockOf(g: RaidGeometry, member: number, diskBlock: number): number {
  const stripe = Math.floor(diskBlock / g.unitBlocks);
  return stripe * g.stripeBlocks + member * g.unitBlocks + (diskBlock - stripe * g.unitBlocks);
}
