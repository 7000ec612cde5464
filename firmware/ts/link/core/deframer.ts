// Streaming frame decoder for byte-stream paths (serial, TCP): finds frames in arbitrary
// chunks, resynchronises after garbage or torn frames, counts every rejection by code, and
// never throws on input.

import { FrameErrorCode, checkHeader, decodeCheckedFrame, frameHeaderBytes, frameMagic, framePayloadBytesMax } from './frame.ts';
import type { Frame, Mac } from './frame.ts';

const magic0 = (frameMagic >>> 24) & 0xff;
const magic1 = (frameMagic >>> 16) & 0xff;
const magic2 = (frameMagic >>> 8) & 0xff;
const magic3 = frameMagic & 0xff;

/** Counters a deframer keeps; `rejects` is keyed by the stable FrameErrorCode. */
export interface DeframerStats {
  framesAccepted: number;
  bytesIn: number;
  /** Bytes skipped while resynchronising (garbage, or the first byte of a refused frame). */
  bytesDiscarded: number;
  rejects: Record<string, number>;
}

export interface DeframerOptions {
  mac: Mac;
  /** Bound on a declared payload length; larger is refused before any of it is buffered. */
  payloadBytesMax?: number;
}

/**
 * Resynchronisation rules (why each is safe):
 * - Bytes before a magic are garbage: skipped, counted once per run as ERR_FRAME_MAGIC.
 * - The length is trusted only after the header CRC matches, so a corrupt length cannot make
 *   us wait for (or buffer) bytes that will never come; it is also bounded by payloadBytesMax.
 * - If the header is sound but the body CRC fails, the frame was torn or hit by noise and the
 *   next frame may start inside the bytes we took for its body: skip one byte and rescan.
 * - If header and body CRCs both match but the MAC (or nothing else) fails, the frame is
 *   intact but not ours: skip it whole, so that bytes inside its payload are never parsed as
 *   frames.
 */
export class Deframer {
  private buf: Uint8Array;
  private start = 0;
  private end = 0;
  private inGarbage = false;
  private readonly mac: Mac;
  private readonly payloadBytesMax: number;
  readonly stats: DeframerStats = { framesAccepted: 0, bytesIn: 0, bytesDiscarded: 0, rejects: {} };

  constructor(options: DeframerOptions) {
    this.mac = options.mac;
    this.payloadBytesMax = Math.min(options.payloadBytesMax ?? framePayloadBytesMax, framePayloadBytesMax);
    this.buf = new Uint8Array(64 * 1024);
  }

  /** Bytes held waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.end - this.start;
  }

  /** Feeds a chunk; returns the frames it completed, in order. */
  push(chunk: Uint8Array): Frame[] {
    this.stats.bytesIn += chunk.length;
    this.append(chunk);
    const out: Frame[] = [];
    for (;;) {
      const f = this.next();
      if (f === undefined) break;
      out.push(f);
    }
    this.compact();
    return out;
  }

  /** Drops buffered bytes (the stream was reset); they are counted as discarded. */
  reset(): void {
    const held = this.end - this.start;
    if (held > 0) this.reject(FrameErrorCode.truncated, held);
    this.start = this.end = 0;
    this.inGarbage = false;
  }

  private reject(code: FrameErrorCode, discard: number): void {
    this.stats.rejects[code] = (this.stats.rejects[code] ?? 0) + 1;
    this.stats.bytesDiscarded += discard;
  }

  private next(): Frame | undefined {
    const buf = this.buf;
    for (;;) {
      // Scan for the magic; a partial magic at the end is kept for the next chunk.
      let i = this.start;
      const limit = this.end - 3;
      while (i < limit && !(buf[i] === magic0 && buf[i + 1] === magic1 && buf[i + 2] === magic2 && buf[i + 3] === magic3)) i++;
      if (i >= limit) {
        // Keep up to 3 trailing bytes that could begin a magic.
        let keep = this.end - Math.max(this.start, i);
        while (keep > 0) {
          let prefix = true;
          for (let k = 0; k < keep; k++) if (buf[this.end - keep + k] !== [magic0, magic1, magic2][k]) prefix = false;
          if (prefix) break;
          keep--;
        }
        this.skipGarbage(this.end - keep - this.start);
        return undefined;
      }
      this.skipGarbage(i - this.start);
      this.inGarbage = false;
      if (this.end - this.start < frameHeaderBytes) return undefined;
      const h = checkHeader(buf, this.start, this.payloadBytesMax);
      if (!h.ok) {
        this.reject(h.code, 1);
        this.start += 1;
        this.inGarbage = true;
        continue;
      }
      const total = frameHeaderBytes + h.payloadBytes + this.mac.tagBytes;
      if (this.end - this.start < total) {
        this.ensureCapacity(total);
        return undefined;
      }
      const r = decodeCheckedFrame(buf, this.start, h.payloadBytes, this.mac);
      if (r.ok) {
        this.start += total;
        this.stats.framesAccepted++;
        return r.frame;
      }
      if (r.code === FrameErrorCode.bodyCrc) {
        this.reject(r.code, 1);
        this.start += 1;
        this.inGarbage = true;
      } else {
        this.reject(r.code, total);
        this.start += total;
      }
    }
  }

  private skipGarbage(n: number): void {
    if (n <= 0) return;
    // One garbage run counts once however many chunks it spans; a run that follows a refused
    // frame's first byte is part of that refusal's resync and is counted only in bytes.
    if (!this.inGarbage) this.stats.rejects[FrameErrorCode.magic] = (this.stats.rejects[FrameErrorCode.magic] ?? 0) + 1;
    this.inGarbage = true;
    this.stats.bytesDiscarded += n;
    this.start += n;
  }

  private append(chunk: Uint8Array): void {
    if (this.end + chunk.length > this.buf.length) {
      this.compact();
      this.ensureCapacity(this.end - this.start + chunk.length);
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  private ensureCapacity(held: number): void {
    if (this.start > 0 && this.buf.length - this.start < held) this.compact();
    if (this.buf.length - this.start >= held) return;
    let n = this.buf.length;
    while (n - this.start < held) n *= 2;
    const nb = new Uint8Array(n);
    nb.set(this.buf.subarray(this.start, this.end));
    this.end -= this.start;
    this.start = 0;
    this.buf = nb;
  }

  private compact(): void {
    if (this.start === 0) return;
    if (this.start === this.end) {
      this.start = this.end = 0;
      return;
    }
    this.buf.copyWithin(0, this.start, this.end);
    this.end -= this.start;
    this.start = 0;
  }
}
