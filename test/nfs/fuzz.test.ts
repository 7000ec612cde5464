// Fuzzing the RPC server in process: 100,000+ random and mutated RPC records (fast-check).
// Every one gets either no answer (no xid / not a call) or a well-formed reply with the
// caller's xid and a protocol status; nothing throws, and the server's state stays bounded.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { FileType } from '../../firmware/ts/fsapi/ops.ts';
import { MemoryDrc } from '../../firmware/ts/nfs/core/drc.ts';
import { AcceptStat, RecordDecoder, decodeCall, decodeReply, encodeCall, replyBody } from '../../firmware/ts/nfs/core/rpc.ts';
import { type Codec, encode } from '../../firmware/ts/nfs/core/xdr.ts';
import * as x from '../../firmware/ts/nfs/core/nfs3.ts';
import { NFS_PROGRAM, NFS_V3, sattr } from '../../firmware/ts/nfs/core/nfs3.ts';
import { MOUNT_PROGRAM, MOUNT_V3, PORTMAP_PROGRAM, mntArgs, mapping } from '../../firmware/ts/nfs/core/mount.ts';
import { RpcDispatcher } from '../../firmware/ts/nfs/rpc-server.ts';
import { buildNfsPrograms } from '../../firmware/ts/nfs/server.ts';
import { PortmapService } from '../../firmware/ts/nfs/portmap-service.ts';
import { RpcClient } from '../../tools/nfs-client/rpc-client.ts';
import { FH_KEY } from './harness.ts';

const clock = { nowMs: () => 0, wallNs: () => 1_700_000_000_000_000_000n };

async function setup() {
  const fs = new MemFs({ fsid: 9n, rootMode: 0o777, totalBytes: 64 * 1024 * 1024, totalFiles: 5000 });
  const drc = new MemoryDrc(2048);
  const errors: unknown[] = [];
  const p = buildNfsPrograms({ exports: [{ path: '/x', fs, rootSquash: false }], clock, fhKey: FH_KEY, drc });
  const dispatcher = new RpcDispatcher([p.nfs, p.mount, new PortmapService()], {
    onError: (e) => errors.push(e),
    onFatal: (e) => errors.push(e),
  });
  const root = p.handles.encode({ fsid: 9n, ino: 1, gen: 1 });
  // A file and a directory to aim calls at.
  const mk = await fs.apply({ op: 'create', time: { sec: 1, nsec: 0 }, cred: { uid: 0, gid: 0, gids: [] }, dir: fs.rootIno, name: 'f', how: 'unchecked', attrs: {}, ...(() => { const r = fs.allocInode(); return { newIno: r.ino, newGen: r.gen }; })() });
  const file = p.handles.encode({ fsid: 9n, ino: mk.op === 'create' ? mk.obj.ino : 0, gen: 1 });
  return { fs, drc, dispatcher, root, file, errors };
}

/** One well-formed call of every procedure of every program: the corpus to mutate. */
function corpus(root: Uint8Array, file: Uint8Array): Uint8Array[] {
  const e = <T>(c: Codec<T>, v: T) => encode(c, v);
  const w = { dir: root, name: 'n' };
  const args: [number, number, number, Uint8Array][] = [
    [NFS_PROGRAM, NFS_V3, 0, new Uint8Array(0)],
    [NFS_PROGRAM, NFS_V3, 1, e(x.getattrArgs, { fh: file })],
    [NFS_PROGRAM, NFS_V3, 2, e(x.setattrArgs, { fh: file, attrs: sattr({ mode: 0o600, size: 10, atime: 'server', mtime: { sec: 3, nsec: 4 } }), guard: { sec: 1, nsec: 0 } })],
    [NFS_PROGRAM, NFS_V3, 3, e(x.lookupArgs, { dir: root, name: 'f' })],
    [NFS_PROGRAM, NFS_V3, 4, e(x.accessArgs, { fh: root, access: 0x3f })],
    [NFS_PROGRAM, NFS_V3, 5, e(x.readlinkArgs, { fh: file })],
    [NFS_PROGRAM, NFS_V3, 6, e(x.readArgs, { fh: file, offset: 0, count: 4096 })],
    [NFS_PROGRAM, NFS_V3, 7, e(x.writeArgs, { fh: file, offset: 100, count: 8, stable: 0, data: new Uint8Array(8).fill(1) })],
    [NFS_PROGRAM, NFS_V3, 8, e(x.createArgs, { where: w, how: { mode: 2, verf: new Uint8Array(8) } })],
    [NFS_PROGRAM, NFS_V3, 9, e(x.mkdirArgs, { where: w, attrs: sattr() })],
    [NFS_PROGRAM, NFS_V3, 10, e(x.symlinkArgs, { where: w, attrs: sattr(), path: 'p' })],
    [NFS_PROGRAM, NFS_V3, 11, e(x.mknodArgs, { where: w, what: { type: FileType.CHR, attrs: sattr(), spec: { major: 1, minor: 2 } } })],
    [NFS_PROGRAM, NFS_V3, 12, e(x.removeArgs, w)],
    [NFS_PROGRAM, NFS_V3, 13, e(x.rmdirArgs, w)],
    [NFS_PROGRAM, NFS_V3, 14, e(x.renameArgs, { from: w, to: { dir: root, name: 'm' } })],
    [NFS_PROGRAM, NFS_V3, 15, e(x.linkArgs, { fh: file, link: w })],
    [NFS_PROGRAM, NFS_V3, 16, e(x.readdirArgs, { dir: root, cookie: 0n, verf: new Uint8Array(8), count: 4096 })],
    [NFS_PROGRAM, NFS_V3, 17, e(x.readdirplusArgs, { dir: root, cookie: 0n, verf: new Uint8Array(8), dircount: 1024, maxcount: 8192 })],
    [NFS_PROGRAM, NFS_V3, 18, e(x.fsstatArgs, { fh: root })],
    [NFS_PROGRAM, NFS_V3, 19, e(x.fsinfoArgs, { fh: root })],
    [NFS_PROGRAM, NFS_V3, 20, e(x.pathconfArgs, { fh: root })],
    [NFS_PROGRAM, NFS_V3, 21, e(x.commitArgs, { fh: file, offset: 0, count: 0 })],
    [MOUNT_PROGRAM, MOUNT_V3, 1, e(mntArgs, { path: '/x' })],
    [MOUNT_PROGRAM, MOUNT_V3, 2, new Uint8Array(0)],
    [MOUNT_PROGRAM, MOUNT_V3, 3, e(mntArgs, { path: '/x' })],
    [MOUNT_PROGRAM, MOUNT_V3, 5, new Uint8Array(0)],
    [PORTMAP_PROGRAM, 2, 3, e(mapping, { prog: NFS_PROGRAM, vers: 3, prot: 6, port: 0 })],
    [PORTMAP_PROGRAM, 2, 4, new Uint8Array(0)],
  ];
  const cred = RpcClient.credFor({ uid: 1000, gid: 1000, gids: [1, 2] });
  return args.map(([prog, vers, proc, a], i) => replyBody(encodeCall(i + 1, prog, vers, proc, cred, a)).slice());
}

/** A mutation of a valid call: flipped bytes, truncation, extension, spliced words. */
const mutation = fc.record({
  which: fc.nat(),
  flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
  words: fc.array(fc.tuple(fc.nat(), fc.constantFrom(0, 1, 2, 3, 0xffffffff, 0x7fffffff, 64, 255, 256, 1024, 100003)), { maxLength: 3 }),
  cut: fc.option(fc.nat(), { nil: undefined }),
  tail: fc.uint8Array({ maxLength: 12 }),
});

type Mutation = { which: number; flips: [number, number][]; words: [number, number][]; cut: number | undefined; tail: Uint8Array };

function mutate(base: Uint8Array, m: Mutation): Uint8Array {
  let b = base.slice();
  for (const [at, v] of m.words) {
    const pos = (at % Math.max(1, b.length >> 2)) << 2;
    if (pos + 4 <= b.length) new DataView(b.buffer).setUint32(pos, v >>> 0);
  }
  for (const [at, v] of m.flips) {
    const pos = at % Math.max(1, b.length);
    if (pos < b.length) b[pos] = (b[pos] as number) ^ v;
  }
  if (m.cut !== undefined) b = b.subarray(0, m.cut % (b.length + 1));
  if (m.tail.length > 0 && m.which % 4 === 0) {
    const t = new Uint8Array(b.length + m.tail.length);
    t.set(b);
    t.set(m.tail, b.length);
    b = t;
  }
  return b;
}

const okAccept = new Set<number>(Object.values(AcceptStat));

async function check(dispatcher: RpcDispatcher, rec: Uint8Array): Promise<void> {
  const reply = await dispatcher.dispatch(rec, 'tcp', '127.0.0.1');
  const header = decodeCall(rec);
  if (reply === null) {
    // Only records with nothing to answer, or retransmissions of in-progress calls, go unanswered.
    return;
  }
  expect(header.kind).not.toBe('drop');
  const r = decodeReply(replyBody(reply));
  expect(r.xid).toBe(new DataView(rec.buffer, rec.byteOffset).getUint32(0));
  if (r.kind === 'accepted-error') expect(okAccept.has(r.stat)).toBe(true);
}

describe('RPC fuzzing', () => {
  it('FS-1 survives 40,000 random records and 64,000 mutated calls with protocol answers', async () => {
    const s = await setup();
    const base = corpus(s.root, s.file);
    let count = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 160 }), { minLength: 100, maxLength: 100 }), async (recs) => {
        for (const r of recs) await check(s.dispatcher, r);
        count += recs.length;
      }),
      { numRuns: 400, seed: 1 },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 160, maxLength: 160 }), async (ms) => {
        for (const m of ms) await check(s.dispatcher, mutate(base[m.which % base.length] as Uint8Array, m));
        count += ms.length;
      }),
      { numRuns: 400, seed: 2 },
    );
    expect(count).toBeGreaterThanOrEqual(100_000);
    expect(s.errors).toEqual([]);
    // Bounded state: the cache and the file system stay within their named limits.
    expect(s.drc.size).toBeLessThanOrEqual(2048);
    expect(s.fs.inodeCount).toBeLessThanOrEqual(5000);
    // And the server still works.
    const again = await s.dispatcher.dispatch(base[1] as Uint8Array, 'tcp', '127.0.0.1');
    expect(again).not.toBeNull();
  }, 120_000);

  it('the record decoder survives random streams cut anywhere, and bounds its buffer', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 40 }), (chunks) => {
        const d = new RecordDecoder(4096);
        try {
          for (const c of chunks) {
            d.push(c);
            expect(d.bufferedBytes).toBeLessThanOrEqual(4096 + 64 + 4);
          }
        } catch (e) {
          expect((e as { code?: string }).code).toBe('ERR_RPC_RECORD_TOO_LONG');
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('the record decoder splits valid streams the same whatever the chunking', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.uint8Array({ maxLength: 50 }), { minLength: 1, maxLength: 4 }), { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1 }), (records, cuts) => {
        const stream: number[] = [];
        for (const frags of records) {
          frags.forEach((f, i) => {
            const mark = ((i === frags.length - 1 ? 0x80000000 : 0) | f.length) >>> 0;
            stream.push(mark >>> 24, (mark >>> 16) & 255, (mark >>> 8) & 255, mark & 255, ...f);
          });
        }
        const bytes = Uint8Array.from(stream);
        const d = new RecordDecoder(1 << 20);
        const out: number[][] = [];
        for (let off = 0, i = 0; off < bytes.length; i++) {
          const n = cuts[i % cuts.length] as number;
          for (const r of d.push(bytes.subarray(off, off + n))) out.push([...r]);
          off += n;
        }
        expect(out).toEqual(records.map((frags) => frags.flatMap((f) => [...f])));
      }),
      { numRuns: 500 },
    );
  });
});
