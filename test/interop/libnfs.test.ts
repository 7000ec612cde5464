// Interop with a client nobody here wrote (FS-1): Debian's libnfs utilities (nfs-cp, nfs-ls,
// nfs-cat) against our server over TCP. These fail, never skip, when the tools are missing.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { realClock } from '../../firmware/ts/hal/clock/real.ts';
import { type NfsServer, startNfsServer } from '../../firmware/ts/nfs/server.ts';
import { type MountedNfs, mountNfs, ok } from '../../tools/nfs-client/index.ts';

const run = promisify(execFile);
let server: NfsServer;
let dir: string;
let client: MountedNfs;

function url(path: string): string {
  return `nfs://127.0.0.1/export${path}?nfsport=${server.nfsPort}&mountport=${server.mountPort}&version=3`;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  for (const tool of ['nfs-cp', 'nfs-ls', 'nfs-cat']) {
    await run('sh', ['-c', `command -v ${tool}`]).catch(() => {
      throw new Error(`${tool} is missing: install Debian libnfs-utils (tools/setup-host does)`);
    });
  }
  dir = await mkdtemp(join(tmpdir(), 'twinblade-libnfs-'));
  const fs = new MemFs({ fsid: 0xabcdn, rootMode: 0o777 });
  server = await startNfsServer({ exports: [{ path: '/export', fs, rootSquash: false }], clock: realClock });
  client = await mountNfs({ host: '127.0.0.1', nfsPort: server.nfsPort, mountPort: server.mountPort, path: '/export' });
});

afterAll(async () => {
  await client?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('libnfs interop (FS-1)', () => {
  it('FS-1 nfs-cp copies a 20 MiB random file in and out unchanged', async () => {
    const data = randomBytes(20 * 1024 * 1024);
    const src = join(dir, 'in.bin');
    const dst = join(dir, 'out.bin');
    await writeFile(src, data);
    await run('nfs-cp', [src, url('/big.bin')], { timeout: 120_000 });
    // What landed on the server is the file, byte for byte.
    const fh = ok(await client.nfs.lookup(client.root, 'big.bin')).fh;
    expect(sha(await client.nfs.readFile(fh))).toBe(sha(data));
    await run('nfs-cp', [url('/big.bin'), dst], { timeout: 120_000 });
    expect(sha(await readFile(dst))).toBe(sha(data));
  });

  it('FS-1 nfs-ls lists a directory of 1,000 files', async () => {
    const d = ok(await client.nfs.mkdir(client.root, 'thousand')).fh as Uint8Array;
    const names = Array.from({ length: 1000 }, (_, i) => `entry-${String(i).padStart(4, '0')}.dat`);
    for (let i = 0; i < names.length; i += 100) await Promise.all(names.slice(i, i + 100).map((n) => client.nfs.create(d, n).then((r) => ok(r))));
    const { stdout } = await run('nfs-ls', [url('/thousand')], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    const listed = stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/).pop() ?? '')
      .filter((n) => n.startsWith('entry-'));
    expect(listed.sort()).toEqual(names);
  });

  it('FS-1 nfs-cat reads a file written by our client', async () => {
    const text = 'twinblade serves stock NFS clients\n'.repeat(1000);
    await client.nfs.writeFile(client.root, 'note.txt', new TextEncoder().encode(text));
    const { stdout } = await run('nfs-cat', [url('/note.txt')], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    expect(stdout).toBe(text);
  });
});
