// Stable error codes of the RAID layer (besides the Volume codes in storage/volume.ts and
// the label codes in storage/label.ts), and the error class assembly failures carry.

import { TwinbladeError } from '../../core/errors.ts';
import type { ErrorKind } from '../../core/errors.ts';

export const RaidErrorCode = {
  /** Bad createVolume/openVolume arguments (member count, stripe unit, ids). */
  badConfig: 'ERR_RAID_BAD_CONFIG',
  /** The disk has no label at all (blank): it belongs to no volume. */
  noLabel: 'ERR_RAID_NO_LABEL',
  /** The disk's label belongs to another pair or another volume. */
  foreignDisk: 'ERR_RAID_FOREIGN_DISK',
  /** The disk was a member once, but the authoritative member table no longer lists it as current (failed out, or replaced by a rebuild). */
  staleMember: 'ERR_RAID_STALE_MEMBER',
  /** Two disks claim the same position, or two labels of the same generation disagree. */
  labelConflict: 'ERR_RAID_LABEL_CONFLICT',
  /** Too few current members to assemble the volume, even degraded. */
  membersMissing: 'ERR_RAID_MEMBERS_MISSING',
  /** createVolume / addSpare refused to format a disk that already holds a label or data. */
  diskInUse: 'ERR_RAID_DISK_IN_USE',
  /** The disk is smaller than the volume needs. */
  diskTooSmall: 'ERR_RAID_DISK_TOO_SMALL',
  /** A rebuild found a stripe it cannot reconstruct (a second error in the same stripe). */
  rebuildUnrecoverable: 'ERR_RAID_REBUILD_UNRECOVERABLE',
  /** The volume was closed. */
  closed: 'ERR_RAID_CLOSED',
} as const;

/** One disk's verdict during assembly. */
export interface DiskVerdict {
  name: string;
  /** What the disk became: a member at a position, a spare, or rejected (with a code). */
  use: 'member' | 'spare' | 'rejected';
  position?: number;
  code?: string;
  message?: string;
}

export class RaidError extends TwinbladeError {
  /** Per-disk verdicts, for assembly failures. */
  readonly disks: readonly DiskVerdict[];
  constructor(code: string, kind: ErrorKind, message: string, disks: readonly DiskVerdict[] = [], options?: { cause?: unknown }) {
    super(code, kind, message, options);
    this.name = 'RaidError';
    this.disks = disks;
  }
}
