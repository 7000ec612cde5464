// The RAID volume's block-list write (writeStripeBlocks, what a CP uses): the same disks'
// content as writeStripes of the same blocks laid end to end, parity included; whole stripes
// only; and the caller's buffers are free for reuse once the write settles. Also the pool of
// scratch buffers the volume's writes reuse.
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { VolumeErrorCode } from '../../firmware/ts/storage/volume.ts';
import { createVolume } from '../../firmware/ts/storage/raid/index.ts';
import { BufferPool } from '../../firmware/ts/storage/raid/buffer-pool.ts';

const unit = 16384;
const stripes = 16;

function disks(sim: Simulation, tag: string): SimBlockDevice[] {
  return Array.from({ length: 4 }, (_, i) => new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes: diskLayout.raidDataOffsetBytes + stripes * unit, name: `${tag}${i}` }));
}

describe('RAID volume: writeStripeBlocks', () => {
  it('leaves every disk as writeStripes of the same bytes does, and verifies', async () => {
    const sim = new Simulation({ seed: 31, buggify: false });
    await sim.run(async () => {
      const rt = { clock: sim.clock, timers: sim.timers, prng: sim.fork(), pairId: 'p', volumeId: 'v', stripeUnitBytes: unit };
      const a = disks(sim, 'a');
      const b = disks(sim, 'b');
      const va = await createVolume(a, rt);
      const vb = await createVolume(b, { ...rt, prng: sim.fork() });
      const p = new Prng(31);
      const S = va.stripeBlocks;
      const data = p.bytes(5 * S * 4096);
      await va.writeStripes(3 * S, data);
      // Separate buffers, some at odd offsets of larger ones.
      const blocks = Array.from({ length: 5 * S }, (_, i) => {
        const backing = new Uint8Array(4096 + (i % 3) * 8);
        const view = backing.subarray((i % 3) * 8);
        view.set(data.subarray(i * 4096, (i + 1) * 4096));
        return view;
      });
      await vb.writeStripeBlocks(3 * S, blocks);
      // The caller reuses its buffers at once: nothing the volume wrote changes.
      for (const blk of blocks) blk.fill(0xaa);
      for (let i = 0; i < 4; i++) {
        const da = a[i] as SimBlockDevice;
        const db = b[i] as SimBlockDevice;
        expect(Buffer.from(db.peek(diskLayout.raidDataOffsetBytes, stripes * unit)).equals(Buffer.from(da.peek(diskLayout.raidDataOffsetBytes, stripes * unit)))).toBe(true);
      }
      expect(Buffer.from(await vb.readBlocks(3 * S, 5 * S)).equals(Buffer.from(data))).toBe(true);
      expect((await vb.verifyParity()).mismatchedStripes).toEqual([]);
    });
  });

  it('refuses anything but whole stripes of whole blocks, synchronously', async () => {
    const sim = new Simulation({ seed: 32, buggify: false });
    await sim.run(async () => {
      const v = await createVolume(disks(sim, 'c'), { clock: sim.clock, timers: sim.timers, prng: sim.fork(), pairId: 'p', volumeId: 'v', stripeUnitBytes: unit });
      const S = v.stripeBlocks;
      const blocks = (n: number, size = 4096): Uint8Array[] => Array.from({ length: n }, () => new Uint8Array(size));
      expect(() => v.writeStripeBlocks(1, blocks(S))).toThrow(expect.objectContaining({ code: VolumeErrorCode.notFullStripe }));
      expect(() => v.writeStripeBlocks(0, blocks(S - 1))).toThrow(expect.objectContaining({ code: VolumeErrorCode.notFullStripe }));
      expect(() => v.writeStripeBlocks(0, [])).toThrow(expect.objectContaining({ code: VolumeErrorCode.notFullStripe }));
      expect(() => v.writeStripeBlocks(0, [...blocks(S - 1), new Uint8Array(512)])).toThrow(expect.objectContaining({ code: VolumeErrorCode.notFullStripe }));
      expect(() => v.writeStripeBlocks(stripes * S, blocks(S))).toThrow(expect.objectContaining({ code: VolumeErrorCode.outOfRange }));
    });
  });
});

describe('RAID scratch buffer pool', () => {
  it('hands back buffers of the size asked for, reuses returned ones, and keeps at most bytesMax', () => {
    let allocated = 0;
    const pool = new BufferPool((n) => {
      allocated++;
      return new Uint8Array(n);
    }, 3 * 4096);
    const a = pool.take(4096);
    const b = pool.take(8192);
    expect([a.length, b.length, allocated]).toEqual([4096, 8192, 2]);
    pool.give(a, b);
    expect(pool.heldBytes).toBe(12288);
    expect(pool.take(8192)).toBe(b);
    expect(pool.take(4096)).toBe(a);
    expect(allocated).toBe(2);
    // Beyond the limit, returned buffers are left to the garbage collector.
    pool.give(new Uint8Array(8192), new Uint8Array(8192));
    expect(pool.heldBytes).toBe(8192);
    expect(pool.take(4096).length).toBe(4096);
    expect(allocated).toBe(3);
  });
});
