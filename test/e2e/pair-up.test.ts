// Pair up end to end: both blades of the process rig boot, pair, and serve their exports to
// stock NFS clients (libnfs tools) and to our TS client, each at its own address.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PairRig, WriteLoad, verifyAcked } from './pair-rig.ts';
import { mountNfs, ok } from '../../tools/nfs-client/index.ts';

const run = promisify(execFile);

describe('e2e: pair up on the process rig', () => {
  let pr: PairRig | undefined;
  let scratch: string | undefined;
  beforeAll(async () => {
    pr = await PairRig.start(0);
    await pr.bringUp();
  });
  afterAll(async () => {
    const dir = pr?.dir;
    await pr?.stop();
    if (scratch) await fs.rm(scratch, { recursive: true, force: true });
    if (dir) expect(await pr?.leftovers()).toEqual([]);
  });

  it('serves /vola and /volb to libnfs tools: copy in, list, read back, through each blade', async () => {
    const p = pr as PairRig;
    scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-e2e-files-'));
    for (const b of ['a', 'b'] as const) {
      const src = path.join(scratch, `hello-${b}.txt`);
      await fs.writeFile(src, `hello through blade ${b}\n`);
      const u = new URL(p.url(b));
      const file = `nfs://${u.host}${u.pathname}/hello-${b}.txt${u.search}`;
      await run('nfs-cp', [src, file]);
      const ls = await run('nfs-ls', [p.url(b)]);
      expect(ls.stdout).toContain(`hello-${b}.txt`);
      const cat = await run('nfs-cat', [file]);
      expect(cat.stdout).toBe(`hello through blade ${b}\n`);
    }
  });

  it('serves both exports to the TS client under a concurrent write load, every acknowledged write reads back', async () => {
    const p = pr as PairRig;
    const loads = (['a', 'b'] as const).map((b) => new WriteLoad({ target: p.address(b), clients: 3, prefix: `up-${b}`, writesPerFile: 16 }).start());
    await Promise.all(loads.map((l) => l.waitAcked(60)));
    const reports = await Promise.all(loads.map((l) => l.stop()));
    for (const [i, b] of (['a', 'b'] as const).entries()) {
      const r = reports[i];
      expect(r?.errors).toEqual([]);
      expect(r?.reconnects).toBe(0);
      expect(await verifyAcked(p.address(b), r?.acked ?? [])).toEqual([]);
    }
    // The libnfs file is visible to the TS client too: one namespace per export.
    const m = await mountNfs(p.address('a'));
    try {
      const fh = ok(await m.nfs.lookup(m.root, 'hello-a.txt')).fh;
      expect(new TextDecoder().decode(await m.nfs.readFile(fh))).toBe('hello through blade a\n');
    } finally {
      await m.close();
    }
  });
});
