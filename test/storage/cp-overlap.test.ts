// With cpFreezeOverlap, a CP's writes start while it is still freezing: each volume write
// goes to the writers as soon as all of its blocks are placed (CpWriteQueue), so its I/O
// overlaps the rest of the freeze (without it, none starts before the freeze ends), up to
// cpFreezeWritesMax writes; what the disks end up holding is unchanged, and a power cut at any step of such a
// CP (many small runs, so most go out during the freeze) still leaves the last committed CP.
// Also the queue itself.
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { Clock } from '../../firmware/ts/core/clock.ts';
import type { Volume } from '../../firmware/ts/storage/volume.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { CpWriteQueue } from '../../firmware/ts/storage/fs/cp-queue.ts';
import { fsck } from '../../firmware/ts/storage/fs/fsck.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { ModelHarness } from '../../firmware/ts/storage/fs/workload.ts';

const cred = { uid: 0, gid: 0, gids: [] };
const MiB = 1024 * 1024;

describe('CpWriteQueue', () => {
  it('hands items out in order, makes takers wait for a push, and ends every taker at close', async () => {
    const q = new CpWriteQueue<number>();
    q.push(1);
    q.push(2);
    expect(q.length).toBe(2);
    expect(await q.next()).toBe(1);
    const waiting = [q.next(), q.next(), q.next()];
    q.push(3);
    q.close();
    expect(await Promise.all(waiting)).toEqual([2, 3, undefined]);
    expect(await q.next()).toBeUndefined();
    expect(() => q.push(4)).toThrow(/after close/);
  });
});

describe('CP writes overlap the freeze', () => {
  /** Events of one 2 MiB CP: 'clock' (the freeze reads it at its start and end) and 'write'. */
  async function cpEvents(overlap: boolean): Promise<{ events: string[]; vol: MemVolume; f: { ino: number; gen: number }; data: Uint8Array }> {
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 1n });
    const events: string[] = [];
    const session = vol.session();
    const logged: Volume = {
      ...session,
      writeStripes: async (first, data) => {
        events.push('write');
        return session.writeStripes(first, data);
      },
    };
    const clock: Clock = {
      nowMs: () => {
        events.push('clock');
        return 0;
      },
      wallNs: () => 0n,
    };
    const fs = await CowFs.mount(logged, { clock, cpWriteBytesMax: 64 * 1024, cpWriteConcurrencyMax: 2, cpFreezeOverlap: overlap });
    const f = fs.allocInode();
    await fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: {}, newIno: f.ino, newGen: f.gen, time: { sec: 1, nsec: 0 }, cred });
    const data = new Prng(5).bytes(2 * MiB);
    for (let off = 0; off < data.length; off += MiB) {
      await fs.apply({ op: 'write', target: f, offset: off, data: data.subarray(off, off + MiB), time: { sec: 2, nsec: 0 }, cred });
    }
    events.length = 0;
    await fs.takeCp();
    await fs.close();
    return { events, vol, f, data };
  }

  it('with cpFreezeOverlap the first volume write is issued before the freeze ends, and the file and fsck come back whole', async () => {
    const { events, vol, f, data } = await cpEvents(true);
    const freezeStart = events.indexOf('clock');
    const freezeEnd = events.indexOf('clock', freezeStart + 1);
    const firstWrite = events.indexOf('write');
    expect(freezeStart).toBe(0);
    expect(firstWrite).toBeGreaterThan(freezeStart);
    expect(firstWrite).toBeLessThan(freezeEnd);
    // 2 MiB in 64 KiB runs: most writes went out during the freeze.
    expect(events.slice(0, freezeEnd).filter((e) => e === 'write').length).toBeGreaterThan(16);
    const again = await CowFs.mount(vol.session());
    for (let off = 0; off < data.length; off += MiB) {
      const back = await again.read(f, off, MiB);
      expect(Buffer.from(back.data).equals(Buffer.from(data.subarray(off, off + MiB)))).toBe(true);
    }
    await again.close();
    expect(await fsck(vol.session())).toEqual([]);
  });

  it('without it no write is issued before the freeze ends', async () => {
    const { events } = await cpEvents(false);
    const freezeEnd = events.indexOf('clock', 1);
    expect(freezeEnd).toBeGreaterThan(0);
    expect(events.indexOf('write')).toBeGreaterThan(freezeEnd);
  });
});

describe('writes in flight while the freeze runs', () => {
  it('up to cpFreezeWritesMax during the freeze, then no more than cpWriteConcurrencyMax', async () => {
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 1n });
    const session = vol.session();
    let inFlight = 0;
    let maxAfterRelease = 0;
    let released = false;
    const held: Array<() => void> = [];
    const counted: Volume = {
      ...session,
      writeStripeBlocks: async (first, bs) => {
        inFlight++;
        if (released) maxAfterRelease = Math.max(maxAfterRelease, inFlight);
        const data = new Uint8Array(bs.length * 4096);
        bs.forEach((b, i) => data.set(b, i * 4096));
        if (!released) await new Promise<void>((r) => held.push(r));
        await session.writeStripes(first, data);
        inFlight--;
      },
    };
    // 16 KiB runs: a 1 MiB file is 64 volume writes.
    const fs = await CowFs.mount(counted, { cpWriteBytesMax: 16 * 1024, cpWriteConcurrencyMax: 2, cpFreezeWritesMax: 5 });
    const f = fs.allocInode();
    await fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: {}, newIno: f.ino, newGen: f.gen, time: { sec: 1, nsec: 0 }, cred });
    const data = new Prng(9).bytes(MiB);
    await fs.apply({ op: 'write', target: f, offset: 0, data, time: { sec: 2, nsec: 0 }, cred });
    const cp = fs.takeCp();
    while (held.length < 5) await new Promise((r) => setTimeout(r, 1));
    // The freeze is over (it never waits for a write) and five writes are held: no sixth.
    await new Promise((r) => setTimeout(r, 5));
    expect(inFlight).toBe(5);
    released = true;
    for (const r of held.splice(0)) r();
    await cp;
    // The writers beyond cpWriteConcurrencyMax stopped once the freeze was over.
    expect(maxAfterRelease).toBeGreaterThan(0);
    expect(maxAfterRelease).toBeLessThanOrEqual(2);
    expect(Buffer.from((await fs.read(f, 0, MiB)).data).equals(Buffer.from(data))).toBe(true);
    await fs.close();
    expect(await fsck(session)).toEqual([]);
  });
});

describe('power cut during a CP whose writes overlap its freeze', () => {
  /** The same world for the same seed: runs of one stripe of 2 blocks, so a CP has many writes. */
  async function world(seed: number): Promise<{ vol: MemVolume; fs: CowFs; h: ModelHarness }> {
    const prng = new Prng(seed);
    const vol = new MemVolume({ blockCount: 32 * 1024, stripeBlocks: 2 });
    await mkfs(vol.session(), { fsid: 3n });
    const fs = await CowFs.mount(vol.session(), { cpWriteBytesMax: 8 * 1024, cpWriteConcurrencyMax: 2, cpFreezeOverlap: true });
    const h = new ModelHarness(fs, new MemFs({ fsid: 3n }), prng.fork());
    for (let i = 0; i < 60; i++) await h.step();
    await fs.takeCp();
    for (let i = 0; i < 40; i++) await h.step();
    return { vol, fs, h };
  }

  it('NV-4 ST-5 a cut at every step leaves the last committed CP, and replay restores every change', async () => {
    let steps = 0;
    for (let step = 0; ; step++) {
      const w = await world(21);
      const before = w.fs.cpNumber;
      const lastSeq = w.fs.appliedSeq(0);
      const committedBefore = w.fs.committedSeq().get(0) ?? 0n;
      const io0 = w.vol.ioCount;
      w.vol.cutPowerAtStep(step, new Prng(2000 + step));
      const outcome = await w.fs.takeCp().then(
        () => 'committed',
        () => 'cut',
      );
      if (outcome === 'committed') {
        steps = w.vol.ioCount - io0;
        break;
      }
      w.vol.powerOn();
      expect(await fsck(w.vol.session())).toEqual([]);
      const fs = await CowFs.mount(w.vol.session());
      expect([before, before + 1]).toContain(fs.cpNumber);
      expect(fs.appliedSeq(0)).toBe(fs.cpNumber === before ? committedBefore : lastSeq);
      const toReplay = lastSeq - fs.appliedSeq(0);
      expect(BigInt(await w.h.replay(fs))).toBe(toReplay);
      expect(await w.h.compare()).toBeUndefined();
    }
    // Many data writes (the point of this world), then flush, superblock, flush.
    expect(steps).toBeGreaterThan(8);
  });
});
