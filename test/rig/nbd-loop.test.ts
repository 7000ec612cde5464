// The rig's loop emulator against real NBD clients (libnbd's nbdinfo/nbdcopy, qemu-io)
// and against the blades' own NBD client driver, including the reservation fence (ST-4).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { LoopEmulator } from '../../rig/loop/loop-emulator.ts';
import { openNbdBlockDevice } from '../../firmware/ts/hal/block/rig/nbd-client.ts';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';

const run = promisify(execFile);
const diskBytes = 8 * 1024 * 1024;

describe('rig loop emulator (NBD)', () => {
  let dir: string;
  let loop: LoopEmulator;
  let ports: { a: number; b: number };

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-loop-'));
    const disks = [];
    for (const name of ['d0', 'd1']) {
      const p = path.join(dir, `${name}.img`);
      await fs.writeFile(p, '');
      disks.push({ name, path: p, sizeBytes: diskBytes });
    }
    loop = new LoopEmulator({ disks });
    ports = await loop.start();
  });

  afterAll(async () => {
    await loop.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('answers nbdinfo with the export size (libnbd, NBD_OPT_GO)', async () => {
    const { stdout } = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${ports.a}/d0`]);
    const info = JSON.parse(stdout) as { exports: Array<{ 'export-size': number; 'export-name': string }> };
    expect(info.exports[0]?.['export-size']).toBe(diskBytes);
  });

  it('lists exports (NBD_OPT_LIST) to nbdinfo --list', async () => {
    const { stdout } = await run('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${ports.b}`]);
    const names = (JSON.parse(stdout) as { exports: Array<{ 'export-name': string }> }).exports.map((e) => e['export-name']);
    expect(names.sort()).toEqual(['d0', 'd1']);
  });

  it('round-trips data written by qemu-io and read by nbdcopy', async () => {
    await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 4096 65536', `nbd://127.0.0.1:${ports.a}/d1`]);
    const out = path.join(dir, 'copy.img');
    await run('nbdcopy', [`nbd://127.0.0.1:${ports.b}/d1`, out]);
    const data = await fs.readFile(out);
    expect(data.length).toBe(diskBytes);
    expect(data.subarray(4096, 4096 + 65536).every((b) => b === 0xab)).toBe(true);
    expect(data.subarray(0, 4096).every((b) => b === 0)).toBe(true);
  });

  it('serves the blade NBD client driver with pipelined reads, writes and flush', async () => {
    const dev = await openNbdBlockDevice({ host: '127.0.0.1', port: ports.a, exportName: 'd0' });
    expect(dev.sizeBytes).toBe(diskBytes);
    const blocks = Array.from({ length: 16 }, () => crypto.randomBytes(4096));
    await Promise.all(blocks.map((b, i) => dev.write(i * 8192, b)));
    await dev.flush();
    const back = await Promise.all(blocks.map((_, i) => dev.read(i * 8192, 4096)));
    back.forEach((b, i) => expect(Buffer.from(b).equals(blocks[i] as Buffer)).toBe(true));
    expect(() => dev.read(100, 4096)).toThrow(expect.objectContaining({ code: 'ERR_BLOCK_UNALIGNED' }));
    expect(() => dev.read(diskBytes, 4096)).toThrow(expect.objectContaining({ code: 'ERR_BLOCK_OUT_OF_RANGE' }));
    await dev.close();
    await expect(dev.read(0, 4096)).rejects.toMatchObject({ code: 'ERR_BLOCK_CLOSED' });
  });

  it('ST-4 a write from the blade that does not hold the reservation is refused and recorded', async () => {
    const a = await openNbdBlockDevice({ host: '127.0.0.1', port: ports.a, exportName: 'd1' });
    const b = await openNbdBlockDevice({ host: '127.0.0.1', port: ports.b, exportName: 'd1' });
    expect(loop.reserve('d1', 'a').ok).toBe(true);
    expect(loop.reserve('d1', 'b').ok).toBe(false);
    await a.write(0, new Uint8Array(4096).fill(1));
    const err = await b.write(0, new Uint8Array(4096).fill(2)).catch((e: unknown) => e);
    expect(isTwinbladeError(err, 'ERR_BLOCK_FENCED')).toBe(true);
    expect((await b.read(0, 4096))[0]).toBe(1); // everyone still reads
    expect(loop.violations()).toEqual([expect.objectContaining({ disk: 'd1', loop: 'b', holder: 'a' })]);
    // A takeover preempts: now b writes and a is fenced.
    loop.preempt('d1', 'b');
    await b.write(0, new Uint8Array(4096).fill(3));
    await expect(a.write(0, new Uint8Array(4096))).rejects.toMatchObject({ code: 'ERR_BLOCK_FENCED' });
    loop.release('d1', 'b');
    await a.close();
    await b.close();
  });

  it('a failed MUX returns I/O errors on that loop only', async () => {
    loop.setMux('d0', 'a', 'failed');
    const a = await openNbdBlockDevice({ host: '127.0.0.1', port: ports.a, exportName: 'd0' });
    const b = await openNbdBlockDevice({ host: '127.0.0.1', port: ports.b, exportName: 'd0' });
    await expect(a.read(0, 4096)).rejects.toMatchObject({ code: 'ERR_BLOCK_IO' });
    await expect(b.read(0, 4096)).resolves.toHaveLength(4096);
    loop.setMux('d0', 'a', 'in');
    await expect(a.read(0, 4096)).resolves.toHaveLength(4096);
    await a.close();
    await b.close();
  });

  it('survives garbage on the wire without affecting other clients', async () => {
    const net = await import('node:net');
    const s = net.connect(ports.a, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.resume();
    s.write(crypto.randomBytes(4096));
    await new Promise((r) => s.once('close', r));
    const dev = await openNbdBlockDevice({ host: '127.0.0.1', port: ports.a, exportName: 'd0' });
    await expect(dev.read(0, 4096)).resolves.toHaveLength(4096);
    await dev.close();
  });
});
