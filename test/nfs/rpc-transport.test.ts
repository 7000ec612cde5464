// The RPC layer's answers to malformed calls (RFC 5531), TCP record marking across
// fragments, pipelining, bounded per-connection memory, UDP, and isolation between clients.
// Every TCP suite runs twice: records read in place (the default) and joined from node's
// chunks (TWINBLADE_RPC_INPLACE=0, the fallback when node cannot adopt a socket).
import dgram from 'node:dgram';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AcceptStat, AuthFlavor, AuthStat, decodeReply, encodeCall, frameForTcp, replyBody } from '../../firmware/ts/nfs/core/rpc.ts';
import { XdrWriter, encode } from '../../firmware/ts/nfs/core/xdr.ts';
import * as x from '../../firmware/ts/nfs/core/nfs3.ts';
import { NFS_PROGRAM, NFS_V3, Nfs3Proc } from '../../firmware/ts/nfs/core/nfs3.ts';
import { FsStatus } from '../../firmware/ts/fsapi/ops.ts';
import { mntArgs, mntRes } from '../../firmware/ts/nfs/core/mount.ts';
import { Nfs3Client, RpcClient, RpcError, mountNfs, ok } from '../../tools/nfs-client/index.ts';
import { type Rig, startRig } from './harness.ts';

let rig: Rig;

const readModes = [
  { reads: 'records read in place', env: undefined },
  { reads: 'records joined from chunks', env: '0' },
] as const;

async function expectRpcError(p: Promise<unknown>, code: string): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RpcError);
    expect((e as RpcError).code).toBe(code);
    return e as RpcError;
  }
  throw new Error(`expected ${code}`);
}

describe.each(readModes)('TCP with $reads', ({ env }) => {
  beforeAll(async () => {
    if (env !== undefined) vi.stubEnv('TWINBLADE_RPC_INPLACE', env);
    rig = await startRig({ limits: { recordBytesMax: 2 * 1024 * 1024 } });
  });
  afterAll(async () => {
    await rig.close();
    vi.unstubAllEnvs();
  });

  describe('RPC error answers', () => {
    it('PROG_UNAVAIL, PROG_MISMATCH (with the supported range), PROC_UNAVAIL, GARBAGE_ARGS', async () => {
      const rpc = rig.mounted.nfs.rpc;
      await expectRpcError(rpc.call(123456, 1, 0, new Uint8Array(0)), 'ERR_RPC_PROG_UNAVAIL');
      const mm = await expectRpcError(rpc.call(NFS_PROGRAM, 2, 0, new Uint8Array(0)), 'ERR_RPC_PROG_MISMATCH');
      expect(mm.reply).toMatchObject({ low: 3, high: 3 });
      await expectRpcError(rpc.call(NFS_PROGRAM, NFS_V3, 99, new Uint8Array(0)), 'ERR_RPC_PROC_UNAVAIL');
      await expectRpcError(rpc.call(NFS_PROGRAM, NFS_V3, Nfs3Proc.GETATTR, new Uint8Array([0, 0, 0, 200])), 'ERR_RPC_GARBAGE_ARGS');
      const good = encode(x.getattrArgs, { fh: rig.mounted.root });
      await expectRpcError(rpc.call(NFS_PROGRAM, NFS_V3, Nfs3Proc.GETATTR, new Uint8Array([...good, 0, 0, 0, 0])), 'ERR_RPC_GARBAGE_ARGS');
      await expectRpcError(rpc.call(NFS_PROGRAM, NFS_V3, Nfs3Proc.NULL, new Uint8Array(4)), 'ERR_RPC_GARBAGE_ARGS');
      // The connection is still good after all of that.
      ok(await rig.mounted.nfs.getattr(rig.mounted.root));
    });

    it('RPC_MISMATCH for RPC version 3; AUTH_ERROR for unknown flavours and bad verifiers', async () => {
      const rpc = rig.mounted.nfs.rpc;
      const w = new XdrWriter(64, 4);
      for (const v of [0xabc, 0, 3, NFS_PROGRAM, 3, 0, 0, 0, 0, 0]) w.u32(v);
      const raw = await rawExchange(rig.server.nfsPort, frameForTcp(w));
      expect(decodeReply(raw)).toMatchObject({ xid: 0xabc, kind: 'rpc-mismatch', low: 2, high: 2 });

      const saved = rpc.cred;
      rpc.cred = { flavor: AuthFlavor.RPCSEC_GSS, body: new Uint8Array(8) };
      const e = await expectRpcError(rpc.call(NFS_PROGRAM, NFS_V3, 0, new Uint8Array(0)), 'ERR_RPC_AUTH_ERROR');
      expect(e.reply).toMatchObject({ stat: AuthStat.BADCRED });
      rpc.cred = { flavor: AuthFlavor.SYS, body: new Uint8Array([0, 0, 0, 1]) };
      await expectRpcError(rpc.call(NFS_PROGRAM, NFS_V3, 0, new Uint8Array(0)), 'ERR_RPC_AUTH_ERROR');
      rpc.cred = saved;

      const v = new XdrWriter(64, 4);
      for (const n of [0xabd, 0, 2, NFS_PROGRAM, 3, 0, 0, 0, AuthFlavor.SYS, 0]) v.u32(n);
      expect(decodeReply(await rawExchange(rig.server.nfsPort, frameForTcp(v)))).toMatchObject({ kind: 'auth-error', stat: AuthStat.BADVERF });
    });

    it('AUTH_NONE calls are served as the anonymous user', async () => {
      const c = await Nfs3Client.connect('127.0.0.1', rig.server.nfsPort, { auth: 'none' });
      try {
        const r = ok(await c.create(rig.mounted.root, 'anon-file'));
        expect(r.attr?.uid).toBe(65534);
      } finally {
        await c.close();
      }
    });
  });

  describe('TCP record marking and flow control', () => {
    it('reassembles a call split into many fragments and delivered byte by byte', async () => {
      const c = ok(await rig.mounted.nfs.create(rig.mounted.root, 'frag'));
      const data = new Uint8Array(3000).map((_, i) => i & 0xff);
      const args = encode(x.writeArgs, { fh: c.fh as Uint8Array, offset: 0, count: data.length, stable: 2, data });
      const body = replyBody(encodeCall(0x1111, NFS_PROGRAM, NFS_V3, Nfs3Proc.WRITE, RpcClient.credFor({ uid: 1000, gid: 1000 }), args));
      // Fragments of 1..700 bytes, the last one flagged.
      const parts: Uint8Array[] = [];
      for (let off = 0, k = 1; off < body.length; k = (k * 7 + 3) % 700 + 1) {
        const end = Math.min(body.length, off + k);
        const mark = new Uint8Array(4);
        new DataView(mark.buffer).setUint32(0, ((end === body.length ? 0x80000000 : 0) | (end - off)) >>> 0);
        parts.push(mark, body.subarray(off, end));
        off = end;
      }
      const stream = Buffer.concat(parts);
      const reply = await rawExchange(rig.server.nfsPort, stream, 1);
      const r = decodeReply(reply);
      expect(r.kind).toBe('success');
      if (r.kind === 'success') expect(x.writeRes.dec(r.results)).toMatchObject({ status: 0, count: 3000 });
      const back = ok(await rig.mounted.nfs.read(c.fh as Uint8Array, 0, 4000));
      expect(Buffer.from(back.data).equals(Buffer.from(data))).toBe(true);
    });

    it('answers hundreds of pipelined calls on one connection, matched by xid', async () => {
      const nfs = rig.mounted.nfs;
      const results = await Promise.all(Array.from({ length: 500 }, (_, i) => (i % 2 === 0 ? nfs.getattr(rig.mounted.root) : nfs.lookup(rig.mounted.root, `nope-${i}`))));
      results.forEach((r, i) => expect(r.status).toBe(i % 2 === 0 ? 0 : FsStatus.NOENT));
    });

    it('closes a connection that announces an oversized record; other clients are unaffected', async () => {
      const sock = net.connect(rig.server.nfsPort, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      const closed = new Promise((r) => sock.once('close', r));
      sock.write(Buffer.from([0x80 | 0x10, 0, 0, 0])); // 256 MiB
      await closed;
      ok(await rig.mounted.nfs.getattr(rig.mounted.root));
    });

    it('a client that stalls mid-record does not delay others', async () => {
      const sock = net.connect(rig.server.nfsPort, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      sock.write(Buffer.from([0x80, 0, 0x10, 0, 1, 2, 3])); // promises 4 KiB, sends 3 bytes
      // If the stalled record blocked the server these calls would hang (and the test time out).
      for (let i = 0; i < 20; i++) ok(await rig.mounted.nfs.getattr(rig.mounted.root));
      sock.destroy();
    });

    it('a client that never reads its replies only stalls itself', async () => {
      const sock = net.connect(rig.server.nfsPort, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      sock.pause();
      const call = frameForTcp(encodeCall(1, NFS_PROGRAM, NFS_V3, Nfs3Proc.READ, RpcClient.credFor({}), encode(x.readArgs, { fh: rig.mounted.root, offset: 0, count: 1 })));
      const many = Buffer.concat(Array.from({ length: 2000 }, () => Buffer.from(call)));
      sock.write(many);
      for (let i = 0; i < 10; i++) ok(await rig.mounted.nfs.getattr(rig.mounted.root));
      sock.destroy();
    });
  });

  describe('connection limits', () => {
    it('refuses connections beyond connectionsMax at once, and closes idle ones later', async () => {
      const small = await startRig({ limits: { connIdleTimeoutMs: 2000, connectionsMax: 2 } });
      try {
        // The NFS listener holds the rig client's connection; one more fits.
        const closed: string[] = [];
        const idle = net.connect(small.server.nfsPort, '127.0.0.1');
        await new Promise((r) => idle.once('connect', r));
        const idleClosed = new Promise((r) => idle.once('close', () => r(closed.push('idle'))));
        const extra = net.connect(small.server.nfsPort, '127.0.0.1');
        extra.on('error', () => undefined);
        const extraClosed = new Promise((r) => extra.once('close', () => r(closed.push('extra'))));
        await Promise.all([idleClosed, extraClosed]);
        // The one beyond the limit is closed on accept, long before the idle one times out.
        expect(closed).toEqual(['extra', 'idle']);
      } finally {
        await small.close().catch(() => undefined);
      }
    });
  });

  describe('back-pressure', () => {
    it('a client that stops reading stops the server executing its calls, and gets every reply once it reads', async () => {
      const { MemFs } = await import('../../firmware/ts/fsapi/memfs.ts');
      const { startNfsServer } = await import('../../firmware/ts/nfs/server.ts');
      const { realClock } = await import('../../firmware/ts/hal/clock/real.ts');
      const { FH_KEY } = await import('./harness.ts');
      const fs = new MemFs({ fsid: 0x99n, rootMode: 0o777 });
      let reads = 0;
      // READ goes through readParts when the file system has it (read otherwise): count both.
      const counting = Object.assign(Object.create(fs) as typeof fs, {
        read: (ref: Parameters<typeof fs.read>[0], off: number, n: number) => {
          reads++;
          return fs.read(ref, off, n);
        },
        readParts: (...a: Parameters<typeof fs.readParts>) => {
          reads++;
          return fs.readParts(...a);
        },
      });
      const s = await startNfsServer({ exports: [{ path: '/bp', fs: counting, rootSquash: false }], clock: realClock, fhKey: FH_KEY });
      const m = await mountNfs({ host: '127.0.0.1', nfsPort: s.nfsPort, mountPort: s.mountPort, path: '/bp' });
      try {
        const fh = ok(await m.nfs.create(m.root, 'big')).fh as Uint8Array;
        ok(await m.nfs.write(fh, 0, new Uint8Array(64 * 1024)));
        await m.close();
        const sock = net.connect(s.nfsPort, '127.0.0.1');
        await new Promise((r) => sock.once('connect', r));
        sock.pause();
        const calls = 1500;
        const call = frameForTcp(encodeCall(9, NFS_PROGRAM, NFS_V3, Nfs3Proc.READ, RpcClient.credFor({}), encode(x.readArgs, { fh, offset: 0, count: 64 * 1024 })));
        sock.write(Buffer.concat(Array.from({ length: calls }, () => Buffer.from(call))));
        await new Promise((r) => setTimeout(r, 500));
        const executedWhileBlocked = reads;
        expect(executedWhileBlocked).toBeLessThan(calls);
        // Now read everything: every call is answered.
        let bytes = 0;
        await new Promise<void>((resolve) => {
          let records = 0;
          let buf = Buffer.alloc(0);
          sock.on('data', (d: Buffer) => {
            bytes += d.length;
            buf = Buffer.concat([buf, d]);
            while (buf.length >= 4) {
              const len = buf.readUInt32BE(0) & 0x7fffffff;
              if (buf.length < 4 + len) break;
              buf = buf.subarray(4 + len);
              if (++records === calls) resolve();
            }
          });
          sock.resume();
        });
        expect(reads).toBe(calls);
        expect(bytes).toBeGreaterThan(calls * 64 * 1024);
        sock.destroy();
      } finally {
        await s.close();
      }
    });
  });
});

describe('UDP', () => {
  beforeAll(async () => {
    rig = await startRig();
  });
  afterAll(async () => {
    await rig.close();
  });

  it('serves NULL, GETATTR and FSINFO over UDP with datagram-sized transfers', async () => {
    const sock = dgram.createSocket('udp4');
    try {
      const ask = (xid: number, proc: number, args: Uint8Array) =>
        new Promise<Uint8Array>((resolve) => {
          sock.once('message', (m) => resolve(new Uint8Array(m)));
          sock.send(replyBody(encodeCall(xid, NFS_PROGRAM, NFS_V3, proc, RpcClient.credFor({}), args)), rig.server.nfsPort, '127.0.0.1');
        });
      expect(decodeReply(await ask(1, 0, new Uint8Array(0)))).toMatchObject({ xid: 1, kind: 'success' });
      const g = decodeReply(await ask(2, Nfs3Proc.GETATTR, encode(x.getattrArgs, { fh: rig.mounted.root })));
      expect(g.kind).toBe('success');
      const f = decodeReply(await ask(3, Nfs3Proc.FSINFO, encode(x.fsinfoArgs, { fh: rig.mounted.root })));
      if (f.kind !== 'success') throw new Error('FSINFO failed');
      const info = x.fsinfoRes.dec(f.results);
      expect(info.status === 0 && info.wtmax).toBe(32 * 1024);
      const bad = decodeReply(await ask(4, 77, new Uint8Array(0)));
      expect(bad).toMatchObject({ kind: 'accepted-error', stat: AcceptStat.PROC_UNAVAIL });
      // A change over UDP, then its retransmission: the same reply, one directory (SM-2).
      const mk = encode(x.mkdirArgs, { where: { dir: rig.mounted.root, name: 'udp-dir' }, attrs: x.sattr() });
      const r1 = await ask(5, Nfs3Proc.MKDIR, mk);
      const r2 = await ask(5, Nfs3Proc.MKDIR, mk);
      expect(Buffer.from(r2).equals(Buffer.from(r1))).toBe(true);
      const d1 = decodeReply(r1);
      if (d1.kind !== 'success') throw new Error('MKDIR over UDP failed');
      expect(x.mkdirRes.dec(d1.results).status).toBe(0);
      // MOUNT answers over UDP too (mount.nfs often asks mountd over UDP).
      const mnt = await new Promise<Uint8Array>((resolve) => {
        sock.once('message', (m) => resolve(new Uint8Array(m)));
        sock.send(replyBody(encodeCall(6, 100005, 3, 1, RpcClient.credFor({}), encode(mntArgs, { path: '/export' }))), rig.server.mountPort, '127.0.0.1');
      });
      const md = decodeReply(mnt);
      if (md.kind !== 'success') throw new Error('MNT over UDP failed');
      expect(mntRes.dec(md.results)).toMatchObject({ status: 0, fh: rig.mounted.root });
    } finally {
      sock.close();
    }
  });
});

/** Sends raw bytes on a fresh connection and returns the first reply record. */
function rawExchange(port: number, bytes: Uint8Array, chunk = 0): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4) {
        const len = buf.readUInt32BE(0) & 0x7fffffff;
        if (buf.length >= 4 + len) {
          sock.destroy();
          resolve(new Uint8Array(buf.subarray(4, 4 + len)));
        }
      }
    });
    sock.on('error', reject);
    sock.on('connect', async () => {
      if (chunk === 0) sock.write(bytes);
      else for (let i = 0; i < bytes.length; i += chunk) sock.write(bytes.subarray(i, i + chunk));
    });
  });
}

describe('RPC client', () => {
  it('fails each call its own timeout after it was sent, and a reply that comes in time still resolves', async () => {
    // A server that answers only the calls it is told to (xid echoed, SUCCESS, no results).
    const answer = new Set<number>();
    const srv = net.createServer((s) => {
      s.on('data', (b) => {
        const xid = b.readUInt32BE(4);
        if (!answer.has(xid)) return;
        const w = new XdrWriter(64, 4);
        for (const v of [xid, 1, 0, 0, 0, 0]) w.u32(v);
        s.write(frameForTcp(w));
      });
    });
    await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
    const port = (srv.address() as net.AddressInfo).port;
    const c = await RpcClient.connect('127.0.0.1', port, { callTimeoutMs: 150 });
    try {
      // How long after it was sent each call failed (never before its own timeout).
      const failsAfter = (xid: number): Promise<number> => {
        const t0 = performance.now();
        return expectRpcError(c.rawCall(1, 1, 0, new Uint8Array(0), xid), 'ERR_RPC_TIMEOUT').then(() => performance.now() - t0);
      };
      const first = failsAfter(100);
      await new Promise((r) => setTimeout(r, 100));
      answer.add(101);
      const answered = c.rawCall(1, 1, 0, new Uint8Array(0), 101);
      const late = failsAfter(102);
      expect((await answered).xid).toBe(101);
      expect(await first).toBeGreaterThanOrEqual(149);
      expect(await late).toBeGreaterThanOrEqual(149);
      expect(c.inFlight).toBe(0);
    } finally {
      await c.close();
      await new Promise((r) => srv.close(r));
    }
  });
});
