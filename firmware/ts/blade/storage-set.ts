// A disk set's file system: assembles the RAID volume from the set's disks and mounts its
// copy-on-write file system — formatting both only when every disk is blank. A set that
// holds another pair's or volume's disks is refused with a clear message, never formatted.
import { crc32c } from '../core/crc32c.ts';
import { utf8Encode } from '../core/bytes.ts';
import { TwinbladeError } from '../core/errors.ts';
import type { Clock, Timers } from '../core/clock.ts';
import type { Prng } from '../core/prng.ts';
import type { BlockDevice } from '../hal/block/block-device.ts';
import { readLabel } from '../storage/label.ts';
import { createVolume, openVolume, type RaidEvent, type RaidVolume } from '../storage/raid/index.ts';
import { CowFs, mkfs, type CpInfo, type FsProblem } from '../storage/fs/cowfs.ts';
import type { Time } from '../fsapi/ops.ts';

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
    ...(o.onCpCommitted ? { onCpCommitted: o.onCpCommitted } : {}),
    ...(o.onProblem ? { onProblem: o.onProblem } : {}),
  });
  return {
    volume,
    fs,
    formatted,
    close: async () => {
      await fs.close();
      await volume.close();
    },
  };
}
