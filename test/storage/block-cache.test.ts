// The read path's clean-block cache and sequential read-ahead (storage/fs/block-cache.ts) on
// their own, and inside the CoW file system: bounded memory, invalidation on free (also of a
// read-ahead still in flight), fewer volume calls for sequential reads, and reads that always
// equal what was written across CPs, overwrites, removes and block reuse.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytesEqual, concatBytes } from '../../firmware/ts/core/bytes.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { InodeRef } from '../../firmware/ts/fsapi/ops.ts';
import { BlockCache, ReadStreams } from '../../firmware/ts/storage/fs/block-cache.ts';
import { CowFs, mkfs, type CowFsOptions } from '../../firmware/ts/storage/fs/cowfs.ts';
import { fsck } from '../../firmware/ts/storage/fs/fsck.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';
import type { Volume, VolumeStatus } from '../../firmware/ts/storage/volume.ts';

const B = 4096;
const cred = { uid: 0, gid: 0, gids: [] };
let clock = 1000;
const now = (): { sec: number; nsec: number } => ({ sec: clock++, nsec: 0 });

function blocks(n: number, tag: number): Uint8Array {
  const out = new Uint8Array(n * B);
  for (let i = 0; i < out.length; i += 4) out[i] = (tag + i / B) & 0xff;
  return out;
}

/** A volume that counts reads and can hold the reads a predicate picks until released. */
class GatedVolume implements Volume {
  readonly blockSize = 4096;
  reads = 0;
  readBlocksRead = 0;
  gate: ((first: number, count: number) => boolean) | undefined;
  private held: Array<() => void> = [];
  constructor(private readonly v: Volume) {}
  get blockCount(): number {
    return this.v.blockCount;
  }
  get stripeBlocks(): number {
    return this.v.stripeBlocks;
  }
  async readBlocks(first: number, count: number): Promise<Uint8Array> {
    this.reads++;
    this.readBlocksRead += count;
    if (this.gate?.(first, count) === true) await new Promise<void>((r) => this.held.push(r));
    return this.v.readBlocks(first, count);
  }
  writeStripes(first: number, data: Uint8Array): Promise<void> {
    return this.v.writeStripes(first, data);
  }
  flush(): Promise<void> {
    return this.v.flush();
  }
  status(): VolumeStatus {
    return this.v.status();
  }
  get heldCount(): number {
    return this.held.length;
  }
  release(): void {
    this.gate = undefined;
    for (const r of this.held.splice(0)) r();
  }
}

/**
 * A GatedVolume that also offers readBlockParts, as the RAID volume does: each read comes back
 * as pieces of whole blocks, cut where `prng` says (one piece per block at most).
 */
class PartsVolume extends GatedVolume {
  constructor(
    v: Volume,
    private readonly prng: Prng,
  ) {
    super(v);
  }
  async readBlockParts(first: number, count: number): Promise<Uint8Array[]> {
    const data = await this.readBlocks(first, count);
    const parts: Uint8Array[] = [];
    for (let at = 0; at < count; ) {
      const n = 1 + this.prng.int(count - at);
      parts.push(data.slice(at * B, (at + n) * B));
      at += n;
    }
    return parts;
  }
}

async function fresh(opts: CowFsOptions, blockCount = 16 * 1024, stripeBlocks = 16, partsPrng?: Prng): Promise<{ mem: MemVolume; vol: GatedVolume; fs: CowFs }> {
  const mem = new MemVolume({ blockCount, stripeBlocks });
  await mkfs(mem.session(), { fsid: 7n, time: { sec: 1, nsec: 0 } });
  const vol = partsPrng === undefined ? new GatedVolume(mem.session()) : new PartsVolume(mem.session(), partsPrng);
  return { mem, vol, fs: await CowFs.mount(vol, opts) };
}

/** A clean remount of the same volume: every cache starts cold. */
async function remount(fs: CowFs, vol: GatedVolume, opts: CowFsOptions): Promise<CowFs> {
  await fs.close();
  return CowFs.mount(vol, opts);
}

async function create(fs: CowFs, name: string): Promise<InodeRef> {
  const n = fs.allocInode();
  const r = await fs.apply({ op: 'create', dir: fs.rootIno, name, how: 'guarded', attrs: { mode: 0o644 }, newIno: n.ino, newGen: n.gen, time: now(), cred });
  if (r.op !== 'create') throw new Error('unexpected result');
  return { ino: r.obj.ino, gen: r.obj.gen };
}

async function write(fs: CowFs, f: InodeRef, offset: number, data: Uint8Array): Promise<void> {
  await fs.apply({ op: 'write', target: f, offset, data, time: now(), cred });
}

async function readSeq(fs: CowFs, f: InodeRef, size: number, chunk: number): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  for (let off = 0; off < size; off += chunk) out.set((await fs.read(f, off, chunk)).data, off);
  return out;
}

describe('BlockCache', () => {
  it('keeps blocks by address, evicts least recently used first, and counts each backing buffer once', () => {
    const c = new BlockCache(4 * B);
    c.put(100, blocks(2, 1), B); // one 8 KiB buffer for blocks 100 and 101
    expect(c.byteCount).toBe(2 * B);
    expect(c.blockCount).toBe(2);
    c.put(200, blocks(1, 2), B);
    c.put(300, blocks(1, 3), B);
    expect(c.byteCount).toBe(4 * B);
    expect(c.get(100)?.[0]).toBe(1);
    // Over the bound: the least recently used (101, then 200) go; 100's buffer stays counted
    // while 100 is cached.
    c.put(400, blocks(1, 4), B);
    expect(c.has(101)).toBe(false);
    expect(c.has(200)).toBe(false);
    expect(c.get(100)?.[0]).toBe(1);
    expect(c.byteCount).toBeLessThanOrEqual(4 * B);
    c.invalidate(100);
    expect(c.get(100)).toBeUndefined();
    expect(c.byteCount).toBe(2 * B);
    expect(c.stats).toMatchObject({ bytes: 2 * B, blocks: 2, bytesMax: 4 * B });
  });

  it('a fill in flight answers pending readers, and an address invalidated meanwhile is never cached', async () => {
    const c = new BlockCache(64 * B);
    let land!: (d: Uint8Array) => void;
    c.fill(10, 4, B, () => new Promise<Uint8Array>((r) => (land = r)));
    expect(c.has(12)).toBe(true);
    const p = c.pending(12, B);
    c.invalidate(11); // freed while the read was in flight: its bytes may be stale
    land(blocks(4, 50));
    expect((await p)?.[0]).toBe(52);
    await c.settled();
    expect(c.get(10)?.[0]).toBe(50);
    expect(c.get(11)).toBeUndefined();
    expect(c.get(13)?.[0]).toBe(53);
    expect(c.stats.readAheadBlocks).toBe(4);
  });

  it('takes reads in pieces of whole blocks (put and fill), and a read of the wrong size fails the fill', async () => {
    const c = new BlockCache(64 * B);
    c.put(10, [blocks(1, 1), blocks(2, 2)], B);
    expect([c.get(10)?.[0], c.get(11)?.[0], c.get(12)?.[0]]).toEqual([1, 2, 3]);
    expect(c.byteCount).toBe(3 * B);
    c.fill(20, 3, B, () => Promise.resolve([blocks(2, 5), blocks(1, 9)]));
    expect(await c.pending(22)).toEqual(blocks(1, 9));
    expect(c.get(21)?.[0]).toBe(6);
    c.fill(30, 2, B, () => Promise.resolve([blocks(1, 1)]));
    expect(await c.pending(31)).toBeUndefined();
    expect(c.has(30)).toBe(false);
    c.fill(40, 1, B, () => Promise.resolve(new Uint8Array(B + 512)));
    expect(await c.pending(40)).toBeUndefined();
    expect(c.has(40)).toBe(false);
  });

  it('a failed fill leaves nothing cached and resolves pending readers with undefined', async () => {
    const c = new BlockCache(64 * B);
    c.fill(5, 2, B, () => Promise.reject(new Error('disk gone')));
    const p = c.pending(6, B);
    expect(await p).toBeUndefined();
    await c.settled();
    expect(c.has(5)).toBe(false);
    expect(c.has(6)).toBe(false);
  });
});

describe('ReadStreams', () => {
  const o = { readAheadBytesMin: 64 * 1024, readAheadBytesMax: 256 * 1024, readStreamsMax: 2 };

  it('reads ahead of a sequential stream with a doubling window, not of random reads', () => {
    const s = new ReadStreams(o);
    const size = 10 * 1024 * 1024;
    expect(s.note(1, 0, 16 * 1024, size)).toEqual({ from: 16 * 1024, to: 80 * 1024 });
    const second = s.note(1, 16 * 1024, 16 * 1024, size);
    expect(second).toEqual({ from: 80 * 1024, to: 32 * 1024 + 128 * 1024 });
    // Random reads elsewhere: nothing ahead, and the window starts over.
    expect(s.note(2, 5 * 1024 * 1024, 4096, size)).toBeUndefined();
    expect(s.note(2, 1024 * 1024, 4096, size)).toBeUndefined();
    // Never beyond the file's end.
    const tail = s.note(3, 0, 4096, 8192);
    expect(tail).toEqual({ from: 4096, to: 8192 });
  });

  it('forgets the least recently read files beyond readStreamsMax', () => {
    const s = new ReadStreams(o);
    s.note(1, 0, 4096, 1 << 20);
    s.note(2, 0, 4096, 1 << 20);
    s.note(3, 0, 4096, 1 << 20);
    // File 1 was forgotten: a read where it left off is a new stream, not from offset 0.
    expect(s.note(1, 4096, 4096, 1 << 20)).toBeUndefined();
  });
});

describe('CoW FS read path with the block cache', () => {
  it('sequential 64 KiB reads of a cold file are served mostly from read-ahead: far fewer volume calls than reads', async () => {
    const made = await fresh({ cachePagesMax: 64 });
    const vol = made.vol;
    let fs = made.fs;
    const f = await create(fs, 'big');
    const size = 8 * 1024 * 1024;
    const data = blocks(size / B, 9);
    for (let off = 0; off < size; off += 1024 * 1024) await write(fs, f, off, data.subarray(off, off + 1024 * 1024));
    await fs.takeCp();
    fs = await remount(fs, vol, { cachePagesMax: 64 }); // cold: nothing of the file in memory
    const before = vol.reads;
    const got = await readSeq(fs, f, size, 64 * 1024);
    expect(bytesEqual(got, data)).toBe(true);
    const calls = vol.reads - before;
    expect(calls).toBeLessThan(size / (64 * 1024) / 4);
    expect(fs.readCacheStats.readAheadBlocks).toBeGreaterThan(size / B / 2);
    expect(fs.readCacheStats.hits + fs.readCacheStats.pendingHits).toBeGreaterThan(size / B / 2);
    expect(fs.readCacheStats.bytes).toBeLessThanOrEqual(64 * 1024 * 1024);
    await fs.close();
  });

  it('data written and committed stays readable from memory after its pages are evicted (read-after-write): no volume reads', async () => {
    const { vol, fs } = await fresh({ cachePagesMax: 64 });
    const f = await create(fs, 'raw');
    const size = 4 * 1024 * 1024;
    const data = blocks(size / B, 5);
    for (let off = 0; off < size; off += 1024 * 1024) await write(fs, f, off, data.subarray(off, off + 1024 * 1024));
    await fs.takeCp();
    await fs.getattr(f); // evicts all but 64 pages: the clean data blocks move to the block cache
    const before = vol.readBlocksRead;
    expect(bytesEqual(await readSeq(fs, f, size, 64 * 1024), data)).toBe(true);
    expect(vol.readBlocksRead - before).toBe(0);
    expect(fs.readCacheStats.hits).toBeGreaterThan(size / B / 2);
    await fs.close();
  });

  it('a file just written reads back from memory: its data pages move to the block cache, its indirect blocks stay cached (also while writes keep more dirty pages than the page cache bound)', async () => {
    // More data pages than the page cache keeps: trimming must drop data (into the block
    // cache) and keep the two level-1 indirect blocks, or reading back stalls on the disks.
    for (const cacheBytes of [64 * 1024 * 1024, 0]) {
      const { vol, fs } = await fresh({ cachePagesMax: 64, readCache: { blockCacheBytesMax: cacheBytes } });
      const f = await create(fs, 'f');
      const size = 1100 * B;
      const data = blocks(1100, 5);
      // A CP every 256 blocks, as a stream of writes gets them: the first indirect block is last
      // written (and unpinned) a CP before the newest data pages, so it is older in the LRU.
      for (let off = 0; off < size; off += 64 * B) {
        await write(fs, f, off, data.subarray(off, off + 64 * B));
        if ((off / B + 64) % 256 === 0) await fs.takeCp();
      }
      await fs.takeCp();
      await fs.getattr(f); // a query: trims the page cache
      const before = vol.readBlocksRead;
      expect(bytesEqual(await readSeq(fs, f, size, 16 * B), data)).toBe(true);
      // With the cache: no volume read at all. Without: the data blocks the page cache does not
      // hold, and no metadata block: the 64 pages kept are the 5 metadata pages (two level-1
      // indirect blocks, the level-2 root, the inode-file block, the root directory block) and
      // the newest 59 data pages.
      expect(vol.readBlocksRead - before).toBe(cacheBytes > 0 ? 0 : 1100 - (64 - 5));
      expect(fs.readCacheStats.misses).toBe(0);
      await fs.close();
    }
  });

  it('a read served whole from one cached buffer is a view of it (no copy), and a later write leaves that view unchanged', async () => {
    const made = await fresh({ cachePagesMax: 8 });
    const vol = made.vol;
    let fs = made.fs;
    const f = await create(fs, 'v');
    const old = blocks(256, 3);
    await write(fs, f, 0, old);
    await fs.takeCp();
    fs = await remount(fs, vol, { cachePagesMax: 8 });
    await readSeq(fs, f, 64 * 1024, 64 * 1024); // starts the stream: what follows is read ahead
    const got = (await fs.read(f, 64 * 1024, 64 * 1024)).data;
    expect(bytesEqual(got, old.subarray(64 * 1024, 128 * 1024))).toBe(true);
    expect(got.buffer.byteLength).toBeGreaterThan(got.length); // a view into a read-ahead buffer
    await write(fs, f, 64 * 1024, blocks(16, 200));
    expect(bytesEqual(got, old.subarray(64 * 1024, 128 * 1024))).toBe(true);
    expect((await fs.read(f, 64 * 1024, 4096)).data[0]).toBe(200);
    await fs.close();
  });

  it('a block overwritten while its read-ahead is in flight reads back the new data', async () => {
    const made = await fresh({ cachePagesMax: 8 });
    const vol = made.vol;
    let fs = made.fs;
    const f = await create(fs, 'f');
    const old = blocks(64, 1);
    await write(fs, f, 0, old);
    await fs.takeCp();
    fs = await remount(fs, vol, { cachePagesMax: 8 });
    // Hold every multi-block read: the read-ahead that the first read starts stays in flight.
    vol.gate = (_first, count) => count > 1;
    expect((await fs.read(f, 0, B)).data[0]).toBe(1);
    expect(vol.heldCount).toBeGreaterThan(0);
    const fresh2 = blocks(63, 100);
    await write(fs, f, B, fresh2); // frees the blocks being read ahead
    await fs.takeCp();
    await fs.takeCp();
    vol.release();
    await fs.getattr(f);
    const got = await readSeq(fs, f, 64 * B, 16 * 1024);
    expect(got[0]).toBe(1);
    expect(bytesEqual(got.subarray(B), fresh2)).toBe(true);
    expect(fs.readCacheStats.invalidations).toBeGreaterThan(0);
    await fs.close();
    expect(await fsck(vol)).toEqual([]);
  });

  it('property: reads (and readParts, whose views never change later) equal a shadow copy under random writes, truncations, removes, CPs and block reuse (tiny volume and caches)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (seed) => {
        const prng = new Prng(seed);
        // A small volume, so CPs reuse freed blocks soon; small caches, so reads go to disk.
        // Few or many pages kept: readParts lends clean pages, and copies dirty and pinned ones.
        // And a volume that reads in pieces (readBlockParts) or in one buffer.
        const { fs } = await fresh({ cachePagesMax: prng.int(2) === 0 ? 2 : 64, readCache: { blockCacheBytesMax: 256 * B, readAheadBytesMin: 4 * B, readAheadBytesMax: 16 * B, readAheadCallBytesMax: 8 * B } }, 384, 8, prng.int(2) === 0 ? new Prng(seed + 1) : undefined);
        const files: Array<{ name: string; ref: InodeRef; data: Uint8Array }> = [];
        const lent: Array<{ parts: Uint8Array[]; want: Uint8Array; step: number }> = [];
        let made = 0;
        for (let step = 0; step < 200; step++) {
          const r = prng.int(100);
          if (files.length === 0 || r < 10) {
            if (files.length < 4) files.push({ name: `f${made}`, ref: await create(fs, `f${made++}`), data: new Uint8Array(0) });
          } else if (r < 45) {
            const f = files[prng.int(files.length)] as (typeof files)[number];
            const off = prng.int(40) * 1024;
            const len = 1 + prng.int(24 * 1024);
            const d = new Uint8Array(len).fill(1 + prng.int(250));
            await write(fs, f.ref, off, d);
            const grown = new Uint8Array(Math.max(f.data.length, off + len));
            grown.set(f.data);
            grown.set(d, off);
            f.data = grown;
          } else if (r < 50) {
            const f = files[prng.int(files.length)] as (typeof files)[number];
            const size = prng.int(f.data.length + 1);
            await fs.apply({ op: 'setattr', target: f.ref, attrs: { size }, time: now(), cred });
            f.data = f.data.slice(0, size);
          } else if (r < 55) {
            const i = prng.int(files.length);
            const f = files[i] as (typeof files)[number];
            await fs.apply({ op: 'remove', dir: fs.rootIno, name: f.name, time: now(), cred });
            files.splice(i, 1);
          } else if (r < 70) {
            await fs.takeCp();
          } else if (r < 85) {
            const f = files[prng.int(files.length)] as (typeof files)[number];
            const chunk = [B, 8 * 1024, 16 * 1024][prng.int(3)] as number;
            const got = await readSeq(fs, f.ref, f.data.length, chunk);
            if (!bytesEqual(got, f.data)) throw new Error(`seed ${seed} step ${step}: ${f.name} reads differ from what was written`);
          } else {
            // readParts hands out views of cached buffers and lent pages: they must read right
            // now, and keep reading the same whatever is written, truncated or freed later.
            const f = files[prng.int(files.length)] as (typeof files)[number];
            const off = prng.int(f.data.length + 1);
            const r = await fs.readParts(f.ref, off, 1 + prng.int(20 * 1024));
            const got = concatBytes(r.parts);
            expect(got.length).toBe(r.length);
            if (!bytesEqual(got, f.data.subarray(off, off + r.length))) throw new Error(`seed ${seed} step ${step}: ${f.name} readParts differs from what was written`);
            expect(r.eof).toBe(off + r.length >= f.data.length);
            lent.push({ parts: r.parts, want: got, step });
          }
          for (const l of lent) {
            if (!bytesEqual(concatBytes(l.parts), l.want)) throw new Error(`seed ${seed} step ${step}: data lent by readParts at step ${l.step} changed`);
          }
        }
        await fs.close();
      }),
      { numRuns: 25 },
    );
  });
});
