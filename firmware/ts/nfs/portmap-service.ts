// Portmap version 2 (RFC 1833): maps (program, version, protocol) to a port so that clients
// that discover ports through port 111 find our MOUNT and NFS services. Only local callers
// may SET or UNSET, and only their own registrations are expected there.
import { AcceptStat, beginAcceptedReply } from './core/rpc.ts';
import { XdrReader, bool as xbool, u32 as xu32 } from './core/xdr.ts';
import { type Mapping, PORTMAP_PROGRAM, PORTMAP_V2, PmapProc, mapping, pmapDumpRes } from './core/mount.ts';
import type { CallContext, RpcProgram } from './rpc-server.ts';
import { procUnavail } from './rpc-server.ts';

export const portmapLimits = {
  /** Registrations kept; SET beyond it answers false. */
  mappingsMax: 256,
} as const;

function isLoopback(addr: string): boolean {
  return addr === '::1' || addr.startsWith('127.');
}

export class PortmapService implements RpcProgram {
  readonly prog = PORTMAP_PROGRAM;
  readonly versLow = PORTMAP_V2;
  readonly versHigh = PORTMAP_V2;
  private readonly map = new Map<string, Mapping>();

  constructor(initial: readonly Mapping[] = []) {
    for (const m of initial) this.set(m);
  }

  set(m: Mapping): boolean {
    const k = `${m.prog}|${m.vers}|${m.prot}`;
    const cur = this.map.get(k);
    if (cur !== undefined) return cur.port === m.port;
    if (this.map.size >= portmapLimits.mappingsMax) return false;
    this.map.set(k, { ...m });
    return true;
  }

  /** Removes every protocol's mapping of (prog, vers), as RFC 1833 UNSET does. */
  unset(prog: number, vers: number): boolean {
    let any = false;
    for (const [k, m] of this.map) {
      if (m.prog === prog && m.vers === vers) {
        this.map.delete(k);
        any = true;
      }
    }
    return any;
  }

  getport(prog: number, vers: number, prot: number): number {
    return this.map.get(`${prog}|${vers}|${prot}`)?.port ?? 0;
  }

  handle(ctx: CallContext) {
    const { call } = ctx;
    const r = new XdrReader(call.record, call.argsOffset);
    const w = beginAcceptedReply(call.xid, AcceptStat.SUCCESS);
    switch (call.proc) {
      case PmapProc.NULL:
        r.done();
        return w;
      case PmapProc.SET:
      case PmapProc.UNSET: {
        const m = mapping.dec(r);
        r.done();
        const local = isLoopback(ctx.client);
        xbool.enc(w, local && (call.proc === PmapProc.SET ? this.set(m) : this.unset(m.prog, m.vers)));
        return w;
      }
      case PmapProc.GETPORT: {
        const m = mapping.dec(r);
        r.done();
        xu32.enc(w, this.getport(m.prog, m.vers, m.prot));
        return w;
      }
      case PmapProc.DUMP:
        r.done();
        pmapDumpRes.enc(w, [...this.map.values()]);
        return w;
      default:
        return procUnavail(ctx);
    }
  }
}
