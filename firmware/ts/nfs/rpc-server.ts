// ONC RPC server: dispatches calls to programs (portmap, MOUNT, NFS) and carries them over
// TCP (record marking, pipelined calls, bounded memory per connection) and UDP. Every
// malformed call gets the protocol's answer or a closed connection; nothing a client sends
// can crash the server or stall other clients.
import net from 'node:net';
import dgram from 'node:dgram';
import { totalmem } from 'node:os';
import { AssertionFailure } from '../core/assert.ts';
import { DecodeError } from '../core/errors.ts';
import {
  AcceptStat,
  type RpcCall,
  InPlaceRecordReader,
  RecordDecoder,
  authErrorReply,
  beginAcceptedReply,
  decodeCall,
  frameSegmentsForTcp,
  progMismatchReply,
  replyBody,
  rpcMismatchReply,
} from './core/rpc.ts';
import type { XdrWriter } from './core/xdr.ts';
import { normalizeAddress } from './core/exports.ts';
import { underReportToGc } from '../native/index.ts';

export type Transport = 'tcp' | 'udp';

export interface CallContext {
  transport: Transport;
  /** The client's address (IPv4-mapped IPv6 prefix removed). */
  client: string;
  call: RpcCall;
}

/** One RPC program (all its supported versions). */
export interface RpcProgram {
  readonly prog: number;
  readonly versLow: number;
  readonly versHigh: number;
  /**
   * Answers one call whose program and version matched. Returns the reply (see
   * core/rpc.ts builders), or null to send nothing (a retransmission still executing).
   * A DecodeError thrown here becomes GARBAGE_ARGS.
   */
  handle(ctx: CallContext): Promise<XdrWriter | null> | XdrWriter | null;
}

export function procUnavail(ctx: CallContext): XdrWriter {
  return beginAcceptedReply(ctx.call.xid, AcceptStat.PROC_UNAVAIL);
}

export const rpcServerLimits = {
  /** Largest call record (all fragments) accepted on TCP: a 1 MiB WRITE plus headers. */
  recordBytesMax: 1024 * 1024 + 64 * 1024,
  /** Calls executing at once per TCP connection; beyond it the socket is paused. */
  connRequestsInFlightMax: 64,
  /**
   * Reply bytes a connection may have waiting in user space (the client reads slower than
   * we answer); beyond it no new call starts on that connection until the socket drains.
   */
  connReplyBytesMax: 4 * 1024 * 1024,
  /** TCP connections at once; further ones are closed on accept. */
  connectionsMax: 1024,
  /** An idle TCP connection is closed after this long (frees a slow client's buffers). */
  connIdleTimeoutMs: 10 * 60 * 1000,
  /** Largest UDP datagram sent or accepted (IPv4 UDP payload limit). */
  udpDatagramBytesMax: 65507,
  /** UDP calls executing at once; further datagrams are dropped (the client retransmits). */
  udpRequestsInFlightMax: 256,
} as const;

export type RpcServerLimits = { -readonly [K in keyof typeof rpcServerLimits]: number };

export interface DispatcherOptions {
  /** Reports an unexpected error (the call got SYSTEM_ERR). */
  onError?: (err: unknown, ctx: { client: string; prog?: number; proc?: number }) => void;
  /** A broken invariant: by default rethrown outside the promise chain so the blade crashes. */
  onFatal?: (err: AssertionFailure) => void;
}

export class RpcDispatcher {
  private readonly programs = new Map<number, RpcProgram>();
  constructor(
    programs: readonly RpcProgram[],
    private readonly opts: DispatcherOptions = {},
  ) {
    for (const p of programs) this.programs.set(p.prog, p);
  }

  /** Answers one record; null means send nothing. Never rejects. */
  async dispatch(record: Uint8Array, transport: Transport, clientAddr: string): Promise<XdrWriter | null> {
    const client = normalizeAddress(clientAddr);
    // A plain Uint8Array view of the record: Buffer's slice() shares memory, Uint8Array's copies.
    const d = decodeCall(new Uint8Array(record.buffer, record.byteOffset, record.byteLength));
    if (d.kind === 'drop') return null;
    if (d.kind === 'deny-version') return rpcMismatchReply(d.xid);
    if (d.kind === 'deny-auth') return authErrorReply(d.xid, d.stat);
    const call = d.call;
    const prog = this.programs.get(call.prog);
    if (prog === undefined) return beginAcceptedReply(call.xid, AcceptStat.PROG_UNAVAIL);
    if (call.vers < prog.versLow || call.vers > prog.versHigh) return progMismatchReply(call.xid, prog.versLow, prog.versHigh);
    try {
      return await prog.handle({ transport, client, call });
    } catch (e) {
      if (e instanceof DecodeError) return beginAcceptedReply(call.xid, AcceptStat.GARBAGE_ARGS);
      if (e instanceof AssertionFailure) {
        const fatal = this.opts.onFatal ?? ((err: AssertionFailure) => queueMicrotask(() => { throw err; }));
        fatal(e);
      } else {
        this.opts.onError?.(e, { client, prog: call.prog, proc: call.proc });
      }
      return beginAcceptedReply(call.xid, AcceptStat.SYSTEM_ERR);
    }
  }
}

export interface Listener {
  readonly port: number;
  close(): Promise<void>;
}

export interface TcpListenOptions {
  /**
   * Reads each connection's records in place (see `adoptForInPlaceReads`): a large WRITE's
   * record is read straight into its own buffer, small ones are copied out of one reused
   * scratch buffer into write-once slabs. Default true, unless the environment says TWINBLADE_RPC_INPLACE=0 (read
   * once per listen; the benchmark compares both). False, or a node whose sockets cannot be
   * adopted, reads node's chunks and joins them (RecordDecoder).
   */
  inPlaceReads?: boolean;
}

/** Serves the dispatcher over TCP on host:port (port 0: ephemeral). */
export async function listenTcp(
  dispatcher: RpcDispatcher,
  host: string,
  port: number,
  limits: RpcServerLimits = { ...rpcServerLimits },
  opts: TcpListenOptions = {},
): Promise<Listener> {
  const inPlace = opts.inPlaceReads ?? process.env['TWINBLADE_RPC_INPLACE'] !== '0';
  const sockets = new Set<net.Socket>();
  // Paused on accept: nothing is read before the connection's reader is in place.
  const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
    if (sockets.size >= limits.connectionsMax) {
      accepted.destroy();
      return;
    }
    const sock = serveConnection(dispatcher, accepted, limits, inPlace);
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr !== null ? addr.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A record's joining buffer without the zero fill (every byte of it is written before it is
 * handed out): a 1 MiB WRITE's record otherwise costs a 1 MiB memset. A plain Uint8Array view
 * of its own memory, not a Buffer, whose slice() would share memory where callers expect a copy.
 */
function allocateRecord(bytes: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(bytes);
  if (bytes >= largeRecordBytesMin && largeRecordGcShare < 1) underReportToGc(b.buffer, Math.floor(bytes * (1 - largeRecordGcShare)));
  return new Uint8Array(b.buffer, b.byteOffset, bytes);
}

/**
 * How much of a large record's memory V8 is told about (underReportToGc), on hosts with at least
 * `largeRecordGcShareRamMin` of RAM (all of it below). V8 starts a full collection for every
 * 64 MB of buffers allocated, and large records are nearly all of what the daemon allocates:
 * a 1 MiB WRITE's data becomes the file system's page memory, kept until a CP has written it
 * and the cache lets it go, so at 600-800 MiB/s of writes that was 10 full collections a
 * second, each marking the whole heap on V8's helper threads and ageing compiled code.
 * Counting a quarter makes it one per 256 MB of records: measured over 128 MiB rounds of
 * 1 MiB UNSTABLE writes, 560-596 -> 667-697 MiB/s and 2.1-2.3 -> 1.7-1.8 ms of server CPU per
 * MiB, for ~450 MB more resident memory (garbage records awaiting the rarer collection).
 */
const largeRecordGcShareRamMin = 4 * 1024 * 1024 * 1024;
const largeRecordGcShare = totalmem() >= largeRecordGcShareRamMin ? 0.25 : 1;
const largeRecordBytesMin = 256 * 1024;

/**
 * Small records (below the reader's in-place threshold: 4 KiB FILE_SYNC WRITEs, every other
 * call) are copied out of the read scratch into slabs of this size, written once each: one
 * allocation per 64 KiB of calls rather than one per call. Measured on the blade at 4 KiB
 * FILE_SYNC writes, a record of its own per call cost more server CPU than node's chunks
 * (docs/nfs.md "Server reads records in place").
 */
const smallRecordSlabBytes = 64 * 1024;

/** What node's internal stream handle (node 20's TCP wrap) offers that in-place reads rely on. */
interface StreamHandle {
  readStart(): number;
  readStop(): number;
  useUserBuffer(buf: Uint8Array): void;
}

function isStreamHandle(h: unknown): h is StreamHandle {
  if (typeof h !== 'object' || h === null) return false;
  const o = h as Record<string, unknown>;
  return typeof o['readStart'] === 'function' && typeof o['readStop'] === 'function' && typeof o['useUserBuffer'] === 'function';
}

/**
 * Moves an accepted, still paused connection into a socket that reads where `onread.buffer()`
 * says, like a client socket's documented `onread` (node documents it for net.connect and
 * new net.Socket, not for server sockets). Relies on node's net.js: a Socket constructed with
 * `{ handle, onread }` adopts the handle (its owner, read callback and user buffer, asking
 * `onread.buffer()` once at once), and a socket whose `_handle` is null destroys without
 * touching it, counting itself off its server. Returns the socket now carrying the
 * connection and whether it reads in place; when node cannot do this (no `_handle`, the
 * handle not adopted), `accepted` is left or made to carry it, read in chunks.
 */
export function adoptForInPlaceReads(accepted: net.Socket, onread: net.OnReadOpts): { sock: net.Socket; inPlace: boolean } {
  const holder = accepted as unknown as { _handle: unknown };
  const handle = holder._handle;
  if (!isStreamHandle(handle) || accepted.destroyed) return { sock: accepted, inPlace: false };
  let asked = false;
  let sock: net.Socket;
  try {
    sock = new net.Socket({
      handle,
      readable: true,
      writable: true,
      onread: {
        buffer: () => {
          asked = true;
          return typeof onread.buffer === 'function' ? onread.buffer() : onread.buffer;
        },
        callback: onread.callback,
      },
    } as net.SocketConstructorOpts);
  } catch {
    // A node that refuses these options: the accepted socket still owns the handle.
    return { sock: accepted, inPlace: false };
  }
  if ((sock as unknown as { _handle: unknown })._handle !== handle) {
    // The handle option was ignored: the accepted socket still owns the handle.
    sock.destroy();
    return { sock: accepted, inPlace: false };
  }
  // The new socket owns the handle now: the accepted one lets go of it without closing it.
  holder._handle = null;
  accepted.destroy();
  // onread ignored: the new socket delivers 'data' chunks like any other.
  return { sock, inPlace: asked };
}

/** Serves one accepted (paused) connection; returns the socket that carries it. */
function serveConnection(dispatcher: RpcDispatcher, accepted: net.Socket, limits: RpcServerLimits, inPlaceWanted: boolean): net.Socket {
  const client = accepted.remoteAddress ?? '';
  const queue: Uint8Array[] = [];
  let inFlight = 0;
  let waitingDrain = false;
  let closed = false;
  // Where the next read lands once a record was too long (the socket is being destroyed): the
  // reader is then in no state to say, and a read must never get an empty buffer.
  let spare: Uint8Array | undefined;

  let sock = accepted;
  let inPlace = false;
  if (inPlaceWanted) {
    const reader = new InPlaceRecordReader(limits.recordBytesMax, undefined, undefined, { allocate: allocateRecord, slabBytes: smallRecordSlabBytes });
    const adopted = adoptForInPlaceReads(accepted, {
      buffer: () => spare ?? reader.nextBuffer(),
      callback: (n) => {
        if (spare !== undefined) return false;
        let records: Uint8Array[];
        try {
          records = reader.filled(n);
        } catch {
          // An oversized record cannot be skipped without reading it: close the connection.
          spare = new Uint8Array(64);
          sock.destroy();
          return false;
        }
        onRecords(records);
        return true;
      },
    });
    sock = adopted.sock;
    inPlace = adopted.inPlace;
  }

  // Replies finishing in the same turn of the event loop (a group of NVRAM persists resolves
  // many changes at once) leave in one writev rather than one write syscall each: profiled on
  // the blade at 4 KiB FILE_SYNC writes, per-reply writes were 14% of the server's CPU.
  let corked = false;
  const uncork = (): void => {
    corked = false;
    if (!closed) sock.uncork();
  };
  sock.setTimeout(limits.connIdleTimeoutMs);
  sock.on('timeout', () => sock.destroy());
  sock.on('error', () => sock.destroy());
  sock.on('close', () => {
    closed = true;
    queue.length = 0;
  });

  // With in-place reads, pause() and resume() stop and restart the handle's reads themselves
  // (net.js Socket.pause/resume for an onread socket); in chunks, they stop the 'data' flow.
  const flowControl = (): void => {
    if (closed) return;
    if (waitingDrain || inFlight >= limits.connRequestsInFlightMax || queue.length > 0) sock.pause();
    else sock.resume();
  };

  const pump = (): void => {
    // No new call starts while the client is not reading its replies: what one connection
    // can hold is then its executing calls' replies, not an unbounded backlog.
    while (!closed && !waitingDrain && queue.length > 0 && inFlight < limits.connRequestsInFlightMax) {
      const rec = queue.shift() as Uint8Array;
      inFlight++;
      void dispatcher.dispatch(rec, 'tcp', client).then((reply) => {
        inFlight--;
        if (!closed && reply !== null) {
          if (!corked) {
            corked = true;
            sock.cork();
            process.nextTick(uncork);
          }
          for (const seg of frameSegmentsForTcp(reply)) sock.write(seg);
          // Not write()'s boolean: it turns false past 16 KiB, so every 64 KiB READ reply
          // would stop the connection until its drain, serialising pipelined reads.
          if (sock.writableLength > limits.connReplyBytesMax) waitingDrain = true;
        }
        pump();
        flowControl();
      });
    }
  };

  function onRecords(records: Uint8Array[]): void {
    for (const r of records) queue.push(r);
    pump();
    flowControl();
  }

  sock.on('drain', () => {
    waitingDrain = false;
    pump();
    flowControl();
  });
  if (!inPlace) {
    // Node's chunks, joined into records (a record spanning chunks is copied into its own buffer).
    const decoder = new RecordDecoder(limits.recordBytesMax, allocateRecord);
    sock.on('data', (chunk: Buffer) => {
      let records: Uint8Array[];
      try {
        records = decoder.push(chunk);
      } catch {
        // An oversized record cannot be skipped without reading it: close the connection.
        sock.destroy();
        return;
      }
      onRecords(records);
    });
  }
  // Accepted paused (pauseOnConnect): reading starts now that every listener is in place.
  sock.resume();
  return sock;
}

/** Serves the dispatcher over UDP on host:port (port 0: ephemeral). */
export async function listenUdp(dispatcher: RpcDispatcher, host: string, port: number, limits: RpcServerLimits = { ...rpcServerLimits }): Promise<Listener> {
  const type = host.includes(':') ? 'udp6' : 'udp4';
  const sock = dgram.createSocket({ type, recvBufferSize: 4 * 1024 * 1024, sendBufferSize: 4 * 1024 * 1024 });
  let inFlight = 0;
  sock.on('message', (msg, rinfo) => {
    if (inFlight >= limits.udpRequestsInFlightMax || msg.length > limits.udpDatagramBytesMax) return;
    inFlight++;
    void dispatcher.dispatch(msg, 'udp', rinfo.address).then((reply) => {
      inFlight--;
      if (reply === null) return;
      const body = replyBody(reply);
      if (body.length > limits.udpDatagramBytesMax) return;
      sock.send(body, rinfo.port, rinfo.address, () => undefined);
    });
  });
  sock.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(port, host, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  return {
    port: sock.address().port,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
