// The MOUNT v3 program (RFC 1813 appendix I): hands out the root handle of an export (or of
// a directory below it), and keeps the advisory list of who mounted what (DUMP, UMNT).
import { FileType, FsError } from '../fsapi/ops.ts';
import { AcceptStat, AuthFlavor, beginAcceptedReply } from './core/rpc.ts';
import { XdrReader } from './core/xdr.ts';
import { MOUNT_PROGRAM, MOUNT_V3, MountProc, MountStat, dumpRes, exportRes, mntArgs, mntRes } from './core/mount.ts';
import type { Nfsstat3Err } from './core/nfs3.ts';
import type { FileHandleCodec } from './fh.ts';
import type { NfsExport } from './nfs3-service.ts';
import type { CallContext, RpcProgram } from './rpc-server.ts';
import { procUnavail } from './rpc-server.ts';

export const mountServiceLimits = {
  /** Entries kept in the advisory mount list (DUMP); the oldest are dropped beyond it. */
  mountListEntriesMax: 4096,
} as const;

/** "/a//b/" → "/a/b" (clients differ in how they spell a path). */
export function normalizeExportPath(p: string): string {
  const parts = p.split('/').filter((s) => s.length > 0 && s !== '.');
  return '/' + parts.join('/');
}

export class MountService implements RpcProgram {
  readonly prog = MOUNT_PROGRAM;
  readonly versLow = MOUNT_V3;
  readonly versHigh = MOUNT_V3;
  /** "client|path" → entry, in insertion order. */
  private readonly mounts = new Map<string, { hostname: string; directory: string }>();

  constructor(
    private readonly exports: readonly NfsExport[],
    private readonly handles: FileHandleCodec,
  ) {}

  async handle(ctx: CallContext): Promise<ReturnType<typeof beginAcceptedReply>> {
    const { call } = ctx;
    const r = new XdrReader(call.record, call.argsOffset);
    const ok = () => beginAcceptedReply(call.xid, AcceptStat.SUCCESS);
    switch (call.proc) {
      case MountProc.NULL:
        r.done();
        return ok();
      case MountProc.MNT: {
        const { path } = mntArgs.dec(r);
        r.done();
        const w = ok();
        mntRes.enc(w, await this.mnt(ctx.client, path));
        return w;
      }
      case MountProc.DUMP: {
        r.done();
        const w = ok();
        dumpRes.enc(w, [...this.mounts.values()]);
        return w;
      }
      case MountProc.UMNT: {
        const { path } = mntArgs.dec(r);
        r.done();
        this.mounts.delete(`${ctx.client}|${normalizeExportPath(path)}`);
        return ok();
      }
      case MountProc.UMNTALL: {
        r.done();
        for (const [k, v] of this.mounts) if (v.hostname === ctx.client) this.mounts.delete(k);
        return ok();
      }
      case MountProc.EXPORT: {
        r.done();
        const w = ok();
        exportRes.enc(
          w,
          this.exports.map((e) => ({ dir: e.path, groups: e.policy.clients.filter((c) => c !== '*') })),
        );
        return w;
      }
      default:
        return procUnavail(ctx);
    }
  }

  private async mnt(client: string, rawPath: string): Promise<ReturnType<typeof mntRes.dec>> {
    const path = normalizeExportPath(rawPath);
    // The longest export path that is the mount path or one of its ancestors.
    let exp: NfsExport | undefined;
    for (const e of this.exports) {
      const ep = normalizeExportPath(e.path);
      if ((path === ep || path.startsWith(ep === '/' ? '/' : ep + '/')) && (exp === undefined || ep.length > normalizeExportPath(exp.path).length)) exp = e;
    }
    if (exp === undefined) return { status: MountStat.NOENT };
    if (!exp.policy.allows(client)) return { status: MountStat.ACCES };
    const rest = path.slice(normalizeExportPath(exp.path).length).split('/').filter((s) => s.length > 0);
    try {
      let attr = await exp.fs.getattr(exp.fs.rootIno);
      for (const name of rest) {
        if (attr.type !== FileType.DIR) return { status: MountStat.NOTDIR };
        attr = await exp.fs.lookup({ ino: attr.ino, gen: attr.gen }, name);
      }
      if (attr.type !== FileType.DIR) return { status: MountStat.NOTDIR };
      const key = `${client}|${path}`;
      this.mounts.delete(key);
      this.mounts.set(key, { hostname: client, directory: path });
      if (this.mounts.size > mountServiceLimits.mountListEntriesMax) {
        const oldest = this.mounts.keys().next().value;
        if (oldest !== undefined) this.mounts.delete(oldest);
      }
      return { status: 0, fh: this.handles.encode({ fsid: exp.fs.fsid, ino: attr.ino, gen: attr.gen }), authFlavors: [AuthFlavor.SYS, AuthFlavor.NONE] };
    } catch (e) {
      if (e instanceof FsError) {
        // The MOUNT statuses are a subset of NFSv3's, with the same numbers.
        const known: readonly number[] = Object.values(MountStat);
        return { status: (known.includes(e.status) ? e.status : MountStat.SERVERFAULT) as Nfsstat3Err };
      }
      throw e;
    }
  }
}
