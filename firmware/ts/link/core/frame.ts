// The link frame: the unit every interconnect path (serial, TCP, UDP) carries between the
// two blades. Fixed big-endian header with its own CRC32C, then the payload and a truncated
// MAC (so a stray device cannot inject status or takeover messages), both under a body CRC32C.

import { crc32c } from '../../core/crc32c.ts';
import { dataView } from '../../core/bytes.ts';
import { InvalidArgumentError } from '../../core/errors.ts';

/** "TBLF" (twinblade link frame). The deframer scans for it after garbage. */
export const frameMagic = 0x54424c46;
export const frameVersion = 1;
/** Bytes of the fixed header, including the header CRC. */
export const frameHeaderBytes = 36;
/**
 * Header bytes the MAC covers: every field except the two CRCs. The CRCs need no
 * authentication (they protect nothing the MAC does not), and leaving them out lets the body
 * CRC cover the tag, so a torn tag reads as line noise (ERR_FRAME_BODY_CRC), never as forgery.
 */
const macHeaderBytes = 28;
/** Largest payload this build sends or accepts; bounds what a corrupt length can make us buffer. */
export const framePayloadBytesMax = 256 * 1024;

/** What a frame is for. Values are on the wire: never renumber. */
export const FrameType = {
  /** Session handshake: announces the sender's generation and the one it knows for us. */
  hello: 1,
  /** A reliable, ordered message on a channel; `seq` numbers it. */
  data: 2,
  /** A cumulative ack (plus a selective bitmap in the payload); also the idle keepalive. */
  ack: 3,
  /** An unreliable message (HA status): sent once per path, latest wins. */
  datagram: 4,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/**
 * Flag bits. Bit 0 names the sender's role so a frame reflected back at its sender is refused.
 * Bit 1 (DATA only) says the message continues in the next DATA frame: a message longer than
 * a path's fragmentBytesMax travels as consecutive fragments.
 */
export const FrameFlag = {
  fromB: 0x01,
  more: 0x02,
} as const;
const knownFlagsMask = FrameFlag.fromB | FrameFlag.more;

/** Rejection codes, stable: counters and logs are keyed by them. */
export const FrameErrorCode = {
  magic: 'ERR_FRAME_MAGIC',
  version: 'ERR_FRAME_VERSION',
  headerCrc: 'ERR_FRAME_HEADER_CRC',
  length: 'ERR_FRAME_LENGTH',
  type: 'ERR_FRAME_TYPE',
  flags: 'ERR_FRAME_FLAGS',
  bodyCrc: 'ERR_FRAME_BODY_CRC',
  mac: 'ERR_FRAME_MAC',
  truncated: 'ERR_FRAME_TRUNCATED',
} as const;
export type FrameErrorCode = (typeof FrameErrorCode)[keyof typeof FrameErrorCode];

/**
 * The authenticator port. The pure core cannot reach node:crypto, so the caller injects one
 * (link/mac.ts has HMAC-SHA256 truncated to 16 bytes, keyed with the per-pair key).
 */
export interface Mac {
  /** Bytes of every tag this Mac produces. */
  readonly tagBytes: number;
  /** The tag of the concatenation of `parts`. */
  sign(parts: readonly Uint8Array[]): Uint8Array;
  /** True iff `tag` is the tag of the concatenation of `parts` (constant-time compare). */
  verify(parts: readonly Uint8Array[], tag: Uint8Array): boolean;
}

/** The header fields that the sender chooses (the codec fills magic, version, length, CRCs). */
export interface FrameFields {
  type: FrameType;
  flags: number;
  /** Reliable channel, or datagram message type (0..255). */
  channel: number;
  /** The sender's generation (boot count, from persistent memory; never 0 on the wire once known). */
  srcGeneration: number;
  /** The generation the sender believes the receiver has (0 = unknown). */
  dstGeneration: number;
  /** Data: the message number. Datagram: the datagram number. Others: 0. (mod 2^32) */
  seq: number;
  /** Cumulative ack: the highest data seq received in order (mod 2^32). */
  ack: number;
}

export interface Frame extends FrameFields {
  payload: Uint8Array;
}

/** Bytes a frame with `payloadBytes` of payload occupies on the wire. */
export function frameWireBytes(payloadBytes: number, mac: Mac): number {
  return frameHeaderBytes + payloadBytes + mac.tagBytes;
}

function isU32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

/** Encodes one frame. Argument errors throw InvalidArgumentError synchronously. */
export function encodeFrame(frame: Frame, mac: Mac): Uint8Array {
  const { payload } = frame;
  if (payload.length > framePayloadBytesMax) {
    throw new InvalidArgumentError('ERR_FRAME_TOO_LARGE', `payload of ${payload.length} bytes exceeds framePayloadBytesMax ${framePayloadBytesMax}`);
  }
  if (!isFrameType(frame.type)) throw new InvalidArgumentError('ERR_FRAME_INVALID_ARGUMENT', `unknown frame type ${frame.type}`);
  if (!Number.isInteger(frame.channel) || frame.channel < 0 || frame.channel > 255) {
    throw new InvalidArgumentError('ERR_FRAME_INVALID_ARGUMENT', `channel ${frame.channel} is not 0..255`);
  }
  if ((frame.flags & ~knownFlagsMask) !== 0 || !Number.isInteger(frame.flags)) {
    throw new InvalidArgumentError('ERR_FRAME_INVALID_ARGUMENT', `unknown flags ${frame.flags}`);
  }
  for (const k of ['srcGeneration', 'dstGeneration', 'seq', 'ack'] as const) {
    if (!isU32(frame[k])) throw new InvalidArgumentError('ERR_FRAME_INVALID_ARGUMENT', `${k} ${frame[k]} is not a u32`);
  }
  const out = new Uint8Array(frameHeaderBytes + payload.length + mac.tagBytes);
  const v = dataView(out);
  v.setUint32(0, frameMagic);
  v.setUint8(4, frameVersion);
  v.setUint8(5, frame.type);
  v.setUint8(6, frame.flags);
  v.setUint8(7, frame.channel);
  v.setUint32(8, payload.length);
  v.setUint32(12, frame.srcGeneration);
  v.setUint32(16, frame.dstGeneration);
  v.setUint32(20, frame.seq);
  v.setUint32(24, frame.ack);
  out.set(payload, frameHeaderBytes);
  const tag = mac.sign([out.subarray(0, macHeaderBytes), payload]);
  if (tag.length !== mac.tagBytes) throw new InvalidArgumentError('ERR_FRAME_INVALID_ARGUMENT', 'Mac returned a tag of the wrong size');
  out.set(tag, frameHeaderBytes + payload.length);
  v.setUint32(28, crc32c(out.subarray(frameHeaderBytes)));
  v.setUint32(32, crc32c(out.subarray(0, 32)));
  return out;
}

export function isFrameType(t: number): t is FrameType {
  return t === FrameType.hello || t === FrameType.data || t === FrameType.ack || t === FrameType.datagram;
}

/** The result of checking a header: either the declared payload length or why it was refused. */
export type HeaderCheck = { ok: true; payloadBytes: number } | { ok: false; code: FrameErrorCode };

/**
 * Checks the fixed header at `buf[off..off+36)`: magic, header CRC (before anything in it is
 * trusted, in particular the length), version, type, flags and the length bound.
 */
export function checkHeader(buf: Uint8Array, off: number, payloadBytesMax = framePayloadBytesMax): HeaderCheck {
  const v = new DataView(buf.buffer, buf.byteOffset + off, frameHeaderBytes);
  if (v.getUint32(0) !== frameMagic) return { ok: false, code: FrameErrorCode.magic };
  if (crc32c(buf.subarray(off, off + 32)) !== v.getUint32(32)) return { ok: false, code: FrameErrorCode.headerCrc };
  if (v.getUint8(4) !== frameVersion) return { ok: false, code: FrameErrorCode.version };
  if (!isFrameType(v.getUint8(5))) return { ok: false, code: FrameErrorCode.type };
  if ((v.getUint8(6) & ~knownFlagsMask) !== 0) return { ok: false, code: FrameErrorCode.flags };
  const len = v.getUint32(8);
  if (len > payloadBytesMax) return { ok: false, code: FrameErrorCode.length };
  return { ok: true, payloadBytes: len };
}

/** The result of decoding a complete frame. */
export type DecodeResult = { ok: true; frame: Frame } | { ok: false; code: FrameErrorCode };

/**
 * Decodes the frame that starts at `buf[off]` and whose header has passed `checkHeader` with
 * `payloadBytes`; `buf` must hold the whole frame. Checks the body CRC (payload and tag), then
 * the MAC (header fields and payload).
 * The payload is copied, so the caller may reuse `buf`.
 */
export function decodeCheckedFrame(buf: Uint8Array, off: number, payloadBytes: number, mac: Mac): DecodeResult {
  const bodyEnd = off + frameHeaderBytes + payloadBytes;
  const v = new DataView(buf.buffer, buf.byteOffset + off, frameHeaderBytes);
  const payloadView = buf.subarray(off + frameHeaderBytes, bodyEnd);
  const tag = buf.subarray(bodyEnd, bodyEnd + mac.tagBytes);
  if (crc32c(buf.subarray(off + frameHeaderBytes, bodyEnd + mac.tagBytes)) !== v.getUint32(28)) return { ok: false, code: FrameErrorCode.bodyCrc };
  if (!mac.verify([buf.subarray(off, off + macHeaderBytes), payloadView], tag)) {
    return { ok: false, code: FrameErrorCode.mac };
  }
  return {
    ok: true,
    frame: {
      type: v.getUint8(5) as FrameType,
      flags: v.getUint8(6),
      channel: v.getUint8(7),
      srcGeneration: v.getUint32(12),
      dstGeneration: v.getUint32(16),
      seq: v.getUint32(20),
      ack: v.getUint32(24),
      payload: payloadView.slice(),
    },
  };
}

/**
 * Decodes exactly one frame occupying all of `bytes` (a UDP datagram). Never throws on input:
 * a short datagram is ERR_FRAME_TRUNCATED, extra bytes after the MAC are ERR_FRAME_LENGTH.
 */
export function decodeFrame(bytes: Uint8Array, mac: Mac, payloadBytesMax = framePayloadBytesMax): DecodeResult {
  if (bytes.length < 4) return { ok: false, code: FrameErrorCode.truncated };
  if (dataView(bytes).getUint32(0) !== frameMagic) return { ok: false, code: FrameErrorCode.magic };
  if (bytes.length < frameHeaderBytes) return { ok: false, code: FrameErrorCode.truncated };
  const h = checkHeader(bytes, 0, payloadBytesMax);
  if (!h.ok) return h;
  const total = frameHeaderBytes + h.payloadBytes + mac.tagBytes;
  if (bytes.length < total) return { ok: false, code: FrameErrorCode.truncated };
  if (bytes.length > total) return { ok: false, code: FrameErrorCode.length };
  return decodeCheckedFrame(bytes, 0, h.payloadBytes, mac);
}
