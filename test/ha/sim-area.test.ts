// The `ha` simulation area in the test suite: a slice of the campaign that
// `npm run sim -- --seeds 500 --area ha` runs in full, plus its determinism.
import { describe, expect, it } from 'vitest';
import { area } from '../../firmware/ts/sim/areas/ha.ts';

describe('ha simulation area', () => {
  it('HA-6 ST-4 HA-5 passes a batch of seeds: no split brain, fenced blades stop, dead partners taken over in bound, no takeover of a reachable partner', async () => {
    const failures: string[] = [];
    for (let seed = 1; seed <= 25; seed++) {
      const lines: string[] = [];
      const r = await area.runSeed(seed, (l) => lines.push(l));
      if (!r.ok) failures.push(`seed ${seed}: ${r.reason}\n${lines.join('\n')}`);
    }
    expect(failures).toEqual([]);
  });

  it('HA-6 HA-8 the seeds that found bugs pass (3430: a blade hung over its tie-break delay announced a takeover of a reachable partner on resuming; 6339: the checker expected a takeover its partner\'s NO-TAKEOVER forbade)', async () => {
    for (const seed of [3430, 6339]) {
      const r = await area.runSeed(seed, () => undefined);
      expect(r.ok ? '' : r.reason).toBe('');
    }
  });

  it('is deterministic: one seed gives byte-identical logs', async () => {
    const run = async (): Promise<string[]> => {
      const lines: string[] = [];
      await area.runSeed(12345, (l) => lines.push(l));
      return lines;
    };
    expect(await run()).toEqual(await run());
  });
});
