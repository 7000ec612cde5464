// HA-6 HA-7 NV-5 end to end: blade a loses power under a write load from several clients;
// blade b fences a's disks, replays a's mirrored change log and serves /vola at a's address
// (as root on the namespace rig: a's client address moved to b's port with a gratuitous ARP,
// CF-5; otherwise the loopback rig, where b serves a's port).
// The clients see a pause (a reset connection, a reconnect), never an NFS error, and every
// write acknowledged before, during and after the cut reads back with the right contents.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PairRig, WriteLoad, verifyAcked } from './pair-rig.ts';
import { applyFault } from '../../rig/faults.ts';
import { namespacesAvailable } from '../../rig/net/topology.ts';

describe('e2e: power cut of blade a under load', () => {
  let pr: PairRig | undefined;
  let netns = false;
  beforeAll(async () => {
    netns = process.env.TB_E2E_NETWORK !== 'loopback' && (await namespacesAvailable());
    // A namespace slot of its own per process (docs/e2e.md lists the slots in use).
    pr = await PairRig.start(1, netns ? { network: 'netns', netSlot: 50 + (process.pid % 5) } : {});
    await pr.bringUp();
  });
  afterAll(async () => {
    await pr?.stop();
    if (pr) expect(await pr.leftovers()).toEqual([]);
  });

  it('HA-6 HA-7 NV-5 b fences and takes over a, replays its mirror, serves /vola at its address; nothing acknowledged lost, clients only pause', async () => {
    const p = pr as PairRig;
    const loadA = new WriteLoad({ target: p.address('a'), clients: 4, prefix: 'cut' }).start();
    const loadB = new WriteLoad({ target: p.address('b'), clients: 2, prefix: 'own' }).start();
    await Promise.all([loadA.waitAcked(200), loadB.waitAcked(50)]);
    expect(p.holders('a').every((h) => h === 'a')).toBe(true);

    await applyFault(p.rig, 'power-cut', ['a'], false);
    const ackedAtCut = loadA.ackedCount;
    // The load goes on at a's address: served by b once it took over.
    await loadA.waitAcked(200, 30_000);
    const sb = await p.status('b');
    expect(sb.state).toBe('TAKEOVER');
    expect(sb.exports.map((e) => e.path).sort()).toEqual(['/vola', '/volb']);
    // HA-6: a's disks are reserved to b on the loop.
    expect(p.holders('a').every((h) => h === 'b')).toBe(true);
    expect(p.rig.loopEmulator().violations()).toEqual([]);

    const [ra, rb] = await Promise.all([loadA.stop(), loadB.stop()]);
    expect(ra.errors).toEqual([]);
    expect(rb.errors).toEqual([]);
    expect(ra.acked.length).toBeGreaterThan(ackedAtCut);
    expect(ra.reconnects).toBeGreaterThan(0);
    // b's own clients never noticed.
    expect(rb.reconnects).toBe(0);
    expect(await verifyAcked(p.address('a'), ra.acked)).toEqual([]);
    expect(await verifyAcked(p.address('b'), rb.acked)).toEqual([]);
    console.log(`e2e takeover (${netns ? 'netns' : 'loopback'}): ${ra.acked.length} writes acked on /vola (${ackedAtCut} before the cut), ${ra.reconnects} reconnects, longest client pause ${ra.longestPauseMs} ms`);
  }, 120_000);
});
