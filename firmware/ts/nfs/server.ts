// The standalone NFS server: composes portmap, MOUNT and NFSv3 over TCP and UDP around the
// injected ports (a FileSystem per export, the ChangeLog, the duplicate-request cache and a
// Clock). The blade daemon composes the same pieces with the real file system and NVRAM log.
import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.ts';
import type { FileSystem } from '../fsapi/ops.ts';
import { ExportPolicy, type ExportOptions } from './core/exports.ts';
import { type DuplicateRequestCache, MemoryDrc } from './core/drc.ts';
import { IPPROTO_TCP, IPPROTO_UDP, MOUNT_PROGRAM, MOUNT_V3, type Mapping, PORTMAP_PROGRAM, PORTMAP_V2, PmapProc, mapping } from './core/mount.ts';
import { TwinbladeError } from '../core/errors.ts';
import { RpcClient } from './rpc-client.ts';
import { NFS_PROGRAM, NFS_V3 } from './core/nfs3.ts';
import { FileHandleCodec } from './fh.ts';
import { type ChangeLog, DirectChangeLog, Nfs3Service, type NfsExport } from './nfs3-service.ts';
import { MountService } from './mount-service.ts';
import { PortmapService } from './portmap-service.ts';
import { type DispatcherOptions, type Listener, RpcDispatcher, type RpcServerLimits, listenTcp, listenUdp, rpcServerLimits } from './rpc-server.ts';

export interface ExportConfig extends ExportOptions {
  path: string;
  fs: FileSystem;
}

export interface NfsServerOptions {
  exports: readonly ExportConfig[];
  clock: Clock;
  /** Address to listen on (default 127.0.0.1; "::" or "0.0.0.0" for all). */
  host?: string;
  /** Ports; 0 picks an ephemeral one. MOUNT defaults to its own ephemeral port; portmap is off unless given. */
  ports?: { nfs?: number; mount?: number; portmap?: number };
  /** Serve UDP as well as TCP (default true). */
  udp?: boolean;
  /** Default: applies changes directly, in order (no NVRAM log). */
  changeLog?: ChangeLog;
  /** Default: a bounded in-memory cache. */
  drc?: DuplicateRequestCache;
  /** The pair's file-handle key (at least 16 bytes). Default: random, so handles die with the process. */
  fhKey?: Uint8Array;
  /** The 8-byte write verifier (from the boot epoch). Default: random per start. */
  writeVerifier?: Uint8Array;
  limits?: Partial<RpcServerLimits>;
  onError?: DispatcherOptions['onError'];
  /**
   * Registers NFS 3 and MOUNT 3 with an existing portmapper (e.g. the host's rpcbind on
   * 127.0.0.1:111) at start and unregisters them at close, so that clients that discover
   * ports through port 111 find a server on unprivileged ports.
   */
  registerWith?: { host: string; port: number };
}

export interface NfsServer {
  readonly nfsPort: number;
  readonly mountPort: number;
  readonly portmapPort: number | undefined;
  readonly nfs: Nfs3Service;
  readonly mount: MountService;
  readonly dispatcher: RpcDispatcher;
  close(): Promise<void>;
}

/** Builds the RPC programs without opening sockets (in-process tests and fuzzing use this). */
export function buildNfsPrograms(o: Omit<NfsServerOptions, 'host' | 'ports' | 'udp' | 'limits'>): {
  exports: NfsExport[];
  nfs: Nfs3Service;
  mount: MountService;
  handles: FileHandleCodec;
  changeLog: ChangeLog;
} {
  const exports: NfsExport[] = o.exports.map((e) => ({ path: e.path, fs: e.fs, policy: new ExportPolicy(e) }));
  const handles = new FileHandleCodec(o.fhKey ?? randomBytes(32));
  const changeLog = o.changeLog ?? new DirectChangeLog(exports.map((e) => e.fs));
  const nfs = new Nfs3Service({
    exports,
    changeLog,
    drc: o.drc ?? new MemoryDrc(),
    clock: o.clock,
    handles,
    writeVerifier: o.writeVerifier ?? randomBytes(8),
  });
  const mount = new MountService(exports, handles);
  return { exports, nfs, mount, handles, changeLog };
}

export async function startNfsServer(o: NfsServerOptions): Promise<NfsServer> {
  const host = o.host ?? '127.0.0.1';
  const limits: RpcServerLimits = { ...rpcServerLimits, ...o.limits };
  const { nfs, mount } = buildNfsPrograms(o);
  const portmap = new PortmapService();
  const programs = o.ports?.portmap !== undefined ? [nfs, mount, portmap] : [nfs, mount];
  const dispatcher = new RpcDispatcher(programs, o.onError ? { onError: o.onError } : {});
  const listeners: Listener[] = [];
  const udp = o.udp ?? true;
  const open = async (port: number): Promise<number> => {
    const t = await listenTcp(dispatcher, host, port, limits);
    listeners.push(t);
    if (udp) listeners.push(await listenUdp(dispatcher, host, t.port, limits));
    return t.port;
  };
  try {
    const nfsPort = await open(o.ports?.nfs ?? 0);
    const mountPort = o.ports?.mount !== undefined && o.ports.mount !== 0 && o.ports.mount === o.ports.nfs ? nfsPort : await open(o.ports?.mount ?? 0);
    let portmapPort: number | undefined;
    if (o.ports?.portmap !== undefined) {
      portmapPort = await open(o.ports.portmap);
      for (const prot of udp ? [IPPROTO_TCP, IPPROTO_UDP] : [IPPROTO_TCP]) {
        portmap.set({ prog: NFS_PROGRAM, vers: NFS_V3, prot, port: nfsPort });
        portmap.set({ prog: MOUNT_PROGRAM, vers: MOUNT_V3, prot, port: mountPort });
        portmap.set({ prog: portmap.prog, vers: portmap.versLow, prot, port: portmapPort });
      }
    }
    let unregister = async (): Promise<void> => undefined;
    if (o.registerWith !== undefined) unregister = await registerWithPortmapper(o.registerWith, nfsPort, mountPort, udp);
    return {
      nfsPort,
      mountPort,
      portmapPort,
      nfs,
      mount,
      dispatcher,
      close: async () => {
        await unregister().catch(() => undefined);
        await Promise.all(listeners.map((l) => l.close()));
      },
    };
  } catch (e) {
    await Promise.all(listeners.map((l) => l.close()));
    throw e;
  }
}

/** SETs our mappings at a portmapper; returns the function that UNSETs them. */
async function registerWithPortmapper(at: { host: string; port: number }, nfsPort: number, mountPort: number, udp: boolean): Promise<() => Promise<void>> {
  const rpc = await RpcClient.connect(at.host, at.port, { auth: 'none' });
  const call = async (proc: number, m: Mapping): Promise<boolean> => {
    const r = await rpc.call(PORTMAP_PROGRAM, PORTMAP_V2, proc, (w) => mapping.enc(w, m));
    return r.u32() === 1;
  };
  try {
    const maps: Mapping[] = [];
    for (const prot of udp ? [IPPROTO_TCP, IPPROTO_UDP] : [IPPROTO_TCP]) {
      maps.push({ prog: NFS_PROGRAM, vers: NFS_V3, prot, port: nfsPort }, { prog: MOUNT_PROGRAM, vers: MOUNT_V3, prot, port: mountPort });
    }
    // Drop stale registrations of a previous run first (UNSET covers every protocol).
    await call(PmapProc.UNSET, { prog: NFS_PROGRAM, vers: NFS_V3, prot: 0, port: 0 });
    await call(PmapProc.UNSET, { prog: MOUNT_PROGRAM, vers: MOUNT_V3, prot: 0, port: 0 });
    for (const m of maps) {
      if (!(await call(PmapProc.SET, m))) throw new TwinbladeError('ERR_NFS_PORTMAP_SET', 'io', `portmapper refused ${m.prog}/${m.vers}/${m.prot} -> ${m.port}`);
    }
  } catch (e) {
    await rpc.close();
    throw e;
  }
  return async () => {
    try {
      await call(PmapProc.UNSET, { prog: NFS_PROGRAM, vers: NFS_V3, prot: 0, port: 0 });
      await call(PmapProc.UNSET, { prog: MOUNT_PROGRAM, vers: MOUNT_V3, prot: 0, port: 0 });
    } finally {
      await rpc.close();
    }
  };
}
