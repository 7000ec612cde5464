// The client CLI against the server: put, ls, cat, get, stat, mkdir, rm, exports.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, parseNfsUrl } from '../../tools/nfs-client/cli.ts';
import { type Rig, startRig } from './harness.ts';

let rig: Rig;
let dir: string;
beforeAll(async () => {
  rig = await startRig();
  dir = await mkdtemp(join(tmpdir(), 'twinblade-nfs-cli-'));
});
afterAll(async () => {
  await rig.close();
  await rm(dir, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<string> {
  let s = '';
  const code = await main(args, (x) => (s += x));
  expect(code).toBe(0);
  return s;
}

describe('nfs client CLI', () => {
  it('parses libnfs-style URLs', () => {
    expect(parseNfsUrl('nfs://10.0.0.1/export/a/b?nfsport=2049&mountport=20048&uid=5&gid=6')).toEqual({
      host: '10.0.0.1', nfsPort: 2049, mountPort: 20048, exportPath: '/export', path: 'a/b', uid: 5, gid: 6,
    });
  });

  it('copies a file in and out and lists it', async () => {
    const url = (p: string) => `nfs://127.0.0.1/export${p}?nfsport=${rig.server.nfsPort}&mountport=${rig.server.mountPort}&uid=1000&gid=1000`;
    await writeFile(join(dir, 'in.txt'), 'hello from the cli\n');
    await cli('mkdir', url('/d'));
    await cli('put', url('/d/f.txt'), join(dir, 'in.txt'));
    expect(await cli('ls', url('/d'))).toBe('f.txt\n');
    expect(await cli('cat', url('/d/f.txt'))).toBe('hello from the cli\n');
    await cli('get', url('/d/f.txt'), join(dir, 'out.txt'));
    expect(await readFile(join(dir, 'out.txt'), 'utf8')).toBe('hello from the cli\n');
    expect(JSON.parse(await cli('stat', url('/d/f.txt')))).toMatchObject({ type: 'REG', size: 19, uid: 1000 });
    expect(await cli('exports', url('/'))).toBe('/export *\n');
    await cli('rm', url('/d/f.txt'));
    expect(await cli('ls', url('/d'))).toBe('');
  });
});
