// What the NFS service hands the file system when the TCP server reads records in place: a
// large WRITE's data is most of its record's own buffer (so it is handed over and a CoW file
// system keeps it as its pages, fsapi/codec.ts handOverWriteData), a small WRITE's data sits
// in a shared slab (not kept: copied into aligned pages), and neither changes afterwards.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isHandedOver } from '../../firmware/ts/fsapi/codec.ts';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import type { ChangeOp } from '../../firmware/ts/fsapi/ops.ts';
import { realClock } from '../../firmware/ts/hal/clock/real.ts';
import type { RequestKey } from '../../firmware/ts/nfs/core/drc.ts';
import { DirectChangeLog } from '../../firmware/ts/nfs/nfs3-service.ts';
import { type NfsServer, startNfsServer } from '../../firmware/ts/nfs/server.ts';
import { StableHow } from '../../firmware/ts/nfs/core/nfs3.ts';
import { type MountedNfs, mountNfs, ok } from '../../tools/nfs-client/index.ts';
import { FH_KEY } from './harness.ts';

/** The WRITE data the file system was given, and a copy of it as it was then. */
interface SeenWrite {
  data: Uint8Array;
  then: Uint8Array;
}

async function start(): Promise<{ server: NfsServer; mounted: MountedNfs; writes: SeenWrite[] }> {
  const fs = new MemFs({ fsid: 0x77n, rootMode: 0o777 });
  const direct = new DirectChangeLog([fs]);
  const writes: SeenWrite[] = [];
  const changeLog = {
    commit(change: ChangeOp, key: RequestKey, fsid: bigint) {
      if (change.op === 'write') writes.push({ data: change.data, then: change.data.slice() });
      return direct.commit(change, key, fsid);
    },
  };
  const server = await startNfsServer({ exports: [{ path: '/a', fs, rootSquash: false }], clock: realClock, fhKey: FH_KEY, changeLog, udp: false });
  const mounted = await mountNfs({ host: '127.0.0.1', nfsPort: server.nfsPort, mountPort: server.mountPort, path: '/a' });
  return { server, mounted, writes };
}

function patterned(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + (i >>> 8)) & 0xff);
}

let running: { server: NfsServer; mounted: MountedNfs } | undefined;
afterEach(async () => {
  await running?.mounted.close();
  await running?.server.close();
  running = undefined;
  vi.unstubAllEnvs();
});

describe.each([
  { reads: 'in place', env: undefined },
  { reads: 'joined from chunks', env: '0' },
])('WRITE data reaching the file system, records $reads', ({ env }) => {
  it('a 1 MiB WRITE is handed over in its own memory, 4 KiB ones are not kept; none changes afterwards', async () => {
    if (env !== undefined) vi.stubEnv('TWINBLADE_RPC_INPLACE', env);
    const { server, mounted, writes } = await start();
    running = { server, mounted };
    const fh = ok(await mounted.nfs.create(mounted.root, 'f')).fh as Uint8Array;
    const big = patterned(1024 * 1024, 1);
    // Pipelined 4 KiB writes around the large one, so small records share reads and slabs.
    const small = Array.from({ length: 24 }, (_, i) => patterned(4096, i + 2));
    await Promise.all([
      ...small.slice(0, 12).map((d, i) => mounted.nfs.write(fh, (300 + i) * 4096, d, StableHow.UNSTABLE)),
      mounted.nfs.write(fh, 0, big, StableHow.UNSTABLE),
      ...small.slice(12).map((d, i) => mounted.nfs.write(fh, (400 + i) * 4096, d, StableHow.UNSTABLE)),
    ]).then((rs) => rs.forEach((r) => ok(r)));
    // More traffic on the same connection after them.
    for (let i = 0; i < 20; i++) ok(await mounted.nfs.getattr(fh));

    expect(writes).toHaveLength(1 + small.length);
    const large = writes.find((w) => w.data.length === big.length) as SeenWrite;
    expect(isHandedOver(large.data)).toBe(true);
    expect(2 * large.data.length).toBeGreaterThanOrEqual(large.data.buffer.byteLength);
    expect(Buffer.from(large.data).equals(Buffer.from(big))).toBe(true);
    for (const w of writes) expect(Buffer.from(w.data).equals(w.then)).toBe(true);
    if (env === undefined) {
      // Small WRITEs in place: in slabs shared with other records, too little of them to keep.
      for (const w of writes.filter((x) => x.data.length === 4096)) expect(isHandedOver(w.data)).toBe(false);
    }
    const back = ok(await mounted.nfs.read(fh, 0, big.length));
    expect(Buffer.from(back.data).equals(Buffer.from(big))).toBe(true);
  });
});
