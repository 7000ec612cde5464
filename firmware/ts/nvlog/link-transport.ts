// Carries the change log's mirroring messages over the blade interconnect (link/): one
// reliable ordered channel, whatever path is healthy. Messages sent in the same tick travel
// bundled in one link message (fewer frames, MACs and system calls when many requests are in
// flight); entries larger than one link message (a 1 MiB write descriptor) are split into
// fragments and joined again in order.
import { concatBytes } from '../core/bytes.ts';
import { DecodeError } from '../core/errors.ts';
import { LinkChannel, reliablePayloadBytesMax, type LinkEndpoint } from '../link/endpoint.ts';
import { NvlogErrorCode } from './core/limits.ts';
import { decodeMirrorMessage, encodeMirrorMessage } from './core/mirror-wire.ts';
import type { MirrorMessage } from './core/mirror.ts';
import type { MirrorTransport, NvLog } from './nvlog.ts';
import type { Timers } from '../core/clock.ts';
import type { BladeId } from './core/layout.ts';

/** What the transport delivers to: the change log, or the fetch of a partner copy at boot. */
export type MirrorSink = Pick<NvLog, 'bladeId' | 'onPeerMessage' | 'attachTransport' | 'peerConnected' | 'peerDisconnected'>;

const FRAG_WHOLE = 0;
const FRAG_MORE = 1;
const FRAG_LAST = 2;
const BUNDLE = 3;

export class LinkMirrorTransport implements MirrorTransport {
  private readonly chunkBytes: number;
  private pieces: Uint8Array[] = [];
  private log: MirrorSink | undefined;
  private pending: Uint8Array[] = [];
  private flushScheduled = false;
  /** Messages the link refused to decode (reported, never applied). */
  rejected = 0;
  /** Link messages sent, and mirror messages carried in them (bundling ratio). */
  linkMessages = 0;
  mirrorMessages = 0;
  /** Times every path to the partner went down and the log was told it is unreachable. */
  unreachableEvents = 0;

  constructor(
    private readonly endpoint: LinkEndpoint,
    private readonly channel: number = LinkChannel.mirror,
    chunkBytes: number = reliablePayloadBytesMax - 1,
  ) {
    this.chunkBytes = chunkBytes;
  }

  /**
   * Connects `log` to the link: messages in, session and path events as partner up/down. A
   * partner that restarted gets a fresh greeting, so both logs are resynchronised (NV-3,
   * HA-8). With every path down the log is told at once that the partner is unreachable: it
   * acknowledges on its local copy alone instead of retrying a resync into a dead link
   * (each retry would hold every change for an ack timeout); when a path of the same
   * session comes back, the log greets again and both logs resynchronise.
   * With a session already established the log greets at once — even while no path is up
   * at this instant: the greeting waits in the link's queue (and the log greets again
   * when a path comes back).
   */
  bind(log: NvLog): this {
    this.bindSink(log);
    if (this.endpoint.peerReachable || this.endpoint.peerGeneration !== 0) log.peerConnected();
    return this;
  }

  /** Wires any receiver of mirror messages to the endpoint; returns the unbinding function. */
  bindSink(log: MirrorSink): () => void {
    this.log = log;
    log.attachTransport(this);
    // Whether the log was last told the partner is up: path events report only changes.
    let connected = this.endpoint.peerReachable;
    let recheckScheduled = false;
    let bound = true;
    const onMessage = (ch: number, payload: Uint8Array): void => {
      if (ch === this.channel) this.receive(payload);
    };
    const onEstablished = (): void => {
      this.pieces = [];
      connected = true;
      log.peerConnected();
    };
    const onRestart = (): void => {
      this.pieces = [];
      connected = true;
      log.peerDisconnected();
      log.peerConnected();
    };
    const recheck = (): void => {
      recheckScheduled = false;
      if (!bound) return;
      const reachable = this.endpoint.peerReachable;
      if (reachable === connected) return;
      connected = reachable;
      if (reachable) {
        // The same session recovered a path: greet, so the partner resynchronises its log to
        // us, and its reset in answer restarts ours (MirrorOrigin.partnerListening).
        this.pieces = [];
        log.peerConnected();
      } else {
        this.unreachableEvents++;
        log.peerDisconnected();
      }
    };
    // Path events arrive in a batch with the session events they cause (a path up that
    // establishes a new session): decide after the batch, so a new session greets once.
    const onPathChange = (): void => {
      if (recheckScheduled) return;
      recheckScheduled = true;
      queueMicrotask(recheck);
    };
    this.endpoint.on('message', onMessage);
    this.endpoint.on('peerEstablished', onEstablished);
    this.endpoint.on('peerRestart', onRestart);
    this.endpoint.on('pathUp', onPathChange);
    this.endpoint.on('pathDown', onPathChange);
    this.endpoint.on('activePath', onPathChange);
    return () => {
      bound = false;
      this.endpoint.off('message', onMessage);
      this.endpoint.off('peerEstablished', onEstablished);
      this.endpoint.off('peerRestart', onRestart);
      this.endpoint.off('pathUp', onPathChange);
      this.endpoint.off('pathDown', onPathChange);
      this.endpoint.off('activePath', onPathChange);
    };
  }

  send(msg: MirrorMessage): void {
    this.pending.push(encodeMirrorMessage(msg));
    this.mirrorMessages++;
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Sends what accumulated this tick, in order: bundles of small messages, fragments of big ones. */
  private flush(): void {
    this.flushScheduled = false;
    const msgs = this.pending;
    this.pending = [];
    let bundle: Uint8Array[] = [];
    let bundleBytes = 1;
    const sendBundle = (): void => {
      if (bundle.length === 1) this.sendLink(withTag(FRAG_WHOLE, bundle[0] as Uint8Array));
      else if (bundle.length > 1) {
        const out = new Uint8Array(bundleBytes);
        out[0] = BUNDLE;
        const v = new DataView(out.buffer);
        let o = 1;
        for (const m of bundle) {
          v.setUint32(o, m.length, true);
          out.set(m, o + 4);
          o += 4 + m.length;
        }
        this.sendLink(out);
      }
      bundle = [];
      bundleBytes = 1;
    };
    for (const bytes of msgs) {
      if (bytes.length + 4 > this.chunkBytes) {
        sendBundle();
        for (let off = 0; off < bytes.length; off += this.chunkBytes) {
          const end = Math.min(bytes.length, off + this.chunkBytes);
          this.sendLink(withTag(end === bytes.length ? FRAG_LAST : FRAG_MORE, bytes.subarray(off, end)));
        }
        continue;
      }
      if (bundleBytes + 4 + bytes.length > this.chunkBytes) sendBundle();
      bundle.push(bytes);
      bundleBytes += 4 + bytes.length;
    }
    sendBundle();
  }

  private sendLink(payload: Uint8Array): void {
    this.linkMessages++;
    this.endpoint.sendReliable(this.channel, payload);
  }

  private receive(payload: Uint8Array): void {
    const tag = payload[0];
    const body = payload.subarray(1);
    if (tag === BUNDLE && this.pieces.length === 0) {
      const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
      for (let o = 0; o < body.length; ) {
        const n = o + 4 <= body.length ? v.getUint32(o, true) : Number.MAX_SAFE_INTEGER;
        if (o + 4 + n > body.length) {
          this.reject(new DecodeError(NvlogErrorCode.messageCorrupt, 'mirror bundle: length beyond the link message'));
          return;
        }
        this.deliver(body.subarray(o + 4, o + 4 + n));
        o += 4 + n;
      }
      return;
    }
    let whole: Uint8Array | undefined;
    if (tag === FRAG_WHOLE && this.pieces.length === 0) whole = body;
    else if (tag === FRAG_MORE) this.pieces.push(body.slice());
    else if (tag === FRAG_LAST) {
      this.pieces.push(body);
      whole = concatBytes(this.pieces);
      this.pieces = [];
    } else {
      this.pieces = [];
      this.rejected++;
      return;
    }
    if (whole !== undefined) this.deliver(whole);
  }

  private deliver(bytes: Uint8Array): void {
    let msg: MirrorMessage;
    try {
      msg = decodeMirrorMessage(bytes);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.reject(e);
      return;
    }
    this.log?.onPeerMessage(msg);
  }

  private reject(e: DecodeError): void {
    this.rejected++;
    // Ask for a resynchronisation rather than leave a hole in the partner's copy.
    const partner = this.log?.bladeId === 0 ? 1 : 0;
    this.send({ kind: 'resync-request', origin: partner, reason: `${NvlogErrorCode.messageCorrupt}: ${e.message}` });
  }
}

function withTag(tag: number, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length + 1);
  out[0] = tag;
  out.set(b, 1);
  return out;
}

/**
 * Own-reboot recovery over the link (NV-5, NV-7): asks the partner for its copy of this
 * blade's log and rebuilds the region image (entries at their positions) to pass to
 * `NvLog.open` as `partnerCopy`. Resolves undefined if the partner does not answer within
 * `timeoutMs` (it is down, or has no log open): recovery then uses the local copy alone.
 * Call before binding the log to the endpoint.
 */
export function fetchPartnerCopy(endpoint: LinkEndpoint, opts: { bladeId: BladeId; regionBytes: number; timers: Timers; timeoutMs: number }): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    const region = new Uint8Array(opts.regionBytes);
    let received = 0;
    const sink = {
      bladeId: opts.bladeId,
      onPeerMessage: (m: MirrorMessage): void => {
        if (m.kind === 'copy' && m.origin === opts.bladeId) {
          if (m.position >= 0 && m.position + m.bytes.length <= region.length) {
            region.set(m.bytes, m.position);
            received++;
          }
        } else if (m.kind === 'copy-done' && m.origin === opts.bladeId) {
          finish(received === m.count ? region : undefined);
        }
      },
      attachTransport: (): void => undefined,
      peerConnected: (): void => undefined,
      peerDisconnected: (): void => undefined,
    };
    const t = new LinkMirrorTransport(endpoint);
    const unbind = t.bindSink(sink);
    const timer = opts.timers.after(opts.timeoutMs, () => finish(undefined));
    function finish(v: Uint8Array | undefined): void {
      timer.cancel();
      unbind();
      resolve(v);
    }
    t.send({ kind: 'fetch', origin: opts.bladeId });
  });
}
