// Consistency points under power failure (NV-4, ST-5): a power cut at every I/O step of a CP,
// with unflushed writes dropped, kept or torn, must leave the disks holding exactly the last
// committed CP; replaying the log after its recorded sequence gives back every change.
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { fsck } from '../../firmware/ts/storage/fs/fsck.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';
import { ModelHarness } from '../../firmware/ts/storage/fs/workload.ts';

interface World {
  vol: MemVolume;
  fs: CowFs;
  h: ModelHarness;
  prng: Prng;
}

/** A deterministic world: the same seed gives the same volume, file system and pending changes. */
async function world(seed: number, stripeBlocks: number): Promise<World> {
  const prng = new Prng(seed);
  const vol = new MemVolume({ blockCount: 32 * 1024, stripeBlocks });
  await mkfs(vol.session(), { fsid: 3n });
  const fs = await CowFs.mount(vol.session());
  const h = new ModelHarness(fs, new MemFs({ fsid: 3n }), prng.fork());
  for (let i = 0; i < 60; i++) await h.step();
  await fs.takeCp();
  for (let i = 0; i < 40; i++) await h.step();
  return { vol, fs, h, prng };
}

describe('power cut during a consistency point', () => {
  it('NV-4 ST-5 a cut at every step of a CP leaves the last committed CP, and replay restores every change', async () => {
    for (const stripeBlocks of [1, 8]) {
      let steps = 0;
      for (let step = 0; ; step++) {
        const w = await world(11, stripeBlocks);
        const before = w.fs.cpNumber;
        const lastSeq = w.fs.appliedSeq(0);
        const committedBefore = w.fs.committedSeq().get(0) ?? 0n;
        const io0 = w.vol.ioCount;
        w.vol.cutPowerAtStep(step, new Prng(1000 + step));
        const outcome = await w.fs.takeCp().then(
          () => 'committed',
          () => 'cut',
        );
        if (outcome === 'committed') {
          steps = w.vol.ioCount - io0;
          break;
        }
        // The instance whose CP failed stops taking changes (recovery is mount + replay).
        const refused = await w.fs.applyLogged(0, lastSeq + 1n, w.h.log[0]!.op).catch((e: unknown) => e);
        expect((refused as { code: string }).code).toBe('ERR_FS_FAILED');
        w.vol.powerOn();
        expect(await fsck(w.vol.session())).toEqual([]);
        const fs = await CowFs.mount(w.vol.session());
        // Exactly one of the two CPs, each with exactly the changes it recorded.
        expect([before, before + 1]).toContain(fs.cpNumber);
        expect(fs.appliedSeq(0)).toBe(fs.cpNumber === before ? committedBefore : lastSeq);
        const toReplay = lastSeq - fs.appliedSeq(0);
        expect(BigInt(await w.h.replay(fs))).toBe(toReplay);
        expect(await w.h.compare()).toBeUndefined();
        await fs.takeCp();
        expect(await fsck(w.vol.session())).toEqual([]);
        expect(await w.h.compare()).toBeUndefined();
      }
      // Data writes, flush, superblock write, flush: at least four steps were cut through.
      expect(steps).toBeGreaterThanOrEqual(4);
    }
  });

  it('NV-4 changes accepted while a CP is being written are not in it, and survive a cut through replay', async () => {
    const w = await world(12, 4);
    const inCp = w.fs.appliedSeq(0);
    const cp = w.fs.takeCp();
    // These are applied after the freeze: they belong to the next CP.
    for (let i = 0; i < 20; i++) await w.h.step();
    const info = await cp;
    expect(info.appliedSeq.get(0)).toBe(inCp);
    expect(w.fs.appliedSeq(0)).toBe(inCp + 20n);
    w.vol.powerCut(w.prng.fork());
    w.vol.powerOn();
    const fs = await CowFs.mount(w.vol.session());
    expect(fs.cpNumber).toBe(info.cpNumber);
    expect(fs.appliedSeq(0)).toBe(inCp);
    expect(await w.h.replay(fs)).toBe(20);
    expect(await w.h.compare()).toBeUndefined();
  });

  it('NV-4 blocks freed by a CP are reused only after the next CP commits', async () => {
    const w = await world(13, 4);
    await w.fs.takeCp();
    const protectedBefore = w.fs.liveBlocks.clone();
    // Rewrite everything the harness made: every old block is freed in the next CP.
    for (let i = 0; i < 30; i++) await w.h.step();
    const cpA = await w.fs.takeCp();
    // The CP after it must not write into blocks the CP before cpA still used.
    const written: number[] = [];
    const vol = w.vol;
    const orig = vol.writeStripes.bind(vol);
    vol.writeStripes = async (first, data) => {
      for (let i = 0; i < data.length / 4096; i++) written.push(first + i);
      return orig(first, data);
    };
    for (let i = 0; i < 30; i++) await w.h.step();
    await w.fs.takeCp();
    const dataStart = w.fs.geometry.dataStart;
    const clobbered = written.filter((b) => b >= dataStart && protectedBefore.get(b));
    expect(cpA.cpNumber).toBeGreaterThan(0);
    expect(clobbered).toEqual([]);
  });
});
