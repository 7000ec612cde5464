// The mmap NVRAM driver on a temporary file: the Nvram contract in both persist modes, and
// that stores reach the file through the shared mapping (so they survive a SIGKILL).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { nvramContract } from '../contract/nvram.contract.ts';
import { MmapNvram } from '../../firmware/ts/hal/nvram/linux/mmap-nvram.ts';
import { NvramErrorCode } from '../../firmware/ts/hal/nvram/nvram.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';

let dir: string;
let counter = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tb-nvram-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

for (const mode of ['fence', 'msync'] as const) {
  nvramContract(`linux mmap (${mode})`, async () => {
    const path = join(dir, `nv-${counter++}.bin`);
    const nvram = await MmapNvram.open(path, { create: true, sizeBytes: 64 * 1024, mode });
    return {
      nvram,
      reopen: () => MmapNvram.open(path, { mode }),
      teardown: async () => rmSync(path, { force: true }),
    };
  });
}

describe('MmapNvram', () => {
  it('creates and sizes the file, and stores land in it without any persist call', async () => {
    const path = join(dir, 'direct.bin');
    const nv = await MmapNvram.open(path, { create: true, sizeBytes: 8192 });
    expect(statSync(path).size).toBe(8192);
    expect(nv.mode).toBe('fence');
    nv.write(4000, Uint8Array.of(9, 8, 7));
    nv.write(16, Uint8Array.of(0xaa, 0xbb)); // single 64-bit store path
    expect([...readFileSync(path).subarray(4000, 4003)]).toEqual([9, 8, 7]);
    expect([...readFileSync(path).subarray(15, 19)]).toEqual([0, 0xaa, 0xbb, 0]);
    await nv.close();
  });

  it('borrow gives the mapped bytes themselves: later stores show through, and it refuses bad ranges and a closed NVRAM', async () => {
    const nv = await MmapNvram.open(join(dir, 'borrow.bin'), { create: true, sizeBytes: 8192 });
    const seen = nv.borrow(4096, 16);
    expect(seen.length).toBe(16);
    nv.write(4100, Uint8Array.of(1, 2, 3));
    expect([...seen.subarray(3, 8)]).toEqual([0, 1, 2, 3, 0]);
    expect(() => nv.borrow(8190, 4)).toThrow(expect.objectContaining({ code: NvramErrorCode.outOfRange }));
    await nv.close();
    expect(() => nv.borrow(0, 1)).toThrow(expect.objectContaining({ code: NvramErrorCode.closed }));
  });

  it('keeps every completed store when the process is killed (the rig power cut)', async () => {
    const path = join(dir, 'killed.bin');
    writeFileSync(path, new Uint8Array(4096));
    const script = `
      import { MmapNvram } from ${JSON.stringify(new URL('../../firmware/ts/hal/nvram/linux/mmap-nvram.ts', import.meta.url).pathname)};
      const nv = await MmapNvram.open(${JSON.stringify(path)});
      nv.write(100, new Uint8Array(64).fill(0x5c));
      await nv.persist(100, 64);
      process.kill(process.pid, 'SIGKILL');
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.signal).toBe('SIGKILL');
    expect(readFileSync(path).subarray(100, 164).every((b) => b === 0x5c)).toBe(true);
  });

  it('uses an existing file at its own size and refuses bad options', async () => {
    const path = join(dir, 'existing.bin');
    writeFileSync(path, new Uint8Array(5000).fill(1));
    const nv = await MmapNvram.open(path);
    expect(nv.sizeBytes).toBe(5000);
    expect(nv.read(4999, 1)[0]).toBe(1);
    await nv.close();
    await expect(MmapNvram.open(join(dir, 'missing.bin'))).rejects.toMatchObject({ code: NvramErrorCode.io });
    await expect(MmapNvram.open(join(dir, 'x.bin'), { create: true })).rejects.toBeInstanceOf(TwinbladeError);
    await expect(MmapNvram.open(path, { mode: 'flush' as 'fence' })).rejects.toMatchObject({ code: NvramErrorCode.invalidArgument });
    await expect(MmapNvram.open(dir)).rejects.toMatchObject({ code: NvramErrorCode.io });
    const empty = join(dir, 'empty.bin');
    writeFileSync(empty, new Uint8Array(0));
    await expect(MmapNvram.open(empty)).rejects.toMatchObject({ code: NvramErrorCode.outOfRange });
  });
});
