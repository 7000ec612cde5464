// The NVRAM layout (header copies, HA state area, local log halves, partner mirror halves)
// and the codecs of its two small fixed records: the NVRAM header and an HA state slot.
// Format description: docs/formats.md, "NVRAM layout".
import { crc32c } from '../../core/crc32c.ts';
import { dataView } from '../../core/bytes.ts';
import { DecodeError, InvalidArgumentError } from '../../core/errors.ts';
import { NvlogErrorCode, nvlogLimits } from './limits.ts';

export const NVRAM_MAGIC = 0x564e4254; // "TBNV" little-endian
export const NVRAM_FORMAT_VERSION = 1;
export const HEADER_COPY_BYTES = 512;
export const HEADER_RECORD_BYTES = 128;
export const STATE_AREA_OFFSET = 4096;
export const STATE_AREA_BYTES = 4096;
export const STATE_SLOT_BYTES = STATE_AREA_BYTES / 2;
export const STATE_SLOT_HEADER_BYTES = 24;
export const STATE_MAGIC = 0x41484254; // "TBHA"
export const LOG_AREA_OFFSET = 8192;

export type BladeId = 0 | 1;
export type BatteryState = 'unknown' | 'good' | 'low' | 'failed';
const batteryCodes: readonly BatteryState[] = ['unknown', 'good', 'low', 'failed'];

/** Where everything lives in one blade's NVRAM. Both blades must have the same size. */
export interface NvramLayout {
  nvramBytes: number;
  headerOffsets: readonly [number, number];
  stateAreaOffset: number;
  stateAreaBytes: number;
  /** Each log region (local and mirror) is two halves of `halfBytes`. */
  halfBytes: number;
  localOffset: number;
  mirrorOffset: number;
}

/** The region (local log or partner mirror) and half a log position refers to. */
export function halfOffset(layout: NvramLayout, region: 'local' | 'mirror', half: 0 | 1): number {
  return (region === 'local' ? layout.localOffset : layout.mirrorOffset) + half * layout.halfBytes;
}

/**
 * Splits an NVRAM of `nvramBytes` into the fixed areas and four equal log halves (two local,
 * two mirroring the partner). Halves are 4 KiB multiples so entries never straddle pages badly.
 */
export function computeLayout(nvramBytes: number): NvramLayout {
  if (!Number.isSafeInteger(nvramBytes) || nvramBytes < LOG_AREA_OFFSET + 4 * nvlogLimits.halfBytesMin) {
    throw new InvalidArgumentError(NvlogErrorCode.invalidArgument, `NVRAM of ${nvramBytes} bytes is too small for the change log`);
  }
  const halfBytes = Math.floor((nvramBytes - LOG_AREA_OFFSET) / 4 / 4096) * 4096;
  return {
    nvramBytes,
    headerOffsets: [0, HEADER_COPY_BYTES],
    stateAreaOffset: STATE_AREA_OFFSET,
    stateAreaBytes: STATE_AREA_BYTES,
    halfBytes,
    localOffset: LOG_AREA_OFFSET,
    mirrorOffset: LOG_AREA_OFFSET + 2 * halfBytes,
  };
}

/** The NVRAM header: who owns this memory, which boot wrote it, how it ended. */
export interface NvramHeader {
  bladeId: BladeId;
  /** Incremented (and persisted) at every boot before the first append. */
  bootGeneration: number;
  /** Orders the two header copies: the valid copy with the larger counter is current. */
  writeCounter: number;
  battery: BatteryState;
  /** Set by the power-fail path once everything in flight was persisted (a clean seal). */
  sealed: boolean;
  /** The last sequence number in the local log when it was sealed (0 if none). */
  sealedSeq: number;
  layout: NvramLayout;
}

function putU64(v: DataView, off: number, x: number): void {
  v.setUint32(off, x % 2 ** 32, true);
  v.setUint32(off + 4, Math.floor(x / 2 ** 32), true);
}
function getU64(v: DataView, off: number): number {
  return v.getUint32(off, true) + v.getUint32(off + 4, true) * 2 ** 32;
}
export { putU64, getU64 };

/** Encodes one header copy (HEADER_RECORD_BYTES; the rest of the 512-byte slot stays zero). */
export function encodeHeader(h: NvramHeader): Uint8Array {
  const b = new Uint8Array(HEADER_RECORD_BYTES);
  const v = dataView(b);
  v.setUint32(0, NVRAM_MAGIC, true);
  v.setUint16(4, NVRAM_FORMAT_VERSION, true);
  v.setUint16(6, HEADER_RECORD_BYTES, true);
  v.setUint8(8, h.bladeId);
  v.setUint8(9, batteryCodes.indexOf(h.battery));
  v.setUint16(10, h.sealed ? 1 : 0, true);
  v.setUint32(12, h.bootGeneration >>> 0, true);
  v.setUint32(16, h.writeCounter >>> 0, true);
  putU64(v, 20, h.layout.nvramBytes);
  v.setUint32(28, h.layout.halfBytes, true);
  putU64(v, 32, h.sealedSeq);
  v.setUint32(40, h.layout.localOffset, true);
  v.setUint32(44, h.layout.mirrorOffset, true);
  v.setUint32(48, h.layout.stateAreaOffset, true);
  v.setUint32(52, h.layout.stateAreaBytes, true);
  v.setUint32(HEADER_RECORD_BYTES - 4, crc32c(b.subarray(0, HEADER_RECORD_BYTES - 4)), true);
  return b;
}

/** What a header copy turned out to be; `valid` carries the decoded header. */
export type HeaderCopy =
  | { kind: 'valid'; header: NvramHeader }
  | { kind: 'empty' }
  | { kind: 'torn'; code: string; detail: string }
  | { kind: 'version'; version: number };

/** Classifies one header copy; never throws on garbage. */
export function decodeHeaderCopy(b: Uint8Array): HeaderCopy {
  if (b.length < HEADER_RECORD_BYTES) return { kind: 'torn', code: NvlogErrorCode.headerCorrupt, detail: 'short read' };
  if (b.subarray(0, HEADER_RECORD_BYTES).every((x) => x === 0)) return { kind: 'empty' };
  const v = dataView(b);
  if (v.getUint32(0, true) !== NVRAM_MAGIC) return { kind: 'torn', code: NvlogErrorCode.headerCorrupt, detail: 'bad magic' };
  const crc = crc32c(b.subarray(0, HEADER_RECORD_BYTES - 4));
  if (v.getUint32(HEADER_RECORD_BYTES - 4, true) !== crc) return { kind: 'torn', code: NvlogErrorCode.headerCorrupt, detail: 'header checksum mismatch' };
  const version = v.getUint16(4, true);
  if (version !== NVRAM_FORMAT_VERSION) return { kind: 'version', version };
  const bladeId = v.getUint8(8);
  const battery = batteryCodes[v.getUint8(9)];
  if ((bladeId !== 0 && bladeId !== 1) || battery === undefined || v.getUint16(6, true) !== HEADER_RECORD_BYTES) {
    return { kind: 'torn', code: NvlogErrorCode.headerCorrupt, detail: 'field out of range' };
  }
  const layout: NvramLayout = {
    nvramBytes: getU64(v, 20),
    headerOffsets: [0, HEADER_COPY_BYTES],
    halfBytes: v.getUint32(28, true),
    localOffset: v.getUint32(40, true),
    mirrorOffset: v.getUint32(44, true),
    stateAreaOffset: v.getUint32(48, true),
    stateAreaBytes: v.getUint32(52, true),
  };
  return {
    kind: 'valid',
    header: {
      bladeId,
      battery,
      sealed: (v.getUint16(10, true) & 1) === 1,
      bootGeneration: v.getUint32(12, true),
      writeCounter: v.getUint32(16, true),
      sealedSeq: getU64(v, 32),
      layout,
    },
  };
}

export function layoutsEqual(a: NvramLayout, b: NvramLayout): boolean {
  return (
    a.nvramBytes === b.nvramBytes &&
    a.halfBytes === b.halfBytes &&
    a.localOffset === b.localOffset &&
    a.mirrorOffset === b.mirrorOffset &&
    a.stateAreaOffset === b.stateAreaOffset &&
    a.stateAreaBytes === b.stateAreaBytes
  );
}

/** Encodes an HA state slot: magic, version, counter, length, payload CRC, header CRC, payload. */
export function encodeStateSlot(counter: number, payload: Uint8Array): Uint8Array {
  if (payload.length > STATE_SLOT_BYTES - STATE_SLOT_HEADER_BYTES) {
    throw new InvalidArgumentError(NvlogErrorCode.stateTooLarge, `HA state of ${payload.length} bytes exceeds ${STATE_SLOT_BYTES - STATE_SLOT_HEADER_BYTES}`);
  }
  const b = new Uint8Array(STATE_SLOT_HEADER_BYTES + payload.length);
  const v = dataView(b);
  v.setUint32(0, STATE_MAGIC, true);
  v.setUint16(4, 1, true);
  v.setUint16(6, 0, true);
  v.setUint32(8, counter >>> 0, true);
  v.setUint32(12, payload.length, true);
  v.setUint32(16, crc32c(payload), true);
  v.setUint32(20, crc32c(b.subarray(0, 20)), true);
  b.set(payload, STATE_SLOT_HEADER_BYTES);
  return b;
}

/** Decodes an HA state slot; returns undefined for an empty, torn or foreign slot. */
export function decodeStateSlot(b: Uint8Array): { counter: number; payload: Uint8Array } | undefined {
  if (b.length < STATE_SLOT_HEADER_BYTES) return undefined;
  const v = dataView(b);
  if (v.getUint32(0, true) !== STATE_MAGIC || v.getUint16(4, true) !== 1) return undefined;
  if (v.getUint32(20, true) !== crc32c(b.subarray(0, 20))) return undefined;
  const len = v.getUint32(12, true);
  if (len > b.length - STATE_SLOT_HEADER_BYTES) return undefined;
  const payload = b.slice(STATE_SLOT_HEADER_BYTES, STATE_SLOT_HEADER_BYTES + len);
  if (crc32c(payload) !== v.getUint32(16, true)) return undefined;
  return { counter: v.getUint32(8, true), payload };
}

/** Throws the decode error a header copy stands for (used when no valid copy exists). */
export function headerCopyError(c: HeaderCopy): DecodeError {
  if (c.kind === 'version') return new DecodeError(NvlogErrorCode.headerVersion, `NVRAM header format version ${c.version} is not ${NVRAM_FORMAT_VERSION}`);
  if (c.kind === 'torn') return new DecodeError(c.code, `NVRAM header copy unusable: ${c.detail}`);
  return new DecodeError(NvlogErrorCode.headerCorrupt, 'NVRAM header copy is empty');
}
