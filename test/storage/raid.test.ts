// The RAID-4 volume over simulated disks, under virtual time: data survives any single disk
// failure at any moment (mid-CP, mid-rebuild), bad sectors are repaired from parity, the
// rebuild reproduces the lost disk exactly, a second failure stops the volume without
// corrupting it, and labels keep stale or foreign disks out.
import { describe, expect, it, vi } from 'vitest';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { LabelErrorCode, readLabel } from '../../firmware/ts/storage/label.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { VolumeErrorCode } from '../../firmware/ts/storage/volume.ts';
import {
  RaidError,
  RaidErrorCode,
  createVolume,
  openVolume,
  type RaidEvent,
  type RaidLimits,
  type RaidVolume,
} from '../../firmware/ts/storage/raid/index.ts';
import { inspectDisks, previewAssembly } from '../../firmware/ts/storage/raid/inspect.ts';
import { decodeIntent } from '../../firmware/ts/storage/raid/intent.ts';

const pairId = 'pair-ab';
const volumeId = 'blade-a';

interface RigOptions {
  members?: number;
  spares?: number;
  unitBytes?: number;
  stripes?: number;
  limits?: Partial<RaidLimits>;
  autoRebuild?: boolean;
  /** Turn on the simulator's buggify() sites (default off). */
  buggify?: boolean;
  /** Disk sector size (default 4096). */
  sectorSize?: number;
  /** RaidRuntimeOptions.zeroCopyWrites (default 'auto': sim disks have no writev, so gathered). */
  zeroCopyWrites?: boolean | 'auto';
}

/** A simulation with disks sized for the volume, and a record of the volume's events. */
class Rig {
  readonly sim: Simulation;
  readonly prng: Prng;
  disks: SimBlockDevice[];
  spares: SimBlockDevice[];
  readonly events: RaidEvent[] = [];
  listener: ((e: RaidEvent) => void) | undefined;
  readonly unitBytes: number;
  readonly stripes: number;
  readonly limits: Partial<RaidLimits>;
  readonly autoRebuild: boolean;
  readonly zeroCopyWrites: boolean | 'auto';

  constructor(seed: number, o: RigOptions = {}) {
    this.sim = new Simulation({ seed, buggify: o.buggify === true ? {} : false });
    this.prng = this.sim.fork();
    this.unitBytes = o.unitBytes ?? 16384;
    this.stripes = o.stripes ?? 32;
    this.limits = { rebuildBandwidthBytesPerSec: Infinity, rebuildChunkBytes: 4 * this.unitBytes, ...o.limits };
    this.autoRebuild = o.autoRebuild ?? true;
    this.zeroCopyWrites = o.zeroCopyWrites ?? 'auto';
    const sizeBytes = diskLayout.raidDataOffsetBytes + this.stripes * this.unitBytes;
    const sectorSize = o.sectorSize ?? 4096;
    const disk = (name: string): SimBlockDevice => new SimBlockDevice({ timers: this.sim.timers, prng: this.sim.fork(), sizeBytes, name, sectorSize });
    this.disks = Array.from({ length: o.members ?? 4 }, (_, i) => disk(`d${i}`));
    this.spares = Array.from({ length: o.spares ?? 0 }, (_, i) => disk(`s${i}`));
  }

  runtime(): {
    clock: Simulation['clock'];
    timers: Simulation['timers'];
    prng: Prng;
    limits: Partial<RaidLimits>;
    autoRebuild: boolean;
    zeroCopyWrites: boolean | 'auto';
    onEvent: (e: RaidEvent) => void;
  } {
    return { clock: this.sim.clock, timers: this.sim.timers, prng: this.prng, limits: this.limits, autoRebuild: this.autoRebuild, zeroCopyWrites: this.zeroCopyWrites, onEvent: (e) => {
        this.events.push(e);
        this.listener?.(e);
      },
    };
  }

  create(): Promise<RaidVolume> {
    return createVolume(this.disks, { ...this.runtime(), pairId, volumeId, stripeUnitBytes: this.unitBytes, spares: this.spares });
  }

  open(disks: readonly SimBlockDevice[] = [...this.disks, ...this.spares]): Promise<RaidVolume> {
    return openVolume(disks, { ...this.runtime(), pairId, volumeId });
  }

  /** The blade loses power: its handles die, every disk loses what was not flushed, and new handles open after the reboot. */
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

/** What the volume must return: stripe number → its bytes (never-written stripes are zero). */
class Model {
  readonly stripes = new Map<number, Uint8Array>();
  /** Stripes whose write was refused midway: their content is undefined, so checks skip them. */
  readonly torn = new Set<number>();
  constructor(readonly v: RaidVolume) {}
  stripeBytes(): number {
    return this.v.stripeBlocks * 4096;
  }
  make(prng: Prng, first: number, count: number): Uint8Array {
    return prng.bytes(count * this.stripeBytes());
  }
  /** Records a completed write. */
  record(first: number, data: Uint8Array): void {
    const n = data.length / this.stripeBytes();
    for (let i = 0; i < n; i++) this.stripes.set(first + i, data.slice(i * this.stripeBytes(), (i + 1) * this.stripeBytes()));
  }
  expected(firstBlock: number, count: number): Uint8Array {
    const out = new Uint8Array(count * 4096);
    for (let i = 0; i < count; i++) {
      const b = firstBlock + i;
      const s = Math.floor(b / this.v.stripeBlocks);
      const data = this.stripes.get(s);
      if (data !== undefined) {
        const at = (b - s * this.v.stripeBlocks) * 4096;
        out.set(data.subarray(at, at + 4096), i * 4096);
      }
    }
    return out;
  }
  async write(prng: Prng, firstStripe: number, count: number): Promise<void> {
    const data = this.make(prng, firstStripe, count);
    await writeEitherWay(this.v, firstStripe, data);
    this.record(firstStripe, data);
  }
  /** Reads the whole volume in random-sized pieces and compares with the model. */
  async checkAll(prng: Prng, volume: RaidVolume = this.v): Promise<void> {
    let b = 0;
    while (b < volume.blockCount) {
      const n = Math.min(volume.blockCount - b, prng.range(1, 3 * volume.stripeBlocks));
      const got = await volume.readBlocks(b, n);
      const want = this.expected(b, n);
      for (let i = 0; i < n; i++) {
        if (this.torn.has(Math.floor((b + i) / volume.stripeBlocks))) continue;
        if (!bytesSame(got.subarray(i * 4096, (i + 1) * 4096), want.subarray(i * 4096, (i + 1) * 4096))) throw new Error(`block ${b + i} differs from what was written`);
      }
      b += n;
    }
  }
}

/**
 * Stripes written as one buffer (`writeStripes`) at even stripe numbers and as separate 4 KiB
 * blocks (`writeStripeBlocks`, a CP's write; in place with `zeroCopyWrites: true`) at odd ones,
 * so that both write paths meet every fault. The choice consumes no randomness.
 */
function writeEitherWay(v: RaidVolume, firstStripe: number, data: Uint8Array): Promise<void> {
  if (firstStripe % 2 === 0) return v.writeStripes(firstStripe * v.stripeBlocks, data);
  const blocks = Array.from({ length: data.length / 4096 }, (_, i) => data.subarray(i * 4096, (i + 1) * 4096));
  return v.writeStripeBlocks(firstStripe * v.stripeBlocks, blocks);
}

function bytesSame(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (isTwinbladeError(e, code)) return;
    throw e;
  }
  throw new Error(`expected rejection with ${code}`);
}

function dataArea(d: SimBlockDevice, stripes: number, unitBytes: number): Uint8Array {
  return d.peek(diskLayout.raidDataOffsetBytes, stripes * unitBytes);
}

function writeCount(disks: readonly SimBlockDevice[]): number {
  return disks.reduce((n, d) => n + d.stats.writes, 0);
}

/** Seeds per scenario; RAID_TEST_SEED_SCALE=N runs N times as many (for soak runs outside CI). */
const seedScale = Math.max(1, Number(process.env['RAID_TEST_SEED_SCALE'] ?? '1') || 1);
const seeds = (n: number, base = 1): number[] => Array.from({ length: n * seedScale }, (_, i) => base + i * 1000);
if (seedScale > 1) vi.setConfig({ testTimeout: 30_000 * seedScale });

describe('RAID-4 volume: reads and full-stripe writes', () => {
  it('ST-2 returns exactly what was written, for any block range and any stripe unit', async () => {
    for (const seed of seeds(6)) {
      const r = new Rig(seed, { members: 2 + (seed % 4), unitBytes: 4096 * (1 + (seed % 3)), stripes: 24, sectorSize: seed % 2 === 0 ? 512 : 4096 });
      await r.sim.run(async () => {
        const v = await r.create();
        expect(v.status().state).toBe('normal');
        const m = new Model(v);
        const p = new Prng(seed);
        for (let i = 0; i < 12; i++) {
          const count = p.range(1, 3);
          await m.write(p, p.int(r.stripes - count + 1), count);
        }
        await v.flush();
        await m.checkAll(p);
        for (let i = 0; i < 40; i++) {
          const first = p.int(v.blockCount);
          const count = p.range(0, Math.min(v.blockCount - first, 2 * v.stripeBlocks + 3));
          expect(bytesSame(await v.readBlocks(first, count), m.expected(first, count))).toBe(true);
        }
      });
    }
  });

  it('writes parity with its data: every stripe verifies, and the parity disk holds the XOR of the data disks', async () => {
    const r = new Rig(11);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(3);
      await m.write(p, 0, r.stripes);
      await v.flush();
      expect(await v.verifyParity()).toEqual({ stripesChecked: r.stripes, mismatchedStripes: [] });
      const areas = r.disks.map((d) => dataArea(d, r.stripes, r.unitBytes));
      const xor = new Uint8Array(areas[0]?.length ?? 0);
      for (const a of areas.slice(0, -1)) for (let i = 0; i < a.length; i++) xor[i] = (xor[i] as number) ^ (a[i] as number);
      expect(bytesSame(xor, areas[areas.length - 1] as Uint8Array)).toBe(true);
    });
  });

  it('refuses partial stripes and out-of-range blocks synchronously with stable codes', async () => {
    const r = new Rig(12);
    await r.sim.run(async () => {
      const v = await r.create();
      const stripe = v.stripeBlocks * 4096;
      expect(() => v.writeStripes(1, new Uint8Array(stripe))).toThrow(expect.objectContaining({ code: VolumeErrorCode.notFullStripe }));
      expect(() => v.writeStripes(0, new Uint8Array(stripe - 4096))).toThrow(expect.objectContaining({ code: VolumeErrorCode.notFullStripe }));
      expect(() => v.writeStripes(0, new Uint8Array(0))).toThrow(expect.objectContaining({ code: VolumeErrorCode.notFullStripe }));
      expect(() => v.writeStripes(v.blockCount, new Uint8Array(stripe))).toThrow(expect.objectContaining({ code: VolumeErrorCode.outOfRange }));
      expect(() => v.readBlocks(v.blockCount - 1, 2)).toThrow(expect.objectContaining({ code: VolumeErrorCode.outOfRange }));
      expect(() => v.readBlocks(-1, 1)).toThrow(expect.objectContaining({ code: VolumeErrorCode.outOfRange }));
      expect(() => v.readBlocks(0.5, 1)).toThrow(expect.objectContaining({ code: VolumeErrorCode.outOfRange }));
    });
  });

  it('zeroData makes parity exact on never-written stripes of disks that held old data', async () => {
    const r = new Rig(14);
    await r.sim.run(async () => {
      for (const d of r.disks) d.corrupt(diskLayout.raidDataOffsetBytes, r.stripes * r.unitBytes);
      const v = await createVolume(r.disks, { ...r.runtime(), pairId, volumeId, stripeUnitBytes: r.unitBytes, zeroData: true });
      expect(await v.verifyParity()).toEqual({ stripesChecked: r.stripes, mismatchedStripes: [] });
      expect(bytesSame(await v.readBlocks(0, v.blockCount), new Uint8Array(v.blockCount * 4096))).toBe(true);
      await v.close();
    });
    // Without it, old garbage makes parity disagree; a repairing scrub fixes that.
    const r2 = new Rig(15);
    await r2.sim.run(async () => {
      for (const d of r2.disks) d.corrupt(diskLayout.raidDataOffsetBytes, r2.stripes * r2.unitBytes);
      const v2 = await r2.create();
      expect((await v2.verifyParity({ repair: true })).mismatchedStripes).toHaveLength(r2.stripes);
      expect((await v2.verifyParity()).mismatchedStripes).toEqual([]);
    });
  });

  it('never touches the label slot or the mailbox region with data', async () => {
    const r = new Rig(13);
    await r.sim.run(async () => {
      const mailbox = new Uint8Array(diskLayout.mailboxSlotBytes).fill(0x5a);
      for (const d of r.disks) d.poke(diskLayout.mailboxOffsetBytes, mailbox);
      const v = await r.create();
      const m = new Model(v);
      await m.write(new Prng(1), 0, r.stripes);
      await v.flush();
      for (const d of r.disks) {
        expect(bytesSame(d.peek(diskLayout.mailboxOffsetBytes, mailbox.length), mailbox)).toBe(true);
        expect((await readLabel(d)).kind).toBe('label');
      }
    });
  });
});

describe('RAID-4 volume: disk failures', () => {
  it('ST-2 fail any one disk at any time, including mid-CP: every write completes and every read returns the right data', async () => {
    for (const seed of seeds(16, 100)) {
      const r = new Rig(seed, { members: 3 + (seed % 3), zeroCopyWrites: Math.floor(seed / 1000) % 2 === 0 ? true : 'auto' });
      await r.sim.run(async () => {
        const v = await r.create();
        const m = new Model(v);
        const p = new Prng(seed);
        // Fail a random disk at a random moment of the workload.
        const victim = p.int(r.disks.length);
        r.sim.timers.after(p.float() * 20, () => r.disks[victim]?.fail());
        for (let cp = 0; cp < 8; cp++) {
          // A CP: several full-stripe writes in flight at once, then a flush.
          const first = p.int(r.stripes - 4);
          await Promise.all([m.write(p, first, 2), m.write(p, first + 2, 2)]);
          await v.flush();
          const b = p.int(v.blockCount - 8);
          expect(bytesSame(await v.readBlocks(b, 8), m.expected(b, 8))).toBe(true);
        }
        await r.sim.timers.sleep(25);
        // One more CP: it touches every disk, so even a lost parity disk is noticed.
        await m.write(p, 0, 1);
        await v.flush();
        await m.checkAll(p);
        const st = v.status();
        expect(st.state).toBe('degraded');
        expect(st.disks[victim]?.state).toBe('failed');
        expect(r.eventsOf('member-failed')).toEqual([expect.objectContaining({ position: victim, disk: `d${victim}`, code: 'ERR_BLOCK_IO' })]);
      });
    }
  });

  it('ST-2 a second disk failure takes the volume offline: all I/O rejects ERR_VOLUME_OFFLINE and nothing more is written', async () => {
    const r = new Rig(21);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(2);
      await m.write(p, 0, 8);
      await v.flush();
      r.disks[1]?.fail();
      await m.write(p, 8, 2);
      expect(v.status().state).toBe('degraded');
      r.disks[3]?.fail();
      await rejectsWith(m.write(p, 10, 1), VolumeErrorCode.offline);
      expect(v.status().state).toBe('offline');
      expect(r.eventsOf('offline')).toHaveLength(1);
      const writes = writeCount(r.disks);
      await rejectsWith(v.readBlocks(0, 1), VolumeErrorCode.offline);
      await rejectsWith(m.write(p, 12, 1), VolumeErrorCode.offline);
      await rejectsWith(v.flush(), VolumeErrorCode.offline);
      expect(writeCount(r.disks)).toBe(writes);

      // The second disk was only unplugged: after it returns, the volume assembles (degraded) with its data intact.
      r.disks[3]?.heal();
      r.disks[1]?.heal();
      const again = await r.open();
      expect(again.status().state).toBe('degraded');
      expect(again.assembly[1]).toMatchObject({ use: 'rejected', code: RaidErrorCode.staleMember });
      const reads = new Model(again);
      for (const [s, d] of m.stripes) if (s < 10) reads.record(s, d);
      // (Stripe 10's write was refused: it is torn, and no acknowledged data lives there.)
      for (let b = 0; b < 10 * v.stripeBlocks; b += 6) expect(bytesSame(await again.readBlocks(b, 6), reads.expected(b, 6))).toBe(true);
    });
  });

  it('ST-2 repairs bad sectors on one disk from parity and counts them', async () => {
    const r = new Rig(31);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(5);
      await m.write(p, 0, r.stripes);
      await v.flush();
      // Three bad sectors on data disk 1 and one on the parity disk; the disk remaps a sector when it is rewritten.
      const bad = [
        { disk: 1, diskBlock: 0 },
        { disk: 1, diskBlock: 9 },
        { disk: 1, diskBlock: 10 },
        { disk: 3, diskBlock: 5 },
      ];
      const handles = new Map(
        bad.map((b) => [`${b.disk}:${b.diskBlock}`, r.disks[b.disk]?.injectError({ offset: diskLayout.raidDataOffsetBytes + b.diskBlock * 4096, length: 4096, op: 'read' })]),
      );
      r.listener = (e) => {
        if (e.type === 'block-repaired') handles.get(`${e.position}:${e.diskBlock}`)?.remove();
      };
      const before = r.disks[1]?.peek(diskLayout.raidDataOffsetBytes, 4096);
      r.disks[1]?.poke(diskLayout.raidDataOffsetBytes, new Uint8Array(4096).fill(0xee)); // the unreadable sector's content is gone
      await m.checkAll(p);
      // The parity disk's bad sector is only met by a scrub (or a degraded read).
      expect((await v.verifyParity()).mismatchedStripes).toEqual([]);
      const repaired = r.eventsOf('block-repaired').map((e) => `${e.position}:${e.diskBlock}`);
      expect(new Set(repaired)).toEqual(new Set(['1:0', '1:9', '1:10', '3:5']));
      expect(v.status().counters.repairedBlocks).toBe(4);
      expect(v.status().state).toBe('normal');
      // The rewritten sector holds the right data again.
      expect(bytesSame(r.disks[1]?.peek(diskLayout.raidDataOffsetBytes, 4096) ?? new Uint8Array(), before ?? new Uint8Array(1))).toBe(true);
      await m.checkAll(p);
    });
  });

  it('fails out a disk that keeps returning read errors and reports it', async () => {
    const r = new Rig(32, { limits: { memberReadErrorCountMax: 3 } });
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(6);
      await m.write(p, 0, r.stripes);
      await v.flush();
      r.disks[0]?.injectError({ offset: diskLayout.raidDataOffsetBytes, length: r.stripes * r.unitBytes, op: 'read' });
      await m.checkAll(p);
      expect(v.status().disks[0]?.state).toBe('failed');
      expect(r.eventsOf('member-failed')).toEqual([expect.objectContaining({ position: 0, code: 'ERR_BLOCK_IO' })]);
      expect(r.eventsOf('read-error').length).toBe(4);
    });
  });

  it('returns ERR_VOLUME_IO, not wrong data, when a bad sector meets a missing disk in the same stripe', async () => {
    const r = new Rig(33);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(7);
      await m.write(p, 0, 4);
      await v.flush();
      r.disks[0]?.fail();
      await m.write(p, 4, 1); // fails disk 0 out
      expect(v.status().state).toBe('degraded');
      r.disks[1]?.injectError({ offset: diskLayout.raidDataOffsetBytes, length: 4096, op: 'read' });
      // Block 0 is on the failed disk 0; reconstructing it needs disk 1's bad block 0.
      await rejectsWith(v.readBlocks(0, 1), VolumeErrorCode.io);
      expect(v.status().state).toBe('degraded');
      // Everything else still reads.
      expect(bytesSame(await v.readBlocks(1, 3), m.expected(1, 3))).toBe(true);
      expect(bytesSame(await v.readBlocks(v.stripeBlocks, v.stripeBlocks * 3), m.expected(v.stripeBlocks, v.stripeBlocks * 3))).toBe(true);
    });
  });

  it('passes a reservation conflict up as ERR_BLOCK_FENCED without failing any disk', async () => {
    const r = new Rig(34);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      for (const d of r.disks) d.setFenced(true);
      await rejectsWith(m.write(new Prng(1), 0, 1), 'ERR_BLOCK_FENCED');
      expect(v.status().disks.every((d) => d.state === 'ok')).toBe(true);
      expect(r.eventsOf('member-failed')).toEqual([]);
    });
  });
});

describe('RAID-4 volume: hot spare and rebuild', () => {
  it('ST-2 rebuilds onto the hot spare: the spare becomes identical to the lost disk, at bounded bandwidth', async () => {
    const rate = 1024 * 1024;
    const r = new Rig(41, { spares: 1, limits: { rebuildBandwidthBytesPerSec: rate } });
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(8);
      await m.write(p, 0, r.stripes);
      await v.flush();
      const original = dataArea(r.disks[2] as SimBlockDevice, r.stripes, r.unitBytes);
      const t0 = r.sim.clock.nowMs();
      r.disks[2]?.fail();
      await m.checkAll(p); // degraded reads reconstruct; the failure starts the rebuild
      await v.whenRebuildDone();
      const elapsedMs = r.sim.clock.nowMs() - t0;
      const st = v.status();
      expect(st.state).toBe('normal');
      expect(st.disks[2]).toEqual({ name: 's0', role: 'data', state: 'ok' });
      expect(bytesSame(dataArea(r.spares[0] as SimBlockDevice, r.stripes, r.unitBytes), original)).toBe(true);
      // One chunk may go as a burst; the rest is paced by the token bucket.
      const bytes = r.stripes * r.unitBytes;
      expect(elapsedMs).toBeGreaterThanOrEqual(((bytes - 2 * 4 * r.unitBytes) / rate) * 1000);
      const progress = r.eventsOf('rebuild-progress').map((e) => e.progress);
      expect(progress[progress.length - 1]).toBe(1);
      expect([...progress].sort((a, b) => a - b)).toEqual(progress);
      expect(r.eventsOf('rebuild-done')).toHaveLength(1);
      await m.checkAll(p);
      expect((await v.verifyParity()).mismatchedStripes).toEqual([]);

      // After a reboot, the replaced disk (even healed) is stale; the spare is the member.
      await v.close();
      r.disks[2]?.heal();
      const again = await r.open();
      expect(again.status().state).toBe('normal');
      expect(again.assembly[2]).toMatchObject({ use: 'rejected', code: RaidErrorCode.staleMember });
      expect(again.assembly[4]).toMatchObject({ use: 'member', position: 2 });
      await m.checkAll(p, again);
    });
  });

  it('reports rebuild progress in status() while client writes and reads go on', async () => {
    const r = new Rig(42, { spares: 1, stripes: 48, limits: { rebuildBandwidthBytesPerSec: 2 * 1024 * 1024 } });
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(9);
      await m.write(p, 0, r.stripes);
      await v.flush();
      r.disks[3]?.fail(); // the parity disk
      await m.write(p, 0, 1); // notices the failure; the rebuild starts
      const seen: number[] = [];
      while (v.status().state !== 'normal') {
        const st = v.status();
        if (st.rebuildProgress !== undefined) seen.push(st.rebuildProgress);
        const first = p.int(r.stripes - 2);
        await m.write(p, first, 2);
        const b = p.int(v.blockCount - 20);
        expect(bytesSame(await v.readBlocks(b, 20), m.expected(b, 20))).toBe(true);
        await r.sim.timers.sleep(20);
      }
      expect(seen.length).toBeGreaterThan(3);
      expect(seen.some((x) => x > 0 && x < 1)).toBe(true);
      await v.flush();
      await m.checkAll(p);
      expect((await v.verifyParity()).mismatchedStripes).toEqual([]);
    });
  });

  it('ST-2 fail any disk mid-rebuild: the spare failing leaves the volume degraded (and the next spare takes over); a survivor failing takes it offline uncorrupted', async () => {
    for (const seed of seeds(8, 400)) {
      const r = new Rig(seed, { spares: 2, limits: { rebuildBandwidthBytesPerSec: 4 * 1024 * 1024 }, zeroCopyWrites: Math.floor(seed / 1000) % 2 === 0 ? true : 'auto' });
      await r.sim.run(async () => {
        const v = await r.create();
        const m = new Model(v);
        const p = new Prng(seed);
        await m.write(p, 0, r.stripes);
        await v.flush();
        const lost = p.int(4);
        r.disks[lost]?.fail();
        await m.write(p, 0, 1); // notices the failure; the rebuild starts onto s0
        expect(v.status().state).toBe('rebuilding');
        await r.sim.timers.sleep(20 + p.float() * 60);
        const failSpare = seed % 2 === 0;
        if (failSpare) {
          r.spares[0]?.fail();
          await m.write(p, p.int(r.stripes - 1), 1);
          await m.checkAll(p);
          await v.whenRebuildDone();
          expect(v.status().state).toBe('normal');
          expect(v.status().disks[lost]?.name).toBe('s1');
          await m.checkAll(p);
        } else {
          const survivor = (lost + 1 + p.int(3)) % 4;
          r.disks[survivor]?.fail();
          await rejectsWith(m.write(p, 0, 1), VolumeErrorCode.offline);
          m.torn.add(0);
          await v.whenRebuildDone();
          expect(v.status().state).toBe('offline');
          const writes = writeCount([...r.disks, ...r.spares]);
          await rejectsWith(v.readBlocks(0, 1), VolumeErrorCode.offline);
          expect(writeCount([...r.disks, ...r.spares])).toBe(writes);
          // The survivor comes back: the volume reassembles, resumes the rebuild and has every acknowledged write.
          r.disks[survivor]?.heal();
          await v.close();
          const again = await r.open();
          await again.whenRebuildDone();
          expect(again.status().state).toBe('normal');
          await m.checkAll(p, again);
        }
      });
    }
  });

  it('ST-5 a power cut mid-rebuild resumes from the checkpoint and gives the same volume', async () => {
    for (const seed of seeds(6, 500)) {
      const r = new Rig(seed, { spares: 1, stripes: 64, limits: { rebuildBandwidthBytesPerSec: 512 * 1024, rebuildCheckpointBytes: 8 * 16384 } });
      await r.sim.run(async () => {
        const v = await r.create();
        const m = new Model(v);
        const p = new Prng(seed);
        await m.write(p, 0, r.stripes);
        await v.flush();
        const lost = p.int(4);
        const original = dataArea(r.disks[lost] as SimBlockDevice, r.stripes, r.unitBytes);
        r.disks[lost]?.fail();
        await v.flush(); // the flush fails on the lost disk: it is failed out and the rebuild starts
        await r.sim.timers.sleep(600 + p.float() * 900); // past the first checkpoints
        expect(v.status().state).toBe('rebuilding');
        const progress = v.status().rebuildProgress ?? 0;
        r.powerCut();
        r.disks[lost]?.heal(); // it comes back after the reboot, stale
        const again = await r.open();
        await again.whenRebuildDone();
        const started = r.eventsOf('rebuild-started');
        expect(started).toHaveLength(2);
        const from = started[1]?.fromStripe ?? -1;
        expect(from).toBeGreaterThan(0);
        expect(from / r.stripes).toBeLessThanOrEqual(progress);
        expect(again.status().state).toBe('normal');
        expect(again.assembly[lost]).toMatchObject({ code: RaidErrorCode.staleMember });
        expect(bytesSame(dataArea(r.spares[0] as SimBlockDevice, r.stripes, r.unitBytes), original)).toBe(true);
        await m.checkAll(p, again);
      });
    }
  });

  it('stops the rebuild with ERR_RAID_REBUILD_UNRECOVERABLE on a bad sector in a survivor, keeps serving, and resumes on request', async () => {
    const r = new Rig(45, { spares: 1, stripes: 48, limits: { rebuildBandwidthBytesPerSec: 1024 * 1024 } });
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(14);
      await m.write(p, 0, r.stripes);
      await v.flush();
      // A bad sector on survivor d2, in stripe 40 (disk block 160), which the rebuild has not reached.
      const bad = r.disks[2]?.injectError({ offset: diskLayout.raidDataOffsetBytes + 160 * 4096, length: 4096, op: 'read' });
      r.disks[0]?.fail();
      await v.flush();
      await v.whenRebuildDone();
      const st = v.status();
      expect(st.state).toBe('degraded');
      expect(st.rebuildError?.code).toBe(RaidErrorCode.rebuildUnrecoverable);
      expect(r.eventsOf('rebuild-failed')).toEqual([expect.objectContaining({ position: 0, code: RaidErrorCode.rebuildUnrecoverable })]);
      expect(st.rebuildProgress).toBeGreaterThan(0.5);
      expect(st.rebuildProgress).toBeLessThan(1);
      // Two blocks of stripe 40 are out of reach: d2's bad one (volume block 488) and the one
      // on the lost disk 0 beside it (480), which needs it. Everything else reads.
      const onLost = 40 * v.stripeBlocks;
      const onBad = onLost + 2 * 4;
      for (const b of [onLost, onBad]) await rejectsWith(v.readBlocks(b, 1), VolumeErrorCode.io);
      for (const [from, to] of [
        [0, onLost],
        [onLost + 1, onBad],
        [onBad + 1, v.blockCount],
      ] as const) {
        expect(bytesSame(await v.readBlocks(from, to - from), m.expected(from, to - from))).toBe(true);
      }
      // The sector was only transiently bad: once it reads again, the rebuild resumes where it stopped.
      bad?.remove();
      expect(v.startRebuild()).toBe(true);
      await v.whenRebuildDone();
      expect(v.status().state).toBe('normal');
      expect(r.eventsOf('rebuild-started').map((e) => e.fromStripe > 0)).toEqual([false, true]);
      await m.checkAll(p);
    });
  });

  it('adopts a blank disk hot-swapped in for a failed one at boot when asked, and only then', async () => {
    const r = new Rig(46);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(15);
      await m.write(p, 0, r.stripes);
      await v.flush();
      await v.close();
      const replacement = new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), sizeBytes: r.disks[0]?.sizeBytes ?? 0, name: 'swapped-in' });
      const set = [replacement, ...r.disks.slice(1)];
      const plain = await r.open(set);
      expect(plain.assembly[0]).toMatchObject({ use: 'rejected', code: RaidErrorCode.noLabel });
      expect(plain.status().state).toBe('degraded');
      expect((await readLabel(replacement)).kind).toBe('blank');
      await plain.close();
      const adopting = await openVolume(set, { ...r.runtime(), pairId, volumeId, adoptBlankDisks: true });
      expect(adopting.assembly[0]).toMatchObject({ use: 'spare' });
      await adopting.whenRebuildDone();
      expect(adopting.status().state).toBe('normal');
      expect(adopting.status().disks[0]?.name).toBe('swapped-in');
      await m.checkAll(p, adopting);
    });
  });

  it('addSpare formats a blank disk and starts the rebuild; it refuses a disk of another volume', async () => {
    const r = new Rig(43);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(10);
      await m.write(p, 0, r.stripes);
      await v.flush();
      r.disks[0]?.fail();
      await m.checkAll(p);
      expect(v.status().state).toBe('degraded');
      const other = new Rig(44);
      const foreign = new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), sizeBytes: r.disks[1]?.sizeBytes ?? 0, name: 'foreign' });
      const otherDisks = [foreign, ...other.disks.slice(1).map((d) => new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), sizeBytes: d.sizeBytes, name: d.name }))];
      await createVolume(otherDisks, { ...r.runtime(), pairId, volumeId: 'blade-b', stripeUnitBytes: r.unitBytes });
      await rejectsWith(v.addSpare(foreign), RaidErrorCode.diskInUse);
      const small = new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), sizeBytes: v.geometry.memberBytesMin - 4096, name: 'small' });
      await rejectsWith(v.addSpare(small), RaidErrorCode.diskTooSmall);
      const blank = new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), sizeBytes: r.disks[1]?.sizeBytes ?? 0, name: 'new' });
      await v.addSpare(blank);
      await v.whenRebuildDone();
      expect(v.status().state).toBe('normal');
      expect(v.status().disks[0]?.name).toBe('new');
      await m.checkAll(p);
    });
  });
});

describe('RAID-4 volume: power cuts and the write hole', () => {
  it('ST-5 a power cut mid-CP leaves every stripe outside the CP intact and reconstructable', async () => {
    for (const seed of seeds(10, 600)) {
      const r = new Rig(seed);
      await r.sim.run(async () => {
        const v = await r.create();
        const m = new Model(v);
        const p = new Prng(seed);
        await m.write(p, 0, 16); // CP 1, flushed
        await v.flush();
        // CP 2 writes stripes 16..31 (write-anywhere: never over live stripes) and is cut.
        const cp2 = [m.write(p, 16, 8), m.write(p, 24, 8)];
        for (const w of cp2) w.catch(() => undefined);
        await r.sim.timers.sleep(p.float() * 0.3);
        r.powerCut();
        const again = await r.open();
        expect(again.status().state).toBe('normal');
        const durable = new Model(again);
        for (const [s, d] of m.stripes) if (s < 16) durable.record(s, d);
        const cp1Blocks = 16 * v.stripeBlocks;
        expect(bytesSame(await again.readBlocks(0, cp1Blocks), durable.expected(0, cp1Blocks))).toBe(true);
        // Now lose any disk: CP 1 still reconstructs exactly (its parity was never touched).
        r.disks[p.int(4)]?.fail();
        expect(bytesSame(await again.readBlocks(0, cp1Blocks), durable.expected(0, cp1Blocks))).toBe(true);
      });
    }
  });
});

describe('RAID-4 volume: partial-stripe updates and the write intent', () => {
  it('ST-5 a power cut while live blocks of stripes are rewritten unchanged: the resync makes their parity exact, so a later disk failure reconstructs them', async () => {
    let repairedTotal = 0;
    for (const seed of seeds(10, 700)) {
      const r = new Rig(seed);
      await r.sim.run(async () => {
        const v = await r.create();
        const m = new Model(v);
        const p = new Prng(seed);
        await m.write(p, 0, r.stripes);
        await v.flush();
        // A CP that fills the free blocks of partly used stripes: units 0 and 1 hold live
        // blocks, rewritten unchanged; unit 2 was free and gets new data.
        const unit = r.unitBytes;
        const writes = [];
        for (let s = 0; s < 8; s++) {
          const next = (m.stripes.get(s) as Uint8Array).slice();
          next.set(p.bytes(unit), 2 * unit);
          writes.push(v.writeStripes(s * v.stripeBlocks, next));
        }
        for (const w of writes) w.catch(() => undefined);
        await r.sim.timers.sleep(1 + p.float() * 0.4); // after the intent record's flush, while the data is in flight
        r.powerCut();
        const again = await r.open();
        // The resync runs in the background once the volume serves.
        await again.whenResyncDone();
        // No resync only if the cut came before the intent was durable (then no data write had started).
        const resync = r.eventsOf('resync-done');
        expect(resync.length).toBeLessThanOrEqual(1);
        repairedTotal += resync[0]?.repairedStripes ?? 0;
        expect((await again.verifyParity()).mismatchedStripes).toEqual([]);
        // Lose a disk that holds live blocks: they reconstruct exactly.
        r.disks[p.int(2)]?.fail();
        for (let s = 0; s < 8; s++) {
          const got = await again.readBlocks(s * v.stripeBlocks, 2 * (unit / 4096));
          const want = (m.stripes.get(s) as Uint8Array).subarray(0, 2 * unit);
          expect(bytesSame(got, want), `stripe ${s}`).toBe(true);
        }
      });
    }
    // The hole was real: some cuts left parity that disagreed with the live blocks.
    expect(repairedTotal).toBeGreaterThan(0);
  });

  it('records write intent once per region and clears it when a flush finds the region durable and idle', async () => {
    const r = new Rig(71, { stripes: 64, limits: { intentRegionBytes: 16 * 16384, intentClearDelayMs: 100 } }); // 16 stripes per region
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(71);
      const intentOf = async (d: SimBlockDevice): Promise<boolean[]> => decodeIntent(d.peek(diskLayout.raidIntentOffsetBytes, diskLayout.raidIntentBytes)).dirty;
      expect(await intentOf(r.disks[0] as SimBlockDevice)).toEqual([]);
      const flushes = (): number => r.disks.reduce((n, d) => n + d.stats.flushes, 0);
      const before = flushes();
      await m.write(p, 0, 2);
      expect(flushes() - before).toBe(4); // the intent record, once on each disk
      await m.write(p, 2, 2); // same region: no intent update
      expect(flushes() - before).toBe(4);
      for (const d of r.disks) expect(await intentOf(d)).toEqual([true, false, false, false]);
      await m.write(p, 40, 1);
      for (const d of r.disks) expect(await intentOf(d)).toEqual([true, false, true, false]);
      await v.flush();
      // Written just now: kept dirty, so that the next CP into these regions pays no intent flush.
      for (const d of r.disks) expect(await intentOf(d)).toEqual([true, false, true, false]);
      await r.sim.timers.sleep(100);
      await v.flush();
      for (const d of r.disks) expect(await intentOf(d)).toEqual([false, false, false, false]);
      // Closing after a flush records the volume clean at once, without waiting for the delay.
      await m.write(p, 60, 1);
      await v.flush();
      for (const d of r.disks) expect(await intentOf(d)).toEqual([false, false, false, true]);
      // A clean shutdown needs no resync.
      await v.close();
      await r.open();
      expect(r.eventsOf('resync-done')).toEqual([]);
    });
  });

  it('reports the stripes it cannot check when the volume comes back degraded after a power cut', async () => {
    const r = new Rig(72);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(72);
      await m.write(p, 0, 4);
      r.powerCut(); // before any flush: the intent is set
      const absent = r.disks[1] as SimBlockDevice;
      await r.open(r.disks.filter((d) => d !== absent));
      expect(r.eventsOf('resync-skipped')).toEqual([expect.objectContaining({ stripes: r.stripes, code: VolumeErrorCode.io })]);
    });
  });
});

describe('RAID volume assembly and labels', () => {
  it('inspects labels and previews an assembly without writing anything', async () => {
    const r = new Rig(56, { spares: 1 });
    await r.sim.run(async () => {
      const v = await r.create();
      await v.close();
      r.disks[2]?.corrupt(50, 4);
      const blank = new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), name: 'blank' });
      const all = [...r.disks, ...r.spares, blank];
      const writes = writeCount(all);
      const rows = await inspectDisks(all);
      expect(rows.map((x) => x.kind)).toEqual(['label', 'label', 'invalid', 'label', 'label', 'blank']);
      expect(rows[0]?.summary).toMatch(/^d0: pair-ab\/blade-a data position 0 of 4, generation 1, unit 16 KiB x 32 stripes, uuid [0-9a-f]{32}$/);
      expect(rows[3]?.summary).toContain('parity position 3 of 4');
      expect(rows[4]?.summary).toContain('spare');
      expect(rows[2]).toMatchObject({ code: LabelErrorCode.crc });
      const preview = await previewAssembly(all, pairId, volumeId);
      expect(preview).toMatchObject({ ok: true, state: 'degraded', generation: 1 });
      expect(preview.disks.map((d) => d.use)).toEqual(['member', 'member', 'rejected', 'member', 'spare', 'rejected']);
      const refused = await previewAssembly([r.disks[0] as SimBlockDevice, r.disks[2] as SimBlockDevice], pairId, volumeId);
      expect(refused).toMatchObject({ ok: false, code: RaidErrorCode.membersMissing });
      expect(writeCount(all)).toBe(writes);
    });
  });

  it('records a half-rebuilt disk that is absent at boot as failed, so that it is stale when it comes back', async () => {
    const r = new Rig(55, { spares: 1, stripes: 64, limits: { rebuildBandwidthBytesPerSec: 512 * 1024, rebuildCheckpointBytes: 4 * 16384 } });
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(13);
      await m.write(p, 0, r.stripes);
      await v.flush();
      r.disks[1]?.fail();
      await v.flush();
      await r.sim.timers.sleep(1000); // about half rebuilt, with checkpoints
      expect(v.status().state).toBe('rebuilding');
      r.powerCut();
      const halfRebuilt = r.spares[0] as SimBlockDevice;
      const withoutIt = await r.open(r.disks);
      expect(withoutIt.status().state).toBe('degraded');
      expect(withoutIt.status().disks[1]?.state).toBe('missing');
      const m2 = new Model(withoutIt);
      for (const [s, d] of m.stripes) m2.record(s, d);
      await m2.write(p, 0, 8); // below its checkpoint: it misses these
      await withoutIt.flush();
      await withoutIt.close();
      const again = await r.open([...r.disks, halfRebuilt]);
      expect(again.assembly[4]).toMatchObject({ use: 'rejected', code: RaidErrorCode.staleMember });
      expect(again.status().state).toBe('degraded');
      await m2.checkAll(p, again);
    });
  });

  it('detects a corrupted label by its checksum, reports it, and runs degraded without that disk', async () => {
    const r = new Rig(51);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(11);
      await m.write(p, 0, r.stripes);
      await v.flush();
      await v.close();
      r.disks[2]?.corrupt(40, 8);
      const again = await r.open();
      expect(again.assembly[2]).toMatchObject({ use: 'rejected', code: LabelErrorCode.crc });
      expect(again.status().state).toBe('degraded');
      expect(again.status().disks[2]?.state).toBe('missing');
      await m.checkAll(p, again);
      // The loss is recorded: the corrupted disk is now stale even if its label were fixed.
      expect(r.eventsOf('labels-written').length).toBeGreaterThan(0);
    });
  });

  it('refuses to assemble with two corrupted labels (ERR_RAID_MEMBERS_MISSING) and says which disks and why', async () => {
    const r = new Rig(52);
    await r.sim.run(async () => {
      await (await r.create()).close();
      r.disks[0]?.corrupt(100, 4);
      r.disks[3]?.poke(0, new Uint8Array(4096));
      let err: unknown;
      try {
        await r.open();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RaidError);
      const e = err as RaidError;
      expect(e.code).toBe(RaidErrorCode.membersMissing);
      expect(e.disks.map((d) => d.code)).toEqual([LabelErrorCode.crc, undefined, undefined, RaidErrorCode.noLabel]);
      // Nothing was written to any disk by the refused assembly.
      expect((await readLabel(r.disks[1] as SimBlockDevice)).kind).toBe('label');
    });
  });

  it('ignores foreign disks, and refuses to create a volume over a labelled disk (ERR_RAID_DISK_IN_USE)', async () => {
    const r = new Rig(53);
    await r.sim.run(async () => {
      const v = await r.create();
      await v.close();
      await rejectsWith(r.create(), RaidErrorCode.diskInUse);
      const stranger = new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), sizeBytes: 4 * 1024 * 1024, name: 'stranger' });
      stranger.poke(0, new Uint8Array(512).fill(7));
      await rejectsWith(createVolume([stranger, ...r.spares, new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), name: 'x' })], { ...r.runtime(), pairId, volumeId: 'v2' }), RaidErrorCode.diskInUse);
      const again = await r.open([stranger, ...r.disks]);
      expect(again.status().state).toBe('normal');
      expect(again.assembly[0]).toMatchObject({ use: 'rejected', code: LabelErrorCode.magic });
      await rejectsWith(openVolume(r.disks, { ...r.runtime(), pairId: 'other-pair', volumeId }), RaidErrorCode.membersMissing);
    });
  });

  it('opens degraded with a member missing, records it, and refuses the member as stale when it comes back', async () => {
    const r = new Rig(54);
    await r.sim.run(async () => {
      const v = await r.create();
      const m = new Model(v);
      const p = new Prng(12);
      await m.write(p, 0, 8);
      await v.flush();
      await v.close();
      const absent = r.disks[1] as SimBlockDevice;
      const degraded = await r.open(r.disks.filter((d) => d !== absent));
      expect(degraded.status().state).toBe('degraded');
      expect(degraded.status().disks[1]).toMatchObject({ state: 'missing' });
      const m2 = new Model(degraded);
      for (const [s, d] of m.stripes) m2.record(s, d);
      await m2.write(p, 0, 2); // it would be stale for these
      await degraded.flush();
      await degraded.close();
      const again = await r.open();
      expect(again.assembly[1]).toMatchObject({ use: 'rejected', code: RaidErrorCode.staleMember });
      await m2.checkAll(p, again);
    });
  });
});

/**
 * One chaos run: a CP writer and a reader run concurrently against the volume while fault
 * episodes strike one at a time, inside the fault budget single parity promises to survive:
 * a whole-disk failure (only when the volume is normal and no bad sector is outstanding),
 * bad sectors on any members (only when normal; scrubbed before the next episode), a power
 * cut of the blade (any time), a new spare (when degraded without one). The checkers: every
 * read returns, per stripe, the last acknowledged data or the data of a write in flight;
 * stripes whose write was cut by power are undefined until rewritten; nothing ever rejects.
 */
async function chaosRun(seed: number): Promise<string[]> {
  const p = new Prng(seed);
  const unit = 4096 * p.pick([1, 2, 4]);
  const r = new Rig(seed, {
    members: p.range(3, 6),
    spares: p.range(0, 2),
    unitBytes: unit,
    stripes: p.range(16, 40),
    buggify: true,
    // Half the seeds write separate blocks in place (concatenated per disk: sim disks have no writev).
    zeroCopyWrites: Math.floor(seed / 1000) % 2 === 0 ? true : 'auto',
    limits: {
      rebuildBandwidthBytesPerSec: p.pick([Infinity, 4 * 1024 * 1024, 16 * 1024 * 1024]),
      rebuildChunkBytes: unit * p.range(1, 4),
      rebuildCheckpointBytes: unit * p.range(2, 8),
      // Bad sectors come in bursts here; failing a disk out for them is tested on its own.
      memberReadErrorCountMax: 64,
      // A slow background resync after a power cut is often still running when the next
      // fault strikes (its own prng: the other choices stay as they were for every seed).
      resyncBandwidthBytesPerSec: new Prng(seed + 7).pick([Infinity, 256 * 1024, 1024 * 1024]),
    },
  });
  const log: string[] = [];
  try {
    return await r.sim.run(() => chaosBody(seed, p, r, unit, log));
  } catch (e) {
    return [`seed ${seed}: threw ${e instanceof Error ? e.message : String(e)} [${log.join('; ')}]`];
  }
}

async function chaosBody(seed: number, p: Prng, r: Rig, unit: number, log: string[]): Promise<string[]> {
  const failures: string[] = [];
  const committed = new Map<number, Uint8Array>();
  const pending = new Map<number, Uint8Array>();
  /** Per stripe: the data units changed by writes in flight / by acknowledged but unflushed writes. */
  const pendingChanged = new Map<number, Set<number>>();
  const unflushed = new Map<number, Set<number>>();
  /** Stripes, and units of stripes, that a power cut left undefined. */
  const torn = new Set<number>();
  const tornUnits = new Map<number, Set<number>>();
  const dataUnits = r.disks.length - 1;
  const unitBlocks = unit / 4096;
  const undefinedAt = (s: number, blockInStripe: number): boolean => torn.has(s) || tornUnits.get(s)?.has(Math.floor(blockInStripe / unitBlocks)) === true;
  const badSectors = new Map<string, { remove(): void }>();
  // `reopening`: the blade is rebooting after a power cut; clients wait for the new volume.
  const st: { v: RaidVolume; epoch: number; stop: boolean; reopening: boolean } = { v: await r.create(), epoch: 0, stop: false, reopening: false };
  const stripeBytes = st.v.stripeBlocks * 4096;
  // Stripes torn by power cuts since the last completed resync: if a position is lost before
  // the resync checks them (reported as resync-skipped, at open or later), their parity may
  // be stale, so even their unchanged units may reconstruct wrongly (docs/raid.md).
  const unresynced = new Set<number>();
  r.listener = (e) => {
    if (e.type === 'resync-done') unresynced.clear();
    if (e.type === 'resync-skipped') {
      for (const s of unresynced) if (tornUnits.has(s)) torn.add(s);
      unresynced.clear();
    }
    if (e.type !== 'block-repaired') return;
    const key = `${e.disk}:${e.diskBlock}`;
    badSectors.get(key)?.remove();
    badSectors.delete(key);
  };

  const writer = async (): Promise<void> => {
    while (!st.stop) {
      if (st.reopening) {
        await r.sim.timers.sleep(1);
        continue;
      }
      const { v, epoch } = st;
      const runs: Array<[number, Uint8Array, Set<number>]> = [];
      for (let i = p.range(1, 3); i > 0; i--) {
        const s = p.int(r.stripes);
        if (pending.has(s) || runs.some(([x]) => x === s)) continue;
        const old = committed.get(s);
        if (old !== undefined && dataUnits > 1 && p.chance(0.4)) {
          // Like the file system filling a partly used stripe: live units rewritten unchanged.
          const next = old.slice();
          const changed = new Set<number>();
          while (changed.size === 0 || changed.size === dataUnits) {
            changed.clear();
            for (let u = 0; u < dataUnits; u++) if (p.chance(0.5)) changed.add(u);
          }
          for (const u of changed) next.set(p.bytes(unit), u * unit);
          runs.push([s, next, changed]);
        } else {
          runs.push([s, p.bytes(stripeBytes), new Set(Array.from({ length: dataUnits }, (_, u) => u))]);
        }
      }
      for (const [s, d, changed] of runs) {
        pending.set(s, d);
        pendingChanged.set(s, changed);
      }
      const acks = await Promise.allSettled(runs.map(([s, d]) => writeEitherWay(v, s, d)));
      acks.forEach((a, i) => {
        const [s, d, changed] = runs[i] as [number, Uint8Array, Set<number>];
        if (st.epoch !== epoch) return; // cut by the power failure: accounted for at the cut
        pending.delete(s);
        pendingChanged.delete(s);
        if (a.status === 'fulfilled') {
          committed.set(s, d);
          torn.delete(s);
          tornUnits.delete(s);
          unflushed.set(s, new Set([...(unflushed.get(s) ?? []), ...changed]));
        } else {
          failures.push(`write of stripe ${s} rejected: ${String(a.status === 'rejected' ? (a.reason as Error).message : '')}`);
        }
      });
      const covered = [...unflushed.keys()];
      try {
        await v.flush();
        if (st.epoch === epoch) for (const s of covered) unflushed.delete(s);
      } catch (e) {
        if (st.epoch === epoch) failures.push(`flush rejected: ${(e as Error).message}`);
      }
      await r.sim.timers.sleep(p.float() * 3);
    }
  };

  const reader = async (): Promise<void> => {
    while (!st.stop) {
      if (st.reopening) {
        await r.sim.timers.sleep(1);
        continue;
      }
      const { v, epoch } = st;
      const first = p.int(v.blockCount);
      const pendingAtStart = new Map(pending);
      const count = p.range(1, Math.min(v.blockCount - first, 2 * v.stripeBlocks));
      let got: Uint8Array;
      try {
        got = await v.readBlocks(first, count);
      } catch (e) {
        if (st.epoch === epoch) failures.push(`read ${first}+${count} rejected: ${(e as Error).message}`);
        await r.sim.timers.sleep(1);
        continue;
      }
      if (st.epoch !== epoch) continue;
      for (let b = first; b < first + count; b++) {
        const s = Math.floor(b / v.stripeBlocks);
        if (undefinedAt(s, b - s * v.stripeBlocks)) continue;
        const at = (b - s * v.stripeBlocks) * 4096;
        const block = got.subarray((b - first) * 4096, (b - first + 1) * 4096);
        const ok = (d: Uint8Array | undefined): boolean => bytesSame(block, d === undefined ? new Uint8Array(4096) : d.subarray(at, at + 4096));
        const inFlight = [pending.get(s), pendingAtStart.get(s)];
        if (!ok(committed.get(s)) && !inFlight.some((d) => d !== undefined && ok(d))) failures.push(`block ${b} (stripe ${s}) holds neither the acknowledged nor the in-flight data`);
      }
      await r.sim.timers.sleep(p.float() * 2);
    }
  };

  const memberHandle = (name: string): SimBlockDevice | undefined => [...r.disks, ...r.spares].find((d) => d.name === name);
  const faults = async (): Promise<void> => {
    for (let episode = 0; episode < 6 && failures.length === 0; episode++) {
      await r.sim.timers.sleep(5 + p.float() * 40);
      const status = st.v.status();
      const kind = p.pick(['disk', 'sectors', 'power', 'power', 'spare']);
      if (kind === 'disk' && status.state === 'normal' && badSectors.size === 0) {
        const victim = p.pick(status.disks.filter((d) => d.role !== 'spare'));
        log.push(`fail disk ${victim.name}`);
        memberHandle(victim.name)?.fail();
      } else if (kind === 'sectors' && status.state === 'normal') {
        // Bad sectors in distinct stripes: two in one stripe would be a double fault.
        const stripesHit = new Set<number>();
        for (let i = p.range(1, 3); i > 0; i--) {
          const victim = p.pick(status.disks.filter((d) => d.role !== 'spare' && d.state === 'ok'));
          const diskBlock = p.int(r.stripes * (unit / 4096));
          const key = `${victim.name}:${diskBlock}`;
          const handle = memberHandle(victim.name);
          const stripe = Math.floor(diskBlock / (unit / 4096));
          if (handle === undefined || stripesHit.has(stripe)) continue;
          stripesHit.add(stripe);
          log.push(`bad sector ${key}`);
          badSectors.set(key, handle.injectError({ offset: diskLayout.raidDataOffsetBytes + diskBlock * 4096, length: 4096, op: 'read' }));
        }
      } else if (kind === 'power') {
        log.push(`power cut (${st.v.status().state})`);
        st.epoch++;
        st.reopening = true;
        // What the cut may have torn: the changed units of writes in flight or not flushed.
        const atRisk = new Map<number, Set<number>>();
        for (const [s, changed] of [...pendingChanged, ...unflushed]) atRisk.set(s, new Set([...(atRisk.get(s) ?? []), ...changed]));
        pending.clear();
        pendingChanged.clear();
        unflushed.clear();
        const skippedBefore = r.eventsOf('resync-skipped').length;
        for (const s of atRisk.keys()) unresynced.add(s);
        r.powerCut();
        st.v = await r.open();
        // Came back degraded: the dirty regions could not be resynced, so stripes with a torn
        // partial update may reconstruct wrongly even in their unchanged units (docs/raid.md).
        const degradedDirty = r.eventsOf('resync-skipped').length > skippedBefore;
        for (const [s, changed] of atRisk) {
          if (degradedDirty) torn.add(s);
          else tornUnits.set(s, new Set([...(tornUnits.get(s) ?? []), ...changed]));
        }
        st.reopening = false;
      } else if (kind === 'spare' && status.state === 'degraded' && !status.disks.some((d) => d.role === 'spare')) {
        const spare = new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), sizeBytes: st.v.geometry.memberBytesMin, name: `new${episode}` });
        r.spares.push(spare);
        log.push(`add spare ${spare.name}`);
        await st.v.addSpare(spare);
      }
      // Before the next episode: scrub out the bad sectors (they must not meet a disk failure).
      await r.sim.timers.sleep(p.float() * 30);
      while (badSectors.size > 0 && failures.length === 0) {
        if (st.v.status().state === 'normal') {
          // A stripe torn when the scrub started may be rewritten (and leave `torn`) before it ends.
          const tornBefore = new Set([...torn, ...tornUnits.keys()]);
          const { mismatchedStripes } = await st.v.verifyParity();
          for (const s of mismatchedStripes) if (!torn.has(s) && !tornUnits.has(s) && !tornBefore.has(s)) failures.push(`scrub: stripe ${s} parity mismatch`);
        }
        await r.sim.timers.sleep(5);
      }
    }
  };

  await Promise.all([writer(), reader(), faults().finally(() => (st.stop = true))]);
  // End state: with a spare at hand the volume must end normal and verify. A flush touches
  // every disk, so a failure injected by the last episode is noticed first.
  await st.v.flush();
  const final = st.v.status();
  if (final.state === 'degraded' && !final.disks.some((d) => d.role === 'spare')) {
    const spare = new SimBlockDevice({ timers: r.sim.timers, prng: r.sim.fork(), sizeBytes: st.v.geometry.memberBytesMin, name: 'last' });
    await st.v.addSpare(spare);
  }
  await st.v.whenRebuildDone();
  if (st.v.status().state !== 'normal') failures.push(`ends ${st.v.status().state}`);
  const all = await st.v.readBlocks(0, st.v.blockCount);
  for (let b = 0; b < st.v.blockCount; b++) {
    const s = Math.floor(b / st.v.stripeBlocks);
    const within = b - s * st.v.stripeBlocks;
    if (undefinedAt(s, within)) continue;
    const want = committed.get(s)?.subarray(within * 4096, (within + 1) * 4096) ?? new Uint8Array(4096);
    if (!bytesSame(all.subarray(b * 4096, (b + 1) * 4096), want)) {
      failures.push(`block ${b} (stripe ${s}) differs from what was written at the end`);
      break;
    }
  }
  const { mismatchedStripes } = await st.v.verifyParity();
  for (const s of mismatchedStripes) if (!torn.has(s) && !tornUnits.has(s)) failures.push(`stripe ${s} parity mismatch at the end`);
  return failures.map((f) => `seed ${seed}: ${f} [${log.join('; ')}]`);
}

describe('RAID-4 volume: chaos within the fault budget', () => {
  it('ST-2 ST-5 concurrent CPs and reads survive disk failures, bad sectors, power cuts and rebuilds', async () => {
    const failures: string[] = [];
    // RAID_CHAOS_SEED=N reruns the one seed a failure names.
    const only = process.env['RAID_CHAOS_SEED'];
    for (const seed of only !== undefined ? [Number(only)] : seeds(12, 900)) failures.push(...(await chaosRun(seed)));
    expect(failures).toEqual([]);
  });
});
