// The log entry: a fixed 32-byte header (magic, version, type, origin blade, sequence number,
// boot generation, payload length, payload CRC32C, header CRC32C) followed by the payload,
// padded to 8 bytes. The same bytes live in the origin's local log and in the partner's mirror.
// Format description: docs/formats.md, "Log entry".
import { crc32c } from '../../core/crc32c.ts';
import { dataView } from '../../core/bytes.ts';
import { DecodeError, InvalidArgumentError } from '../../core/errors.ts';
import { getU64, putU64, type BladeId } from './layout.ts';
import { NvlogErrorCode, nvlogLimits } from './limits.ts';

export const ENTRY_MAGIC = 0x454c4254; // "TBLE" little-endian
export const ENTRY_VERSION = 1;
export const ENTRY_HEADER_BYTES = 32;
export const ENTRY_ALIGN = 8;

/**
 * Entry types. A change carries a descriptor; a state entry records a request's reply or its
 * change's outcome (SM-1); a release entry records the log's release point, so that recovery
 * of either copy (own log or the partner's mirror) knows which missing entries were released.
 */
export const EntryType = { change: 1, state: 2, release: 3 } as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface EntryHeader {
  type: EntryType;
  origin: BladeId;
  seq: number;
  bootGeneration: number;
  payloadBytes: number;
  payloadCrc: number;
}

/** A decoded, checked entry. `bytes` is the whole padded record as stored. */
export interface LogRecord extends EntryHeader {
  payload: Uint8Array;
  /** Byte offset of the entry inside its log region (0 .. 2*halfBytes). */
  position: number;
  bytes: Uint8Array;
}

export function paddedEntryBytes(payloadBytes: number): number {
  return ENTRY_HEADER_BYTES + Math.ceil(payloadBytes / ENTRY_ALIGN) * ENTRY_ALIGN;
}

/** Encodes a whole entry, padded to 8 bytes. */
export function encodeEntry(h: Omit<EntryHeader, 'payloadBytes' | 'payloadCrc'>, payload: Uint8Array): Uint8Array {
  return encodeEntryParts(h, [payload]);
}

/**
 * Encodes a whole entry whose payload is the concatenation of `parts`: the same bytes as
 * `encodeEntry` of the joined payload, but each piece is copied once, straight into the
 * entry, and the payload CRC runs over the pieces (a 1 MiB WRITE's data is not first joined
 * with its descriptor header, then with the request key, then copied again here).
 */
export function encodeEntryParts(h: Omit<EntryHeader, 'payloadBytes' | 'payloadCrc'>, parts: readonly Uint8Array[]): Uint8Array {
  const header = encodeEntryHeader(h, parts);
  const b = new Uint8Array(paddedEntryBytes(dataView(header).getUint32(20, true)));
  b.set(header, 0);
  let off = ENTRY_HEADER_BYTES;
  for (const p of parts) {
    b.set(p, off);
    off += p.length;
  }
  return b;
}

/**
 * The 32-byte header of an entry whose payload is the concatenation of `parts` (the payload
 * CRC runs over the pieces). The entry is this header, the parts, and zeros up to
 * `paddedEntryBytes` (`entryPadding`): the log writes them straight into NVRAM with one
 * gather write, so a 1 MiB WRITE's data is copied once, from the RPC record into the log.
 */
export function encodeEntryHeader(h: Omit<EntryHeader, 'payloadBytes' | 'payloadCrc'>, parts: readonly Uint8Array[]): Uint8Array {
  const b = new Uint8Array(ENTRY_HEADER_BYTES);
  writeEntryHeader(b, dataView(b), h, parts);
  return b;
}

const headerScratch = new Uint8Array(new ArrayBuffer(ENTRY_HEADER_BYTES));
const headerScratchView = dataView(headerScratch);

/**
 * `encodeEntryHeader` into one shared buffer, valid until the next call: for the log, whose
 * gather write copies it into NVRAM at once. A fresh 32-byte array per entry (small arrays
 * live inside the JavaScript heap, and a DataView over one first moves it out) showed in the
 * profile of 4 KiB FILE_SYNC writes.
 */
export function entryHeaderScratch(h: Omit<EntryHeader, 'payloadBytes' | 'payloadCrc'>, parts: readonly Uint8Array[]): Uint8Array {
  writeEntryHeader(headerScratch, headerScratchView, h, parts);
  return headerScratch;
}

function writeEntryHeader(b: Uint8Array, v: DataView, h: Omit<EntryHeader, 'payloadBytes' | 'payloadCrc'>, parts: readonly Uint8Array[]): void {
  if (!Number.isSafeInteger(h.seq) || h.seq < 1) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `bad sequence number ${h.seq}`);
  let payloadBytes = 0;
  let crc = 0;
  for (const p of parts) {
    payloadBytes += p.length;
    crc = crc32c(p, crc);
  }
  v.setUint32(0, ENTRY_MAGIC, true);
  v.setUint16(4, ENTRY_VERSION, true);
  v.setUint8(6, h.type);
  v.setUint8(7, h.origin);
  putU64(v, 8, h.seq);
  v.setUint32(16, h.bootGeneration >>> 0, true);
  v.setUint32(20, payloadBytes, true);
  v.setUint32(24, crc, true);
  v.setUint32(28, crc32c(b.subarray(0, 28)), true);
}

const zeroPadding = new Uint8Array(ENTRY_ALIGN);

/** The zero bytes that pad a payload of `payloadBytes` to the entry alignment (a shared, read-only view). */
export function entryPadding(payloadBytes: number): Uint8Array {
  return zeroPadding.subarray(0, paddedEntryBytes(payloadBytes) - ENTRY_HEADER_BYTES - payloadBytes);
}

/** What the bytes at one log position are (the rows of the recovery table use this). */
export type HeaderCheck =
  | { kind: 'empty' }
  | { kind: 'torn'; detail: string }
  | { kind: 'version'; version: number }
  | { kind: 'valid'; header: EntryHeader };

/** Classifies the 32 header bytes at `b[off..]`; never throws. */
export function checkEntryHeader(b: Uint8Array, off: number, spaceBytes: number): HeaderCheck {
  if (spaceBytes < ENTRY_HEADER_BYTES || off + ENTRY_HEADER_BYTES > b.length) return { kind: 'empty' };
  const h = b.subarray(off, off + ENTRY_HEADER_BYTES);
  let zero = true;
  for (const x of h) if (x !== 0) { zero = false; break; }
  if (zero) return { kind: 'empty' };
  const v = dataView(h);
  if (v.getUint32(0, true) !== ENTRY_MAGIC) return { kind: 'torn', detail: 'bad magic' };
  if (v.getUint32(28, true) !== crc32c(h.subarray(0, 28))) return { kind: 'torn', detail: 'header checksum mismatch' };
  const version = v.getUint16(4, true);
  if (version !== ENTRY_VERSION) return { kind: 'version', version };
  const type = v.getUint8(6);
  const origin = v.getUint8(7);
  const payloadBytes = v.getUint32(20, true);
  if ((type !== EntryType.change && type !== EntryType.state && type !== EntryType.release) || (origin !== 0 && origin !== 1)) return { kind: 'torn', detail: 'field out of range' };
  if (paddedEntryBytes(payloadBytes) > spaceBytes) return { kind: 'torn', detail: 'length beyond the half' };
  const seq = getU64(v, 8);
  if (seq < 1 || !Number.isSafeInteger(seq)) return { kind: 'torn', detail: 'sequence number out of range' };
  return {
    kind: 'valid',
    header: { type, origin, seq, bootGeneration: v.getUint32(16, true), payloadBytes, payloadCrc: v.getUint32(24, true) },
  };
}

/** True when the payload after a valid header matches its checksum. */
export function checkEntryBody(b: Uint8Array, off: number, h: EntryHeader): boolean {
  const start = off + ENTRY_HEADER_BYTES;
  return crc32c(b.subarray(start, start + h.payloadBytes)) === h.payloadCrc;
}

/** Decodes one standalone entry (a mirror message's bytes); throws DecodeError on anything wrong. */
export function decodeEntry(bytes: Uint8Array, position = 0): LogRecord {
  const hc = checkEntryHeader(bytes, 0, bytes.length);
  if (hc.kind === 'version') throw new DecodeError(NvlogErrorCode.entryVersion, `entry version ${hc.version} is not ${ENTRY_VERSION}`);
  if (hc.kind === 'empty') throw new DecodeError(NvlogErrorCode.entryTruncated, 'entry is empty or shorter than its header');
  if (hc.kind === 'torn') throw new DecodeError(NvlogErrorCode.entryCorrupt, `entry header unusable: ${hc.detail}`);
  const h = hc.header;
  if (bytes.length !== paddedEntryBytes(h.payloadBytes)) throw new DecodeError(NvlogErrorCode.entryTruncated, 'entry length does not match its header');
  if (!checkEntryBody(bytes, 0, h)) throw new DecodeError(NvlogErrorCode.entryCorrupt, 'entry payload checksum mismatch');
  return { ...h, payload: bytes.subarray(ENTRY_HEADER_BYTES, ENTRY_HEADER_BYTES + h.payloadBytes), position, bytes };
}

// ---- payloads ------------------------------------------------------------------------

/** A change entry's payload: the request key (to match retransmissions) and the descriptor. */
export interface ChangePayload {
  key: Uint8Array;
  descriptor: Uint8Array;
}

export function encodeChangePayload(p: ChangePayload): Uint8Array {
  if (p.key.length > nvlogLimits.requestKeyBytesMax) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `request key of ${p.key.length} bytes`);
  if (p.descriptor.length > nvlogLimits.descriptorBytesMax) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `descriptor of ${p.descriptor.length} bytes`);
  const b = new Uint8Array(2 + p.key.length + p.descriptor.length);
  dataView(b).setUint16(0, p.key.length, true);
  b.set(p.key, 2);
  b.set(p.descriptor, 2 + p.key.length);
  return b;
}

/**
 * A change payload as pieces for `encodeEntryParts`: the key length and key (a small new
 * buffer), then the descriptor's pieces by reference. Joined, the same bytes as
 * `encodeChangePayload`.
 */
export function changePayloadParts(key: Uint8Array, descriptor: readonly Uint8Array[]): Uint8Array[] {
  let descriptorBytes = 0;
  for (const d of descriptor) descriptorBytes += d.length;
  if (key.length > nvlogLimits.requestKeyBytesMax) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `request key of ${key.length} bytes`);
  if (descriptorBytes > nvlogLimits.descriptorBytesMax) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `descriptor of ${descriptorBytes} bytes`);
  const head = new Uint8Array(2 + key.length);
  // Little-endian u16 by hand: a DataView over this small array would first move it out of the heap.
  head[0] = key.length & 0xff;
  head[1] = key.length >>> 8;
  head.set(key, 2);
  return [head, ...descriptor];
}

export function decodeChangePayload(b: Uint8Array): ChangePayload {
  if (b.length < 2) throw new DecodeError(NvlogErrorCode.entryTruncated, 'change payload shorter than its key length');
  const klen = dataView(b).getUint16(0, true);
  if (klen > nvlogLimits.requestKeyBytesMax || 2 + klen > b.length) throw new DecodeError(NvlogErrorCode.entryCorrupt, `change payload key length ${klen} out of range`);
  return { key: b.subarray(2, 2 + klen), descriptor: b.subarray(2 + klen) };
}

/** A state entry's payload: the request reached `replied` with this reply (SM-1). */
export interface StatePayload {
  key: Uint8Array;
  /** The change this request produced (0 for a request that logged no change). */
  changeSeq: number;
  reply: Uint8Array;
}

export function encodeStatePayload(p: StatePayload): Uint8Array {
  if (p.key.length > nvlogLimits.requestKeyBytesMax) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `request key of ${p.key.length} bytes`);
  if (p.reply.length > nvlogLimits.replyBytesMax) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `reply of ${p.reply.length} bytes`);
  const b = new Uint8Array(12 + p.key.length + p.reply.length);
  const v = dataView(b);
  putU64(v, 0, p.changeSeq);
  v.setUint16(8, p.key.length, true);
  v.setUint16(10, p.reply.length, true);
  b.set(p.key, 12);
  b.set(p.reply, 12 + p.key.length);
  return b;
}

/**
 * A state payload as pieces for the log's gather write (joined, the bytes of
 * `encodeStatePayload`): a 12-byte head written by hand, then the key and the reply by
 * reference, so recording a change's outcome allocates no payload buffer.
 */
export function statePayloadParts(p: StatePayload): Uint8Array[] {
  if (p.key.length > nvlogLimits.requestKeyBytesMax) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `request key of ${p.key.length} bytes`);
  if (p.reply.length > nvlogLimits.replyBytesMax) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `reply of ${p.reply.length} bytes`);
  if (!Number.isSafeInteger(p.changeSeq) || p.changeSeq < 0) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `bad change sequence number ${p.changeSeq}`);
  const head = new Uint8Array(12);
  const lo = p.changeSeq % 2 ** 32;
  const hi = Math.floor(p.changeSeq / 2 ** 32);
  for (let i = 0; i < 4; i++) {
    head[i] = (lo >>> (8 * i)) & 0xff;
    head[4 + i] = (hi >>> (8 * i)) & 0xff;
  }
  head[8] = p.key.length & 0xff;
  head[9] = p.key.length >>> 8;
  head[10] = p.reply.length & 0xff;
  head[11] = p.reply.length >>> 8;
  return [head, p.key, p.reply];
}

export function decodeStatePayload(b: Uint8Array): StatePayload {
  if (b.length < 12) throw new DecodeError(NvlogErrorCode.entryTruncated, 'state payload too short');
  const v = dataView(b);
  const klen = v.getUint16(8, true);
  const rlen = v.getUint16(10, true);
  if (klen > nvlogLimits.requestKeyBytesMax || rlen > nvlogLimits.replyBytesMax || 12 + klen + rlen !== b.length) {
    throw new DecodeError(NvlogErrorCode.entryCorrupt, 'state payload lengths do not match');
  }
  return { changeSeq: getU64(v, 0), key: b.subarray(12, 12 + klen), reply: b.subarray(12 + klen, 12 + klen + rlen) };
}

/**
 * A release entry's payload: every entry of this log numbered up to `releasedSeq` is released —
 * each file system it changed has a committed consistency point containing it — so recovery
 * neither needs nor expects them (their half may have been reused).
 */
export interface ReleasePayload {
  releasedSeq: number;
}

export const RELEASE_PAYLOAD_BYTES = 8;

export function encodeReleasePayload(p: ReleasePayload): Uint8Array {
  if (!Number.isSafeInteger(p.releasedSeq) || p.releasedSeq < 0) throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `bad release point ${p.releasedSeq}`);
  const b = new Uint8Array(RELEASE_PAYLOAD_BYTES);
  putU64(dataView(b), 0, p.releasedSeq);
  return b;
}

export function decodeReleasePayload(b: Uint8Array): ReleasePayload {
  if (b.length !== RELEASE_PAYLOAD_BYTES) throw new DecodeError(NvlogErrorCode.entryCorrupt, `release payload of ${b.length} bytes, not ${RELEASE_PAYLOAD_BYTES}`);
  const releasedSeq = getU64(dataView(b), 0);
  if (!Number.isSafeInteger(releasedSeq)) throw new DecodeError(NvlogErrorCode.entryCorrupt, 'release point out of range');
  return { releasedSeq };
}
