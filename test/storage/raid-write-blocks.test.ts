// The RAID volume's block-list write (writeStripeBlocks, what a CP uses): the same disks'
// content as writeStripes of the same blocks laid end to end, parity included; whole stripes
// only; and the caller's buffers are free for reuse once the write settles.
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { VolumeErrorCode } from '../../firmware/ts/storage/volume.ts';
import { createVolume } from '../../firmware/ts/storage/raid/index.ts';

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
