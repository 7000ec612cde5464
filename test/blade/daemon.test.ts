// The single-blade daemon end to end (SPEC FS-1, NV-5): `blade init` + `blade run` as a real
// process on image files, real NFS clients (libnfs's nfs-cp/nfs-ls and our own), a power
// cut (SIGKILL) with recovery from NVRAM, a clean SIGTERM stop, and refusal of foreign disks.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFile } from 'node:child_process';
import { bladeCli, startBladeProcess, stopProcess, type BladeProcess } from './blade-process.ts';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { initSingleBlade } from '../../firmware/ts/blade/init.ts';
import { mountNfs, ok } from '../../tools/nfs-client/index.ts';

const run = promisify(execFile);
type Running = BladeProcess;
const startBlade = (config: string): Promise<Running> => startBladeProcess(config);

function parts(url: string): { host: string; path: string; nfsPort: number; mountPort: number; base: string; query: string } {
  const u = new URL(url);
  return {
    host: u.hostname,
    path: u.pathname,
    nfsPort: Number(u.searchParams.get('nfsport')),
    mountPort: Number(u.searchParams.get('mountport')),
    base: `nfs://${u.host}${u.pathname}`,
    query: u.search,
  };
}

const kill = stopProcess;

describe('single-blade daemon', () => {
  let dir: string;
  let config: string;
  let blade: Running | undefined;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-blade-'));
    config = await initSingleBlade(path.join(dir, 'one'));
  });
  afterAll(async () => {
    if (blade) await kill(blade.child, 'SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('FS-1 serves libnfs clients: a 20 MiB file in and out, and a directory of 1,000 files', async () => {
    blade = await startBlade(config);
    const p = parts(blade.url);
    const src = path.join(dir, 'random.bin');
    const data = crypto.randomBytes(20 * 1024 * 1024);
    await fs.writeFile(src, data);
    await run('nfs-cp', [src, `${p.base}/random.bin${p.query}`]);
    const back = path.join(dir, 'back.bin');
    await run('nfs-cp', [`${p.base}/random.bin${p.query}`, back]);
    const sum = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
    expect(sum(await fs.readFile(back))).toBe(sum(data));

    const m = await mountNfs({ host: p.host, nfsPort: p.nfsPort, mountPort: p.mountPort, path: p.path });
    try {
      const made = ok(await m.nfs.mkdir(m.root, 'many'), 'MKDIR');
      const dirFh = made.fh as Uint8Array;
      // Pipelined creates, as a busy client would issue them.
      for (let i = 0; i < 1000; i += 100) {
        await Promise.all(Array.from({ length: 100 }, (_, k) => m.nfs.create(dirFh, `f${String(i + k).padStart(4, '0')}`).then((r) => ok(r, 'CREATE'))));
      }
    } finally {
      await m.close();
    }
    const { stdout } = await run('nfs-ls', [`${p.base}/many${p.query}`], { maxBuffer: 16 * 1024 * 1024 });
    const names = stdout.split('\n').filter((l) => /\sf\d{4}$/.test(l));
    expect(names).toHaveLength(1000);
  });

  it('NV-5 a power cut loses nothing acknowledged: after SIGKILL and restart the files are intact', async () => {
    const b = blade as Running;
    const p = parts(b.url);
    const src = path.join(dir, 'after.bin');
    const data = crypto.randomBytes(3 * 1024 * 1024 + 123);
    await fs.writeFile(src, data);
    await run('nfs-cp', [src, `${p.base}/after.bin${p.query}`]);
    await kill(b.child, 'SIGKILL');
    blade = await startBlade(config);
    const q = parts(blade.url);
    const back = path.join(dir, 'after-back.bin');
    await run('nfs-cp', [`${q.base}/after.bin${q.query}`, back]);
    expect((await fs.readFile(back)).equals(data)).toBe(true);
    const { stdout } = await run('nfs-ls', [blade.url]);
    expect(stdout).toContain('after.bin');
    expect(stdout).toContain('random.bin');
  });

  it('stops cleanly on SIGTERM', async () => {
    const b = blade as Running;
    expect(await kill(b.child, 'SIGTERM')).toBe(0);
    blade = undefined;
  });

  it('refuses a config that names another pair\'s disks, and never formats them', async () => {
    const other = await initSingleBlade(path.join(dir, 'two'));
    const board = JSON.parse(await fs.readFile(other, 'utf8')) as { disks: { own: Array<{ uri: string }> } };
    const mine = JSON.parse(await fs.readFile(config, 'utf8')) as { disks: { own: Array<{ uri: string }> } };
    (board.disks.own[0] as { uri: string }).uri = (mine.disks.own[0] as { uri: string }).uri;
    await fs.writeFile(other, JSON.stringify(board));
    const child = spawn(process.execPath, ['--import', 'tsx', bladeCli, 'run', '--config', other], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (c: string) => (err += c));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code).toBe(1);
    expect(err).toMatch(/ERR_SET_FOREIGN_DISKS|belong elsewhere/);
  });
});
