// The write-intent record: which regions of stripes may have writes in flight, kept on
// every member (format: docs/formats.md "RAID write-intent record"). After a power cut the
// volume recomputes parity in exactly those regions, so a torn write that rewrote live
// blocks of a stripe (a partial-stripe update) cannot leave their parity wrong.

import { dataView } from '../../core/bytes.ts';
import { crc32c } from '../../core/crc32c.ts';
import { DecodeError, InvalidArgumentError } from '../../core/errors.ts';
import { diskLayout } from '../layout.ts';

/** "TBRI" in ASCII, read as a little-endian u32. */
export const intentMagic = 0x49524254;
export const intentVersion = 1;
export const intentHeaderBytes = 16;
/** Regions one record can describe: the bitmap fills the record after its header and CRC. */
export const intentRegionCountMax = (diskLayout.raidIntentBytes - intentHeaderBytes - 4) * 8;

export const IntentErrorCode = {
  magic: 'ERR_INTENT_MAGIC',
  version: 'ERR_INTENT_VERSION',
  length: 'ERR_INTENT_LENGTH',
  crc: 'ERR_INTENT_CRC',
  invalid: 'ERR_INTENT_INVALID',
} as const;

export interface IntentRecord {
  /** Stripes per region (per bit). */
  regionStripes: number;
  /** One flag per region: writes to it may not be durable on every member. */
  dirty: boolean[];
}

/** Encodes into a full 4 KiB slot. */
export function encodeIntent(r: IntentRecord): Uint8Array {
  if (!Number.isInteger(r.regionStripes) || r.regionStripes < 1 || r.regionStripes > 0xffff_ffff) {
    throw new InvalidArgumentError(IntentErrorCode.invalid, 'intent record: regionStripes must be a positive u32');
  }
  if (r.dirty.length > intentRegionCountMax) throw new InvalidArgumentError(IntentErrorCode.invalid, `intent record: at most ${intentRegionCountMax} regions`);
  const out = new Uint8Array(diskLayout.raidIntentBytes);
  const v = dataView(out);
  const bitmapBytes = Math.ceil(r.dirty.length / 8);
  const length = intentHeaderBytes + bitmapBytes + 4;
  v.setUint32(0, intentMagic, true);
  v.setUint16(4, intentVersion, true);
  v.setUint16(6, length, true);
  v.setUint32(8, r.regionStripes, true);
  v.setUint32(12, r.dirty.length, true);
  r.dirty.forEach((d, i) => {
    if (d) out[intentHeaderBytes + (i >> 3)] = (out[intentHeaderBytes + (i >> 3)] as number) | (1 << (i & 7));
  });
  v.setUint32(length - 4, crc32c(out.subarray(0, length - 4)), true);
  return out;
}

/** Decodes a slot: magic, version, length, CRC32C, then fields. Throws DecodeError only. */
export function decodeIntent(slot: Uint8Array): IntentRecord {
  const fail = (code: string, m: string): never => {
    throw new DecodeError(code, `intent record: ${m}`);
  };
  if (slot.length < intentHeaderBytes + 4) fail(IntentErrorCode.length, `only ${slot.length} bytes`);
  const v = dataView(slot);
  if (v.getUint32(0, true) !== intentMagic) fail(IntentErrorCode.magic, 'bad magic');
  if (v.getUint16(4, true) !== intentVersion) fail(IntentErrorCode.version, `unsupported version ${v.getUint16(4, true)}`);
  const length = v.getUint16(6, true);
  const count = v.getUint32(12, true);
  if (count > intentRegionCountMax || length !== intentHeaderBytes + Math.ceil(count / 8) + 4 || length > slot.length) {
    fail(IntentErrorCode.length, `length ${length} does not fit ${count} regions`);
  }
  if (v.getUint32(length - 4, true) !== crc32c(slot.subarray(0, length - 4))) fail(IntentErrorCode.crc, 'checksum mismatch');
  const regionStripes = v.getUint32(8, true);
  if (regionStripes < 1) fail(IntentErrorCode.invalid, 'zero regionStripes');
  const dirty: boolean[] = [];
  for (let i = 0; i < count; i++) dirty.push((((slot[intentHeaderBytes + (i >> 3)] as number) >> (i & 7)) & 1) === 1);
  return { regionStripes, dirty };
}

/** Stripes per region for a volume: about `regionBytesTarget` per member, and few enough regions for one record. */
export function intentRegionStripes(stripeCount: number, stripeUnitBytes: number, regionBytesTarget: number): number {
  return Math.max(1, Math.floor(regionBytesTarget / stripeUnitBytes), Math.ceil(stripeCount / intentRegionCountMax));
}
