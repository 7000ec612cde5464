// SM-2 through the real blade: the duplicate-request cache lives in the NVRAM state-machine
// log, so a retransmission that reaches a blade restarted after a power cut (SIGKILL of
// `blade run`) gets the original reply, byte for byte, instead of executing again: a
// re-executed GUARDED CREATE would answer NFS3ERR_EXIST, a re-executed REMOVE NFS3ERR_NOENT.
// And SM-3 under load: consistency points keep the log and the state-machine table bounded,
// so sustained small FILE_SYNC writes and creates are all answered, none with JUKEBOX.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, type ChildProcess } from 'node:child_process';
import { bladeCli, startBladeProcess, stopProcess } from '../blade/blade-process.ts';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { initSingleBlade } from '../../firmware/ts/blade/init.ts';
import { RpcClient, type RawResult } from '../../firmware/ts/nfs/rpc-client.ts';
import { encode } from '../../firmware/ts/nfs/core/xdr.ts';
import * as x from '../../firmware/ts/nfs/core/nfs3.ts';
import { NFS_PROGRAM, NFS_V3, Nfs3Proc, StableHow, sattr } from '../../firmware/ts/nfs/core/nfs3.ts';
import { FsStatus } from '../../firmware/ts/fsapi/ops.ts';
import { mountNfs, ok } from '../../tools/nfs-client/index.ts';

interface Running {
  child: ChildProcess;
  host: string;
  nfsPort: number;
  mountPort: number;
  path: string;
}

async function startBlade(config: string): Promise<Running> {
  const { child, url } = await startBladeProcess(config);
  const u = new URL(url);
  return { child, host: u.hostname, nfsPort: Number(u.searchParams.get('nfsport')), mountPort: Number(u.searchParams.get('mountport')), path: u.pathname };
}

async function killHard(child: ChildProcess): Promise<void> {
  await stopProcess(child, 'SIGKILL');
}

function status(r: RawResult): number {
  if (r.reply.kind !== 'success') throw new Error(`RPC not accepted: ${r.reply.kind}`);
  return r.reply.results.u32();
}

describe('duplicate-request cache in NVRAM, across a blade power cut', () => {
  let dir: string;
  let config: string;
  let blade: Running | undefined;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-blade-drc-'));
    // A 32 MiB NVRAM, so that the sustained-load test below wraps the log two and a half times.
    config = await initSingleBlade(path.join(dir, 'one'), { nvramBytes: 32 * 1024 * 1024 });
  });
  afterAll(async () => {
    if (blade) await killHard(blade.child);
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('SM-2 a retransmitted CREATE, REMOVE and RENAME after SIGKILL + restart get their original replies and execute once', async () => {
    blade = await startBlade(config);
    const m = await mountNfs({ host: blade.host, nfsPort: blade.nfsPort, mountPort: blade.mountPort, path: blade.path, auth: { uid: 0, gid: 0 } });
    const root = m.root;
    ok(await m.nfs.create(root, 'victim'), 'CREATE');
    ok(await m.nfs.create(root, 'old-name'), 'CREATE');
    await m.close();

    // The calls a client will retransmit, each with its own fixed xid.
    const calls = [
      { xid: 0x5eed0001, proc: Nfs3Proc.CREATE, args: encode(x.createArgs, { where: { dir: root, name: 'once' }, how: { mode: 1, attrs: sattr({ mode: 0o644 }) } }) },
      { xid: 0x5eed0002, proc: Nfs3Proc.REMOVE, args: encode(x.removeArgs, { dir: root, name: 'victim' }) },
      { xid: 0x5eed0003, proc: Nfs3Proc.RENAME, args: encode(x.renameArgs, { from: { dir: root, name: 'old-name' }, to: { dir: root, name: 'new-name' } }) },
    ];
    const first = await RpcClient.connect(blade.host, blade.nfsPort, { auth: { uid: 0, gid: 0 } });
    const originals: RawResult[] = [];
    try {
      for (const c of calls) originals.push(await first.rawCall(NFS_PROGRAM, NFS_V3, c.proc, c.args, c.xid));
    } finally {
      await first.close();
    }
    for (const r of originals) expect(status(r)).toBe(FsStatus.OK);

    // Power cut: no orderly stop, no final consistency point. The replies exist only in NVRAM.
    await killHard(blade.child);
    blade = await startBlade(config);

    // The client reconnects (a new TCP connection from the same address) and retransmits.
    const again = await RpcClient.connect(blade.host, blade.nfsPort, { auth: { uid: 0, gid: 0 } });
    try {
      for (const [i, c] of calls.entries()) {
        const r = await again.rawCall(NFS_PROGRAM, NFS_V3, c.proc, c.args, c.xid);
        expect(Buffer.from(r.record).equals(Buffer.from((originals[i] as RawResult).record)), `retransmission of xid ${c.xid.toString(16)}`).toBe(true);
      }
      // The same CREATE under a new xid is a new request: it executes, and finds the file.
      const fresh = await again.rawCall(NFS_PROGRAM, NFS_V3, Nfs3Proc.CREATE, calls[0]?.args as Uint8Array);
      expect(status(fresh)).toBe(FsStatus.EXIST);
    } finally {
      await again.close();
    }

    // Each change happened once: the directory is what one execution of each leaves.
    const after = await mountNfs({ host: blade.host, nfsPort: blade.nfsPort, mountPort: blade.mountPort, path: blade.path, auth: { uid: 0, gid: 0 } });
    try {
      expect((await after.nfs.listDir(after.root)).sort()).toEqual(['new-name', 'once']);
    } finally {
      await after.close();
    }
  });

  it('SM-3 sustained 4 KiB FILE_SYNC writes and creates (more than the log and the state-machine table hold) are all answered OK', async () => {
    const b = blade as Running;
    // 20,000 writes of 4 KiB (80 MiB of log entries, two and a half times a 32 MiB NVRAM) and
    // 6,000 creates (half again the state-machine table's 4,096): waiting for a full log to
    // start a CP livelocked on the first; the second had calls dropped unanswered.
    const m = await mountNfs({ host: b.host, nfsPort: b.nfsPort, mountPort: b.mountPort, path: b.path, auth: { uid: 0, gid: 0 }, callTimeoutMs: 20_000 });
    try {
      const f = ok(await m.nfs.create(m.root, 'sync.dat'), 'CREATE').fh as Uint8Array;
      const dir = ok(await m.nfs.mkdir(m.root, 'many'), 'MKDIR').fh as Uint8Array;
      const block = new Uint8Array(4096).fill(0x6b);
      const statuses = new Map<number, number>();
      const count = (st: number) => statuses.set(st, (statuses.get(st) ?? 0) + 1);
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let i = next++; i < 20_000; i = next++) {
            const r = await m.nfs.write(f, (i % 4096) * 4096, block, StableHow.FILE_SYNC);
            count(r.status);
          }
        }),
      );
      next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let i = next++; i < 6_000; i = next++) count((await m.nfs.create(dir, `c${i}`)).status);
        }),
      );
      expect(Object.fromEntries(statuses)).toEqual({ [FsStatus.OK]: 26_000 });
      expect((await m.nfs.listDir(dir)).length).toBe(6_000);
      // Consistency points started early enough that the log never refused an append.
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', bladeCli, 'status', '--json', '--config', config]);
      const st = JSON.parse(stdout) as { nvlog: { fullRejections: number; logBytesHighWater: number; appends: number } };
      expect(st.nvlog.appends).toBeGreaterThan(26_000);
      expect(st.nvlog.fullRejections).toBe(0);
    } finally {
      await m.close();
    }
  }, 120_000);
});
