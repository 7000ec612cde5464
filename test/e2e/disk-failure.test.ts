// ST-2 end to end: a member disk of blade a's set dies under a write load. a's RAID fails it
// out and serves degraded, rebuilds onto the hot spare by itself, and reports the volume
// healthy again in `blade status`; clients never see an NFS error. After `rig heal` (the
// dead disk working again) a adopts it as its new hot spare, which a second failure then
// proves; a blank disk swapped in for the next dead one becomes the spare the same way.
// Then a member dies while b serves a's set after a takeover: b serves it degraded, and after
// the giveback a reassembles its set without the dead disk and rebuilds onto its spare.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import { PairRig, WriteLoad, verifyAcked, type BladeId } from './pair-rig.ts';
import { applyFault } from '../../rig/faults.ts';
import { mgmtRequest } from '../../firmware/ts/blade/mgmt.ts';

interface DiskView {
  name: string;
  role: string;
  state: string;
}
interface VolumeView {
  state: string;
  disks: DiskView[];
  rebuildProgress?: number;
  rebuildError?: unknown;
}

/** The rig disk name (`a1`) of a blade's disk (an NBD URI ending in the export name). */
const rigName = (d: DiskView): string => d.name.slice(d.name.lastIndexOf('/') + 1);

describe('e2e: disk failure in a set under load', () => {
  let pr: PairRig | undefined;
  beforeAll(async () => {
    // 32 MiB disks: each rebuild copies 31 MiB per member (the rebuild is throttled to 64 MiB/s).
    pr = await PairRig.start(6, { diskBytes: 32 * 1024 * 1024 });
    await pr.bringUp();
  }, 120_000);
  afterAll(async () => {
    await pr?.stop();
    if (pr) expect(await pr.leftovers()).toEqual([]);
  });

  const volume = async (p: PairRig, b: BladeId): Promise<VolumeView> => (await p.status(b)).disks as VolumeView;
  /** The volume as `role:name:state` per disk, e.g. `data:a0:ok`, in status order. */
  const layout = async (p: PairRig, b: BladeId): Promise<string[]> => (await volume(p, b)).disks.map((d) => `${d.role}:${rigName(d)}:${d.state}`);
  /** Polls a's volume until it is normal with exactly `want` as its disks, recording the states it went through. */
  const untilHealthy = async (p: PairRig, want: string[], seen: Set<string>): Promise<void> => {
    await p.until(
      `a's volume normal with ${want.join(' ')}`,
      async () => {
        const v = await volume(p, 'a');
        seen.add(v.state);
        if (v.rebuildError !== undefined) throw new Error(`rebuild failed: ${JSON.stringify(v.rebuildError)}`);
        return v.state === 'normal' && JSON.stringify(v.disks.map((d) => `${d.role}:${rigName(d)}:${d.state}`)) === JSON.stringify(want);
      },
      40_000,
    );
  };

  it('ST-2 a member of a\'s set fails under load: served degraded, rebuilt onto the spare, the healed disk becomes the spare; no client error, nothing acknowledged lost', async () => {
    const p = pr as PairRig;
    expect(await layout(p, 'a')).toEqual(['data:a0:ok', 'data:a1:ok', 'parity:ap:ok', 'spare:as:ok']);
    const loadA = new WriteLoad({ target: p.address('a'), clients: 3, prefix: 'df' }).start();
    const loadB = new WriteLoad({ target: p.address('b'), clients: 1, prefix: 'own' }).start();
    await Promise.all([loadA.waitAcked(100), loadB.waitAcked(20)]);

    // 1. a1 dies (EIO on both loops). The RAID fails it out and rebuilds onto `as`.
    await applyFault(p.rig, 'disk-fail', ['a1'], false);
    const seen = new Set<string>();
    await loadA.waitAcked(100);
    await untilHealthy(p, ['data:a0:ok', 'data:as:ok', 'parity:ap:ok'], seen);
    await loadA.waitAcked(50);
    const events = await raidEvents(p, 'a');
    expect(events).toEqual(expect.arrayContaining(['member-failed a1', 'rebuild-started as', 'rebuild-done as']));
    expect(events.indexOf('member-failed a1')).toBeLessThan(events.indexOf('rebuild-done as'));

    // 2. The dead disk works again (`rig heal`, old contents): a formats it as its new hot spare.
    await applyFault(p.rig, 'disk-fail', ['a1'], true);
    await untilHealthy(p, ['data:a0:ok', 'data:as:ok', 'parity:ap:ok', 'spare:a1:ok'], seen);
    await loadA.waitAcked(50);

    // 3. The new spare is a working one: the disk rebuilt in step 1 dies, a rebuilds onto a1.
    await applyFault(p.rig, 'disk-fail', ['as'], false);
    await untilHealthy(p, ['data:a0:ok', 'data:a1:ok', 'parity:ap:ok'], seen);
    await loadA.waitAcked(50);
    expect(await raidEvents(p, 'a')).toEqual(expect.arrayContaining(['member-failed as', 'spare-added a1', 'rebuild-done a1']));
    // 4. This time the dead disk is swapped for a new, blank one: a formats it as its spare.
    await applyFault(p.rig, 'disk-fail', ['as', 'blank'], true);
    await untilHealthy(p, ['data:a0:ok', 'data:a1:ok', 'parity:ap:ok', 'spare:as:ok'], seen);
    expect((await raidEvents(p, 'a')).filter((e) => e === 'spare-added as')).toHaveLength(1);

    // No takeover, no fence trouble: a disk failure is the RAID's business, not HA's.
    const [sa, sb] = await Promise.all([p.status('a'), p.status('b')]);
    expect([sa.state, sb.state]).toEqual(['NORMAL', 'NORMAL']);
    expect(p.holders('a').every((h) => h === 'a')).toBe(true);
    expect(p.rig.loopEmulator().violations().map((v) => JSON.stringify(v))).toEqual([]);

    const [ra, rb] = await Promise.all([loadA.stop(), loadB.stop()]);
    expect(ra.errors).toEqual([]);
    expect(rb.errors).toEqual([]);
    expect(ra.reconnects).toBe(0);
    expect(await verifyAcked(p.address('a'), ra.acked)).toEqual([]);
    expect(await verifyAcked(p.address('b'), rb.acked)).toEqual([]);
    console.log(`e2e disk failure: ${ra.acked.length} writes acked on /vola, volume states seen ${[...seen].join(', ')}, longest client pause ${ra.longestPauseMs} ms, ${ra.jukebox} JUKEBOX`);
  }, 120_000);

  it('ST-2 HA-6 HA-9 a member of a\'s set fails while b serves it after a takeover: b serves it degraded; after the giveback a rebuilds onto its spare; nothing acknowledged lost', async () => {
    const p = pr as PairRig;
    // The first test left a's set as a0, a1, ap (+ spare as): the members b's board names.
    expect(await layout(p, 'a')).toEqual(['data:a0:ok', 'data:a1:ok', 'parity:ap:ok', 'spare:as:ok']);
    await p.waitMirrored(['a', 'b'], 30_000);
    const load = new WriteLoad({ target: p.address('a'), clients: 3, prefix: 'tk' }).start();
    await load.waitAcked(100);
    await applyFault(p.rig, 'power-cut', ['a'], false);
    await p.until('b serving /vola after the takeover', async () => (await p.status('b')).exports.some((e) => e.path === '/vola'), 40_000);
    // Small counts: the survivor's writes stall in 5 s bursts while its partner is dead
    // (docs/e2e.md, "Known problems"), and the test is about where they land, not how fast.
    await load.waitAcked(30, 30_000);

    // b opened a's set without a's spare (the board gives a blade its partner's members only).
    await applyFault(p.rig, 'disk-fail', ['a0'], false);
    await load.waitAcked(30, 30_000);
    await p.until('b failed a0 out of a\'s set', async () => (await raidEvents(p, 'b')).includes('member-failed a0'), 20_000);
    await load.waitAcked(10, 30_000);
    const sb = await p.status('b');
    expect(sb.state).toBe('TAKEOVER');
    expect(p.holders('a').every((h) => h === 'b')).toBe(true);
    expect(p.rig.loopEmulator().violations().map((v) => JSON.stringify(v))).toEqual([]);

    // Giveback (HA-9): a boots, waits for its disks (HA-10), b hands the set back; a assembles
    // it without a0 (failed in the labels b wrote) and rebuilds onto its own spare.
    await applyFault(p.rig, 'power-cut', ['a'], true);
    await p.until('a booted and waiting for giveback', async () => p.rig.blade('a').status().power === 'on' && (await p.statusOrNull('a'))?.state === 'REBOOTING', 40_000);
    // The operator gives back; if the takeover is older than givebackDelayMinMs (a slow host),
    // b may give back by itself first (HA-9 automatic giveback): either way a serves again.
    await p.until('b gives back and a serves /vola again', async () => {
      if ((await p.status('b')).state === 'TAKEOVER') await mgmtRequest(p.socket('b'), 'giveback', {}, 5000).catch(() => undefined);
      return (await p.status('a')).exports.some((e) => e.path === '/vola' && e.owner === 'a');
    }, 60_000);
    await p.until('a\'s volume rebuilt onto its spare', async () => JSON.stringify(await layout(p, 'a')) === JSON.stringify(['data:as:ok', 'data:a1:ok', 'parity:ap:ok']), 40_000);
    await load.waitAcked(20, 30_000);
    expect(p.holders('a').every((h) => h === 'a')).toBe(true);
    // ST-4: no refused write at all — not even a late mailbox write of b after the giveback
    // (b's mailbox writes to a's disks stop and drain before the release; issue #7).
    expect(p.rig.loopEmulator().violations().map((v) => JSON.stringify(v))).toEqual([]);
    const r = await load.stop();
    expect(r.errors).toEqual([]);
    expect(await verifyAcked(p.address('a'), r.acked)).toEqual([]);
    console.log(
      `e2e disk failure after takeover: ${r.acked.length} writes acked on /vola served by b then a, ${r.reconnects} reconnects, longest client pause ${r.longestPauseMs} ms; ` +
        `refused writes: 0`,
    );
  }, 120_000);
});

/** The blade's RAID events from its log, as `type disk` (disk by its rig name). */
async function raidEvents(p: PairRig, b: BladeId): Promise<string[]> {
  const text = await fs.readFile(p.log(b), 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"raid"')) continue;
    try {
      const r = (JSON.parse(line) as { raid?: { type: string; disk?: string } }).raid;
      if (r && r.type !== 'rebuild-progress' && r.type !== 'labels-written') out.push(`${r.type}${r.disk ? ` ${r.disk.slice(r.disk.lastIndexOf('/') + 1)}` : ''}`);
    } catch {
      // not a JSON log line
    }
  }
  return out;
}
