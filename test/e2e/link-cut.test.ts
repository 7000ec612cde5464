// Serial link cut end to end: with the serial line between the blades cut, neither blade
// takes the other over (the network interconnect and the mailbox disks still carry the
// heartbeat), NVRAM mirroring goes on over the network path, and both blades report the
// serial path down; after the heal it comes back up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PairRig, WriteLoad, sleep, verifyAcked } from './pair-rig.ts';
import { applyFault } from '../../rig/faults.ts';

/** How long the pair runs with the serial link cut: several HA takeover timeouts. */
const cutHoldMs = 6000;

describe('e2e: serial link cut', () => {
  let pr: PairRig | undefined;
  beforeAll(async () => {
    pr = await PairRig.start(2);
    await pr.bringUp();
  });
  afterAll(async () => {
    await pr?.stop();
    if (pr) expect(await pr.leftovers()).toEqual([]);
  });

  it('HA-6 no takeover when only the serial link is cut; mirroring continues over the network; status shows the serial path down', async () => {
    const p = pr as PairRig;
    const loadA = new WriteLoad({ target: p.address('a'), clients: 3, prefix: 'lc' }).start();
    await loadA.waitAcked(50);
    const serialUp = async (b: 'a' | 'b'): Promise<boolean | undefined> => (await p.status(b)).paths.find((x) => x.name === 'serial')?.up;
    expect(await serialUp('a')).toBe(true);

    await applyFault(p.rig, 'link', ['cut'], false);
    await p.until('both blades see the serial path down', async () => (await serialUp('a')) === false && (await serialUp('b')) === false, 20_000);
    const before = (await p.status('a')).nvlog as { mirrorDoneSeq: number };
    await loadA.waitAcked(100);
    await sleep(cutHoldMs);
    const [sa, sb] = await Promise.all([p.status('a'), p.status('b')]);
    expect([sa.state, sb.state]).toEqual(['NORMAL', 'NORMAL']);
    expect(sa.exports.map((e) => e.path)).toEqual(['/vola']);
    expect(sb.exports.map((e) => e.path)).toEqual(['/volb']);
    expect(sa.partner.reachable && sb.partner.reachable).toBe(true);
    expect(sa.paths.find((x) => x.name === 'interconnect-udp')?.up).toBe(true);
    // a's log kept its partner copy in step over the network path.
    expect(sa.mirror).toBe('synced');
    expect((sa.nvlog as { mirrorDoneSeq: number }).mirrorDoneSeq).toBeGreaterThan(before.mirrorDoneSeq);
    expect(p.holders('a').every((h) => h === 'a')).toBe(true);
    expect(p.holders('b').every((h) => h === 'b')).toBe(true);

    await applyFault(p.rig, 'link', [], true);
    await p.until('the serial path up again on both blades', async () => (await serialUp('a')) === true && (await serialUp('b')) === true, 20_000);
    const r = await loadA.stop();
    expect(r.errors).toEqual([]);
    expect(r.reconnects).toBe(0);
    expect(await verifyAcked(p.address('a'), r.acked)).toEqual([]);
  }, 90_000);
});
