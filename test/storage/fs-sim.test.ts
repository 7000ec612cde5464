// A few seeds of the storage simulation area in the unit-test run (the full sweep is
// `npm run sim -- --seeds 500 --area storage`): RAID over simulated disks, the CoW file
// system against the model, CPs, power cuts, a disk failure and rebuild.
import { describe, expect, it } from 'vitest';
import { area, runStorageSeed } from '../../firmware/ts/sim/areas/storage.ts';

describe('storage simulation area', () => {
  it('NV-4 NV-5 ST-2 ST-5 seeds 1..6 pass: fsck clean and contents equal the model after every power cut', async () => {
    for (let seed = 1; seed <= 6; seed++) {
      const lines: string[] = [];
      const outcome = await runStorageSeed(seed, (l) => lines.push(l));
      expect(outcome, lines.join('\n')).toEqual({ ok: true });
    }
  });

  it('is deterministic: the same seed gives the same log', async () => {
    const run = async (): Promise<string[]> => {
      const lines: string[] = [];
      await area.runSeed(42, (l) => lines.push(l));
      return lines;
    };
    expect(await run()).toEqual(await run());
  });
});
