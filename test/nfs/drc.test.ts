// Duplicate-request handling (SM-2): a retransmitted non-idempotent call gets its original
// reply and runs once — after its reply, and after a crash whose log is replayed into a
// fresh server (the takeover case).
import { afterEach, describe, expect, it } from 'vitest';
import type { ChangeOp, ChangeResult } from '../../firmware/ts/fsapi/ops.ts';
import { FsError, FsStatus, FileType } from '../../firmware/ts/fsapi/ops.ts';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { realClock } from '../../firmware/ts/hal/clock/real.ts';
import { type ChangeOutcome, MemoryDrc, type RequestKey, decodeRequestKey, encodeRequestKey } from '../../firmware/ts/nfs/core/drc.ts';
import { type Codec, encode } from '../../firmware/ts/nfs/core/xdr.ts';
import { encodeCall, frameForTcp } from '../../firmware/ts/nfs/core/rpc.ts';
import * as x from '../../firmware/ts/nfs/core/nfs3.ts';
import { NFS_PROGRAM, NFS_V3, Nfs3Proc, sattr } from '../../firmware/ts/nfs/core/nfs3.ts';
import { type ChangeLog, DirectChangeLog } from '../../firmware/ts/nfs/nfs3-service.ts';
import { type NfsServer, startNfsServer } from '../../firmware/ts/nfs/server.ts';
import { type MountedNfs, mountNfs, ok } from '../../tools/nfs-client/index.ts';
import { FH_KEY } from './harness.ts';

const VERF = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 42]);

/** A change log that keeps every committed descriptor with its request key, as NVRAM would. */
class RecordingLog implements ChangeLog {
  readonly entries: { change: ChangeOp; key: RequestKey; fsid: bigint }[] = [];
  private readonly inner: DirectChangeLog;
  constructor(fs: MemFs) {
    this.inner = new DirectChangeLog([fs]);
  }
  commit(change: ChangeOp, key: RequestKey, fsid: bigint): Promise<ChangeResult> {
    this.entries.push({ change, key, fsid });
    return this.inner.commit(change, key, fsid);
  }
}

interface Blade {
  fs: MemFs;
  log: RecordingLog;
  drc: MemoryDrc;
  server: NfsServer;
  m: MountedNfs;
}

const open: Blade[] = [];
afterEach(async () => {
  for (const b of open.splice(0)) {
    await b.m.close();
    await b.server.close();
  }
});

async function blade(fs: MemFs, drc = new MemoryDrc()): Promise<Blade> {
  const log = new RecordingLog(fs);
  const server = await startNfsServer({ exports: [{ path: '/e', fs, rootSquash: false }], clock: realClock, fhKey: FH_KEY, writeVerifier: VERF, changeLog: log, drc });
  const m = await mountNfs({ host: '127.0.0.1', nfsPort: server.nfsPort, mountPort: server.mountPort, path: '/e', auth: { uid: 500, gid: 500 } });
  const b = { fs, log, drc, server, m };
  open.push(b);
  return b;
}

const newFs = () => new MemFs({ fsid: 77n, rootMode: 0o777, time: { sec: 5, nsec: 0 } });

/** The non-idempotent calls, each as (procedure, encoded arguments) given the root handle and a file's handle. */
function calls(root: Uint8Array, file: Uint8Array): { name: string; proc: number; args: Uint8Array }[] {
  const e = <T>(c: Codec<T>, v: T) => encode(c, v);
  return [
    { name: 'CREATE guarded', proc: Nfs3Proc.CREATE, args: e(x.createArgs, { where: { dir: root, name: 'c1' }, how: { mode: 1, attrs: sattr({ mode: 0o600 }) } }) },
    { name: 'CREATE exclusive', proc: Nfs3Proc.CREATE, args: e(x.createArgs, { where: { dir: root, name: 'c2' }, how: { mode: 2, verf: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) } }) },
    { name: 'MKDIR', proc: Nfs3Proc.MKDIR, args: e(x.mkdirArgs, { where: { dir: root, name: 'd1' }, attrs: sattr({ mode: 0o700 }) }) },
    { name: 'SYMLINK', proc: Nfs3Proc.SYMLINK, args: e(x.symlinkArgs, { where: { dir: root, name: 's1' }, attrs: sattr(), path: 'target' }) },
    { name: 'MKNOD', proc: Nfs3Proc.MKNOD, args: e(x.mknodArgs, { where: { dir: root, name: 'p1' }, what: { type: FileType.FIFO, attrs: sattr() } }) },
    { name: 'WRITE', proc: Nfs3Proc.WRITE, args: e(x.writeArgs, { fh: file, offset: 3, count: 4, stable: 2, data: new Uint8Array([1, 2, 3, 4]) }) },
    { name: 'SETATTR', proc: Nfs3Proc.SETATTR, args: e(x.setattrArgs, { fh: file, attrs: sattr({ mode: 0o640 }), guard: undefined }) },
    { name: 'LINK', proc: Nfs3Proc.LINK, args: e(x.linkArgs, { fh: file, link: { dir: root, name: 'l1' } }) },
    { name: 'RENAME', proc: Nfs3Proc.RENAME, args: e(x.renameArgs, { from: { dir: root, name: 'l1' }, to: { dir: root, name: 'l2' } }) },
    { name: 'REMOVE', proc: Nfs3Proc.REMOVE, args: e(x.removeArgs, { dir: root, name: 'l2' }) },
    { name: 'RMDIR', proc: Nfs3Proc.RMDIR, args: e(x.rmdirArgs, { dir: root, name: 'd1' }) },
  ];
}

describe('duplicate-request cache (SM-2)', () => {
  it('SM-2 a retransmission after the reply gets the original reply and the change runs once', async () => {
    const b = await blade(newFs());
    const { nfs, root } = b.m;
    const file = ok(await nfs.create(root, 'f')).fh as Uint8Array;
    let xid = 0x5000;
    for (const c of calls(root, file)) {
      xid++;
      const first = await nfs.rpc.rawCall(NFS_PROGRAM, NFS_V3, c.proc, c.args, xid);
      const commits = b.log.entries.length;
      const again = await nfs.rpc.rawCall(NFS_PROGRAM, NFS_V3, c.proc, c.args, xid);
      expect(b.log.entries.length, c.name).toBe(commits);
      expect(Buffer.from(again.record).equals(Buffer.from(first.record)), c.name).toBe(true);
      // The first reply succeeded: a second execution would have failed (EXIST/NOENT) for most of these.
      expect(first.reply.kind).toBe('success');
      if (first.reply.kind === 'success') expect(first.reply.results.u32(), c.name).toBe(0);
    }
    // A new xid with the same arguments is a new call (and now fails: the name is taken).
    const dup = calls(root, file)[0] as { proc: number; args: Uint8Array };
    const fresh = await nfs.rpc.rawCall(NFS_PROGRAM, NFS_V3, dup.proc, dup.args, 0x9999);
    if (fresh.reply.kind === 'success') expect(fresh.reply.results.u32()).toBe(FsStatus.EXIST);
  });

  it('SM-2 after a crash the replayed log answers retransmissions with the original replies (takeover)', async () => {
    const a = await blade(newFs());
    const { nfs, root } = a.m;
    const file = ok(await nfs.create(root, 'f')).fh as Uint8Array;
    const originals = new Map<number, Uint8Array>();
    let xid = 0x7000;
    const list = calls(root, file);
    for (const c of list) {
      const r = await nfs.rpc.rawCall(NFS_PROGRAM, NFS_V3, c.proc, c.args, ++xid);
      originals.set(xid, r.record);
    }
    // Crash: the server and its in-memory state are gone; only the log survives. The
    // survivor replays it into a fresh file system and rebuilds the cache from the outcomes
    // (replies were never persisted here: the worst case).
    const survivorFs = newFs();
    const drc = new MemoryDrc();
    for (const entry of a.log.entries) {
      let outcome: ChangeOutcome;
      try {
        outcome = { ok: true, result: await survivorFs.apply(entry.change) };
      } catch (e) {
        if (!(e instanceof FsError)) throw e;
        outcome = { ok: false, status: e.status };
      }
      drc.put(decodeRequestKey(encodeRequestKey(entry.key)), { state: 'applied', outcome });
    }
    const survivor = await blade(survivorFs, drc);
    const before = survivorFs.inodeCount;
    xid = 0x7000;
    for (const c of list) {
      const r = await survivor.m.nfs.rpc.rawCall(NFS_PROGRAM, NFS_V3, c.proc, c.args, ++xid);
      expect(Buffer.from(r.record).equals(Buffer.from(originals.get(xid) as Uint8Array)), c.name).toBe(true);
    }
    expect(survivor.log.entries.length).toBe(0);
    expect(survivorFs.inodeCount).toBe(before);
    // The handles from before the crash still work on the survivor (FS-2).
    expect(ok(await survivor.m.nfs.getattr(file)).attr.mode).toBe(0o640);
  });

  it('SM-2 a retransmission that arrives while the original runs is dropped, then answered once', async () => {
    const fs = newFs();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const drc = new MemoryDrc();
    let commits = 0;
    const slow: ChangeLog = {
      async commit(change) {
        commits++;
        await gate;
        return fs.apply(change);
      },
    };
    const server = await startNfsServer({ exports: [{ path: '/e', fs }], clock: realClock, fhKey: FH_KEY, changeLog: slow, drc });
    const m = await mountNfs({ host: '127.0.0.1', nfsPort: server.nfsPort, mountPort: server.mountPort, path: '/e' });
    try {
      const args = encode(x.mkdirArgs, { where: { dir: m.root, name: 'slow' }, attrs: sattr() });
      const first = m.nfs.rpc.rawCall(NFS_PROGRAM, NFS_V3, Nfs3Proc.MKDIR, args, 0x4242);
      await new Promise((r) => setTimeout(r, 20));
      // Write the same call again on the wire: the server must not run it a second time.
      m.nfs.rpc.writeRaw(Buffer.from(encodeCallBytes(m, args)));
      await new Promise((r) => setTimeout(r, 20));
      release();
      const r = await first;
      expect(r.reply.kind).toBe('success');
      expect(commits).toBe(1);
    } finally {
      await m.close();
      await server.close();
    }
  });

  it('a change the log refuses is answered JUKEBOX and forgotten, so the retry runs', async () => {
    const fs = newFs();
    let refuse = true;
    const drc = new MemoryDrc();
    const flaky: ChangeLog = {
      commit(change) {
        if (refuse) return Promise.reject(new Error('mirror unavailable'));
        return fs.apply(change);
      },
    };
    const server = await startNfsServer({ exports: [{ path: '/e', fs }], clock: realClock, fhKey: FH_KEY, changeLog: flaky, drc });
    const m = await mountNfs({ host: '127.0.0.1', nfsPort: server.nfsPort, mountPort: server.mountPort, path: '/e' });
    try {
      const args = encode(x.mkdirArgs, { where: { dir: m.root, name: 'later' }, attrs: sattr() });
      const r1 = await m.nfs.rpc.rawCall(NFS_PROGRAM, NFS_V3, Nfs3Proc.MKDIR, args, 77);
      if (r1.reply.kind === 'success') expect(r1.reply.results.u32()).toBe(FsStatus.JUKEBOX);
      refuse = false;
      const r2 = await m.nfs.rpc.rawCall(NFS_PROGRAM, NFS_V3, Nfs3Proc.MKDIR, args, 77);
      if (r2.reply.kind === 'success') expect(r2.reply.results.u32()).toBe(0);
      expect(r2.reply.kind).toBe('success');
    } finally {
      await m.close();
      await server.close();
    }
  });

  it('the in-memory cache is bounded', () => {
    const drc = new MemoryDrc(10);
    for (let i = 0; i < 100; i++) {
      const k = { client: 'c', xid: i, prog: 1, vers: 3, proc: 8, argsCrc: 0, argsBytes: 0 };
      drc.begin(k);
      drc.complete(k, new Uint8Array(4));
    }
    expect(drc.size).toBeLessThanOrEqual(10);
  });
});

/** A byte-identical retransmission of the MKDIR call with xid 0x4242 (same credentials and arguments). */
function encodeCallBytes(m: MountedNfs, args: Uint8Array): Uint8Array {
  return frameForTcp(encodeCall(0x4242, NFS_PROGRAM, NFS_V3, Nfs3Proc.MKDIR, m.nfs.rpc.cred, args)).slice();
}
