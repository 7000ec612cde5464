// Shared set-up for the NFS suites: a server over a MemFs on ephemeral ports, mounted by
// the TypeScript client.
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { realClock } from '../../firmware/ts/hal/clock/real.ts';
import { type NfsServer, type NfsServerOptions, startNfsServer } from '../../firmware/ts/nfs/server.ts';
import { type MountedNfs, mountNfs } from '../../tools/nfs-client/index.ts';
import type { RpcClientOptions } from '../../tools/nfs-client/rpc-client.ts';

export const FH_KEY = new Uint8Array(32).fill(7);

export interface Rig {
  server: NfsServer;
  fs: MemFs;
  mounted: MountedNfs;
  close(): Promise<void>;
}

export async function startRig(o: Partial<NfsServerOptions> & { exportOptions?: object; auth?: RpcClientOptions['auth'] } = {}): Promise<Rig> {
  const fs = new MemFs({ fsid: 0x1234n, rootMode: 0o777, time: { sec: 1_700_000_000, nsec: 0 } });
  const server = await startNfsServer({
    exports: [{ path: '/export', fs, rootSquash: false, ...o.exportOptions }],
    clock: realClock,
    fhKey: FH_KEY,
    writeVerifier: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]),
    ...o,
  });
  const mounted = await mountNfs({ host: '127.0.0.1', nfsPort: server.nfsPort, mountPort: server.mountPort, path: '/export', auth: o.auth ?? { uid: 1000, gid: 1000 } });
  return {
    server,
    fs,
    mounted,
    close: async () => {
      await mounted.close();
      await server.close();
    },
  };
}
