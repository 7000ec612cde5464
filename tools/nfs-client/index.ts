// The NFS client library's entry point: connect, mount an export, get its root handle.
import { MountClient, Nfs3Client, ok } from './nfs-client.ts';
import type { RpcClientOptions } from './rpc-client.ts';

export * from './nfs-client.ts';
export * from './rpc-client.ts';

export interface MountedNfs {
  nfs: Nfs3Client;
  mount: MountClient;
  root: Uint8Array;
  /** UMNT and close both connections. */
  close(): Promise<void>;
}

/** Connects to MOUNT and NFS, mounts `path`, returns the clients and the root handle. */
export async function mountNfs(o: { host: string; nfsPort: number; mountPort: number; path: string } & RpcClientOptions): Promise<MountedNfs> {
  const mount = await MountClient.connect(o.host, o.mountPort, o);
  try {
    const m = ok(await mount.mnt(o.path), `MNT ${o.path}`);
    const nfs = await Nfs3Client.connect(o.host, o.nfsPort, o);
    return {
      nfs,
      mount,
      root: m.fh,
      close: async () => {
        await mount.umnt(o.path).catch(() => undefined);
        await Promise.all([nfs.close(), mount.close()]);
      },
    };
  } catch (e) {
    await mount.close();
    throw e;
  }
}
