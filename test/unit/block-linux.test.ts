// The Linux block driver: the BlockDevice contract on a temporary disk image opened with
// O_DIRECT, plus what only this driver does (file sizing, O_DIRECT policy, errno mapping).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { blockContract } from '../contract/block.contract.ts';
import { directIoTempDir } from '../contract/block-helpers.ts';
import { LinuxBlockDevice, directIoSupported } from '../../firmware/ts/hal/block/linux/linux-block-device.ts';
import { BlockErrorCode } from '../../firmware/ts/hal/block/block-device.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';

let dir: string;
let counter = 0;
beforeAll(() => {
  dir = mkdtempSync(join(directIoTempDir(), 'tb-block-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function imagePath(): string {
  return join(dir, `disk-${counter++}.img`);
}

for (const sectorSize of [4096, 512]) {
  blockContract(`linux (O_DIRECT file, ${sectorSize}-byte sectors)`, async () => {
    const path = imagePath();
    const device = await LinuxBlockDevice.open(path, { create: true, sizeBytes: 1 << 20, sectorSize });
    return {
      device,
      settle: (p) => p,
      teardown: async () => rmSync(path, { force: true }),
    };
  });
}

async function rejection(p: Promise<unknown>): Promise<TwinbladeError> {
  const e: unknown = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(TwinbladeError);
  return e as TwinbladeError;
}

describe('LinuxBlockDevice', () => {
  it('opens with O_DIRECT by default and writes through to the file', async () => {
    const path = imagePath();
    const dev = await LinuxBlockDevice.open(path, { create: true, sizeBytes: 64 * 1024 });
    expect(dev.direct).toBe(true);
    expect(dev.sectorSize).toBe(4096);
    expect(dev.sizeBytes).toBe(64 * 1024);
    await dev.write(8192, new Uint8Array(4096).fill(0x5a));
    await dev.flush();
    await dev.close();
    expect(readFileSync(path)[8192]).toBe(0x5a);
  });

  it('takes its size from the file, rounded down to a sector, and extends a short file to sizeBytes', async () => {
    const path = imagePath();
    writeFileSync(path, new Uint8Array(3 * 4096 + 100));
    const dev = await LinuxBlockDevice.open(path);
    expect(dev.sizeBytes).toBe(3 * 4096);
    await dev.close();
    const grown = await LinuxBlockDevice.open(path, { sizeBytes: 16 * 4096 });
    expect(grown.sizeBytes).toBe(16 * 4096);
    await grown.close();
    expect(statSync(path).size).toBe(16 * 4096);
  });

  it('opened read-only, rejects writes with ERR_BLOCK_READ_ONLY but reads', async () => {
    const path = imagePath();
    writeFileSync(path, new Uint8Array(8 * 4096).fill(7));
    const dev = await LinuxBlockDevice.open(path, { writable: false });
    expect((await rejection(dev.write(0, new Uint8Array(4096)))).code).toBe(BlockErrorCode.readOnly);
    expect((await dev.read(4096, 4096))[0]).toBe(7);
    await dev.flush();
    await dev.close();
  });

  it('maps open failures to ERR_BLOCK_IO with the errno error as cause', async () => {
    const e = await rejection(LinuxBlockDevice.open(join(dir, 'does-not-exist.img')));
    expect(e.code).toBe(BlockErrorCode.io);
    expect((e.cause as { code: string }).code).toBe('ENOENT');
    expect(existsSync(join(dir, 'does-not-exist.img'))).toBe(false);
  });

  it('checks its options synchronously', async () => {
    await expect(LinuxBlockDevice.open(imagePath(), { create: true })).rejects.toThrow(/create needs sizeBytes/);
    await expect(LinuxBlockDevice.open(imagePath(), { create: true, sizeBytes: 4096, sectorSize: 1024 })).rejects.toThrow(/512 or 4096/);
    await expect(LinuxBlockDevice.open(imagePath(), { create: true, sizeBytes: -1 })).rejects.toThrow(/positive integer/);
    await expect(LinuxBlockDevice.open(dir)).rejects.toThrow();
  });

  it("falls back from O_DIRECT only with direct: 'prefer' where the file system refuses it", async () => {
    // sysfs refuses O_DIRECT with EINVAL, like tmpfs before Linux 6.6, and its attributes
    // are regular files of one 4096-byte page.
    const candidates = ['/sys/kernel/uevent_seqnum', '/sys/kernel/profiling', '/sys/power/state'];
    const path = candidates.find((p) => existsSync(p) && statSync(p).isFile() && statSync(p).size >= 4096 && !directIoSupported('/sys'));
    expect(path, 'a sysfs attribute file').toBeDefined();
    const required = await rejection(LinuxBlockDevice.open(path as string, { writable: false }));
    expect(required.code).toBe(BlockErrorCode.io);
    expect((required.cause as { code: string }).code).toBe('EINVAL');
    const dev = await LinuxBlockDevice.open(path as string, { writable: false, direct: 'prefer' });
    expect(dev.direct).toBe(false);
    expect(dev.sizeBytes).toBe(4096);
    await dev.close();
  });

  it('reports a short read (the file shrank under it) as ERR_BLOCK_IO', async () => {
    const path = imagePath();
    const dev = await LinuxBlockDevice.open(path, { create: true, sizeBytes: 8 * 4096 });
    const fd = openSync(path, 'r+');
    try {
      (await import('node:fs')).ftruncateSync(fd, 4096);
    } finally {
      closeSync(fd);
    }
    expect((await rejection(dev.read(4 * 4096, 4096))).code).toBe(BlockErrorCode.io);
    await dev.close();
  });

  it('keeps flushed writes when the blade process is killed (SIGKILL as a power cut)', () => {
    const path = imagePath();
    const script = `
      import { LinuxBlockDevice } from ${JSON.stringify(new URL('../../firmware/ts/hal/block/linux/linux-block-device.ts', import.meta.url).pathname)};
      const dev = await LinuxBlockDevice.open(${JSON.stringify(path)}, { create: true, sizeBytes: 1 << 20 });
      await Promise.all([0, 1, 2, 3].map((i) => dev.write(i * 65536, new Uint8Array(65536).fill(0x40 + i))));
      await dev.flush();
      process.kill(process.pid, 'SIGKILL');
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.signal).toBe('SIGKILL');
    const image = readFileSync(path);
    for (let i = 0; i < 4; i++) expect(image.subarray(i * 65536, (i + 1) * 65536).every((b) => b === 0x40 + i)).toBe(true);
  });

  it('knows whether a directory supports O_DIRECT', () => {
    expect(directIoSupported(dir)).toBe(true);
    expect(directIoSupported(join(dir, 'no-such-dir'))).toBe(false);
  });
});
