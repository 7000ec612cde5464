// The RAID volume's resync after a power cut, under virtual time: the volume serves at once
// while the write-intent-dirty regions are resynced in the background (throttled); a
// full-stripe write meanwhile is exact; a disk failing mid-resync reports the stripes left
// unchecked; a power cut or close mid-resync leaves them dirty for the next open; a member
// rebuilt onto a new disk carries the intent record (so a clean open needs no resync).
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { VolumeErrorCode } from '../../firmware/ts/storage/volume.ts';
import { createVolume, openVolume, type RaidEvent, type RaidLimits, type RaidVolume } from '../../firmware/ts/storage/raid/index.ts';
import { decodeIntent, encodeIntent } from '../../firmware/ts/storage/raid/intent.ts';

const ids = { pairId: 'pair-r', volumeId: 'vol-r' };
const unit = 16384;
const stripes = 32;
/** 8 stripes per intent region: 4 regions. */
const regionStripes = 8;
/** Per-member bytes per resync chunk (4 stripes), and a rate of one chunk per virtual second. */
const chunkBytes = 4 * unit;
const slowLimits: Partial<RaidLimits> = {
  intentRegionBytes: regionStripes * unit,
  rebuildChunkBytes: chunkBytes,
  resyncBandwidthBytesPerSec: chunkBytes,
  rebuildBandwidthBytesPerSec: Infinity,
  intentClearDelayMs: 100,
};

class Rig {
  readonly sim: Simulation;
  readonly prng: Prng;
  disks: SimBlockDevice[];
  spares: SimBlockDevice[] = [];
  readonly events: RaidEvent[] = [];

  constructor(seed: number) {
    this.sim = new Simulation({ seed, buggify: false });
    this.prng = this.sim.fork();
    this.disks = Array.from({ length: 4 }, (_, i) => this.disk(`d${i}`));
  }

  disk(name: string): SimBlockDevice {
    return new SimBlockDevice({ timers: this.sim.timers, prng: this.sim.fork(), sizeBytes: diskLayout.raidDataOffsetBytes + stripes * unit, name });
  }

  runtime(limits: Partial<RaidLimits>): Parameters<typeof openVolume>[1] {
    return { ...ids, clock: this.sim.clock, timers: this.sim.timers, prng: this.prng, limits, onEvent: (e) => this.events.push(e) };
  }

  open(limits: Partial<RaidLimits> = slowLimits, disks: readonly SimBlockDevice[] = [...this.disks, ...this.spares]): Promise<RaidVolume> {
    return openVolume(disks, this.runtime(limits));
  }

  powerCut(): void {
    const all = [...this.disks, ...this.spares];
    for (const d of all) void d.close();
    for (const d of all) d.powerCut();
    this.disks = this.disks.map((d) => d.attach());
    this.spares = this.spares.map((d) => d.attach());
  }

  eventsOf<T extends RaidEvent['type']>(type: T): Array<Extract<RaidEvent, { type: T }>> {
    return this.events.filter((e): e is Extract<RaidEvent, { type: T }> => e.type === type);
  }
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
}

/**
 * The state a power cut leaves when it tears a partial-stripe update: the volume is written
 * whole and shut down cleanly, then in the stripes `torn` unit 2 (data disk 2) holds new data
 * while parity is still the old one, and every member's intent record marks every region
 * dirty. Units 0 and 1 of every stripe are live and unchanged: returns the data the volume
 * must return (unit 2 of torn stripes as now on disk).
 */
async function tornVolume(r: Rig, torn: readonly number[]): Promise<Uint8Array[]> {
  const v = await createVolume(r.disks, { ...r.runtime(slowLimits), stripeUnitBytes: unit });
  const p = new Prng(r.sim.fork().int(1 << 30));
  const data = Array.from({ length: stripes }, () => p.bytes(v.stripeBlocks * 4096));
  for (let s = 0; s < stripes; s++) await v.writeStripes(s * v.stripeBlocks, data[s] as Uint8Array);
  await v.flush();
  await v.close();
  const d2 = r.disks[2] as SimBlockDevice;
  for (const s of torn) {
    const fresh = p.bytes(unit);
    await d2.write(diskLayout.raidDataOffsetBytes + s * unit, fresh);
    (data[s] as Uint8Array).set(fresh, 2 * unit);
  }
  const record = encodeIntent({ regionStripes, dirty: new Array<boolean>(stripes / regionStripes).fill(true) });
  for (const d of r.disks) {
    await d.write(diskLayout.raidIntentOffsetBytes, record);
    await d.flush();
  }
  return data;
}

async function expectVolume(v: RaidVolume, data: readonly Uint8Array[], only?: (s: number) => boolean): Promise<void> {
  for (let s = 0; s < stripes; s++) {
    if (only !== undefined && !only(s)) continue;
    expect(same(await v.readBlocks(s * v.stripeBlocks, v.stripeBlocks), data[s] as Uint8Array), `stripe ${s}`).toBe(true);
  }
}

function intentOf(d: SimBlockDevice): boolean[] {
  return decodeIntent(d.peek(diskLayout.raidIntentOffsetBytes, diskLayout.raidIntentBytes)).dirty;
}

const torn = [1, 6, 9, 14, 17, 22, 25, 30];

describe('RAID resync after a power cut, in the background', () => {
  it('ST-5 opens at once, serves reads and writes while the resync runs, and ends with exact parity', async () => {
    const r = new Rig(11);
    await r.sim.run(async () => {
      const data = await tornVolume(r, torn);
      const t0 = r.sim.clock.nowMs();
      const v = await r.open();
      // Opening does not wait for the resync (8 chunks at one per virtual second).
      expect(r.sim.clock.nowMs() - t0).toBeLessThan(100);
      expect(r.eventsOf('resync-started')).toEqual([{ type: 'resync-started', stripes }]);
      expect(v.status().state).toBe('normal');
      expect(v.status().resyncStripesLeft).toBe(stripes);
      // Reads meanwhile return the data; a full-stripe write into a torn stripe not yet
      // checked makes it exact on its own (parity from the new data).
      await expectVolume(v, data);
      const p = new Prng(5);
      const fresh = p.bytes(v.stripeBlocks * 4096);
      await v.writeStripes(30 * v.stripeBlocks, fresh);
      data[30] = fresh;
      expect(v.status().resyncStripesLeft).toBeGreaterThan(0);
      await v.whenResyncDone();
      expect(r.sim.clock.nowMs() - t0).toBeGreaterThanOrEqual(6000);
      expect(v.status().resyncStripesLeft).toBeUndefined();
      const done = r.eventsOf('resync-done');
      expect(done).toEqual([{ type: 'resync-done', stripes, repairedStripes: torn.length - 1 }]);
      expect((await v.verifyParity()).mismatchedStripes).toEqual([]);
      // The hole is closed: with data disk 0 gone, its live units reconstruct exactly.
      r.disks[0]?.fail();
      await expectVolume(v, data);
      // The bits are cleared like any other once idle and durable (the volume is degraded
      // now, so the record goes to the survivors).
      await r.sim.timers.sleep(200);
      await v.flush();
      for (const d of r.disks.slice(1)) expect(intentOf(d)).toEqual([false, false, false, false]);
    });
  });

  it('a completed resync leaves the record clean and durable: a power cut right after needs no resync', async () => {
    const r = new Rig(17);
    await r.sim.run(async () => {
      const data = await tornVolume(r, torn);
      const v = await r.open({ ...slowLimits, resyncBandwidthBytesPerSec: Infinity });
      await v.whenResyncDone();
      expect(r.eventsOf('resync-done')).toHaveLength(1);
      // Virtual time is still near 0 here: regions nobody wrote since open count as idle.
      for (const d of r.disks) expect(intentOf(d)).toEqual([false, false, false, false]);
      r.powerCut();
      const again = await r.open();
      expect(r.eventsOf('resync-started')).toHaveLength(1);
      r.disks[0]?.fail();
      await expectVolume(again, data);
    });
  });

  it('the same torn stripes reconstruct wrongly without the resync (the test can see the hole)', async () => {
    const r = new Rig(12);
    await r.sim.run(async () => {
      const data = await tornVolume(r, torn);
      // Open degraded: the dirty regions cannot be checked, and data disk 0's live units
      // of torn stripes come back from stale parity.
      const v = await r.open(slowLimits, r.disks.slice(1));
      expect(r.eventsOf('resync-skipped')).toEqual([expect.objectContaining({ stripes, code: VolumeErrorCode.io })]);
      let wrong = 0;
      for (const s of torn) if (!same(await v.readBlocks(s * v.stripeBlocks, v.stripeBlocks), data[s] as Uint8Array)) wrong++;
      expect(wrong).toBe(torn.length);
      await expectVolume(v, data, (s) => !torn.includes(s));
    });
  });

  it('a data disk failing mid-resync: the stripes left are reported, those checked reconstruct exactly', async () => {
    const r = new Rig(13);
    await r.sim.run(async () => {
      const data = await tornVolume(r, torn);
      const v = await r.open();
      // Two chunks (one region) checked, then data disk 0 dies.
      while ((v.status().resyncStripesLeft ?? 0) > stripes - regionStripes) await r.sim.timers.sleep(50);
      r.disks[0]?.fail();
      // The failure is noticed by the next I/O to the disk (here the resync's own reads).
      await v.whenResyncDone();
      const skipped = r.eventsOf('resync-skipped');
      expect(skipped).toHaveLength(1);
      expect(skipped[0]?.stripes).toBe(stripes - regionStripes);
      expect(skipped[0]?.message).toMatch(/position 0 is missing/);
      expect(r.eventsOf('resync-done')).toEqual([]);
      expect(v.status().state).toBe('degraded');
      // Region 0 (stripes 0..7, torn 1 and 6) was resynced before the failure: exact.
      await expectVolume(v, data, (s) => s < regionStripes || !torn.includes(s));
      // Its bit clears; the others stay set for no benefit (the degraded volume cannot check
      // them), but they are only what the design allows: reported, never silently trusted.
      await r.sim.timers.sleep(200);
      await v.flush();
      expect(intentOf(r.disks[1] as SimBlockDevice)[0]).toBe(false);
    });
  });

  it('the parity disk failing mid-resync puts no data at risk', async () => {
    const r = new Rig(14);
    await r.sim.run(async () => {
      const data = await tornVolume(r, torn);
      const v = await r.open();
      await r.sim.timers.sleep(1500);
      r.disks[3]?.fail();
      await v.whenResyncDone();
      const skipped = r.eventsOf('resync-skipped');
      expect(skipped).toHaveLength(1);
      expect(skipped[0]?.message).toMatch(/parity disk is missing/);
      await expectVolume(v, data);
    });
  });

  it('ST-5 a power cut mid-resync: the regions are resynced at the next open, and the hole stays closed', async () => {
    for (const seed of [21, 22, 23]) {
      const r = new Rig(seed);
      await r.sim.run(async () => {
        const data = await tornVolume(r, torn);
        await r.open();
        await r.sim.timers.sleep(500 + new Prng(seed).int(5000));
        r.powerCut();
        // Every region is still dirty on every member.
        for (const d of r.disks) expect(intentOf(d).some((x) => x)).toBe(true);
        const startedBefore = r.eventsOf('resync-started').length;
        const v = await r.open({ ...slowLimits, resyncBandwidthBytesPerSec: Infinity });
        expect(r.eventsOf('resync-started')).toHaveLength(startedBefore + 1);
        await v.whenResyncDone();
        expect((await v.verifyParity()).mismatchedStripes).toEqual([]);
        r.disks[1]?.fail();
        await expectVolume(v, data);
      });
    }
  });

  it('the partner taking the disks mid-resync (writes fenced) stops it without failing any disk; the partner resyncs at its open', async () => {
    const r = new Rig(18);
    await r.sim.run(async () => {
      const data = await tornVolume(r, torn);
      const v = await r.open();
      while ((v.status().resyncStripesLeft ?? 0) > stripes - regionStripes) await r.sim.timers.sleep(50);
      // The partner's reservation: this blade's handles can no longer write.
      for (const d of r.disks) d.setFenced(true);
      await v.whenResyncDone();
      expect(r.eventsOf('member-failed')).toEqual([]);
      expect(r.eventsOf('resync-done')).toEqual([]);
      // The partner opens the same disks through its own handles and resyncs what is left.
      const partnerDisks = r.disks.map((d) => d.attach());
      const startedBefore = r.eventsOf('resync-started').length;
      const theirs = await openVolume(partnerDisks, r.runtime({ ...slowLimits, resyncBandwidthBytesPerSec: Infinity }));
      expect(r.eventsOf('resync-started')).toHaveLength(startedBefore + 1);
      await theirs.whenResyncDone();
      expect((await theirs.verifyParity()).mismatchedStripes).toEqual([]);
      partnerDisks[0]?.fail();
      await expectVolume(theirs, data);
    });
  });

  it('close mid-resync leaves the unchecked regions dirty; the next open resyncs them', async () => {
    const r = new Rig(15);
    await r.sim.run(async () => {
      const data = await tornVolume(r, torn);
      const v = await r.open();
      await r.sim.timers.sleep(2500);
      await v.flush();
      await v.close();
      const left = intentOf(r.disks[0] as SimBlockDevice);
      expect(left.slice(1)).toEqual([true, true, true]);
      const again = await r.open({ ...slowLimits, resyncBandwidthBytesPerSec: Infinity });
      await again.whenResyncDone();
      expect(r.eventsOf('resync-done')).toHaveLength(1);
      expect((await again.verifyParity()).mismatchedStripes).toEqual([]);
      r.disks[2]?.fail();
      await expectVolume(again, data, (s) => !torn.includes(s) || s >= regionStripes);
    });
  });

  it('a member rebuilt onto a new disk carries the intent record: a clean open afterwards needs no resync', async () => {
    const r = new Rig(16);
    await r.sim.run(async () => {
      const limits = { ...slowLimits, resyncBandwidthBytesPerSec: Infinity };
      const v = await createVolume(r.disks, { ...r.runtime(limits), stripeUnitBytes: unit });
      const p = new Prng(16);
      for (let s = 0; s < stripes; s += 4) await v.writeStripes(s * v.stripeBlocks, p.bytes(4 * v.stripeBlocks * 4096));
      // Idle and flushed: the record says clean, so nothing rewrites it at close.
      await r.sim.timers.sleep(200);
      await v.flush();
      r.disks[1]?.fail();
      await expect(v.readBlocks(v.stripeBlocks, 1)).resolves.toHaveLength(4096);
      const fresh = r.disk('new');
      await v.addSpare(fresh);
      await v.whenRebuildDone();
      expect(v.status().state).toBe('normal');
      await v.flush();
      await v.close();
      expect(intentOf(fresh)).toEqual(intentOf(r.disks[0] as SimBlockDevice));
      await r.open(limits, [r.disks[0], fresh, r.disks[2], r.disks[3]] as SimBlockDevice[]);
      expect(r.eventsOf('resync-started')).toEqual([]);
      expect(r.eventsOf('resync-done')).toEqual([]);
    });
  });
});

describe('RAID prepareWrites', () => {
  it('marks the regions of the announced ranges in one durable record update; their writes add none', async () => {
    const r = new Rig(21);
    await r.sim.run(async () => {
      const v = await createVolume(r.disks, { ...r.runtime(slowLimits), stripeUnitBytes: unit });
      await v.flush();
      await r.sim.timers.sleep(500);
      await v.flush(); // idle past intentClearDelayMs: every bit clear again
      expect(intentOf(r.disks[0] as SimBlockDevice).some((x) => x)).toBe(false);
      let recordWrites = 0;
      for (const d of r.disks) {
        const write = d.write.bind(d);
        d.write = (offset, data) => {
          if (offset === diskLayout.raidIntentOffsetBytes) recordWrites++;
          return write(offset, data);
        };
      }
      const S = v.stripeBlocks;
      // Regions 1 and 3 (stripes 8-15 and 24-31), announced as two ranges.
      const prepared = v.prepareWrites([
        { first: 9 * S, count: 4 * S },
        { first: 24 * S, count: 8 * S },
      ]);
      // Writes issued before the update is durable wait for it rather than queueing another.
      const p = new Prng(5);
      const writes = [9, 12, 24, 31].map((s) => v.writeStripes(s * S, p.bytes(S * 4096)));
      await prepared;
      await Promise.all(writes);
      expect(recordWrites).toBe(4); // one record per member
      for (const d of r.disks) {
        const bits = decodeIntent(d.peekDurable(diskLayout.raidIntentOffsetBytes, diskLayout.raidIntentBytes)).dirty;
        expect(bits).toEqual([false, true, false, true]);
      }
      // Announcing marked regions again costs nothing.
      await v.prepareWrites([{ first: 10 * S, count: S }]);
      await v.writeStripes(10 * S, p.bytes(S * 4096));
      expect(recordWrites).toBe(4);
      // A power cut now: the marked regions are resynced at the next open, parity exact.
      r.powerCut();
      const again = await r.open();
      await again.whenResyncDone();
      expect((await again.verifyParity()).mismatchedStripes).toEqual([]);
      await again.close();
    });
  });
});
