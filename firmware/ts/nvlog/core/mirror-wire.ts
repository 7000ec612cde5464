// The on-wire encoding of mirroring messages: a 16-byte header (magic, version, kind, origin,
// epoch, body length) with a CRC32C over header and body, then the body. A link layer with its
// own framing carries the same bytes. Format description: docs/formats.md, "Mirror message".
import { crc32c } from '../../core/crc32c.ts';
import { dataView } from '../../core/bytes.ts';
import { DecodeError } from '../../core/errors.ts';
import { getU64, putU64, type BladeId } from './layout.ts';
import { NvlogErrorCode, nvlogLimits } from './limits.ts';
import type { MirrorMessage } from './mirror.ts';

export const MIRROR_MSG_MAGIC = 0x4d42; // "BM"
export const MIRROR_MSG_VERSION = 1;
export const MIRROR_MSG_HEADER_BYTES = 20;
export const mirrorMessageBytesMax = MIRROR_MSG_HEADER_BYTES + 16 + nvlogLimits.descriptorBytesMax + 256;

const kinds = ['hello', 'reset', 'entry', 'ack', 'resync-request', 'fetch', 'copy', 'copy-done'] as const;

export function encodeMirrorMessage(m: MirrorMessage): Uint8Array {
  let body: Uint8Array;
  let origin: BladeId;
  let epoch = 0;
  switch (m.kind) {
    case 'hello': {
      origin = m.from;
      body = new Uint8Array(8);
      const v = dataView(body);
      v.setUint32(0, m.bootGeneration >>> 0, true);
      v.setUint32(4, m.halfBytes, true);
      break;
    }
    case 'reset':
      origin = m.origin;
      epoch = m.epoch;
      body = new Uint8Array(8);
      putU64(dataView(body), 0, m.fromSeq);
      break;
    case 'entry': {
      origin = m.origin;
      epoch = m.epoch;
      body = new Uint8Array(8 + m.bytes.length);
      putU64(dataView(body), 0, m.position);
      body.set(m.bytes, 8);
      break;
    }
    case 'ack':
      origin = m.origin;
      epoch = m.epoch;
      body = new Uint8Array(8);
      putU64(dataView(body), 0, m.seq);
      break;
    case 'resync-request':
      origin = m.origin;
      body = new TextEncoder().encode(m.reason.slice(0, 200));
      break;
    case 'fetch':
      origin = m.origin;
      body = new Uint8Array(0);
      break;
    case 'copy':
      origin = m.origin;
      body = new Uint8Array(8 + m.bytes.length);
      putU64(dataView(body), 0, m.position);
      body.set(m.bytes, 8);
      break;
    case 'copy-done':
      origin = m.origin;
      body = new Uint8Array(8);
      putU64(dataView(body), 0, m.count);
      break;
  }
  const out = new Uint8Array(MIRROR_MSG_HEADER_BYTES + body.length);
  const v = dataView(out);
  v.setUint16(0, MIRROR_MSG_MAGIC, true);
  v.setUint8(2, MIRROR_MSG_VERSION);
  v.setUint8(3, kinds.indexOf(m.kind));
  v.setUint8(4, origin);
  v.setUint32(8, epoch >>> 0, true);
  v.setUint32(12, body.length, true);
  out.set(body, MIRROR_MSG_HEADER_BYTES);
  v.setUint32(16, crc32c(body, crc32c(out.subarray(0, 16))), true);
  return out;
}

/** Decodes one whole message; throws DecodeError with a stable code on anything wrong. */
export function decodeMirrorMessage(b: Uint8Array): MirrorMessage {
  if (b.length < MIRROR_MSG_HEADER_BYTES) throw new DecodeError(NvlogErrorCode.messageCorrupt, 'mirror message shorter than its header');
  const v = dataView(b);
  if (v.getUint16(0, true) !== MIRROR_MSG_MAGIC) throw new DecodeError(NvlogErrorCode.messageCorrupt, 'mirror message: bad magic');
  if (v.getUint8(2) !== MIRROR_MSG_VERSION) throw new DecodeError(NvlogErrorCode.messageCorrupt, `mirror message version ${v.getUint8(2)}`);
  const len = v.getUint32(12, true);
  if (len !== b.length - MIRROR_MSG_HEADER_BYTES) throw new DecodeError(NvlogErrorCode.messageCorrupt, 'mirror message length mismatch');
  const body = b.subarray(MIRROR_MSG_HEADER_BYTES);
  if (v.getUint32(16, true) !== crc32c(body, crc32c(b.subarray(0, 16)))) throw new DecodeError(NvlogErrorCode.messageCorrupt, 'mirror message checksum mismatch');
  const kind = kinds[v.getUint8(3)];
  const origin = v.getUint8(4);
  if (kind === undefined || (origin !== 0 && origin !== 1)) throw new DecodeError(NvlogErrorCode.messageCorrupt, 'mirror message: field out of range');
  const epoch = v.getUint32(8, true);
  const bv = dataView(body);
  const need = (n: number): void => {
    if (body.length < n) throw new DecodeError(NvlogErrorCode.messageCorrupt, `mirror ${kind} body too short`);
  };
  switch (kind) {
    case 'hello':
      need(8);
      return { kind, from: origin, bootGeneration: bv.getUint32(0, true), halfBytes: bv.getUint32(4, true) };
    case 'reset':
      need(8);
      return { kind, origin, epoch, fromSeq: getU64(bv, 0) };
    case 'entry':
      need(8);
      return { kind, origin, epoch, position: getU64(bv, 0), bytes: body.slice(8) };
    case 'ack':
      need(8);
      return { kind, origin, epoch, seq: getU64(bv, 0) };
    case 'resync-request':
      return { kind, origin, reason: new TextDecoder().decode(body) };
    case 'fetch':
      return { kind, origin };
    case 'copy':
      need(8);
      return { kind, origin, position: getU64(bv, 0), bytes: body.slice(8) };
    case 'copy-done':
      need(8);
      return { kind, origin, count: getU64(bv, 0) };
  }
}
