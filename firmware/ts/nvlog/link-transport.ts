// Carries the change log's mirroring messages over the blade interconnect (link/): one
// reliable ordered channel, whatever path is healthy. Messages sent in the same tick travel
// bundled in one link message (fewer frames, MACs and system calls when many requests are in
// flight); entries larger than one link message (a 1 MiB write descriptor) are split into
// fragments and joined again in order.
import { DecodeError } from '../core/errors.ts';
import { LinkChannel, reliablePayloadBytesMax, type LinkEndpoint } from '../link/endpoint.ts';
import { NvlogErrorCode } from './core/limits.ts';
import { decodeMirrorMessage, encodeMirrorMessage } from './core/mirror-wire.ts';
import type { MirrorMessage } from './core/mirror.ts';
import type { MirrorTransport, NvLog } from './nvlog.ts';

const FRAG_WHOLE = 0;
const FRAG_MORE = 1;
const FRAG_LAST = 2;
const BUNDLE = 3;

export class LinkMirrorTransport implements MirrorTransport {
  private readonly chunkBytes: number;
  private pieces: Uint8Array[] = [];
  private log: NvLog | undefined;
  private pending: Uint8Array[] = [];
  private flushScheduled = false;
  /** Messages the link refused to decode (reported, never applied). */
  rejected = 0;
  /** Link messages sent, and mirror messages carried in them (bundling ratio). */
  linkMessages = 0;
  mirrorMessages = 0;

  constructor(
    private readonly endpoint: LinkEndpoint,
    private readonly channel: number = LinkChannel.mirror,
    chunkBytes: number = reliablePayloadBytesMax - 1,
  ) {
    this.chunkBytes = chunkBytes;
  }

  /**
   * Connects `log` to the link: messages in, session events as partner up/down. A partner
   * that restarted gets a fresh greeting, so both logs are resynchronised (NV-3, HA-8).
   */
  bind(log: NvLog): this {
    this.log = log;
    log.attachTransport(this);
    this.endpoint.on('message', (ch, payload) => {
      if (ch === this.channel) this.receive(payload);
    });
    this.endpoint.on('peerEstablished', () => {
      this.pieces = [];
      log.peerConnected();
    });
    this.endpoint.on('peerRestart', () => {
      this.pieces = [];
      log.peerDisconnected();
      log.peerConnected();
    });
    if (this.endpoint.peerReachable) log.peerConnected();
    return this;
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
      whole = concat(this.pieces);
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

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
