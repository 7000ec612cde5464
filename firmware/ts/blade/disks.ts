// Opens the disks a board descriptor names: image files and block devices through the Linux
// O_DIRECT driver, NBD exports (the rig's loop emulator) through the NBD client driver.
import type { BlockDevice } from '../hal/block/block-device.ts';
import { LinuxBlockDevice } from '../hal/block/linux/linux-block-device.ts';
import { openNbdBlockDevice } from '../hal/block/rig/nbd-client.ts';
import type { DiskSpec } from '../board/schema.ts';

export interface OpenDiskOptions {
  /** For image files: O_DIRECT policy (default 'prefer', so tmpfs test directories work). */
  direct?: 'require' | 'prefer';
}

export async function openDisk(spec: DiskSpec, opts: OpenDiskOptions = {}): Promise<BlockDevice> {
  const m = /^nbd:\/\/([^/:]+):(\d+)\/(.+)$/.exec(spec.uri);
  if (m) return openNbdBlockDevice({ host: m[1] as string, port: Number(m[2]), exportName: m[3] as string });
  return LinuxBlockDevice.open(spec.uri, { direct: opts.direct ?? 'prefer', name: spec.id });
}

/** Opens every disk; on failure closes those already open and rethrows. */
export async function openDisks(specs: readonly DiskSpec[], opts: OpenDiskOptions = {}): Promise<BlockDevice[]> {
  const out: BlockDevice[] = [];
  try {
    for (const s of specs) out.push(await openDisk(s, opts));
    return out;
  } catch (e) {
    await Promise.allSettled(out.map((d) => d.close()));
    throw e;
  }
}
