// MOUNT protocol version 3 (RFC 1813 appendix I) and portmap version 2 (RFC 1833):
// constants and two-way XDR codecs.
import { type CodecType, array, list, opaque, string, struct, u32, xvoid } from './xdr.ts';
import { res } from './nfs3.ts';

export const MOUNT_PROGRAM = 100005;
export const MOUNT_V3 = 3;
export const MountProc = { NULL: 0, MNT: 1, DUMP: 2, UMNT: 3, UMNTALL: 4, EXPORT: 5 } as const;
export const MountStat = {
  OK: 0,
  PERM: 1,
  NOENT: 2,
  IO: 5,
  ACCES: 13,
  NOTDIR: 20,
  INVAL: 22,
  NAMETOOLONG: 63,
  NOTSUPP: 10004,
  SERVERFAULT: 10006,
} as const;

export const mountLimits = {
  /** MNTPATHLEN and MNTNAMLEN. */
  pathBytesMax: 1024,
  nameBytesMax: 255,
  /** Entries in a decoded DUMP or EXPORT list (client side). */
  listEntriesMax: 1 << 16,
  authFlavorsMax: 16,
} as const;

export const dirpath = string(mountLimits.pathBytesMax);
export const mntArgs = struct({ path: dirpath });
export const mntRes = res(struct({ fh: opaque(64), authFlavors: array(u32, mountLimits.authFlavorsMax) }), xvoid);
export type MntRes = CodecType<typeof mntRes>;
export const mountBody = struct({ hostname: string(mountLimits.nameBytesMax), directory: dirpath });
export const dumpRes = list(mountBody, mountLimits.listEntriesMax);
export const umntArgs = mntArgs;
export const exportNode = struct({ dir: dirpath, groups: list(string(mountLimits.nameBytesMax), mountLimits.listEntriesMax) });
export const exportRes = list(exportNode, mountLimits.listEntriesMax);

export const PORTMAP_PROGRAM = 100000;
export const PORTMAP_V2 = 2;
export const PORTMAP_PORT = 111;
export const PmapProc = { NULL: 0, SET: 1, UNSET: 2, GETPORT: 3, DUMP: 4, CALLIT: 5 } as const;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const mapping = struct({ prog: u32, vers: u32, prot: u32, port: u32 });
export type Mapping = CodecType<typeof mapping>;
export const pmapDumpRes = list(mapping, mountLimits.listEntriesMax);
