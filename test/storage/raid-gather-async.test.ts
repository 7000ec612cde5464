// The off-thread gather of CP writes (the addon's gatherStripesAsync, opted in with
// installGatherStripesAsync): the same runs and parity as the portable gather, arguments
// refused as the synchronous one refuses them, and a volume and a CoW FS CP on real files
// leave the same bytes on every disk with it as without it.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { realClock, realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { LinuxBlockDevice } from '../../firmware/ts/hal/block/linux/linux-block-device.ts';
import { allocAligned, gatherStripesNativeAsync } from '../../firmware/ts/native/index.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { overwriteDuringCp } from './cp-scenario.ts';
import { createVolume } from '../../firmware/ts/storage/raid/index.ts';
import { gatherStripesAsyncInstalled, gatherStripesOffThread, gatherStripesPortable, installGatherStripesAsync } from '../../firmware/ts/storage/raid/xor.ts';

const dirs: string[] = [];

afterEach(async () => {
  await installGatherStripesAsync(undefined);
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('gatherStripesNativeAsync', () => {
  it('fills the same runs and parity as the portable gather, for any shape', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 64 }), fc.boolean(), fc.integer(), async (unitBlocks, m, stripes, words, withParity, seed) => {
        const bs = words * 8;
        const p = new Prng(seed);
        const blocks = Array.from({ length: unitBlocks * m * stripes }, () => p.bytes(bs));
        const runBytes = stripes * unitBlocks * bs;
        const want = Array.from({ length: m + 1 }, () => new Uint8Array(runBytes));
        const got = Array.from({ length: m + 1 }, () => new Uint8Array(runBytes).fill(0x5a));
        gatherStripesPortable(blocks, unitBlocks, want.slice(0, m), withParity ? (want[m] as Uint8Array) : null);
        await gatherStripesNativeAsync(blocks, unitBlocks, got.slice(0, m), withParity ? (got[m] as Uint8Array) : null);
        for (let k = 0; k < m; k++) expect(Buffer.from(got[k] as Uint8Array).equals(Buffer.from(want[k] as Uint8Array))).toBe(true);
        if (withParity) expect(Buffer.from(got[m] as Uint8Array).equals(Buffer.from(want[m] as Uint8Array))).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('refuses bad arguments synchronously, before any work is queued', () => {
    const b = [new Uint8Array(64), new Uint8Array(64)];
    expect(() => gatherStripesNativeAsync([], 1, [new Uint8Array(64)], null)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => gatherStripesNativeAsync(b, 0, [new Uint8Array(64), new Uint8Array(64)], null)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => gatherStripesNativeAsync(b, 1, [new Uint8Array(32), new Uint8Array(64)], null)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => gatherStripesNativeAsync(b, 1, [new Uint8Array(64), new Uint8Array(64)], new Uint8Array(8))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    // Blocks of differing sizes are refused by the addon itself, still synchronously.
    expect(() => gatherStripesNativeAsync([new Uint8Array(64), new Uint8Array(32)], 1, [new Uint8Array(64), new Uint8Array(64)], null)).toThrow(RangeError);
  });

  it('is opt-in: without installGatherStripesAsync the gather runs in place and returns nothing to wait for', async () => {
    const blocks = [new Uint8Array(16).fill(1), new Uint8Array(16).fill(2)];
    const members = [new Uint8Array(16), new Uint8Array(16)];
    const parity = new Uint8Array(16);
    expect(gatherStripesAsyncInstalled()).toBe(false);
    expect(gatherStripesOffThread(blocks, 1, members, parity)).toBeUndefined();
    expect([members[0]?.[0], members[1]?.[0], parity[0]]).toEqual([1, 2, 3]);
    await installGatherStripesAsync(gatherStripesNativeAsync);
    expect(gatherStripesAsyncInstalled()).toBe(true);
    parity.fill(0);
    const pending = gatherStripesOffThread(blocks, 1, members, parity);
    expect(pending).toBeInstanceOf(Promise);
    await pending;
    expect(parity[0]).toBe(3);
  });

  it('is refused at install when it disagrees with the portable gather', async () => {
    await expect(installGatherStripesAsync(async (_b, _u, members) => void members[0]?.fill(1))).rejects.toThrow(/disagrees/);
    expect(gatherStripesAsyncInstalled()).toBe(false);
  });
});

describe('CP writes gathered off the main thread, on real files', () => {
  const unit = 65536;
  const diskBytes = diskLayout.raidDataOffsetBytes + 24 * 1024 * 1024;

  async function openDisks(dir: string, tag: string): Promise<LinuxBlockDevice[]> {
    return Promise.all(Array.from({ length: 4 }, (_, i) => LinuxBlockDevice.open(join(dir, `${tag}${i}.img`), { create: true, sizeBytes: diskBytes, direct: 'prefer', name: `${tag}${i}` })));
  }

  /** A CoW FS with one file of `mib` MiB written and committed by one CP; the disks' bytes. */
  async function cpOnce(dir: string, tag: string, mib: number): Promise<Buffer[]> {
    const disks = await openDisks(dir, tag);
    const rt = { pairId: 'p', volumeId: 'v', clock: realClock, timers: realTimers, prng: new Prng(7), stripeUnitBytes: unit, autoRebuild: false, allocate: (n: number) => allocAligned(n) };
    const volume = await createVolume(disks, rt);
    await overwriteDuringCp(volume, mib);
    for (const d of disks) await d.close();
    return Promise.all(Array.from({ length: 4 }, async (_, i) => readFile(join(dir, `${tag}${i}.img`))));
  }

  it('leave the same bytes on every disk as CPs gathered on the main thread, and the file reads back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'twinblade-gather-async-'));
    dirs.push(dir);
    const main = await cpOnce(dir, 'main', 6);
    let calls = 0;
    await installGatherStripesAsync(async (b, u, m, p) => {
      calls++;
      return gatherStripesNativeAsync(b, u, m, p);
    });
    const thread = await cpOnce(dir, 'thread', 6);
    // The install check is one call; the CPs' data writes are the rest.
    expect(calls).toBeGreaterThan(6);
    for (let i = 0; i < 4; i++) expect((thread[i] as Buffer).equals(main[i] as Buffer)).toBe(true);
  });
});
