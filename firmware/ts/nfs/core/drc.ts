// The duplicate-request cache (SPEC SM-2): the interface the NFS service uses to give a
// retransmitted non-idempotent call its original reply, and a bounded in-memory version.
// In the blade the entries live in the state-machine log in NVRAM (nvlog/), mirrored to the
// partner, so a retransmission after takeover still finds its reply.
import type { Attr, ChangeResult, FsStatus, WccAttr } from '../../fsapi/ops.ts';
import { XdrReader, XdrWriter, copyBytes } from './xdr.ts';

/**
 * Identifies one call: the client's address (not its port: clients reconnect from a new
 * port after a takeover), the xid, the procedure, and a checksum of the call's arguments
 * so that a reused xid with different arguments is a new call.
 */
export interface RequestKey {
  client: string;
  xid: number;
  prog: number;
  vers: number;
  proc: number;
  /** CRC32C of the first argument bytes (the service's `drcChecksumBytes`). */
  argsCrc: number;
  argsBytes: number;
}

/** The result of a change as it can be stored and replayed: the FS result or its error. */
export type ChangeOutcome =
  | { ok: true; result: ChangeResult }
  | { ok: false; status: FsStatus; dirPre?: WccAttr; dirPost?: Attr };

/**
 * A cache entry. `in-progress`: the original is still executing (a retransmission is
 * dropped; the original's reply will answer it). `replied`: the encoded RPC reply (no record
 * mark) to send again. `applied`: the change was applied (e.g. by log replay after a
 * takeover) but its reply was never encoded; the service encodes it from the outcome,
 * which gives the same bytes the original reply had. `busy`: the cache is at its bound and
 * recorded nothing; once `retry` settles (a consistency point has made room) `begin` may be
 * called again — holding the call, as a filer stalls clients behind a CP, rather than
 * dropping it (a TCP client retransmits only after its timeout, 60 s on Linux).
 */
export type DrcEntry =
  | { state: 'in-progress' }
  | { state: 'busy'; retry: Promise<void> }
  | { state: 'replied'; reply: Uint8Array }
  | { state: 'applied'; outcome: ChangeOutcome };

export interface DuplicateRequestCache {
  /**
   * Returns the existing entry for `key`, or records the call as in progress and returns
   * undefined (then the caller must end with `complete` or `abandon`).
   */
  begin(key: RequestKey): DrcEntry | undefined;
  /** The call finished; `reply` is what was sent. */
  complete(key: RequestKey, reply: Uint8Array): void;
  /** The call failed before it changed anything (e.g. the log refused it): forget it. */
  abandon(key: RequestKey): void;
}

export function requestKeyString(k: RequestKey): string {
  return `${k.client}|${k.xid}|${k.prog}|${k.vers}|${k.proc}|${k.argsCrc}|${k.argsBytes}`;
}

export const drcLimits = {
  /** Entries kept by the in-memory cache; the oldest completed ones are evicted first. */
  drcEntriesMax: 8192,
  /** Times a change waits for a busy cache to make room (DrcEntry `busy`) before it is dropped. */
  drcBusyRetryMax: 8,
} as const;

/** Bounded in-memory DRC (insertion-ordered Map used as a FIFO of completed entries). */
export class MemoryDrc implements DuplicateRequestCache {
  private readonly entries = new Map<string, DrcEntry>();
  constructor(private readonly entriesMax: number = drcLimits.drcEntriesMax) {}

  get size(): number {
    return this.entries.size;
  }

  begin(key: RequestKey): DrcEntry | undefined {
    const k = requestKeyString(key);
    const e = this.entries.get(k);
    if (e !== undefined) return e;
    this.entries.set(k, { state: 'in-progress' });
    this.evict();
    return undefined;
  }

  complete(key: RequestKey, reply: Uint8Array): void {
    const k = requestKeyString(key);
    this.entries.delete(k);
    this.entries.set(k, { state: 'replied', reply: copyBytes(reply) });
    this.evict();
  }

  abandon(key: RequestKey): void {
    this.entries.delete(requestKeyString(key));
  }

  /** Installs an entry directly (log replay after a crash or takeover). */
  put(key: RequestKey, entry: DrcEntry): void {
    const k = requestKeyString(key);
    this.entries.delete(k);
    this.entries.set(k, entry);
    this.evict();
  }

  private evict(): void {
    if (this.entries.size <= this.entriesMax) return;
    for (const [k, e] of this.entries) {
      if (this.entries.size <= this.entriesMax) break;
      if (e.state !== 'in-progress') this.entries.delete(k);
    }
  }
}

/**
 * The key as bytes (XDR: client string, then xid, prog, vers, proc, argsCrc, argsBytes as
 * u32), for logs that index requests by an opaque byte key (nvlog's state-machine log).
 */
/**
 * Encoded keys by key object: the change path and the duplicate-request cache encode the same
 * request's key four times (admission, change entry, outcome, reply). Keys are never changed
 * once made; callers never write into the returned bytes.
 */
const encodedKeys = new WeakMap<RequestKey, { bytes: Uint8Array; xid: number; prog: number; vers: number; proc: number; argsCrc: number; argsBytes: number }>();

export function encodeRequestKey(k: RequestKey): Uint8Array {
  const known = encodedKeys.get(k);
  // The cached bytes still describe `k` (the numbers only; a key's client never changes).
  // Compared with the numbers they were made from, not read back through a DataView: that
  // moved each small key buffer out of the JavaScript heap, an ArrayBuffer per request.
  if (known !== undefined && known.xid === k.xid && known.prog === k.prog && known.vers === k.vers && known.proc === k.proc && known.argsCrc === k.argsCrc && known.argsBytes === k.argsBytes) {
    return known.bytes;
  }
  const prefix = clientPrefix(k.client);
  const bytes = new Uint8Array(prefix.length + 24);
  bytes.set(prefix);
  let at = prefix.length;
  for (const v of [k.xid, k.prog, k.vers, k.proc, k.argsCrc, k.argsBytes]) {
    // XDR u32: big-endian, written by hand (no writer or DataView per request).
    bytes[at] = v >>> 24;
    bytes[at + 1] = (v >>> 16) & 0xff;
    bytes[at + 2] = (v >>> 8) & 0xff;
    bytes[at + 3] = v & 0xff;
    at += 4;
  }
  encodedKeys.set(k, { bytes, xid: k.xid, prog: k.prog, vers: k.vers, proc: k.proc, argsCrc: k.argsCrc, argsBytes: k.argsBytes });
  return bytes;
}

/** XDR-encoded client strings, by client: a blade has few clients, and each request needs its own. */
const clientPrefixes = new Map<string, Uint8Array>();
const clientPrefixesMax = 1024;

function clientPrefix(client: string): Uint8Array {
  let p = clientPrefixes.get(client);
  if (p === undefined) {
    const w = new XdrWriter(64);
    w.string(client, 255);
    p = w.bytes().slice();
    if (clientPrefixes.size >= clientPrefixesMax) clientPrefixes.clear();
    clientPrefixes.set(client, p);
  }
  return p;
}

export function decodeRequestKey(b: Uint8Array): RequestKey {
  const r = new XdrReader(b);
  const k = { client: r.string(255), xid: r.u32(), prog: r.u32(), vers: r.u32(), proc: r.u32(), argsCrc: r.u32(), argsBytes: r.u32() };
  r.done();
  return k;
}
