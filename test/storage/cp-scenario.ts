// A CoW file system CP scenario on a RAID volume, shared by the tests of CP write paths: a file
// written and committed, then a part overwritten while the next CP is in flight (the CP must
// write what it froze, the one after it the new bytes); after a remount the file reads back,
// fsck is clean and parity is exact. Closes the volume.
import { expect } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { RaidVolume } from '../../firmware/ts/storage/raid/index.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { fsck } from '../../firmware/ts/storage/fs/fsck.ts';

const cred = { uid: 0, gid: 0, gids: [] };
const MiB = 1024 * 1024;

export async function overwriteDuringCp(volume: RaidVolume, mib: number): Promise<void> {
  await mkfs(volume, { fsid: 1n });
  const fs = await CowFs.mount(volume, { cpWriteBytesMax: MiB, cpWriteConcurrencyMax: 4 });
  const f = fs.allocInode();
  await fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: {}, newIno: f.ino, newGen: f.gen, time: { sec: 1, nsec: 0 }, cred });
  const data = new Prng(11).bytes(mib * MiB);
  for (let off = 0; off < data.length; off += MiB) await fs.apply({ op: 'write', target: f, offset: off, data: data.subarray(off, off + MiB), time: { sec: 2, nsec: 0 }, cred });
  await fs.takeCp();
  // Pages shared with a CP in flight are copied before they change; the CP writes what it froze.
  await fs.apply({ op: 'write', target: f, offset: 4096, data: new Uint8Array(8192).fill(0xee), time: { sec: 3, nsec: 0 }, cred });
  const second = fs.takeCp();
  await fs.apply({ op: 'write', target: f, offset: 4096, data: new Uint8Array(4096).fill(0xdd), time: { sec: 4, nsec: 0 }, cred });
  await second;
  await fs.takeCp();
  await fs.close();
  const again = await CowFs.mount(volume, {});
  data.fill(0xdd, 4096, 8192);
  data.fill(0xee, 8192, 12288);
  for (let off = 0; off < data.length; off += MiB) {
    const back = await again.read(f, off, MiB);
    expect(Buffer.from(back.data).equals(Buffer.from(data.subarray(off, off + MiB)))).toBe(true);
  }
  await again.close();
  expect(await fsck(volume)).toEqual([]);
  expect((await volume.verifyParity()).mismatchedStripes).toEqual([]);
  await volume.close();
}
