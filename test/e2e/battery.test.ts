// NV-7 end to end: blade a's NVRAM battery fails, then a loses power and the rig wipes its
// NVRAM as a battery-less memory would be. Nothing acknowledged is lost: b takes over a's
// file system from its mirror and the disks. (The pair blade does not watch its battery yet,
// so a's turn to write-through is not checked here; see docs/e2e.md.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PairRig, WriteLoad, verifyAcked } from './pair-rig.ts';
import { applyFault } from '../../rig/faults.ts';

describe('e2e: battery failed, then power cut', () => {
  let pr: PairRig | undefined;
  beforeAll(async () => {
    pr = await PairRig.start(3);
    await pr.bringUp();
  });
  afterAll(async () => {
    await pr?.stop();
    if (pr) expect(await pr.leftovers()).toEqual([]);
  });

  it('NV-7 a with a failed battery loses power: its NVRAM is gone, b takes over from the mirror and nothing acknowledged is lost', async () => {
    const p = pr as PairRig;
    const load = new WriteLoad({ target: p.address('a'), clients: 3, prefix: 'bat' }).start();
    await load.waitAcked(60);
    await applyFault(p.rig, 'battery-fail', ['a'], false);
    await load.waitAcked(60);

    await applyFault(p.rig, 'power-cut', ['a'], false);
    const nvram = await fs.readFile(path.join(p.dir, 'a', 'nvram.img'));
    expect(nvram.every((v) => v === 0)).toBe(true);
    await load.waitAcked(60, 30_000);
    const sb = await p.status('b');
    expect(sb.state).toBe('TAKEOVER');
    expect(p.holders('a').every((h) => h === 'b')).toBe(true);

    const r = await load.stop();
    expect(r.errors).toEqual([]);
    expect(await verifyAcked(p.address('a'), r.acked)).toEqual([]);
    expect(p.rig.loopEmulator().violations()).toEqual([]);
  }, 90_000);
});
