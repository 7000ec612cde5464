// The blade's read cache budget: a share of the board's RAM between a floor and a cap, or what
// the board descriptor says (service.readCacheBytes), handed to the disk set's file system.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { realClock, realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { BoardError, parseBoard } from '../../firmware/ts/board/board.ts';
import { collectReadCacheMetrics, dirtyBytesFor, openStorageSet, readCacheBytesFor, readCacheLimits } from '../../firmware/ts/blade/storage-set.ts';
import { MetricsRegistry } from '../../firmware/ts/blade/metrics.ts';
import { blockCacheDefaults } from '../../firmware/ts/storage/fs/block-cache.ts';
import { computeLayout } from '../../firmware/ts/nvlog/core/layout.ts';
import { cowFsDefaults } from '../../firmware/ts/storage/fs/limits.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('dirtyBytesFor', () => {
  it('is one log half of the NVRAM, never below the file system default', () => {
    // blade init's 1 GiB NVRAM: four halves of about 256 MiB (the header area comes off first).
    expect(dirtyBytesFor(GiB)).toBe(computeLayout(GiB).halfBytes);
    expect(dirtyBytesFor(GiB)).toBeGreaterThan(255 * MiB);
    expect(dirtyBytesFor(128 * MiB)).toBe(cowFsDefaults.dirtyBytesMax);
    expect(dirtyBytesFor(1024 * 1024)).toBe(cowFsDefaults.dirtyBytesMax);
  });
});

describe('readCacheBytesFor', () => {
  it('takes an eighth of the RAM, at least the floor and at most the cap, in whole MiB', () => {
    expect(readCacheBytesFor(8 * GiB)).toBe(GiB);
    expect(readCacheBytesFor(24 * GiB + 12345)).toBe(readCacheLimits.bytesMax);
    expect(readCacheBytesFor(256 * MiB)).toBe(readCacheLimits.bytesMin);
    expect(readCacheBytesFor(1000 * MiB + 1)).toBe(125 * MiB);
    expect(readCacheBytesFor(0)).toBe(readCacheLimits.bytesMin);
    expect(readCacheLimits.bytesMin).toBe(blockCacheDefaults.blockCacheBytesMax);
  });

  it('what the board descriptor says wins, 0 included (no cache, no read-ahead)', () => {
    expect(readCacheBytesFor(24 * GiB, 5 * MiB)).toBe(5 * MiB);
    expect(readCacheBytesFor(24 * GiB, 0)).toBe(0);
    expect(readCacheBytesFor(1 * GiB, 4 * GiB)).toBe(4 * GiB);
  });
});

describe('board service.readCacheBytes', () => {
  it('is optional, and must be a non-negative integer', async () => {
    const doc = JSON.parse(await readFile(join(resolve(import.meta.dirname, '../..'), 'boards/qemu-rig-a.json'), 'utf8')) as { service: Record<string, unknown> };
    doc.service = { runDir: '/run/twinblade', pairKeyHex: '0'.repeat(64) };
    expect(parseBoard(doc).service?.readCacheBytes).toBeUndefined();
    doc.service['readCacheBytes'] = 256 * MiB;
    expect(parseBoard(doc).service?.readCacheBytes).toBe(256 * MiB);
    for (const bad of [-1, 1.5, '64M']) {
      doc.service['readCacheBytes'] = bad;
      expect(() => parseBoard(doc)).toThrow(BoardError);
    }
  });
});

describe('openStorageSet readCacheBytes', () => {
  const newDisks = (): SimBlockDevice[] =>
    ['d0', 'd1', 'd2'].map((name, i) => new SimBlockDevice({ timers: realTimers, prng: new Prng(10 + i), sizeBytes: 12 * MiB, name, latency: { readMs: 0, writeMs: 0, flushMs: 0, jitterMs: 0 } }));
  const open = (readCacheBytes?: number, disks = newDisks()) =>
    openStorageSet(
      disks,
      [],
      {
        pairId: 'test',
        blade: 'a',
        clock: realClock,
        timers: realTimers,
        prng: new Prng(1),
        cpIntervalMs: 60_000,
        formatIfBlank: true,
        now: () => ({ sec: 1_800_000_000, nsec: 0 }),
        replacedDiskProbeIntervalMs: 0,
        ...(readCacheBytes !== undefined ? { readCacheBytes } : {}),
      },
    );

  it('bounds the file system block cache, and leaves the file system default when not given', async () => {
    const sized = await open(3 * GiB);
    try {
      expect(sized.fs.readCacheStats.bytesMax).toBe(3 * GiB);
      // Nothing is taken up front: the bound is only a bound.
      expect(sized.fs.readCacheStats.bytes).toBe(0);
    } finally {
      await sized.close();
    }
    const plain = await open();
    try {
      expect(plain.fs.readCacheStats.bytesMax).toBe(blockCacheDefaults.blockCacheBytesMax);
    } finally {
      await plain.close();
    }
  });

  it('reports its figures as metrics: hits of a file read back, bytes held and the bound', async () => {
    const disks = newDisks();
    const set = await open(32 * MiB, disks);
    try {
      const fs = set.fs;
      const cred = { uid: 0, gid: 0, gids: [] };
      const time = { sec: 1_800_000_000, nsec: 0 };
      const n = fs.allocInode();
      const r = await fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: { mode: 0o644 }, newIno: n.ino, newGen: n.gen, time, cred });
      if (r.op !== 'create') throw new Error('create');
      const f = { ino: r.obj.ino, gen: r.obj.gen };
      await fs.apply({ op: 'write', target: f, offset: 0, data: new Uint8Array(MiB).fill(5), time, cred });
      await fs.takeCp();
      // Cold: reopened, the first pass reads the disks, the second the cache.
      await set.close();
      const again = await open(32 * MiB, disks.map((d) => d.attach()));
      try {
        const ref = { ino: f.ino, gen: f.gen };
        for (let pass = 0; pass < 2; pass++) for (let off = 0; off < MiB; off += 64 * 1024) expect((await again.fs.read(ref, off, 64 * 1024)).data[7]).toBe(5);
        const m = new MetricsRegistry();
        collectReadCacheMetrics(m, () => [{ blade: 'a', fs: again.fs }]);
        const text = m.render();
        const value = (name: string): number => Number(new RegExp(`^${name}\\{set="a"\\} (\\S+)$`, 'm').exec(text)?.[1]);
        expect(value('twinblade_read_cache_hits_total')).toBeGreaterThanOrEqual(256);
        expect(value('twinblade_read_cache_misses_total') + value('twinblade_read_ahead_blocks_total')).toBeGreaterThanOrEqual(256);
        expect(value('twinblade_read_cache_bytes')).toBeGreaterThanOrEqual(MiB);
        expect(value('twinblade_read_cache_bytes_max')).toBe(32 * MiB);
        expect(text).toContain('# TYPE twinblade_read_cache_hits_total counter');
      } finally {
        await again.close();
      }
    } catch (e) {
      await set.close().catch(() => undefined);
      throw e;
    }
  });
});
