// A TypeScript NFSv3 + MOUNT v3 client over TCP, with every procedure of RFC 1813 and a few
// whole-file helpers. Results are the protocol's own (status + arms), decoded with the same
// codecs the server uses, so tests can check every error case.
import { type Codec, type CodecType, decode } from '../../firmware/ts/nfs/core/xdr.ts';
import * as x from '../../firmware/ts/nfs/core/nfs3.ts';
import { NFS_PROGRAM, NFS_V3, Nfs3Proc, StableHow, sattr } from '../../firmware/ts/nfs/core/nfs3.ts';
import {
  MOUNT_PROGRAM,
  MOUNT_V3,
  MountProc,
  PORTMAP_PROGRAM,
  PORTMAP_V2,
  PmapProc,
  dumpRes,
  exportRes,
  mapping,
  mntArgs,
  mntRes,
  pmapDumpRes,
} from '../../firmware/ts/nfs/core/mount.ts';
import { u32 } from '../../firmware/ts/nfs/core/xdr.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';
import { statusName } from '../../firmware/ts/fsapi/ops.ts';
import { RpcClient, type RpcClientOptions } from './rpc-client.ts';

type A<C> = CodecType<C>;

/** An NFS call that returned a non-OK status (thrown only by the whole-file helpers). */
export class NfsStatusError extends TwinbladeError {
  constructor(
    readonly status: number,
    what: string,
  ) {
    super(`ERR_NFS3_${statusName(status)}`, 'io', `${what}: NFS3ERR_${statusName(status)}`);
    this.name = 'NfsStatusError';
  }
}

export function ok<T extends { status: number }>(r: T, what = 'NFS call'): Extract<T, { status: 0 }> {
  if (r.status !== 0) throw new NfsStatusError(r.status, what);
  return r as Extract<T, { status: 0 }>;
}

export class MountClient {
  constructor(readonly rpc: RpcClient) {}

  static async connect(host: string, port: number, opts?: RpcClientOptions): Promise<MountClient> {
    return new MountClient(await RpcClient.connect(host, port, opts));
  }

  async null(): Promise<void> {
    await this.rpc.call(MOUNT_PROGRAM, MOUNT_V3, MountProc.NULL, new Uint8Array(0));
  }
  async mnt(path: string): Promise<A<typeof mntRes>> {
    return this.res(MountProc.MNT, mntArgs, { path }, mntRes);
  }
  async umnt(path: string): Promise<void> {
    await this.res(MountProc.UMNT, mntArgs, { path }, x.xvoidCodec);
  }
  async umntall(): Promise<void> {
    await this.rpc.call(MOUNT_PROGRAM, MOUNT_V3, MountProc.UMNTALL, new Uint8Array(0));
  }
  async dump(): Promise<A<typeof dumpRes>> {
    const r = await this.rpc.call(MOUNT_PROGRAM, MOUNT_V3, MountProc.DUMP, new Uint8Array(0));
    return dumpRes.dec(r);
  }
  async exports(): Promise<A<typeof exportRes>> {
    const r = await this.rpc.call(MOUNT_PROGRAM, MOUNT_V3, MountProc.EXPORT, new Uint8Array(0));
    return exportRes.dec(r);
  }
  close(): Promise<void> {
    return this.rpc.close();
  }

  private async res<Q, R>(proc: number, ac: Codec<Q>, args: Q, rc: Codec<R>): Promise<R> {
    const r = await this.rpc.call(MOUNT_PROGRAM, MOUNT_V3, proc, (w) => ac.enc(w, args));
    const v = rc.dec(r);
    r.done();
    return v;
  }
}

/** Portmap v2 queries (GETPORT, DUMP, SET, UNSET). */
export class PortmapClient {
  constructor(readonly rpc: RpcClient) {}
  static async connect(host: string, port: number): Promise<PortmapClient> {
    return new PortmapClient(await RpcClient.connect(host, port));
  }
  async getport(prog: number, vers: number, prot: number): Promise<number> {
    const r = await this.rpc.call(PORTMAP_PROGRAM, PORTMAP_V2, PmapProc.GETPORT, (w) => mapping.enc(w, { prog, vers, prot, port: 0 }));
    return u32.dec(r);
  }
  async dump(): Promise<A<typeof pmapDumpRes>> {
    return pmapDumpRes.dec(await this.rpc.call(PORTMAP_PROGRAM, PORTMAP_V2, PmapProc.DUMP, new Uint8Array(0)));
  }
  async set(m: A<typeof mapping>, unset = false): Promise<boolean> {
    const r = await this.rpc.call(PORTMAP_PROGRAM, PORTMAP_V2, unset ? PmapProc.UNSET : PmapProc.SET, (w) => mapping.enc(w, m));
    return u32.dec(r) === 1;
  }
  close(): Promise<void> {
    return this.rpc.close();
  }
}

export class Nfs3Client {
  constructor(readonly rpc: RpcClient) {}

  static async connect(host: string, port: number, opts?: RpcClientOptions): Promise<Nfs3Client> {
    return new Nfs3Client(await RpcClient.connect(host, port, opts));
  }

  close(): Promise<void> {
    return this.rpc.close();
  }

  /** Calls procedure `proc` with already-shaped arguments; decodes with the shared codecs. */
  async callProc<P extends number>(proc: P, args: A<(typeof x.nfs3Codecs)[P]['args']>): Promise<A<(typeof x.nfs3Codecs)[P]['res']>> {
    const c = x.nfs3Codecs[proc] as { args: Codec<unknown>; res: Codec<unknown> };
    const data = (args as { data?: Uint8Array }).data;
    const r = await this.rpc.call(NFS_PROGRAM, NFS_V3, proc, (w) => c.args.enc(w, args), data === undefined ? undefined : data.length + 256);
    const v = c.res.dec(r);
    r.done();
    return v as A<(typeof x.nfs3Codecs)[P]['res']>;
  }

  async null(): Promise<void> {
    await this.rpc.call(NFS_PROGRAM, NFS_V3, Nfs3Proc.NULL, new Uint8Array(0));
  }
  getattr(fh: Uint8Array) {
    return this.callProc(Nfs3Proc.GETATTR, { fh });
  }
  setattr(fh: Uint8Array, attrs: Partial<x.Sattr3>, guard?: x.Fattr3['ctime']) {
    return this.callProc(Nfs3Proc.SETATTR, { fh, attrs: sattr(attrs), guard });
  }
  lookup(dir: Uint8Array, name: string) {
    return this.callProc(Nfs3Proc.LOOKUP, { dir, name });
  }
  access(fh: Uint8Array, access: number) {
    return this.callProc(Nfs3Proc.ACCESS, { fh, access });
  }
  readlink(fh: Uint8Array) {
    return this.callProc(Nfs3Proc.READLINK, { fh });
  }
  read(fh: Uint8Array, offset: number, count: number) {
    return this.callProc(Nfs3Proc.READ, { fh, offset, count });
  }
  /** The data is sent by reference after the header (no copy into the call buffer). */
  async write(fh: Uint8Array, offset: number, data: Uint8Array, stable: number = StableHow.FILE_SYNC) {
    const r = await this.rpc.call(NFS_PROGRAM, NFS_V3, Nfs3Proc.WRITE, (w) => {
      x.fh3.enc(w, fh);
      w.u64(offset);
      w.u32(data.length);
      w.u32(stable);
      w.opaqueTail(data);
    });
    const v = x.writeRes.dec(r);
    r.done();
    return v;
  }
  create(dir: Uint8Array, name: string, how: x.CreateHow = { mode: 0, attrs: sattr({ mode: 0o644 }) }) {
    return this.callProc(Nfs3Proc.CREATE, { where: { dir, name }, how });
  }
  mkdir(dir: Uint8Array, name: string, attrs: Partial<x.Sattr3> = { mode: 0o755 }) {
    return this.callProc(Nfs3Proc.MKDIR, { where: { dir, name }, attrs: sattr(attrs) });
  }
  symlink(dir: Uint8Array, name: string, path: string, attrs: Partial<x.Sattr3> = {}) {
    return this.callProc(Nfs3Proc.SYMLINK, { where: { dir, name }, attrs: sattr(attrs), path });
  }
  mknod(dir: Uint8Array, name: string, what: x.MknodWhat) {
    return this.callProc(Nfs3Proc.MKNOD, { where: { dir, name }, what });
  }
  remove(dir: Uint8Array, name: string) {
    return this.callProc(Nfs3Proc.REMOVE, { dir, name });
  }
  rmdir(dir: Uint8Array, name: string) {
    return this.callProc(Nfs3Proc.RMDIR, { dir, name });
  }
  rename(fromDir: Uint8Array, fromName: string, toDir: Uint8Array, toName: string) {
    return this.callProc(Nfs3Proc.RENAME, { from: { dir: fromDir, name: fromName }, to: { dir: toDir, name: toName } });
  }
  link(fh: Uint8Array, dir: Uint8Array, name: string) {
    return this.callProc(Nfs3Proc.LINK, { fh, link: { dir, name } });
  }
  readdir(dir: Uint8Array, cookie = 0n, count = 8192, verf = new Uint8Array(8)) {
    return this.callProc(Nfs3Proc.READDIR, { dir, cookie, verf, count });
  }
  readdirplus(dir: Uint8Array, cookie = 0n, dircount = 8192, maxcount = 32768, verf = new Uint8Array(8)) {
    return this.callProc(Nfs3Proc.READDIRPLUS, { dir, cookie, verf, dircount, maxcount });
  }
  fsstat(fh: Uint8Array) {
    return this.callProc(Nfs3Proc.FSSTAT, { fh });
  }
  fsinfo(fh: Uint8Array) {
    return this.callProc(Nfs3Proc.FSINFO, { fh });
  }
  pathconf(fh: Uint8Array) {
    return this.callProc(Nfs3Proc.PATHCONF, { fh });
  }
  commit(fh: Uint8Array, offset = 0, count = 0) {
    return this.callProc(Nfs3Proc.COMMIT, { fh, offset, count });
  }

  // ---- whole-file helpers (throw NfsStatusError) -----------------------------------------

  /** Every entry name of a directory (READDIR until eof), "." and ".." excluded. */
  async listDir(dir: Uint8Array, count = 32768): Promise<string[]> {
    const names: string[] = [];
    let cookie = 0n;
    for (;;) {
      const r = ok(await this.readdir(dir, cookie, count), 'READDIR');
      for (const e of r.entries) {
        if (e.name !== '.' && e.name !== '..') names.push(e.name);
        cookie = e.cookie;
      }
      if (r.eof) return names;
    }
  }

  /** Writes `data` as the whole content of a new or truncated file; returns its handle. */
  async writeFile(dir: Uint8Array, name: string, data: Uint8Array, chunk = 1024 * 1024, stable: number = StableHow.FILE_SYNC): Promise<Uint8Array> {
    const c = ok(await this.create(dir, name, { mode: 0, attrs: sattr({ mode: 0o644, size: 0 }) }), 'CREATE');
    const fh = c.fh ?? ok(await this.lookup(dir, name), 'LOOKUP').fh;
    const inflight: Promise<unknown>[] = [];
    for (let off = 0; off < data.length; off += chunk) {
      inflight.push(this.write(fh, off, data.subarray(off, Math.min(data.length, off + chunk)), stable).then((r) => ok(r, 'WRITE')));
      if (inflight.length >= 8) await inflight.shift();
    }
    await Promise.all(inflight);
    if (stable !== StableHow.FILE_SYNC) ok(await this.commit(fh), 'COMMIT');
    return fh;
  }

  /** Reads a whole file. */
  async readFile(fh: Uint8Array, chunk = 1024 * 1024): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let off = 0;
    for (;;) {
      const r = ok(await this.read(fh, off, chunk), 'READ');
      parts.push(r.data.slice());
      off += r.data.length;
      if (r.eof || r.data.length === 0) break;
    }
    const out = new Uint8Array(off);
    let p = 0;
    for (const b of parts) {
      out.set(b, p);
      p += b.length;
    }
    return out;
  }

  /** Resolves a slash-separated path below `root` by LOOKUPs. */
  async lookupPath(root: Uint8Array, path: string): Promise<Uint8Array> {
    let fh = root;
    for (const name of path.split('/').filter((s) => s.length > 0)) fh = ok(await this.lookup(fh, name), `LOOKUP ${name}`).fh;
    return fh;
  }
}

export { decode };
