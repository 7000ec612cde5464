// Whole-rig power cut end to end: both blades lose power at once under load (no survivor to
// take over); once power is back each blade replays its own battery-backed NVRAM log (NV-5)
// and serves its export again, and every acknowledged write is there.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PairRig, WriteLoad, verifyAcked } from './pair-rig.ts';
import { applyFault } from '../../rig/faults.ts';

describe('e2e: whole-rig power cut', () => {
  let pr: PairRig | undefined;
  beforeAll(async () => {
    pr = await PairRig.start(5);
    await pr.bringUp();
  });
  afterAll(async () => {
    await pr?.stop();
    if (pr) expect(await pr.leftovers()).toEqual([]);
  });

  it('NV-5 NV-7 both blades cut under load, restored: each replays its own NVRAM, both exports serve, nothing acknowledged lost', async () => {
    const p = pr as PairRig;
    const loads = (['a', 'b'] as const).map((b) => new WriteLoad({ target: p.address(b), clients: 3, prefix: `w${b}` }).start());
    await Promise.all(loads.map((l) => l.waitAcked(100)));
    await Promise.all([applyFault(p.rig, 'power-cut', ['a'], false), applyFault(p.rig, 'power-cut', ['b'], false)]);
    await Promise.all([applyFault(p.rig, 'power-cut', ['a'], true), applyFault(p.rig, 'power-cut', ['b'], true)]);
    await p.waitBothServing();
    await Promise.all(loads.map((l) => l.waitAcked(60, 30_000)));
    const reports = await Promise.all(loads.map((l) => l.stop()));

    for (const [i, b] of (['a', 'b'] as const).entries()) {
      const r = reports[i];
      expect(r?.errors).toEqual([]);
      expect(r?.reconnects).toBeGreaterThan(0);
      expect(await verifyAcked(p.address(b), r?.acked ?? [])).toEqual([]);
      const s = await p.status(b);
      expect(s.state).toBe('NORMAL');
      expect(s.exports.map((e) => e.path)).toEqual([`/vol${b}`]);
      expect(p.holders(b).every((h) => h === b)).toBe(true);
    }
    expect(p.rig.loopEmulator().violations()).toEqual([]);
  }, 90_000);
});
