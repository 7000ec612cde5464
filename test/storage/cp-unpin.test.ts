// A CP write's pages are handed back to the live file system as soon as that write settles,
// not when the CP commits: a change to a block whose write has settled goes into the page in
// place while the rest of the CP is still being written, a change to a block whose write is
// in flight copies the page first, and either way the committed CP holds exactly what was
// frozen and the next CP holds the changes. Also: settled writes' pages become evictable down to
// cachePagesMax (and their lists stay bounded), and the freeze places pages dirtied in any order.
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { Volume } from '../../firmware/ts/storage/volume.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { fsck } from '../../firmware/ts/storage/fs/fsck.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';

const cred = { uid: 0, gid: 0, gids: [] };
const KiB = 1024;

describe('CP pages are unpinned per write', () => {
  it('a block whose write settled changes in place mid-CP; the CP commits what it froze', async () => {
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 1n });
    const session = vol.session();
    // writeStripeBlocks that copies the blocks when called (as a disk has them once the write
    // settles) and holds every write after the first until released.
    const settled: number[] = [];
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let calls = 0;
    // The block buffers every write was given, by call.
    const given: Array<readonly Uint8Array[]> = [];
    const blocks: Volume = {
      ...session,
      writeStripeBlocks: async (first, bs) => {
        given.push(bs);
        const data = new Uint8Array(bs.length * 4096);
        bs.forEach((b, i) => data.set(b, i * 4096));
        const n = calls++;
        if (n > 0) await held;
        await session.writeStripes(first, data);
        settled.push(first);
      },
    };
    const fs = await CowFs.mount(blocks, { cpWriteBytesMax: 16 * KiB, cpWriteConcurrencyMax: 2 });
    const f = fs.allocInode();
    await fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: {}, newIno: f.ino, newGen: f.gen, time: { sec: 1, nsec: 0 }, cred });
    const data = new Prng(3).bytes(256 * KiB);
    await fs.apply({ op: 'write', target: f, offset: 0, data, time: { sec: 2, nsec: 0 }, cred });
    const cp = fs.takeCp();
    // The first write (the file's first blocks, placed first) settles; the others wait.
    while (settled.length === 0) await new Promise((r) => setTimeout(r, 1));
    expect(settled.length).toBe(1);
    // Block 0 lies in the settled write, the last block in one still held.
    const same = (b: Uint8Array, at: number): boolean => Buffer.from(b).equals(Buffer.from(data.subarray(at, at + 4096)));
    const image0 = given[0]?.find((b) => same(b, 0));
    expect(image0).toBeDefined();
    await fs.apply({ op: 'write', target: f, offset: 0, data: new Uint8Array(4096).fill(0xa1), time: { sec: 3, nsec: 0 }, cred });
    await fs.apply({ op: 'write', target: f, offset: 252 * KiB, data: new Uint8Array(4096).fill(0xb2), time: { sec: 3, nsec: 0 }, cred });
    // Block 0's write had settled: its page was the live page's own again, changed in place.
    expect(image0?.[0]).toBe(0xa1);
    release();
    const first = await cp;
    // The last block's write was still to come: its page was copied, the image the CP wrote is intact.
    expect(given.slice(1).flat().some((b) => same(b, 252 * KiB))).toBe(true);
    // The disks hold the frozen data: a second mount of the same disks reads it.
    const frozen = await CowFs.mount(session, {});
    expect(frozen.cpNumber).toBe(first.cpNumber);
    expect(Buffer.from((await frozen.read(f, 0, 256 * KiB)).data).equals(Buffer.from(data))).toBe(true);
    await frozen.close();
    expect(await fsck(session)).toEqual([]);
    // The live file system has the changes, and the next CP writes them.
    const want = data.slice();
    want.fill(0xa1, 0, 4096);
    want.fill(0xb2, 252 * KiB, 256 * KiB);
    expect(Buffer.from((await fs.read(f, 0, 256 * KiB)).data).equals(Buffer.from(want))).toBe(true);
    await fs.takeCp();
    await fs.close();
    const after = await CowFs.mount(session, {});
    expect(Buffer.from((await after.read(f, 0, 256 * KiB)).data).equals(Buffer.from(want))).toBe(true);
    await after.close();
    expect(await fsck(session)).toEqual([]);
  });
});

describe('clean pages of settled CP writes', () => {
  it('are evicted down to cachePagesMax after the CP, and pages dropped while a CP held them are never listed', async () => {
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 1n });
    const session = vol.session();
    const held: Array<() => void> = [];
    let hold = false;
    const blocks: Volume = {
      ...session,
      writeStripeBlocks: async (first, bs) => {
        const data = new Uint8Array(bs.length * 4096);
        bs.forEach((b, i) => data.set(b, i * 4096));
        if (hold) await new Promise<void>((r) => held.push(r));
        await session.writeStripes(first, data);
      },
    };
    const fs = await CowFs.mount(blocks, { cpWriteBytesMax: 16 * KiB, cpWriteConcurrencyMax: 1, cachePagesMax: 32 });
    const mk = async (name: string, bytes: Uint8Array): Promise<{ ino: number; gen: number }> => {
      const f = fs.allocInode();
      await fs.apply({ op: 'create', dir: fs.rootIno, name, how: 'guarded', attrs: {}, newIno: f.ino, newGen: f.gen, time: { sec: 1, nsec: 0 }, cred });
      await fs.apply({ op: 'write', target: f, offset: 0, data: bytes, time: { sec: 2, nsec: 0 }, cred });
      return f;
    };
    const a = new Prng(5).bytes(512 * KiB);
    const fa = await mk('a', a);
    expect(fs.cachedPageCount).toBeGreaterThan(128);
    await fs.takeCp();
    // The next request trims: at most cachePagesMax clean pages stay (the CP's pages were listed).
    expect(Buffer.from((await fs.read(fa, 0, 4096)).data).equals(Buffer.from(a.subarray(0, 4096)))).toBe(true);
    expect(fs.cachedPageCount).toBeLessThanOrEqual(32);
    // A file removed while the CP writing it is held: its pinned pages leave the page map then,
    // and unpinning them later must not count them as evictable.
    const b = new Prng(6).bytes(256 * KiB);
    await mk('b', b);
    hold = true;
    const cp = fs.takeCp();
    await new Promise((r) => setTimeout(r, 5));
    await fs.apply({ op: 'remove', dir: fs.rootIno, name: 'b', time: { sec: 3, nsec: 0 }, cred });
    hold = false;
    for (const r of held.splice(0)) r();
    await cp;
    await fs.takeCp();
    await fs.takeCp();
    // Their blocks are reused by a new file; it reads back as written, here and after a remount.
    const c = new Prng(7).bytes(384 * KiB);
    const fc = await mk('c', c);
    await fs.takeCp();
    expect(Buffer.from((await fs.read(fc, 0, c.length)).data).equals(Buffer.from(c))).toBe(true);
    expect(Buffer.from((await fs.read(fa, 0, a.length)).data).equals(Buffer.from(a))).toBe(true);
    expect(fs.cachedPageCount).toBeLessThanOrEqual(32 + 8);
    await fs.close();
    const again = await CowFs.mount(session, {});
    expect(Buffer.from((await again.read(fc, 0, c.length)).data).equals(Buffer.from(c))).toBe(true);
    await again.close();
    expect(await fsck(session)).toEqual([]);
  });
});

describe('the lists of settled CP writes', () => {
  it('stay bounded when a working set under cachePagesMax is rewritten CP after CP', async () => {
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 1n });
    const fs = await CowFs.mount(vol.session(), { cpWriteBytesMax: 16 * KiB, cachePagesMax: 100_000 });
    const f = fs.allocInode();
    await fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: {}, newIno: f.ino, newGen: f.gen, time: { sec: 1, nsec: 0 }, cred });
    const p = new Prng(8);
    let last: Uint8Array = new Uint8Array(0);
    let peak = 0;
    for (let round = 0; round < 90; round++) {
      last = p.bytes(256 * KiB);
      await fs.apply({ op: 'write', target: f, offset: 0, data: last, time: { sec: 2, nsec: round }, cred });
      await fs.takeCp();
      peak = Math.max(peak, fs.pendingListEntryCount);
    }
    // 64 data pages and a few metadata pages are pending; the stale entries of earlier CPs were
    // compacted away (without it: some 90 x 70 entries).
    expect(peak).toBeLessThanOrEqual(2 * 80 + 4096 + 80);
    expect(fs.pendingListEntryCount).toBeLessThan(90 * 64);
    expect(Buffer.from((await fs.read(f, 0, last.length)).data).equals(Buffer.from(last))).toBe(true);
    await fs.close();
  });
});

describe('the freeze places data pages written out of order', () => {
  it('a file written backwards, then partly forwards, reads back whole after CPs and a remount', async () => {
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 1n });
    const fs = await CowFs.mount(vol.session(), { cpWriteBytesMax: 16 * KiB, cpWriteConcurrencyMax: 2 });
    const f = fs.allocInode();
    await fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: {}, newIno: f.ino, newGen: f.gen, time: { sec: 1, nsec: 0 }, cred });
    const want = new Prng(12).bytes(2048 * KiB);
    // In order for a while (streamed), then backwards from the end (sorted after them), then
    // a few blocks again in the middle: the freeze sees every case of its dirty set's order.
    for (let b = 0; b < 100; b++) await fs.apply({ op: 'write', target: f, offset: b * 4096, data: want.subarray(b * 4096, (b + 1) * 4096), time: { sec: 2, nsec: b }, cred });
    for (let b = 511; b >= 100; b--) await fs.apply({ op: 'write', target: f, offset: b * 4096, data: want.subarray(b * 4096, (b + 1) * 4096), time: { sec: 3, nsec: b }, cred });
    await fs.takeCp();
    for (const b of [300, 7, 450, 8]) {
      want.fill(b & 0xff, b * 4096, (b + 1) * 4096);
      await fs.apply({ op: 'write', target: f, offset: b * 4096, data: want.subarray(b * 4096, (b + 1) * 4096), time: { sec: 4, nsec: b }, cred });
    }
    await fs.takeCp();
    await fs.close();
    const again = await CowFs.mount(vol.session(), {});
    expect(Buffer.from((await again.read(f, 0, want.length)).data).equals(Buffer.from(want))).toBe(true);
    await again.close();
    expect(await fsck(vol.session())).toEqual([]);
  });
});
