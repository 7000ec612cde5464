// READ replies sent where the data lies (FileSystem.readParts, XdrWriter.opaqueTailParts):
// the bytes on the wire equal what was written at any offset and length, over the copy-on-write
// file system (cached blocks, dirty pages copied, clean pages lent) and the in-memory one.
import { afterEach, describe, expect, it } from 'vitest';
import { XdrReader, XdrWriter } from '../../firmware/ts/nfs/core/xdr.ts';
import { realClock } from '../../firmware/ts/hal/clock/real.ts';
import { type NfsServer, startNfsServer } from '../../firmware/ts/nfs/server.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import type { FileSystem } from '../../firmware/ts/fsapi/ops.ts';
import { StableHow } from '../../firmware/ts/nfs/core/nfs3.ts';
import { type MountedNfs, mountNfs, ok } from '../../tools/nfs-client/index.ts';

const NFS3ERR_ACCES = 13;
const NFS3ERR_ISDIR = 21;

describe('XdrWriter.opaqueTailParts', () => {
  it('sends the parts by reference, in order, padded as one opaque', () => {
    const w = new XdrWriter(16, 4);
    w.u32(7);
    const parts = [Uint8Array.of(1, 2), Uint8Array.of(3, 4, 5), Uint8Array.of(6)];
    w.opaqueTailParts(parts);
    expect(w.length(4)).toBe(4 + 4 + 8);
    const segs = w.segments(4);
    expect(segs.slice(1, 4)).toEqual(parts);
    expect(segs[1]).toBe(parts[0]);
    expect(segs[3]).toBe(parts[2]);
    expect([...w.bytes(4)]).toEqual([0, 0, 0, 7, 0, 0, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]);
    expect(() => w.u32(1)).toThrow();
    const r = new XdrReader(w.bytes(4));
    expect(r.u32()).toBe(7);
    expect([...r.opaque(8)]).toEqual([1, 2, 3, 4, 5, 6]);
    const empty = new XdrWriter(16, 4);
    empty.opaqueTailParts([]);
    expect([...empty.bytes(4)]).toEqual([0, 0, 0, 0]);
  });
});

describe('NFS READ from readParts', () => {
  let server: NfsServer | undefined;
  const mounts: MountedNfs[] = [];
  afterEach(async () => {
    for (const m of mounts.splice(0)) await m.close();
    await server?.close();
    server = undefined;
  });

  async function serve(fs: FileSystem): Promise<(uid: number) => Promise<MountedNfs>> {
    server = await startNfsServer({ exports: [{ path: '/export', fs, rootSquash: false }], clock: realClock, udp: false });
    const s = server;
    return async (uid) => {
      const m = await mountNfs({ host: '127.0.0.1', nfsPort: s.nfsPort, mountPort: s.mountPort, path: '/export', auth: { uid, gid: uid } });
      mounts.push(m);
      return m;
    };
  }

  const size = 300_001;
  const data = Uint8Array.from({ length: size }, (_, i) => (i * 31 + (i >> 12)) % 251);
  const spans: Array<[number, number]> = [[0, 65536], [1, 3], [4095, 4098], [65536 * 2 + 17, 70_000], [size - 5, 100], [size, 10], [123_456, 0]];

  async function checkReads(m: MountedNfs, fh: Uint8Array, when: string): Promise<void> {
    for (const [off, count] of spans) {
      const r = ok(await m.nfs.read(fh, off, count), 'READ');
      const want = data.subarray(off, Math.min(size, off + count));
      expect(r.count, `${when} ${off}+${count}`).toBe(want.length);
      expect(Buffer.from(r.data).equals(Buffer.from(want)), `${when} ${off}+${count}`).toBe(true);
      expect(r.eof, `${when} ${off}+${count}`).toBe(off + count >= size);
      expect(r.attr?.size, `${when} ${off}+${count}`).toBe(size);
    }
  }

  for (const kind of ['cowfs', 'memfs'] as const) {
    it(`FS-1 ${kind}: data at any offset and length, permission and type errors with attributes`, async () => {
      let cowfs: CowFs | undefined;
      let fs: FileSystem;
      if (kind === 'cowfs') {
        const vol = new MemVolume({ blockCount: 8192, stripeBlocks: 4 });
        await mkfs(vol, { fsid: 9n, rootMode: 0o777 });
        cowfs = await CowFs.mount(vol, { cachePagesMax: 64 });
        fs = cowfs;
      } else fs = new MemFs({ fsid: 9n, rootMode: 0o777 });
      const mount = await serve(fs);
      const root = await mount(0);
      const fh = ok(await root.nfs.create(root.root, 'f'), 'CREATE').fh as Uint8Array;
      for (let off = 0; off < size; off += 65536) ok(await root.nfs.write(fh, off, data.subarray(off, off + 65536), StableHow.UNSTABLE), 'WRITE');
      // Dirty pages (copied into the reply), then clean ones after a CP (lent) and, with only
      // 64 pages kept, blocks in the block cache.
      await checkReads(root, fh, 'dirty');
      await cowfs?.takeCp();
      await checkReads(root, fh, 'clean');
      await checkReads(root, fh, 'again');
      // Rewritten after a READ lent its pages: the next READ sees the new bytes.
      const before = ok(await root.nfs.read(fh, 8192, 8192), 'READ').data;
      ok(await root.nfs.write(fh, 8192, new Uint8Array(8192).fill(0xee)), 'WRITE');
      expect(Buffer.from(before).equals(Buffer.from(data.subarray(8192, 16384)))).toBe(true);
      expect(ok(await root.nfs.read(fh, 8192, 8192), 'READ').data.every((b) => b === 0xee)).toBe(true);
      data.set(new Uint8Array(8192).fill(0xee), 8192);

      ok(await root.nfs.setattr(fh, { mode: 0o600 }), 'SETATTR');
      const other = await mount(1000);
      const denied = await other.nfs.read(fh, 0, 10);
      expect(denied.status).toBe(NFS3ERR_ACCES);
      expect(denied.attr?.mode).toBe(0o600);
      const dir = await root.nfs.read(root.root, 0, 10);
      expect(dir.status).toBe(NFS3ERR_ISDIR);
      await cowfs?.close();
    });
  }
});
