// RaidVolume.readBlockParts (Volume.readBlockParts): the blocks as views of the member reads,
// one per stripe-unit run, equal to readBlocks at any range — with every member, and degraded
// (a missing member's runs reconstructed from parity) — and owned by the caller.
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { createVolume } from '../../firmware/ts/storage/raid/index.ts';
import { concatBytes } from '../../firmware/ts/core/bytes.ts';

const unitBytes = 16384;
const stripes = 24;
const B = 4096;

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);

describe('RAID readBlockParts', () => {
  it('ST-2 equals readBlocks at any range, whole blocks per run, with all members and degraded', async () => {
    const sim = new Simulation({ seed: 72, buggify: false });
    await sim.run(async () => {
      const sizeBytes = diskLayout.raidDataOffsetBytes + stripes * unitBytes;
      const disks = Array.from({ length: 4 }, (_, i) => new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes, name: `d${i}` }));
      const v = await createVolume(disks, { clock: sim.clock, timers: sim.timers, prng: sim.fork(), pairId: 'pair-ab', volumeId: 'blade-a', stripeUnitBytes: unitBytes });
      const data = new Prng(6).bytes(stripes * v.stripeBlocks * B);
      await v.writeStripes(0, data);
      await v.flush();
      const prng = new Prng(7);
      const check = async (when: string): Promise<void> => {
        const ranges: Array<[number, number]> = [[0, v.blockCount], [0, 1], [3, 2], [v.stripeBlocks - 1, 2], [5, 3 * v.stripeBlocks + 1]];
        for (let i = 0; i < 20; i++) {
          const first = prng.int(v.blockCount);
          ranges.push([first, 1 + prng.int(v.blockCount - first)]);
        }
        for (const [first, count] of ranges) {
          const parts = await v.readBlockParts(first, count);
          for (const p of parts) expect(p.length % B, `${when} ${first}+${count}`).toBe(0);
          // At most one run per stripe unit touched (a unit is contiguous on its disk).
          expect(parts.length, `${when} ${first}+${count}`).toBeLessThanOrEqual(Math.ceil(count / (unitBytes / B)) + 1);
          expect(same(concatBytes(parts), data.subarray(first * B, (first + count) * B)), `${when} ${first}+${count}`).toBe(true);
          expect(same(await v.readBlocks(first, count), data.subarray(first * B, (first + count) * B)), `${when} ${first}+${count}`).toBe(true);
        }
      };
      await check('normal');
      // The caller owns the pieces: writing to them changes neither the disks nor a later read.
      const mine = await v.readBlockParts(0, 8);
      for (const p of mine) p.fill(0xff);
      expect(same(concatBytes(await v.readBlockParts(0, 8)), data.subarray(0, 8 * B))).toBe(true);
      (disks[1] as SimBlockDevice).fail();
      await check('degraded');
      expect(v.status().state).toBe('degraded');
      expect(await v.readBlockParts(0, 0)).toEqual([]);
      await v.close();
    });
  });
});
