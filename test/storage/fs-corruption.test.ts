// Bad input on disk: a corrupted superblock, inode block, directory block or map block is
// detected by its checksum and reported with a stable code; the newest valid superblock is
// used; nothing crashes.
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';
import { FsError, FsStatus, type ChangeOp } from '../../firmware/ts/fsapi/ops.ts';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { FsckCode, fsck, newestSuperblock, scanCp } from '../../firmware/ts/storage/fs/fsck.ts';
import { CowFsErrorCode, FsCorruptError, decodeSuperblock, encodeSuperblock, inodesPerBlock, rootIno } from '../../firmware/ts/storage/fs/format.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { createVolume, openVolume } from '../../firmware/ts/storage/raid/index.ts';
import { ModelHarness } from '../../firmware/ts/storage/fs/workload.ts';

const cred = { uid: 0, gid: 0, gids: [] };
const time = { sec: 100, nsec: 5 };

async function setup(stripeBlocks = 4): Promise<{ vol: MemVolume; fs: CowFs; file: { ino: number; gen: number } }> {
  const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks });
  await mkfs(vol.session(), { fsid: 9n });
  const fs = await CowFs.mount(vol.session());
  const n = fs.allocInode();
  await fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: {}, newIno: n.ino, newGen: n.gen, time, cred });
  await fs.apply({ op: 'write', target: n, offset: 0, data: new Uint8Array(5000).fill(7), time, cred });
  await fs.takeCp();
  return { vol, fs, file: n };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe('corruption is detected and reported', () => {
  it('ST-5 a fresh file system mounts without problems; a zeroed superblock that a CP wrote is reported', async () => {
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 9n });
    let fs = await CowFs.mount(vol.session());
    // mkfs commits CP 1 (slot 1); slot 0 is all zeros until the next CP: empty, not damage.
    expect(fs.problems).toEqual([]);
    await fs.takeCp();
    await fs.takeCp();
    await fs.close();
    // Both slots hold a CP now: zeros in the older one are damage.
    const older = (fs.cpNumber + 1) % 2;
    await vol.session().writeStripes(older * vol.stripeBlocks, new Uint8Array(vol.stripeBlocks * 4096));
    fs = await CowFs.mount(vol.session());
    expect(fs.problems).toEqual([expect.objectContaining({ code: 'ERR_FS_SUPERBLOCK_MAGIC', block: older * vol.stripeBlocks })]);
    await fs.close();
  });

  it('ST-5 a corrupted newest superblock is rejected by its checksum and the older CP is mounted', async () => {
    const prng = new Prng(5);
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 9n });
    let fs = await CowFs.mount(vol.session());
    const h = new ModelHarness(fs, new MemFs({ fsid: 9n }), prng);
    for (let i = 0; i < 40; i++) await h.step();
    const older = await fs.takeCp();
    for (let i = 0; i < 40; i++) await h.step();
    const newer = await fs.takeCp();
    await fs.close();
    vol.corrupt((newer.cpNumber % 2) * vol.stripeBlocks, 20);
    fs = await CowFs.mount(vol.session());
    expect(fs.cpNumber).toBe(older.cpNumber);
    expect(fs.problems.map((p) => p.code)).toContain('ERR_FS_SUPERBLOCK_CRC');
    // The older CP is whole (its blocks were protected), so replay from its sequence works.
    expect(await fsck(vol.session())).toEqual([]);
    expect(await h.replay(fs)).toBe(40);
    expect(await h.compare()).toBeUndefined();
  });

  it('ST-5 with both superblocks corrupt, mount fails with a stable code and does not crash', async () => {
    const { vol, fs } = await setup();
    await fs.close();
    vol.corrupt(0, 0);
    vol.corrupt(vol.stripeBlocks, 100);
    const e = await rejection(CowFs.mount(vol.session()));
    expect(isTwinbladeError(e, CowFsErrorCode.noSuperblock)).toBe(true);
    expect(await fsck(vol.session())).toEqual([{ code: FsckCode.noSuperblock, message: 'no valid superblock' }]);
  });

  it('a superblock from another geometry is refused', async () => {
    const { vol, fs } = await setup();
    await fs.close();
    const sb = (await newestSuperblock(vol.session()))!;
    const slot = sb.cpNumber % 2;
    const forged = encodeSuperblock({ ...sb, blockCount: sb.blockCount * 2 });
    const stripe = new Uint8Array(vol.stripeBlocks * 4096);
    stripe.set(forged);
    await vol.writeStripes(slot * vol.stripeBlocks, stripe);
    expect(decodeSuperblock(forged).blockCount).toBe(sb.blockCount * 2);
    const e = await rejection(CowFs.mount(vol.session()));
    expect(isTwinbladeError(e, CowFsErrorCode.geometry)).toBe(true);
  });

  it('a corrupted inode block is reported by getattr (IO, ERR_FS_BAD_CRC) and by fsck', async () => {
    const { vol, fs, file } = await setup();
    await fs.close();
    const scan = await scanCp(vol.session(), (await newestSuperblock(vol.session()))!);
    const addr = scan.inodeFileBlocks.get(Math.floor(file.ino / inodesPerBlock))!;
    vol.corrupt(addr, 200);
    const problems = await fsck(vol.session());
    expect(problems.map((p) => p.code)).toContain(FsckCode.badBlock);
    const fs2 = await CowFs.mount(vol.session());
    const e = await rejection(fs2.getattr(file));
    expect(e).toBeInstanceOf(FsCorruptError);
    expect((e as FsCorruptError).status).toBe(FsStatus.IO);
    expect((e as FsCorruptError).reason).toBe('ERR_FS_BAD_CRC');
    expect(fs2.problems.some((p) => p.code === 'ERR_FS_BAD_CRC' && p.block === addr)).toBe(true);
  });

  it('a corrupted directory block is reported by lookup and readdir, and changes through it are refused safely', async () => {
    const { vol, fs, file } = await setup();
    await fs.close();
    const scan = await scanCp(vol.session(), (await newestSuperblock(vol.session()))!);
    const addr = scan.files.get(rootIno)!.addrs.get(0)!;
    vol.corrupt(addr, 40);
    const fs2 = await CowFs.mount(vol.session());
    for (const p of [fs2.lookup(fs2.rootIno, 'f'), fs2.readdir(fs2.rootIno, 0n, 10)]) {
      const e = await rejection(p);
      expect(e).toBeInstanceOf(FsError);
      expect((e as FsError).status).toBe(FsStatus.IO);
    }
    const n = fs2.allocInode();
    const create: ChangeOp = { op: 'create', dir: fs2.rootIno, name: 'g', how: 'guarded', attrs: {}, newIno: n.ino, newGen: n.gen, time, cred };
    const e = await rejection(fs2.apply(create));
    expect((e as FsError).status).toBe(FsStatus.IO);
    // The file itself is still readable by handle.
    expect((await fs2.read(file, 0, 10)).data).toEqual(new Uint8Array(10).fill(7));
    expect((await fsck(vol.session())).map((p) => p.code)).toContain(FsckCode.badBlock);
  });

  it('a corrupted map block is reported at mount and the maps are rebuilt by a scan', async () => {
    const { vol, fs, file } = await setup();
    const cp = fs.cpNumber;
    await fs.close();
    const regionStart = fs.geometry.regionStart[(cp % 2) as 0 | 1];
    vol.corrupt(regionStart, 300);
    expect((await fsck(vol.session())).map((p) => p.code)).toContain(FsckCode.badBlock);
    const fs2 = await CowFs.mount(vol.session());
    expect(fs2.problems.map((p) => p.code)).toContain('ERR_FS_BAD_CRC');
    await fs2.apply({ op: 'write', target: file, offset: 5000, data: new Uint8Array(9000).fill(1), time, cred });
    await fs2.takeCp();
    await fs2.takeCp();
    expect(await fsck(vol.session())).toEqual([]);
    expect((await fs2.getattr(file)).size).toBe(14000);
  });

  it('ST-2 a corrupted RAID label is detected by its checksum; the volume opens degraded and the file system is whole', async () => {
    const sim = new Simulation({ seed: 9, buggify: false });
    const disks = [0, 1, 2, 3].map((i) => new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes: 4 * 1024 * 1024, name: `d${i}` }));
    const runtime = { pairId: 'p', volumeId: 'v', clock: sim.clock, timers: sim.timers, prng: sim.fork(), autoRebuild: false };
    const vol = await sim.run(() => createVolume(disks, { ...runtime, stripeUnitBytes: 16 * 1024 }));
    await sim.run(() => mkfs(vol, { fsid: 4n }));
    const fs = await sim.run(() => CowFs.mount(vol));
    const n = fs.allocInode();
    const data = new Uint8Array(50_000).map((_, i) => (i * 13) & 0xff);
    await sim.run(() => fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: {}, newIno: n.ino, newGen: n.gen, time, cred }));
    await sim.run(() => fs.apply({ op: 'write', target: n, offset: 0, data, time, cred }));
    await sim.run(() => fs.takeCp());
    await sim.run(() => fs.close());
    await sim.run(() => vol.close());
    // Flip a byte inside disk 1's label record.
    disks[1]!.poke(40, new Uint8Array([0xa5]));
    const reopened = await sim.run(() => openVolume(disks.map((d) => d.attach()), runtime));
    const verdict = reopened.assembly.find((v) => v.name === 'd1');
    expect(verdict?.use).toBe('rejected');
    expect(verdict?.code).toMatch(/LABEL/);
    expect(reopened.status().state).toBe('degraded');
    const fs2 = await sim.run(() => CowFs.mount(reopened));
    expect((await sim.run(() => fs2.read(n, 0, 60_000))).data).toEqual(data);
    expect(await sim.run(() => fsck(reopened))).toEqual([]);
  });

  it('garbage in every metadata block never crashes mount, queries or fsck', async () => {
    const prng = new Prng(77);
    for (let round = 0; round < 20; round++) {
      const { vol, fs, file } = await setup(1 + prng.int(4));
      await fs.close();
      for (let k = 0; k < 3; k++) vol.corrupt(prng.int(fs.geometry.dataStart + 64), prng.int(4096));
      await fsck(vol.session());
      const mounted = await CowFs.mount(vol.session()).catch((e: unknown) => e);
      if (!(mounted instanceof CowFs)) {
        expect(isTwinbladeError(mounted)).toBe(true);
        continue;
      }
      for (const q of [mounted.getattr(file), mounted.readdir(mounted.rootIno, 0n, 100), mounted.read(file, 0, 8192), mounted.lookup(mounted.rootIno, 'f')]) {
        const r = await q.catch((e: unknown) => e);
        if (r instanceof Error) expect(r).toBeInstanceOf(FsError);
      }
    }
  });
});
