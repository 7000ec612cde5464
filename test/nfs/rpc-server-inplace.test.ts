// The TCP transport reading records in place (rpc-server.ts adoptForInPlaceReads) and its
// fallback through node's chunks: records split across many reads or arriving byte by byte,
// large records in memory of their own and no record's bytes written after it was handed
// out, flow control, many connections, the connection limit, and a prompt close, over real
// loopback sockets.
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { crc32c } from '../../firmware/ts/core/crc32c.ts';
import { AcceptStat, beginAcceptedReply, decodeReply, encodeCall, replyBody } from '../../firmware/ts/nfs/core/rpc.ts';
import { RpcClient } from '../../firmware/ts/nfs/rpc-client.ts';
import {
  type CallContext,
  type Listener,
  type RpcProgram,
  type RpcServerLimits,
  RpcDispatcher,
  adoptForInPlaceReads,
  listenTcp,
  rpcServerLimits,
} from '../../firmware/ts/nfs/rpc-server.ts';

const PROG = 0x20000777;
const Proc = { echo: 1, gated: 2 } as const;

/** A dispatcher that remembers the records it was handed, their bytes then, and who sent them. */
class RecordingDispatcher extends RpcDispatcher {
  readonly records: Uint8Array[] = [];
  readonly copies: Uint8Array[] = [];
  readonly clients: string[] = [];
  override dispatch(record: Uint8Array, transport: 'tcp' | 'udp', clientAddr: string): ReturnType<RpcDispatcher['dispatch']> {
    this.records.push(record);
    this.copies.push(record.slice());
    this.clients.push(clientAddr);
    return super.dispatch(record, transport, clientAddr);
  }

  /** No record's bytes changed after it was handed out (the file system may keep them). */
  expectUntouched(): void {
    expect(this.records.length).toBeGreaterThan(0);
    this.records.forEach((r, i) => expect(Buffer.from(r).equals(this.copies[i] as Uint8Array)).toBe(true));
  }
}

/**
 * The test program: `echo` answers the length and CRC32C of its arguments; `gated` does too,
 * but only once the gate opens, counting how many run at once.
 */
class TestProgram implements RpcProgram {
  readonly prog = PROG;
  readonly versLow = 1;
  readonly versHigh = 1;
  running = 0;
  runningMax = 0;
  private gate: Promise<void> = Promise.resolve();
  private openGate: () => void = () => undefined;

  close(): void {
    this.gate = new Promise((r) => (this.openGate = r));
  }
  open(): void {
    this.openGate();
  }

  async handle(ctx: CallContext) {
    const args = ctx.call.record.subarray(ctx.call.argsOffset);
    if (ctx.call.proc === Proc.gated) {
      this.running++;
      this.runningMax = Math.max(this.runningMax, this.running);
      await this.gate;
      this.running--;
    }
    const w = beginAcceptedReply(ctx.call.xid, AcceptStat.SUCCESS);
    w.u32(args.length);
    w.u32(crc32c(args));
    return w;
  }
}

const cred = RpcClient.credFor({ uid: 1, gid: 1 });

/** A call's record (no mark) with `args` as its arguments. */
function callBody(xid: number, proc: number, args: Uint8Array): Uint8Array {
  return replyBody(encodeCall(xid, PROG, 1, proc, cred, args));
}

/** Frames `body` as fragments of the given sizes (the rest in the last one). */
function frame(body: Uint8Array, fragmentBytes: readonly number[] = []): Uint8Array {
  const parts: Uint8Array[] = [];
  let off = 0;
  for (let i = 0; off < body.length || i === 0; i++) {
    const want = fragmentBytes[i];
    const end = want === undefined ? body.length : Math.min(body.length, off + want);
    const mark = Buffer.alloc(4);
    mark.writeUInt32BE(((end === body.length ? 0x80000000 : 0) | (end - off)) >>> 0);
    parts.push(mark, body.subarray(off, end));
    off = end;
  }
  return Buffer.concat(parts);
}

function patterned(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** A raw connection that collects reply records by xid. */
async function rawConnect(port: number): Promise<{ sock: net.Socket; replies: Map<number, { len: number; crc: number }>; next: (count: number) => Promise<void> }> {
  const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((r, j) => {
    sock.once('connect', r);
    sock.once('error', j);
  });
  const replies = new Map<number, { len: number; crc: number }>();
  const waiters: { count: number; resolve: () => void }[] = [];
  let buf: Buffer = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0) & 0x7fffffff;
      if (buf.length < 4 + len) break;
      const reply = decodeReply(new Uint8Array(buf.subarray(4, 4 + len)));
      buf = buf.subarray(4 + len);
      if (reply.kind !== 'success') throw new Error(`call ${reply.xid}: ${reply.kind}`);
      replies.set(reply.xid, { len: reply.results.u32(), crc: reply.results.u32() });
    }
    for (const w of waiters.splice(0)) {
      if (replies.size >= w.count) w.resolve();
      else waiters.push(w);
    }
  });
  sock.on('error', () => undefined);
  const next = (count: number): Promise<void> =>
    replies.size >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve }));
  return { sock, replies, next };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Writes `bytes` in pieces of the given sizes (cycled), letting the event loop turn between them. */
async function writeInPieces(sock: net.Socket, bytes: Uint8Array, sizes: readonly number[]): Promise<void> {
  for (let off = 0, i = 0; off < bytes.length; i++) {
    const n = Math.min(sizes[i % sizes.length] as number, bytes.length - off);
    sock.write(bytes.subarray(off, off + n));
    off += n;
    await turn();
  }
}

let listener: Listener | undefined;
afterEach(async () => {
  await listener?.close();
  listener = undefined;
  vi.unstubAllEnvs();
});

async function serve(inPlaceReads: boolean, limits: Partial<RpcServerLimits> = {}): Promise<{ program: TestProgram; dispatcher: RecordingDispatcher; port: number }> {
  const program = new TestProgram();
  const dispatcher = new RecordingDispatcher([program]);
  listener = await listenTcp(dispatcher, '127.0.0.1', 0, { ...rpcServerLimits, ...limits }, { inPlaceReads });
  return { program, dispatcher, port: listener.port };
}

/** The reader's in-place threshold: records at least this long get memory of their own. */
const inPlaceBytesMin = 8 * 1024;

/**
 * Each large record handed to the dispatcher is memory of its own (what the file system may
 * adopt); small ones are views of slabs that hold nothing else but other records.
 */
function expectOwnMemory(records: readonly Uint8Array[]): void {
  const buffers = new Set<ArrayBufferLike>();
  for (const r of records) {
    if (r.length < inPlaceBytesMin) continue;
    expect(r.byteOffset).toBe(0);
    expect(r.buffer.byteLength).toBe(r.byteLength);
    buffers.add(r.buffer);
  }
  for (const r of records) if (r.length < inPlaceBytesMin) expect(buffers.has(r.buffer)).toBe(false);
}

describe.each([
  { reads: 'in place', inPlace: true },
  { reads: 'joined from chunks', inPlace: false },
])('TCP server, records $reads', ({ inPlace }) => {
  it('a 1 MiB WRITE-sized record split across many reads arrives whole, with small records before and after it', async () => {
    const { dispatcher, port } = await serve(inPlace);
    const c = await rawConnect(port);
    try {
      const big = patterned(1024 * 1024, 7);
      const small = patterned(300, 8);
      const stream = Buffer.concat([frame(callBody(1, Proc.echo, small)), frame(callBody(2, Proc.echo, big)), frame(callBody(3, Proc.echo, small))]);
      // Pieces of odd sizes from 1 byte to 70 KB: marks and fragments straddle every read.
      await writeInPieces(c.sock, stream, [1, 3, 70_001, 4093, 2, 65_536, 12_345, 7]);
      await c.next(3);
      expect(c.replies.get(2)).toEqual({ len: big.length, crc: crc32c(big) });
      expect(c.replies.get(1)).toEqual({ len: small.length, crc: crc32c(small) });
      expect(c.replies.get(3)).toEqual(c.replies.get(1));
      expect(dispatcher.clients).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.1']);
      if (inPlace) expectOwnMemory(dispatcher.records);
      dispatcher.expectUntouched();
    } finally {
      c.sock.destroy();
    }
  });

  it('records arriving byte by byte, one small and one read in place, are answered', async () => {
    const { dispatcher, port } = await serve(inPlace);
    const c = await rawConnect(port);
    try {
      const small = patterned(100, 9);
      const large = patterned(10 * 1024, 10); // above the 8 KiB in-place threshold
      const stream = Buffer.concat([frame(callBody(11, Proc.echo, small)), frame(callBody(12, Proc.echo, large))]);
      await writeInPieces(c.sock, stream, [1]);
      await c.next(2);
      expect(c.replies.get(11)).toEqual({ len: small.length, crc: crc32c(small) });
      expect(c.replies.get(12)).toEqual({ len: large.length, crc: crc32c(large) });
      if (inPlace) expectOwnMemory(dispatcher.records);
      dispatcher.expectUntouched();
    } finally {
      c.sock.destroy();
    }
  });

  it('a record in fragments of mixed sizes (in-place and scratch, and an empty one) is joined into one', async () => {
    const { dispatcher, port } = await serve(inPlace);
    const c = await rawConnect(port);
    try {
      const args = patterned(100_000, 11);
      const body = callBody(21, Proc.echo, args);
      const stream = frame(body, [20_000, 10, 0, 40_000, 3, 9_000]);
      await writeInPieces(c.sock, Buffer.concat([stream, frame(callBody(22, Proc.echo, args.subarray(0, 5)))]), [8_191, 1, 30_000]);
      await c.next(2);
      expect(c.replies.get(21)).toEqual({ len: args.length, crc: crc32c(args) });
      expect(c.replies.get(22)).toEqual({ len: 5, crc: crc32c(args.subarray(0, 5)) });
      if (inPlace) expectOwnMemory(dispatcher.records);
      dispatcher.expectUntouched();
    } finally {
      c.sock.destroy();
    }
  });

  it('stops reading while connRequestsInFlightMax calls run, so the client backs up; then answers every call', async () => {
    const inFlightMax = 4;
    const { program, port } = await serve(inPlace, { connRequestsInFlightMax: inFlightMax });
    program.close();
    const c = await rawConnect(port);
    try {
      const calls = 640;
      const args = patterned(32 * 1024, 12);
      const records = Array.from({ length: calls }, (_, i) => frame(callBody(1000 + i, i % 5 === 0 ? Proc.echo : Proc.gated, i % 3 === 0 ? args.subarray(0, 200) : args)));
      c.sock.write(Buffer.concat(records)); // about 14 MiB: more than loopback's socket buffers hold
      await vi.waitFor(() => expect(program.running).toBe(inFlightMax), { timeout: 10_000, interval: 20 });
      // While the calls are held the server reads no further: the client's bytes stay queued.
      await new Promise((r) => setTimeout(r, 300));
      expect(program.running).toBe(inFlightMax);
      expect(c.sock.writableLength).toBeGreaterThan(0);
      program.open();
      await c.next(calls);
      expect(program.runningMax).toBe(inFlightMax);
      for (let i = 0; i < calls; i++) expect(c.replies.get(1000 + i)?.len).toBe(i % 3 === 0 ? 200 : args.length);
    } finally {
      c.sock.destroy();
    }
  });

  it('serves many connections at once, each pipelining calls of mixed sizes', async () => {
    const { port } = await serve(inPlace);
    const clients = await Promise.all(Array.from({ length: 40 }, () => RpcClient.connect('127.0.0.1', port)));
    try {
      const sizes = [0, 100, 4096, 8 * 1024, 9000, 64 * 1024, 200_000];
      await Promise.all(
        clients.map(async (cl, ci) => {
          const results = await Promise.all(
            Array.from({ length: 14 }, async (_, k) => {
              const args = patterned(sizes[(ci + k) % sizes.length] as number, ci * 100 + k + 1);
              const r = await cl.call(PROG, 1, Proc.echo, args);
              return { want: { len: args.length, crc: crc32c(args) }, got: { len: r.u32(), crc: r.u32() } };
            }),
          );
          for (const { want, got } of results) expect(got).toEqual(want);
        }),
      );
    } finally {
      await Promise.all(clients.map((cl) => cl.close()));
    }
  });

  it('closes connections beyond connectionsMax on accept, and counts a closed one off', async () => {
    const { port } = await serve(inPlace, { connectionsMax: 2 });
    const a = await RpcClient.connect('127.0.0.1', port);
    const b = await RpcClient.connect('127.0.0.1', port);
    let c: RpcClient | undefined;
    try {
      const echo = async (cl: RpcClient): Promise<number> => (await cl.call(PROG, 1, Proc.echo, new Uint8Array(9))).u32();
      expect(await echo(a)).toBe(9);
      expect(await echo(b)).toBe(9);
      const extra = net.connect(port, '127.0.0.1');
      extra.on('error', () => undefined);
      await new Promise((r) => extra.once('close', r));
      await a.close();
      // The server notices a's close in its own time: retry until a new connection is kept.
      await vi.waitFor(
        async () => {
          c?.close().catch(() => undefined);
          c = await RpcClient.connect('127.0.0.1', port, { callTimeoutMs: 2000 });
          expect(await echo(c)).toBe(9);
        },
        { timeout: 10_000, interval: 50 },
      );
      expect(await echo(b)).toBe(9);
    } finally {
      await Promise.all([a.close(), b.close(), c?.close()]);
    }
  });

  it('closes a connection idle in the middle of a large record after connIdleTimeoutMs; others go on', async () => {
    const { port } = await serve(inPlace, { connIdleTimeoutMs: 1000 });
    const stalled = await rawConnect(port);
    const closed = new Promise((r) => stalled.sock.once('close', r));
    stalled.sock.write(frame(callBody(51, Proc.echo, patterned(100_000, 14))).subarray(0, 40_000));
    const busy = await RpcClient.connect('127.0.0.1', port);
    try {
      // Calls on another connection keep it alive and are not held up by the stalled one.
      while (!stalled.sock.closed) {
        expect((await busy.call(PROG, 1, Proc.echo, new Uint8Array(3))).u32()).toBe(3);
        await new Promise((r) => setTimeout(r, 20));
      }
      await closed;
      expect((await busy.call(PROG, 1, Proc.echo, new Uint8Array(4))).u32()).toBe(4);
    } finally {
      await busy.close();
    }
  });

  it('closes a connection whose next record is oversized, after a large one in the same write; others go on', async () => {
    const { port } = await serve(inPlace, { recordBytesMax: 64 * 1024 });
    const bad = await rawConnect(port);
    const closed = new Promise((r) => bad.sock.once('close', r));
    const oversized = Buffer.from([0x80, 0x02, 0, 0]); // 128 KiB
    bad.sock.write(Buffer.concat([frame(callBody(61, Proc.echo, patterned(30_000, 15))), oversized, Buffer.alloc(1000)]));
    await closed;
    const good = await RpcClient.connect('127.0.0.1', port);
    try {
      expect((await good.call(PROG, 1, Proc.echo, patterned(40_000, 16))).u32()).toBe(40_000);
    } finally {
      await good.close();
    }
  });

  it('close() closes connections, also one in the middle of a large record, and returns promptly', async () => {
    const { port } = await serve(inPlace);
    const mid = await rawConnect(port);
    const idle = await rawConnect(port);
    const closed = Promise.all([mid.sock, idle.sock].map((s) => new Promise((r) => s.once('close', r))));
    const body = callBody(31, Proc.echo, patterned(300_000, 13));
    mid.sock.write(frame(body).subarray(0, 100_000));
    // Give the server a moment to start reading the record in place (passes either way).
    await new Promise((r) => setTimeout(r, 50));
    await (listener as Listener).close();
    listener = undefined;
    await closed;
  });
});

describe('in-place reads', () => {
  it('are the default, and TWINBLADE_RPC_INPLACE=0 turns them off (records are then views of node chunks)', async () => {
    // One 20 KiB record in one write (one socket read on loopback): in place it is a buffer of
    // its own; from node's chunks, a view just past its mark in the chunk.
    const sendOne = async (port: number): Promise<void> => {
      const c = await rawConnect(port);
      c.sock.write(frame(callBody(41, Proc.echo, patterned(20 * 1024, 1))));
      await c.next(1);
      c.sock.destroy();
    };
    const program = new TestProgram();
    const first = new RecordingDispatcher([program]);
    listener = await listenTcp(first, '127.0.0.1', 0);
    await sendOne(listener.port);
    expect(first.records[0]?.byteOffset).toBe(0);
    expectOwnMemory(first.records);
    await listener.close();

    vi.stubEnv('TWINBLADE_RPC_INPLACE', '0');
    const second = new RecordingDispatcher([program]);
    listener = await listenTcp(second, '127.0.0.1', 0);
    await sendOne(listener.port);
    expect(second.records[0]?.byteOffset).toBe(4);
  });

  it('copy small records into shared slabs, written once: many pipelined calls, none changed afterwards', async () => {
    const { dispatcher, port } = await serve(true);
    const c = await rawConnect(port);
    try {
      const calls = 400;
      const sizes = [0, 1, 100, 4096, 5000, 8191 - 64, 9000];
      const args = (i: number): Uint8Array => patterned(sizes[i % sizes.length] as number, i + 1);
      await writeInPieces(c.sock, Buffer.concat(Array.from({ length: calls }, (_, i) => frame(callBody(500 + i, Proc.echo, args(i))))), [60_000, 333, 17_000]);
      await c.next(calls);
      for (let i = 0; i < calls; i++) expect(c.replies.get(500 + i)).toEqual({ len: args(i).length, crc: crc32c(args(i)) });
      dispatcher.expectUntouched();
      expectOwnMemory(dispatcher.records);
      // Small records share slabs (one allocation for many), never with a large record.
      const small = dispatcher.records.filter((r) => r.length < inPlaceBytesMin);
      expect(new Set(small.map((r) => r.buffer)).size).toBeLessThan(small.length / 4);
    } finally {
      c.sock.destroy();
    }
  });

  it('adopt an accepted socket (the accepted one lets go of it), and leave a socket without a handle as it is', async () => {
    const accepted = new Promise<net.Socket>((resolve) => {
      const srv = net.createServer({ pauseOnConnect: true }, (s) => {
        srv.close();
        resolve(s);
      });
      srv.listen(0, '127.0.0.1', () => {
        const cl = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1', () => cl.end('hello'));
      });
    });
    const sock = await accepted;
    const into = new Uint8Array(16);
    let got = '';
    const r = adoptForInPlaceReads(sock, {
      buffer: () => into,
      callback: (n) => {
        got += Buffer.from(into.subarray(0, n)).toString();
        return true;
      },
    });
    expect(r.inPlace).toBe(true);
    expect(r.sock).not.toBe(sock);
    expect(sock.destroyed).toBe(true);
    r.sock.resume();
    await new Promise((res) => r.sock.once('close', res));
    expect(got).toBe('hello');

    const bare = new net.Socket();
    const f = adoptForInPlaceReads(bare, { buffer: () => into, callback: () => true });
    expect(f).toEqual({ sock: bare, inPlace: false });
    bare.destroy();
  });
});
