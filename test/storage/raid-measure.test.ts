// The RAID layer on real parts: the benchmark helpers (raw sequential write bandwidth of
// member disks, rebuild bandwidth) on simulated disks (exact arithmetic under virtual time)
// and on O_DIRECT disk images, and a volume's life on image files (restart, label rot, rebuild).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { realClock, realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { LinuxBlockDevice } from '../../firmware/ts/hal/block/linux/linux-block-device.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { allocAligned } from '../../firmware/ts/native/index.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { createVolume, openVolume } from '../../firmware/ts/storage/raid/index.ts';
import { measureRebuild, measureSequentialWrite } from '../../firmware/ts/storage/raid/measure.ts';
import { directIoTempDir } from '../contract/block-helpers.ts';

describe('RAID benchmark helpers on simulated disks', () => {
  it('measures sequential write bandwidth per disk and in aggregate', async () => {
    const sim = new Simulation({ seed: 1, buggify: false });
    const latency = { writeMs: 2, flushMs: 4, readMs: 0, jitterMs: 0 };
    const disks = [0, 1, 2].map((i) => new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes: 8 * 1024 * 1024, name: `d${i}`, latency }));
    await sim.run(async () => {
      // 4 writes of 1 MiB at 2 ms each, then a 4 ms flush: 4 MiB in 12 ms per disk.
      const serial = await measureSequentialWrite(disks, { clock: sim.clock, bytesPerDisk: 4 * 1024 * 1024 });
      expect(serial.disks.map((d) => d.ms)).toEqual([12, 12, 12]);
      expect(serial.disks[0]?.bytesPerSec).toBeCloseTo((4 * 1024 * 1024 * 1000) / 12);
      expect(serial.ms).toBe(36);
      const parallel = await measureSequentialWrite(disks, { clock: sim.clock, bytesPerDisk: 4 * 1024 * 1024, parallel: true, queueDepth: 2 });
      // Two writes in flight per disk: 2 rounds of 2 ms, then the flush.
      expect(parallel.ms).toBe(8);
      expect(parallel.aggregateBytesPerSec).toBeCloseTo((12 * 1024 * 1024 * 1000) / 8);
      // The label and mailbox region before the RAID data area is untouched.
      for (const d of disks) expect(d.peek(0, diskLayout.raidDataOffsetBytes).every((b) => b === 0)).toBe(true);
    });
  });

  it('refuses impossible measurement parameters', async () => {
    const sim = new Simulation({ seed: 2, buggify: false });
    const d = new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes: 2 * 1024 * 1024 });
    await expect(measureSequentialWrite([], { clock: sim.clock, bytesPerDisk: 4096 })).rejects.toMatchObject({ code: 'ERR_RAID_BAD_CONFIG' });
    await expect(measureSequentialWrite([d], { clock: sim.clock, bytesPerDisk: 4096, chunkBytes: 1000 })).rejects.toMatchObject({ code: 'ERR_RAID_BAD_CONFIG' });
    await expect(measureSequentialWrite([d], { clock: sim.clock, bytesPerDisk: 4 * 1024 * 1024 })).rejects.toMatchObject({ code: 'ERR_RAID_BAD_CONFIG' });
  });

  it('measures rebuild bandwidth, throttled to the limit it is given', async () => {
    const sim = new Simulation({ seed: 3, buggify: false });
    const size = diskLayout.raidDataOffsetBytes + 64 * 65536;
    const disks = [0, 1, 2, 3, 4].map((i) => new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes: size, name: `d${i}` }));
    await sim.run(async () => {
      const rate = 2 * 1024 * 1024;
      const r = await measureRebuild({
        clock: sim.clock,
        timers: sim.timers,
        prng: new Prng(3),
        members: disks.slice(0, 4),
        spare: disks[4] as SimBlockDevice,
        lostPosition: 3,
        limits: { rebuildBandwidthBytesPerSec: rate },
      });
      expect(r.bytesRebuilt).toBe(64 * 65536);
      expect(r.stripes).toBe(64);
      expect(r.bytesPerSec).toBeLessThanOrEqual(rate);
      expect(r.bytesPerSec).toBeGreaterThan(rate * 0.9);
      // The spare now holds the parity: the XOR of the data disks.
      const area = (d: SimBlockDevice): Uint8Array => d.peek(diskLayout.raidDataOffsetBytes, 64 * 65536);
      const xor = area(disks[0] as SimBlockDevice);
      for (const d of disks.slice(1, 3)) {
        const a = area(d);
        for (let i = 0; i < xor.length; i++) xor[i] = (xor[i] as number) ^ (a[i] as number);
      }
      expect(Buffer.from(area(disks[4] as SimBlockDevice)).equals(Buffer.from(xor))).toBe(true);
    });
  });
});

describe('RAID benchmark helpers on O_DIRECT disk images', () => {
  let dir: string | undefined;
  const open: LinuxBlockDevice[] = [];
  afterEach(async () => {
    for (const d of open.splice(0)) await d.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('measures raw sequential write and rebuild bandwidth, and the rebuilt image equals the lost one', async () => {
    dir = mkdtempSync(join(directIoTempDir(), 'tb-raid-'));
    const size = diskLayout.raidDataOffsetBytes + 4 * 1024 * 1024;
    for (let i = 0; i < 4; i++) {
      open.push(await LinuxBlockDevice.open(join(dir, `disk${i}.img`), { create: true, sizeBytes: size, direct: 'prefer', name: `disk${i}` }));
    }
    const [a, b, c, spare] = open as [LinuxBlockDevice, LinuxBlockDevice, LinuxBlockDevice, LinuxBlockDevice];
    const seq = await measureSequentialWrite([a, b, c], { clock: realClock, bytesPerDisk: 4 * 1024 * 1024, allocate: (n) => allocAligned(n) });
    expect(seq.totalBytes).toBe(12 * 1024 * 1024);
    expect(seq.disks.every((d) => d.bytesPerSec > 0 && Number.isFinite(d.bytesPerSec))).toBe(true);

    const rebuild = await measureRebuild({
      clock: realClock,
      timers: realTimers,
      prng: new Prng(4),
      members: [a, b, c],
      spare,
      lostPosition: 1,
      stripeUnitBytes: 65536,
      allocate: (n) => allocAligned(n),
    });
    expect(rebuild.bytesRebuilt).toBe(4 * 1024 * 1024);
    expect(rebuild.bytesPerSec).toBeGreaterThan(0);
    const data = (name: string): Buffer => readFileSync(join(dir as string, name)).subarray(diskLayout.raidDataOffsetBytes);
    expect(data('disk3.img').equals(data('disk1.img'))).toBe(true);
  });
});

describe('RAID volume on O_DIRECT disk images', () => {
  let dir: string | undefined;
  const open: LinuxBlockDevice[] = [];
  afterEach(async () => {
    for (const d of open.splice(0)) await d.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('ST-2 survives a restart, a corrupted label and a lost image, and rebuilds onto a new image', async () => {
    dir = mkdtempSync(join(directIoTempDir(), 'tb-raid-'));
    const size = diskLayout.raidDataOffsetBytes + 2 * 1024 * 1024;
    const openAll = async (names: string[]): Promise<LinuxBlockDevice[]> => {
      const ds: LinuxBlockDevice[] = [];
      for (const n of names) ds.push(await LinuxBlockDevice.open(join(dir as string, n), { create: true, sizeBytes: size, direct: 'prefer', name: n }));
      open.push(...ds);
      return ds;
    };
    const closeAll = async (): Promise<void> => {
      for (const d of open.splice(0)) await d.close();
    };
    const runtime = { clock: realClock, timers: realTimers, prng: new Prng(9), allocate: (n: number) => allocAligned(n), limits: { rebuildBandwidthBytesPerSec: Infinity } };
    const ids = { pairId: 'rig-pair', volumeId: 'blade-a' };
    const names = ['a.img', 'b.img', 'c.img', 'd.img'];

    const v = await createVolume(await openAll(names), { ...runtime, ...ids, stripeUnitBytes: 65536 });
    const p = new Prng(10);
    const data = p.bytes(v.blockCount * 4096);
    await v.writeStripes(0, data);
    await v.flush();
    await v.close();
    await closeAll();

    // Restart: new handles, same images.
    const again = await openVolume(await openAll(names), { ...runtime, ...ids });
    expect(again.status().state).toBe('normal');
    expect(Buffer.from(await again.readBlocks(0, again.blockCount)).equals(Buffer.from(data))).toBe(true);
    await again.close();
    await closeAll();

    // Bit rot in one image's label: detected by its checksum, that image is left out.
    const b = readFileSync(join(dir, 'b.img'));
    b[30] = (b[30] as number) ^ 0xff;
    writeFileSync(join(dir, 'b.img'), b);
    const degraded = await openVolume(await openAll(names), { ...runtime, ...ids });
    expect(degraded.assembly[1]).toMatchObject({ use: 'rejected', code: 'ERR_LABEL_CRC' });
    expect(degraded.status().state).toBe('degraded');
    expect(Buffer.from(await degraded.readBlocks(0, degraded.blockCount)).equals(Buffer.from(data))).toBe(true);

    // A new image as a spare: rebuilt, and equal to what b.img held.
    const [fresh] = await openAll(['e.img']);
    await degraded.addSpare(fresh as LinuxBlockDevice);
    await degraded.whenRebuildDone();
    expect(degraded.status().state).toBe('normal');
    const area = (n: string): Buffer => readFileSync(join(dir as string, n)).subarray(diskLayout.raidDataOffsetBytes);
    expect(area('e.img').equals(area('b.img'))).toBe(true);
    expect((await degraded.verifyParity()).mismatchedStripes).toEqual([]);
    await degraded.close();
  });
});
