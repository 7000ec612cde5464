// A failed member re-adopted without a reboot (issue #7, ST-2): in a set without a spare the
// failed disk stays in its position; once it works again (or is replaced in place),
// `addSpare` formats it as a spare and the rebuild starts — a disk that is an ok or
// rebuilding member is still refused.
import { describe, expect, it } from 'vitest';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { RaidErrorCode, createVolume } from '../../firmware/ts/storage/raid/index.ts';

const unitBytes = 16384;
const stripes = 32;

describe('RAID addSpare of a member it failed out', () => {
  it('ST-2 a failed disk still in its position is accepted as a spare and rebuilt onto; an ok member is refused', async () => {
    const sim = new Simulation({ seed: 71, buggify: false });
    await sim.run(async () => {
      const sizeBytes = diskLayout.raidDataOffsetBytes + stripes * unitBytes;
      const disks = Array.from({ length: 4 }, (_, i) => new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes, name: `d${i}` }));
      const v = await createVolume(disks, { clock: sim.clock, timers: sim.timers, prng: sim.fork(), limits: { rebuildBandwidthBytesPerSec: Infinity }, pairId: 'pair-ab', volumeId: 'blade-a', stripeUnitBytes: unitBytes });
      const data = new Prng(5).bytes(stripes * v.stripeBlocks * 4096);
      await v.writeStripes(0, data);
      await v.flush();
      (disks[0] as SimBlockDevice).fail();
      await v.readBlocks(0, v.blockCount);
      expect(v.status().state).toBe('degraded');
      expect(v.status().disks[0]).toMatchObject({ name: 'd0', state: 'failed' });
      // An ok member is no spare.
      let refused = '';
      await v.addSpare(disks[1] as SimBlockDevice).catch((e: unknown) => (refused = isTwinbladeError(e) ? e.code : String(e)));
      expect(refused).toBe(RaidErrorCode.diskInUse);
      // The failed disk works again (re-seated, or replaced behind the same device).
      (disks[0] as SimBlockDevice).heal();
      await v.addSpare(disks[0] as SimBlockDevice);
      await v.whenRebuildDone();
      expect(v.status().state).toBe('normal');
      expect(v.status().disks[0]).toMatchObject({ name: 'd0', state: 'ok' });
      expect(await v.readBlocks(0, v.blockCount)).toEqual(data);
      await v.close();
    });
  });
});
