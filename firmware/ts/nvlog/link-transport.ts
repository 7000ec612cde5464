// Carries the change log's mirroring messages over the blade interconnect (link/): one
// reliable ordered channel, whatever path is healthy. Entries larger than one link message
// (a 1 MiB write descriptor) are split into fragments and joined again in order.
import { DecodeError } from '../core/errors.ts';
import { LinkChannel, reliablePayloadBytesMax, type LinkEndpoint } from '../link/endpoint.ts';
import { NvlogErrorCode } from './core/limits.ts';
import { decodeMirrorMessage, encodeMirrorMessage } from './core/mirror-wire.ts';
import type { MirrorMessage } from './core/mirror.ts';
import type { MirrorTransport, NvLog } from './nvlog.ts';

const FRAG_WHOLE = 0;
const FRAG_MORE = 1;
const FRAG_LAST = 2;

export class LinkMirrorTransport implements MirrorTransport {
  private readonly chunkBytes: number;
  private pieces: Uint8Array[] = [];
  private log: NvLog | undefined;
  /** Messages the link refused to decode (reported, never applied). */
  rejected = 0;

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
    const bytes = encodeMirrorMessage(msg);
    if (bytes.length <= this.chunkBytes) {
      this.endpoint.sendReliable(this.channel, withTag(FRAG_WHOLE, bytes));
      return;
    }
    for (let off = 0; off < bytes.length; off += this.chunkBytes) {
      const end = Math.min(bytes.length, off + this.chunkBytes);
      this.endpoint.sendReliable(this.channel, withTag(end === bytes.length ? FRAG_LAST : FRAG_MORE, bytes.subarray(off, end)));
    }
  }

  private receive(payload: Uint8Array): void {
    const tag = payload[0];
    const body = payload.subarray(1);
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
    if (whole === undefined) return;
    let msg: MirrorMessage;
    try {
      msg = decodeMirrorMessage(whole);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.rejected++;
      // Ask for a resynchronisation rather than leave a hole in the partner's copy.
      const partner = this.log?.bladeId === 0 ? 1 : 0;
      this.send({ kind: 'resync-request', origin: partner, reason: `${NvlogErrorCode.messageCorrupt}: ${e.message}` });
      return;
    }
    this.log?.onPeerMessage(msg);
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
