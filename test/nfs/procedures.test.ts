// Every NFSv3 procedure and MOUNT/portmap through the TypeScript client against the server
// over a MemFs, including the error cases clients depend on (FS-1, FS-2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileType, FsStatus } from '../../firmware/ts/fsapi/ops.ts';
import { Access3, StableHow, sattr } from '../../firmware/ts/nfs/core/nfs3.ts';
import { IPPROTO_TCP, MOUNT_PROGRAM, MOUNT_V3, NFS_PROGRAM_FOR_TESTS } from './consts.ts';
import { MountClient, Nfs3Client, PortmapClient, mountNfs, ok } from '../../tools/nfs-client/index.ts';
import { type Rig, startRig } from './harness.ts';

let rig: Rig;
let nfs: Nfs3Client;
let root: Uint8Array;

beforeAll(async () => {
  rig = await startRig({ ports: { portmap: 0 } });
  nfs = rig.mounted.nfs;
  root = rig.mounted.root;
});
afterAll(async () => {
  await rig.close();
});

const enc = (s: string) => new TextEncoder().encode(s);

async function mkfile(name: string, content = ''): Promise<Uint8Array> {
  const c = ok(await nfs.create(root, name));
  const fh = c.fh as Uint8Array;
  if (content.length > 0) ok(await nfs.write(fh, 0, enc(content)));
  return fh;
}

describe('NFSv3 procedures (FS-1)', () => {
  it('NULL and GETATTR of the root', async () => {
    await nfs.null();
    const r = ok(await nfs.getattr(root));
    expect(r.attr.type).toBe(FileType.DIR);
    expect(r.attr.fsid).toBe(0x1234n);
  });

  it('CREATE, WRITE (FILE_SYNC with the boot verifier), READ, COMMIT', async () => {
    const fh = await mkfile('data.txt');
    const w = ok(await nfs.write(fh, 0, enc('hello world'), StableHow.UNSTABLE));
    expect(w.count).toBe(11);
    expect(w.committed).toBe(StableHow.FILE_SYNC);
    expect([...w.verf]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(w.wcc.before?.size).toBe(0);
    expect(w.wcc.after?.size).toBe(11);
    const r = ok(await nfs.read(fh, 6, 100));
    expect(new TextDecoder().decode(r.data)).toBe('world');
    expect(r.eof).toBe(true);
    const part = ok(await nfs.read(fh, 0, 5));
    expect(part.eof).toBe(false);
    const c = ok(await nfs.commit(fh));
    expect([...c.verf]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('LOOKUP finds entries; a missing name is NOENT with directory attributes', async () => {
    await mkfile('look.txt', 'x');
    const l = ok(await nfs.lookup(root, 'look.txt'));
    expect(l.attr?.size).toBe(1);
    const miss = await nfs.lookup(root, 'nope');
    expect(miss.status).toBe(FsStatus.NOENT);
    if (miss.status !== 0) expect(miss.dirAttr?.type).toBe(FileType.DIR);
    const dotdot = ok(await nfs.lookup(root, '..'));
    expect(dotdot.attr?.fileid).toBe(1);
    const long = await nfs.lookup(root, 'n'.repeat(300));
    expect(long.status).toBe(FsStatus.NAMETOOLONG);
  });

  it('SETATTR sets mode, size and times; a wrong guard is NOT_SYNC', async () => {
    const fh = await mkfile('attrs.txt', 'abcdef');
    const s = ok(await nfs.setattr(fh, { mode: 0o600, size: 3, mtime: { sec: 1000, nsec: 5 } }));
    expect(s.wcc.after?.mode).toBe(0o600);
    expect(s.wcc.after?.size).toBe(3);
    expect(s.wcc.after?.mtime).toEqual({ sec: 1000, nsec: 5 });
    const g = await nfs.setattr(fh, { mode: 0o644 }, { sec: 1, nsec: 1 });
    expect(g.status).toBe(FsStatus.NOT_SYNC);
    const ctime = s.wcc.after?.ctime as { sec: number; nsec: number };
    ok(await nfs.setattr(fh, { mode: 0o644 }, ctime));
    const d = await nfs.setattr(root, { size: 0 });
    expect(d.status).toBe(FsStatus.ISDIR);
  });

  it('ACCESS reports what the caller may do', async () => {
    const fh = await mkfile('acc.txt');
    ok(await nfs.setattr(fh, { mode: 0o400 }));
    const a = ok(await nfs.access(fh, Access3.READ | Access3.MODIFY | Access3.EXECUTE));
    expect(a.access).toBe(Access3.READ);
    const d = ok(await nfs.access(root, 0x3f));
    expect(d.access & (Access3.LOOKUP | Access3.DELETE | Access3.MODIFY)).toBe(Access3.LOOKUP | Access3.DELETE | Access3.MODIFY);
  });

  it('SYMLINK and READLINK; READLINK of a file is INVAL', async () => {
    const s = ok(await nfs.symlink(root, 'ln', '/some/where'));
    expect(s.attr?.type).toBe(FileType.LNK);
    const r = ok(await nfs.readlink(s.fh as Uint8Array));
    expect(r.path).toBe('/some/where');
    const f = await mkfile('notlink');
    expect((await nfs.readlink(f)).status).toBe(FsStatus.INVAL);
  });

  it('MKNOD makes FIFOs and sockets, needs privilege for devices, and refuses bad types', async () => {
    const p = ok(await nfs.mknod(root, 'fifo', { type: FileType.FIFO, attrs: sattr({ mode: 0o600 }) }));
    expect(p.attr?.type).toBe(FileType.FIFO);
    const dev = await nfs.mknod(root, 'dev', { type: FileType.CHR, attrs: sattr(), spec: { major: 1, minor: 3 } });
    expect(dev.status).toBe(FsStatus.PERM);
    const bad = await nfs.mknod(root, 'reg', { type: FileType.REG });
    expect(bad.status).toBe(FsStatus.BADTYPE);
  });

  it('MKDIR, RMDIR: EEXIST, ENOTEMPTY, NOTDIR', async () => {
    const d = ok(await nfs.mkdir(root, 'dir'));
    expect(d.attr?.type).toBe(FileType.DIR);
    expect((await nfs.mkdir(root, 'dir')).status).toBe(FsStatus.EXIST);
    const dfh = d.fh as Uint8Array;
    ok(await nfs.create(dfh, 'inner'));
    expect((await nfs.rmdir(root, 'dir')).status).toBe(FsStatus.NOTEMPTY);
    ok(await nfs.remove(dfh, 'inner'));
    const r = ok(await nfs.rmdir(root, 'dir'));
    expect(r.dirWcc.after?.type).toBe(FileType.DIR);
    await mkfile('plain');
    expect((await nfs.rmdir(root, 'plain')).status).toBe(FsStatus.NOTDIR);
    expect((await nfs.rmdir(root, 'gone')).status).toBe(FsStatus.NOENT);
  });

  it('CREATE modes: GUARDED refuses an existing name, UNCHECKED truncates it', async () => {
    await mkfile('g.txt', 'content');
    const g = await nfs.create(root, 'g.txt', { mode: 1, attrs: sattr() });
    expect(g.status).toBe(FsStatus.EXIST);
    if (g.status !== 0) expect(g.dirWcc.after?.type).toBe(FileType.DIR);
    const u = ok(await nfs.create(root, 'g.txt', { mode: 0, attrs: sattr({ size: 0 }) }));
    expect(u.attr?.size).toBe(0);
  });

  it('EXCLUSIVE create: the same verifier replays to success, another one is EXIST', async () => {
    const verf = new Uint8Array([9, 9, 9, 9, 1, 2, 3, 4]);
    const a = ok(await nfs.create(root, 'excl', { mode: 2, verf }));
    const b = ok(await nfs.create(root, 'excl', { mode: 2, verf }));
    expect(b.attr?.fileid).toBe(a.attr?.fileid);
    const c = await nfs.create(root, 'excl', { mode: 2, verf: new Uint8Array(8) });
    expect(c.status).toBe(FsStatus.EXIST);
    // The client then sets the real attributes with SETATTR, as RFC 1813 describes.
    ok(await nfs.setattr(a.fh as Uint8Array, { mode: 0o640, atime: 'server', mtime: 'server' }));
  });

  it('REMOVE: NOENT for a missing name, ISDIR for a directory', async () => {
    await mkfile('rm.txt');
    ok(await nfs.remove(root, 'rm.txt'));
    expect((await nfs.remove(root, 'rm.txt')).status).toBe(FsStatus.NOENT);
    ok(await nfs.mkdir(root, 'rmdir'));
    expect((await nfs.remove(root, 'rmdir')).status).toBe(FsStatus.ISDIR);
  });

  it('RENAME moves, replaces files, and refuses a directory over a non-empty one', async () => {
    await mkfile('r1', 'one');
    await mkfile('r2', 'two');
    const r = ok(await nfs.rename(root, 'r1', root, 'r2'));
    expect(r.toWcc.after?.type).toBe(FileType.DIR);
    const l = ok(await nfs.lookup(root, 'r2'));
    expect(l.attr?.size).toBe(3);
    expect((await nfs.lookup(root, 'r1')).status).toBe(FsStatus.NOENT);
    const a = ok(await nfs.mkdir(root, 'ra'));
    const b = ok(await nfs.mkdir(root, 'rb'));
    ok(await nfs.create(b.fh as Uint8Array, 'x'));
    expect((await nfs.rename(root, 'ra', root, 'rb')).status).toBe(FsStatus.NOTEMPTY);
    expect((await nfs.rename(root, 'ra', a.fh as Uint8Array, 'sub')).status).toBe(FsStatus.INVAL);
    expect((await nfs.rename(root, 'missing', root, 'y')).status).toBe(FsStatus.NOENT);
  });

  it('LINK adds a name; EXIST for a taken name; nlink counts', async () => {
    const fh = await mkfile('orig', 'x');
    const l = ok(await nfs.link(fh, root, 'alias'));
    expect(l.attr?.nlink).toBe(2);
    expect((await nfs.link(fh, root, 'alias')).status).toBe(FsStatus.EXIST);
    ok(await nfs.remove(root, 'orig'));
    const g = ok(await nfs.getattr(fh));
    expect(g.attr.nlink).toBe(1);
  });

  it('READDIR and READDIRPLUS page through a large directory with stable cookies', async () => {
    const d = ok(await nfs.mkdir(root, 'many'));
    const dfh = d.fh as Uint8Array;
    const names = Array.from({ length: 300 }, (_, i) => `file-${String(i).padStart(4, '0')}`);
    await Promise.all(names.map((n) => nfs.create(dfh, n)));
    const listed = await nfs.listDir(dfh, 1024);
    expect(listed.sort()).toEqual(names);
    // READDIRPLUS carries attributes and handles that work.
    let cookie = 0n;
    const seen: string[] = [];
    for (;;) {
      const r = ok(await nfs.readdirplus(dfh, cookie, 512, 4096));
      for (const e of r.entries) {
        cookie = e.cookie;
        if (e.name === '.' || e.name === '..') continue;
        seen.push(e.name);
        expect(e.attr?.fileid).toBe(e.fileid);
        if (seen.length === 1) expect(ok(await nfs.getattr(e.fh as Uint8Array)).attr.fileid).toBe(e.fileid);
      }
      if (r.eof) break;
    }
    expect(seen.sort()).toEqual(names);
    const small = await nfs.readdir(dfh, 0n, 100);
    expect(small.status).toBe(FsStatus.TOOSMALL);
    const bad = await nfs.readdir(dfh, 999999n, 4096);
    expect(bad.status).toBe(FsStatus.BAD_COOKIE);
    const f = await mkfile('notdir');
    expect((await nfs.readdir(f)).status).toBe(FsStatus.NOTDIR);
  });

  it('FSSTAT, FSINFO (transfer sizes for TCP), PATHCONF', async () => {
    const s = ok(await nfs.fsstat(root));
    expect(s.tbytes).toBeGreaterThan(s.fbytes - 1);
    const i = ok(await nfs.fsinfo(root));
    expect(i.wtmax).toBe(1024 * 1024);
    expect(i.rtmax).toBe(1024 * 1024);
    expect(i.properties & 0x3).toBe(0x3);
    const p = ok(await nfs.pathconf(root));
    expect(p.nameMax).toBe(255);
    expect(p.noTrunc).toBe(true);
  });

  it('READ of a directory is ISDIR; WRITE to a directory is ISDIR', async () => {
    expect((await nfs.read(root, 0, 10)).status).toBe(FsStatus.ISDIR);
    expect((await nfs.write(root, 0, enc('x'))).status).toBe(FsStatus.ISDIR);
  });
});

describe('file handles (FS-2)', () => {
  it('FS-2 a forged handle is BADHANDLE, a deleted file is STALE', async () => {
    const fh = await mkfile('victim', 'x');
    const forged = Uint8Array.from(fh);
    forged[19] = (forged[19] as number) ^ 1; // another inode number, same MAC
    expect((await nfs.getattr(forged)).status).toBe(FsStatus.BADHANDLE);
    expect((await nfs.getattr(new Uint8Array(8))).status).toBe(FsStatus.BADHANDLE);
    ok(await nfs.remove(root, 'victim'));
    expect((await nfs.getattr(fh)).status).toBe(FsStatus.STALE);
    expect((await nfs.write(fh, 0, enc('y'))).status).toBe(FsStatus.STALE);
  });

  it('FS-2 handles minted by one server instance work on another with the same key (takeover)', async () => {
    const fh = await mkfile('survivor', 'still here');
    const { startNfsServer } = await import('../../firmware/ts/nfs/server.ts');
    const { realClock } = await import('../../firmware/ts/hal/clock/real.ts');
    const { FH_KEY } = await import('./harness.ts');
    const other = await startNfsServer({ exports: [{ path: '/export', fs: rig.fs }], clock: realClock, fhKey: FH_KEY });
    const c = await Nfs3Client.connect('127.0.0.1', other.nfsPort);
    try {
      const r = ok(await c.read(fh, 0, 100));
      expect(new TextDecoder().decode(r.data)).toBe('still here');
    } finally {
      await c.close();
      await other.close();
    }
  });
});

describe('MOUNT and portmap', () => {
  it('MNT of a subdirectory, NOENT for an unknown path, EXPORT and DUMP lists', async () => {
    const m = await MountClient.connect('127.0.0.1', rig.server.mountPort);
    try {
      ok(await nfs.mkdir(root, 'sub'));
      const sub = ok(await m.mnt('/export/sub/'));
      expect(ok(await nfs.getattr(sub.fh)).attr.type).toBe(FileType.DIR);
      expect((await m.mnt('/nothere')).status).toBe(2);
      expect((await m.mnt('/export/missing')).status).toBe(2);
      const ex = await m.exports();
      expect(ex.map((e) => e.dir)).toEqual(['/export']);
      const dump = await m.dump();
      expect(dump.some((d) => d.directory === '/export/sub')).toBe(true);
      await m.umnt('/export/sub');
      expect((await m.dump()).some((d) => d.directory === '/export/sub')).toBe(false);
      await m.umntall();
      await m.null();
    } finally {
      await m.close();
    }
  });

  it('portmap GETPORT finds MOUNT and NFS; SET from loopback registers; DUMP lists', async () => {
    const pm = await PortmapClient.connect('127.0.0.1', rig.server.portmapPort as number);
    try {
      expect(await pm.getport(NFS_PROGRAM_FOR_TESTS, 3, IPPROTO_TCP)).toBe(rig.server.nfsPort);
      expect(await pm.getport(MOUNT_PROGRAM, MOUNT_V3, IPPROTO_TCP)).toBe(rig.server.mountPort);
      expect(await pm.getport(400000, 1, IPPROTO_TCP)).toBe(0);
      expect(await pm.set({ prog: 400000, vers: 1, prot: IPPROTO_TCP, port: 999 })).toBe(true);
      expect(await pm.getport(400000, 1, IPPROTO_TCP)).toBe(999);
      expect((await pm.dump()).length).toBeGreaterThanOrEqual(7);
      expect(await pm.set({ prog: 400000, vers: 1, prot: IPPROTO_TCP, port: 0 }, true)).toBe(true);
      expect(await pm.getport(400000, 1, IPPROTO_TCP)).toBe(0);
    } finally {
      await pm.close();
    }
  });
});

describe('exports policy', () => {
  it('EACCES with root squash: root acts as nobody and cannot write a root-owned directory', async () => {
    const sq = await startRig({ exportOptions: { rootSquash: true }, auth: { uid: 0, gid: 0 } });
    try {
      const { nfs: n, root: r } = sq.mounted;
      // The harness makes the root 0777: tighten it to 0755 (owner root) through the FS.
      await sq.fs.apply({ op: 'setattr', time: { sec: 1, nsec: 0 }, cred: { uid: 0, gid: 0, gids: [] }, target: sq.fs.rootIno, attrs: { mode: 0o755 } });
      expect(ok(await n.getattr(r)).attr.uid).toBe(0);
      // The squashed caller (uid 65534) may neither change the root's mode nor create in it.
      expect((await n.setattr(r, { mode: 0o777 })).status).toBe(FsStatus.PERM);
      const c = await n.create(r, 'denied');
      expect(c.status).toBe(FsStatus.ACCES);
      const m = await n.mkdir(r, 'denied');
      expect(m.status).toBe(FsStatus.ACCES);
    } finally {
      await sq.close();
    }
  });

  it('a read-only export answers ROFS to every change', async () => {
    const ro = await startRig({ exportOptions: { readOnly: true } });
    try {
      const { nfs: n, root: r } = ro.mounted;
      expect((await n.create(r, 'x')).status).toBe(FsStatus.ROFS);
      expect((await n.mkdir(r, 'x')).status).toBe(FsStatus.ROFS);
      expect((await n.setattr(r, { mode: 0o700 })).status).toBe(FsStatus.ROFS);
      expect((await n.remove(r, 'x')).status).toBe(FsStatus.ROFS);
      expect((await n.rename(r, 'a', r, 'b')).status).toBe(FsStatus.ROFS);
      const a = ok(await n.access(r, 0x3f));
      expect(a.access & Access3.MODIFY).toBe(0);
    } finally {
      await ro.close();
    }
  });

  it('a client outside the allowed networks cannot mount (MNT3ERR_ACCES) nor use handles (ACCES)', async () => {
    const closed = await startRig({ exportOptions: { clients: ['127.0.0.1'] } });
    const { startNfsServer } = await import('../../firmware/ts/nfs/server.ts');
    const { realClock } = await import('../../firmware/ts/hal/clock/real.ts');
    const { FH_KEY } = await import('./harness.ts');
    const far = await startNfsServer({ exports: [{ path: '/export', fs: closed.fs, clients: ['10.0.0.0/8'] }], clock: realClock, fhKey: FH_KEY });
    try {
      const m = await MountClient.connect('127.0.0.1', far.mountPort);
      expect((await m.mnt('/export')).status).toBe(13);
      await m.close();
      const c = await Nfs3Client.connect('127.0.0.1', far.nfsPort);
      expect((await c.getattr(closed.mounted.root)).status).toBe(FsStatus.ACCES);
      await c.close();
      const ok2 = await mountNfs({ host: '127.0.0.1', nfsPort: closed.server.nfsPort, mountPort: closed.server.mountPort, path: '/export' });
      await ok2.close();
    } finally {
      await far.close();
      await closed.close();
    }
  });
});

describe('registration with a portmapper', () => {
  it('FS-1 a server on unprivileged ports registers with a portmapper and unregisters at close', async () => {
    const { startNfsServer } = await import('../../firmware/ts/nfs/server.ts');
    const { realClock } = await import('../../firmware/ts/hal/clock/real.ts');
    const pm = await PortmapClient.connect('127.0.0.1', rig.server.portmapPort as number);
    const other = await startNfsServer({ exports: [{ path: '/export', fs: rig.fs }], clock: realClock, registerWith: { host: '127.0.0.1', port: rig.server.portmapPort as number } });
    try {
      expect(await pm.getport(NFS_PROGRAM_FOR_TESTS, 3, IPPROTO_TCP)).toBe(other.nfsPort);
      expect(await pm.getport(MOUNT_PROGRAM, MOUNT_V3, IPPROTO_TCP)).toBe(other.mountPort);
    } finally {
      await other.close();
    }
    expect(await pm.getport(NFS_PROGRAM_FOR_TESTS, 3, IPPROTO_TCP)).toBe(0);
    await pm.close();
  });
});

describe('file-system refusals pass through', () => {
  it('NOTSUPP from a file system without special files reaches the client', async () => {
    const { MemFs } = await import('../../firmware/ts/fsapi/memfs.ts');
    const { FsError } = await import('../../firmware/ts/fsapi/ops.ts');
    const { startNfsServer } = await import('../../firmware/ts/nfs/server.ts');
    const { realClock } = await import('../../firmware/ts/hal/clock/real.ts');
    const fs = new MemFs({ fsid: 4n, rootMode: 0o777 });
    const plain = Object.assign(Object.create(fs) as typeof fs, {
      apply: (c: Parameters<typeof fs.apply>[0]) => (c.op === 'mknod' ? Promise.reject(new FsError(FsStatus.NOTSUPP)) : fs.apply(c)),
    });
    const s = await startNfsServer({ exports: [{ path: '/p', fs: plain }], clock: realClock });
    const m = await mountNfs({ host: '127.0.0.1', nfsPort: s.nfsPort, mountPort: s.mountPort, path: '/p' });
    try {
      const r = await m.nfs.mknod(m.root, 'fifo', { type: FileType.FIFO, attrs: sattr() });
      expect(r.status).toBe(FsStatus.NOTSUPP);
      ok(await m.nfs.mkdir(m.root, 'still-works'));
    } finally {
      await m.close();
      await s.close();
    }
  });
});
