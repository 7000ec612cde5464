// CP writes in place (RaidRuntimeOptions.zeroCopyWrites): on real O_DIRECT files, a CoW file
// system whose pages come from the volume's aligned allocator has its CP blocks written straight
// from those pages with pwritev (the parity computed and written on the pool thread, writeXor),
// and leaves every disk byte for byte as
// the gathering path does; on simulated disks the same path (concatenated per disk) gives the
// bytes writeStripes gives, degraded too.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { allocAligned, isAligned } from '../../firmware/ts/native/index.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { realClock, realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { LinuxBlockDevice } from '../../firmware/ts/hal/block/linux/linux-block-device.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { overwriteDuringCp } from './cp-scenario.ts';
import { createVolume } from '../../firmware/ts/storage/raid/index.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { fsck } from '../../firmware/ts/storage/fs/fsck.ts';
import { directIoTempDir } from '../contract/block-helpers.ts';

const cred = { uid: 0, gid: 0, gids: [] };
const MiB = 1024 * 1024;
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('CP writes in place on real files', () => {
  const unit = 65536;
  const diskBytes = diskLayout.raidDataOffsetBytes + 24 * MiB;

  /** A 6 MiB file through three CPs (the last two overwrite a part); the disks' bytes, and what went through writev. */
  async function cps(dir: string, tag: string, zeroCopyWrites: boolean | 'auto'): Promise<{ images: Buffer[]; bytes: number; alignedBytes: number; writevCalls: number; writeXorCalls: number }> {
    const disks = await Promise.all(Array.from({ length: 4 }, (_, i) => LinuxBlockDevice.open(join(dir, `${tag}${i}.img`), { create: true, sizeBytes: diskBytes, direct: 'prefer', name: `${tag}${i}` })));
    const seen = { bytes: 0, alignedBytes: 0, writevCalls: 0, writeXorCalls: 0 };
    for (const d of disks) {
      const writeXor = d.writeXor.bind(d);
      d.writeXor = (offset, members) => {
        seen.writeXorCalls++;
        return writeXor(offset, members);
      };
      const writev = d.writev.bind(d);
      d.writev = (offset, parts) => {
        seen.writevCalls++;
        for (const p of parts) {
          seen.bytes += p.length;
          if (isAligned(p, 4096)) seen.alignedBytes += p.length;
        }
        return writev(offset, parts);
      };
    }
    const volume = await createVolume(disks, { pairId: 'p', volumeId: 'v', clock: realClock, timers: realTimers, prng: new Prng(7), stripeUnitBytes: unit, autoRebuild: false, zeroCopyWrites, allocate: (n: number) => allocAligned(n) });
    await overwriteDuringCp(volume, 6);
    for (const d of disks) await d.close();
    const images = await Promise.all(Array.from({ length: 4 }, async (_, i) => readFile(join(dir, `${tag}${i}.img`))));
    return { images, ...seen };
  }

  it('write the pages where they are and leave the same bytes on every disk as gathered CPs', async () => {
    const dir = await mkdtemp(join(directIoTempDir(), 'twinblade-zero-copy-'));
    dirs.push(dir);
    const gathered = await cps(dir, 'gather', false);
    expect(gathered.writevCalls + gathered.writeXorCalls).toBe(0);
    const inPlace = await cps(dir, 'inplace', 'auto');
    // 6 MiB of data over three data disks in 1 MiB writes: at least 18 member writes in place,
    // and the parity of each of those 6 volume writes computed on the pool thread.
    expect(inPlace.writevCalls).toBeGreaterThanOrEqual(18);
    expect(inPlace.writeXorCalls).toBeGreaterThanOrEqual(6);
    // The file system's page slabs come from the volume's aligned allocator: nearly every byte
    // is written in place (the others, bounced on the pool thread: metadata sealed into
    // copies, padding, pages copied because a CP shared them).
    expect(inPlace.alignedBytes / inPlace.bytes).toBeGreaterThan(0.9);
    for (let i = 0; i < 4; i++) expect((inPlace.images[i] as Buffer).equals(gathered.images[i] as Buffer)).toBe(true);
  });
});

describe('CP writes in place on real files, degraded', () => {
  it('a data disk lost mid-way: later CPs write parity with writeXor from all data blocks, and the lost units read back through it', async () => {
    const dir = await mkdtemp(join(directIoTempDir(), 'twinblade-zero-copy-degraded-'));
    dirs.push(dir);
    const diskBytes = diskLayout.raidDataOffsetBytes + 24 * MiB;
    const disks = await Promise.all(Array.from({ length: 4 }, (_, i) => LinuxBlockDevice.open(join(dir, `d${i}.img`), { create: true, sizeBytes: diskBytes, direct: 'prefer', name: `d${i}` })));
    let xorCalls = 0;
    for (const d of disks) {
      const writeXor = d.writeXor.bind(d);
      d.writeXor = (offset, members) => {
        xorCalls++;
        return writeXor(offset, members);
      };
    }
    const volume = await createVolume(disks, { pairId: 'p', volumeId: 'v', clock: realClock, timers: realTimers, prng: new Prng(9), stripeUnitBytes: 65536, autoRebuild: false, allocate: (n: number) => allocAligned(n) });
    await mkfs(volume, { fsid: 1n });
    const fs = await CowFs.mount(volume, { cpWriteBytesMax: MiB, cpWriteConcurrencyMax: 2 });
    const files: Array<{ ref: { ino: number; gen: number }; data: Uint8Array }> = [];
    const p = new Prng(13);
    const writeFile = async (name: string): Promise<void> => {
      const ref = fs.allocInode();
      await fs.apply({ op: 'create', dir: fs.rootIno, name, how: 'guarded', attrs: {}, newIno: ref.ino, newGen: ref.gen, time: { sec: 1, nsec: 0 }, cred });
      const data = p.bytes(3 * MiB);
      for (let off = 0; off < data.length; off += MiB) await fs.apply({ op: 'write', target: ref, offset: off, data: data.subarray(off, off + MiB), time: { sec: 2, nsec: 0 }, cred });
      files.push({ ref, data });
    };
    await writeFile('before');
    await fs.takeCp();
    // Data disk 1 goes away: its next write fails and it is failed out of the volume.
    await (disks[1] as LinuxBlockDevice).close();
    await writeFile('after');
    await fs.takeCp();
    expect(volume.status().state).toBe('degraded');
    const before = xorCalls;
    await writeFile('later');
    await fs.takeCp();
    // Degraded CPs still write their parity on the pool thread, from all three data members' blocks.
    expect(xorCalls).toBeGreaterThan(before);
    await fs.close();
    const again = await CowFs.mount(volume, {});
    for (const f of files) {
      const back = await again.read(f.ref, 0, f.data.length);
      expect(Buffer.from(back.data).equals(Buffer.from(f.data))).toBe(true);
    }
    await again.close();
    expect(await fsck(volume)).toEqual([]);
    await volume.close();
    for (const d of disks) await d.close();
  });
});

describe('CP writes in place on simulated disks (concatenated per disk)', () => {
  it('leave the bytes writeStripes leaves, with a data disk or the parity disk missing too', async () => {
    for (const lost of [undefined, 1, 3]) {
      const sim = new Simulation({ seed: 40 + (lost ?? 0), buggify: false });
      await sim.run(async () => {
        const unit = 16384;
        const stripes = 16;
        const mk = (tag: string): SimBlockDevice[] =>
          Array.from({ length: 4 }, (_, i) => new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes: diskLayout.raidDataOffsetBytes + stripes * unit, name: `${tag}${i}` }));
        const a = mk('a');
        const b = mk('b');
        const rt = { clock: sim.clock, timers: sim.timers, prng: sim.fork(), pairId: 'p', volumeId: 'v', stripeUnitBytes: unit, autoRebuild: false };
        const va = await createVolume(a, { ...rt, zeroCopyWrites: false });
        const vb = await createVolume(b, { ...rt, prng: sim.fork(), zeroCopyWrites: true });
        if (lost !== undefined) {
          a[lost]?.fail();
          b[lost]?.fail();
        }
        const S = va.stripeBlocks;
        const data = new Prng(41).bytes(6 * S * 4096);
        // Blocks of one backing buffer (merged into runs) mixed with separate copies.
        const blocks = Array.from({ length: 6 * S }, (_, i) => (i % 5 === 0 ? data.slice(i * 4096, (i + 1) * 4096) : data.subarray(i * 4096, (i + 1) * 4096)));
        await va.writeStripes(2 * S, data);
        await vb.writeStripeBlocks(2 * S, blocks);
        await va.flush();
        await vb.flush();
        for (let i = 0; i < 4; i++) {
          if (i === lost) continue;
          const da = (a[i] as SimBlockDevice).peek(diskLayout.raidDataOffsetBytes, stripes * unit);
          const db = (b[i] as SimBlockDevice).peek(diskLayout.raidDataOffsetBytes, stripes * unit);
          expect(Buffer.from(db).equals(Buffer.from(da))).toBe(true);
        }
        expect(Buffer.from(await vb.readBlocks(2 * S, 6 * S)).equals(Buffer.from(data))).toBe(true);
        if (lost === undefined) expect((await vb.verifyParity()).mismatchedStripes).toEqual([]);
        else expect(vb.status().state).toBe('degraded');
      });
    }
  });
});
