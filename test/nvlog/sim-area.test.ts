// The nvlog simulation area under vitest: a batch of seeds must pass (every acknowledged
// change applied exactly once after every recovery, none twice, every request answered),
// and one seed must give byte-identical output when run twice.
import { describe, expect, it } from 'vitest';
import { area } from '../../firmware/ts/sim/areas/nvlog.ts';

describe('nvlog simulation area', () => {
  it('NV-1..NV-7 SM-2 passes 40 seeds of power cuts, battery failures, takeovers and link cuts', async () => {
    const failures: string[] = [];
    for (let seed = 1000; seed < 1040; seed++) {
      const r = await area.runSeed(seed, () => undefined);
      if (!r.ok) failures.push(`seed ${seed}: ${r.reason}`);
    }
    expect(failures).toEqual([]);
  });

  it('is deterministic: the same seed gives the same log', async () => {
    const run = async (): Promise<string[]> => {
      const lines: string[] = [];
      await area.runSeed(77, (l) => lines.push(l));
      return lines;
    };
    expect(await run()).toEqual(await run());
  });
});
