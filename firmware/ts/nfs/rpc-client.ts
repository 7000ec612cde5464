// An ONC RPC client over TCP: record marking, xid matching, many calls in flight on one
// connection, AUTH_SYS or AUTH_NONE credentials. Used by the NFS client library
// (tools/nfs-client), the tests, the benchmarks, and the server itself to register with a
// portmapper, which is why it lives here rather than in tools/.
import net from 'node:net';
import { TwinbladeError } from '../core/errors.ts';
import {
  AcceptStat,
  AuthFlavor,
  type AuthSys,
  type OpaqueAuth,
  RecordDecoder,
  type RpcReply,
  decodeReply,
  encodeAuthSys,
  encodeCall,
  frameSegmentsForTcp,
} from './core/rpc.ts';
import type { XdrReader, XdrWriter } from './core/xdr.ts';

export const rpcClientLimits = {
  /** Largest reply record accepted (a 1 MiB READ plus headers). */
  replyBytesMax: 4 * 1024 * 1024 + 64 * 1024,
  /** A call with no reply after this long fails with ERR_RPC_TIMEOUT. */
  callTimeoutMs: 30_000,
} as const;

/** An RPC-level failure: the server denied or did not accept the call, or the transport failed. */
export class RpcError extends TwinbladeError {
  constructor(
    code: string,
    message: string,
    readonly reply?: RpcReply,
  ) {
    super(code, code === 'ERR_RPC_TIMEOUT' ? 'timeout' : code === 'ERR_RPC_CLOSED' ? 'closed' : 'io', message);
    this.name = 'RpcError';
  }
}

const acceptNames: Record<number, string> = {
  [AcceptStat.PROG_UNAVAIL]: 'PROG_UNAVAIL',
  [AcceptStat.PROG_MISMATCH]: 'PROG_MISMATCH',
  [AcceptStat.PROC_UNAVAIL]: 'PROC_UNAVAIL',
  [AcceptStat.GARBAGE_ARGS]: 'GARBAGE_ARGS',
  [AcceptStat.SYSTEM_ERR]: 'SYSTEM_ERR',
};

export interface RpcClientOptions {
  /** AUTH_SYS identity, or "none" for AUTH_NONE. Default uid 0, gid 0. */
  auth?: Partial<AuthSys> | 'none';
  callTimeoutMs?: number;
}

export interface RawResult {
  xid: number;
  /** The whole reply message (no record mark). */
  record: Uint8Array;
  reply: RpcReply;
}

export class RpcClient {
  private readonly decoder = new RecordDecoder(rpcClientLimits.replyBytesMax);
  private readonly pending = new Map<number, { resolve: (r: RawResult) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private nextXid: number;
  private closedError: Error | undefined;
  cred: OpaqueAuth;
  private readonly timeoutMs: number;

  private constructor(
    private readonly sock: net.Socket,
    opts: RpcClientOptions,
  ) {
    this.nextXid = (Math.random() * 0x7fffffff) >>> 0;
    this.timeoutMs = opts.callTimeoutMs ?? rpcClientLimits.callTimeoutMs;
    this.cred = RpcClient.credFor(opts.auth);
    sock.on('data', (chunk: Buffer) => {
      let records: Uint8Array[];
      try {
        records = this.decoder.push(chunk);
      } catch (e) {
        this.fail(e as Error);
        sock.destroy();
        return;
      }
      // Plain Uint8Array views: Buffer's slice() would not copy, surprising callers.
      for (const rec of records) this.onRecord(new Uint8Array(rec.buffer, rec.byteOffset, rec.byteLength));
    });
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new RpcError('ERR_RPC_CLOSED', 'connection closed')));
  }

  static credFor(auth: RpcClientOptions['auth']): OpaqueAuth {
    if (auth === 'none') return { flavor: AuthFlavor.NONE, body: new Uint8Array(0) };
    return {
      flavor: AuthFlavor.SYS,
      body: encodeAuthSys({
        stamp: auth?.stamp ?? 0,
        machineName: auth?.machineName ?? 'twinblade-client',
        uid: auth?.uid ?? 0,
        gid: auth?.gid ?? 0,
        gids: auth?.gids ?? [],
      }),
    };
  }

  static connect(host: string, port: number, opts: RpcClientOptions = {}): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port, noDelay: true });
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new RpcClient(sock, opts));
      });
    });
  }

  /** Changes the identity used by later calls. */
  setAuth(auth: RpcClientOptions['auth']): void {
    this.cred = RpcClient.credFor(auth);
  }

  /** Sends one call and returns the raw reply. `xid` forces an xid (to retransmit a call). */
  rawCall(prog: number, vers: number, proc: number, args: Uint8Array | ((w: XdrWriter) => void), xid?: number, argsBytesHint?: number): Promise<RawResult> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const id = xid ?? (this.nextXid = (this.nextXid + 1) >>> 0);
    const w = encodeCall(id, prog, vers, proc, this.cred, args, argsBytesHint);
    return new Promise<RawResult>((resolve, reject) => {
      if (this.pending.has(id)) {
        reject(new RpcError('ERR_RPC_XID_BUSY', `xid ${id} already in flight`));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RpcError('ERR_RPC_TIMEOUT', `no reply to xid ${id} in ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
      const segs = frameSegmentsForTcp(w);
      if (segs.length > 1) this.sock.cork();
      for (const seg of segs) this.sock.write(seg);
      if (segs.length > 1) this.sock.uncork();
    });
  }

  /** Calls a procedure; resolves with a reader positioned at the results, or rejects with RpcError. */
  async call(prog: number, vers: number, proc: number, args: Uint8Array | ((w: XdrWriter) => void), argsBytesHint?: number): Promise<XdrReader> {
    const { reply } = await this.rawCall(prog, vers, proc, args, undefined, argsBytesHint);
    if (reply.kind === 'success') return reply.results;
    if (reply.kind === 'accepted-error') {
      const name = acceptNames[reply.stat] ?? String(reply.stat);
      throw new RpcError(`ERR_RPC_${name}`, `call ${prog}/${vers}/${proc} not accepted: ${name}`, reply);
    }
    if (reply.kind === 'auth-error') throw new RpcError('ERR_RPC_AUTH_ERROR', `call denied: auth_stat ${reply.stat}`, reply);
    throw new RpcError('ERR_RPC_MISMATCH', 'call denied: RPC version mismatch', reply);
  }

  /** Writes raw bytes on the connection (for tests of malformed records). */
  writeRaw(b: Uint8Array): void {
    this.sock.write(b);
  }

  get inFlight(): number {
    return this.pending.size;
  }

  async close(): Promise<void> {
    if (this.sock.destroyed) return;
    await new Promise<void>((resolve) => {
      this.sock.once('close', () => resolve());
      this.sock.end();
      setTimeout(() => this.sock.destroy(), 1000).unref();
    });
  }

  private onRecord(rec: Uint8Array): void {
    let reply: RpcReply;
    try {
      reply = decodeReply(rec);
    } catch {
      return; // not a reply we can read: ignore it, the caller's timeout reports the loss
    }
    const p = this.pending.get(reply.xid);
    if (p === undefined) return;
    this.pending.delete(reply.xid);
    clearTimeout(p.timer);
    p.resolve({ xid: reply.xid, record: rec, reply });
  }

  private fail(e: Error): void {
    if (this.closedError === undefined) this.closedError = e instanceof RpcError ? e : new RpcError('ERR_RPC_CLOSED', e.message);
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(this.closedError);
    }
    this.pending.clear();
  }
}
