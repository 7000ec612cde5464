// The mailbox sector record (HA-1's disk path): the record a blade writes into its own slot
// of the mailbox region on a shared disk (storage/layout.ts). It wraps one status message
// with the slot and disk it was meant for, so a misdirected write is detected, not believed.
// One record fills the first sector of the slot, so every write of it is atomic.
import { crc32c } from '../../core/crc32c.ts';
import { dataView } from '../../core/bytes.ts';
import { DecodeError, InvalidArgumentError } from '../../core/errors.ts';
import { decodeStatus, encodeStatus, statusMessageBytes, type StatusMessage } from './status.ts';

/** 'TBMB' read as a little-endian u32. */
export const mailboxMagic = 0x424d4254;
export const mailboxVersion = 1;
export const mailboxHeaderBytes = 16;
/** Body: slot u8, 3 reserved bytes, disk index u32, then one status message. */
export const mailboxBodyBytes = 8 + statusMessageBytes;
export const mailboxRecordBytes = mailboxHeaderBytes + mailboxBodyBytes;
/** The record is written as one sector; 512 is the smallest sector size a disk may have. */
export const mailboxSectorBytesMin = 512;

export const MailboxErrorCode = {
  short: 'ERR_MAILBOX_SHORT',
  /** An all-zero sector: nothing was ever written to this slot (a fresh disk). */
  empty: 'ERR_MAILBOX_EMPTY',
  magic: 'ERR_MAILBOX_MAGIC',
  headerCrc: 'ERR_MAILBOX_HEADER_CRC',
  version: 'ERR_MAILBOX_VERSION',
  length: 'ERR_MAILBOX_LENGTH',
  bodyCrc: 'ERR_MAILBOX_BODY_CRC',
  /** The record names another slot or disk than where it was read: a misdirected write. */
  misdirected: 'ERR_MAILBOX_MISDIRECTED',
  /** The embedded status message did not decode (its own code is in the message). */
  status: 'ERR_MAILBOX_STATUS',
} as const;

export interface MailboxRecord {
  /** The slot (= writer's blade index) the record belongs in. */
  slot: 0 | 1;
  /** The mailbox disk index (in the pair's configuration) the record was written to. */
  diskIndex: number;
  status: StatusMessage;
}

/** Encodes a record padded to `sectorBytes` (a multiple of 512), ready to write at the slot. */
export function encodeMailbox(r: MailboxRecord, sectorBytes = mailboxSectorBytesMin): Uint8Array {
  if (!Number.isInteger(sectorBytes) || sectorBytes < mailboxSectorBytesMin || sectorBytes % mailboxSectorBytesMin !== 0) {
    throw new InvalidArgumentError('ERR_MAILBOX_ARGUMENT', `mailbox sector size ${sectorBytes} is not a multiple of 512`);
  }
  if (r.slot !== 0 && r.slot !== 1) throw new InvalidArgumentError('ERR_MAILBOX_ARGUMENT', 'mailbox slot must be 0 or 1');
  if (!Number.isInteger(r.diskIndex) || r.diskIndex < 0 || r.diskIndex > 0xffff_ffff) throw new InvalidArgumentError('ERR_MAILBOX_ARGUMENT', 'mailbox diskIndex must be a u32');
  if (r.status.bladeIndex !== r.slot) throw new InvalidArgumentError('ERR_MAILBOX_ARGUMENT', 'a blade writes only its own mailbox slot');
  const out = new Uint8Array(sectorBytes);
  const v = dataView(out);
  const b = mailboxHeaderBytes;
  v.setUint8(b, r.slot);
  v.setUint32(b + 4, r.diskIndex, true);
  out.set(encodeStatus(r.status), b + 8);
  v.setUint32(0, mailboxMagic, true);
  v.setUint16(4, mailboxVersion, true);
  v.setUint16(6, mailboxBodyBytes, true);
  v.setUint32(8, crc32c(out.subarray(b, b + mailboxBodyBytes)), true);
  v.setUint32(12, crc32c(out.subarray(0, 12)), true);
  return out;
}

/**
 * Decodes the record read from slot `expectSlot` of mailbox disk `expectDisk`.
 * Throws DecodeError with a `MailboxErrorCode`.
 */
export function decodeMailbox(bytes: Uint8Array, expectSlot: 0 | 1, expectDisk: number): MailboxRecord {
  if (bytes.length < mailboxRecordBytes) throw new DecodeError(MailboxErrorCode.short, `mailbox sector: ${bytes.length} bytes, needs ${mailboxRecordBytes}`);
  const v = dataView(bytes);
  const magic = v.getUint32(0, true);
  if (magic !== mailboxMagic) {
    if (magic === 0 && bytes.subarray(0, mailboxRecordBytes).every((x) => x === 0)) throw new DecodeError(MailboxErrorCode.empty, 'mailbox sector: never written');
    throw new DecodeError(MailboxErrorCode.magic, 'mailbox sector: bad magic');
  }
  if (v.getUint32(12, true) !== crc32c(bytes.subarray(0, 12))) throw new DecodeError(MailboxErrorCode.headerCrc, 'mailbox sector: header checksum mismatch');
  if (v.getUint16(4, true) !== mailboxVersion) throw new DecodeError(MailboxErrorCode.version, `mailbox sector: version ${v.getUint16(4, true)}`);
  if (v.getUint16(6, true) !== mailboxBodyBytes) throw new DecodeError(MailboxErrorCode.length, `mailbox sector: body length ${v.getUint16(6, true)}`);
  const b = mailboxHeaderBytes;
  if (v.getUint32(8, true) !== crc32c(bytes.subarray(b, b + mailboxBodyBytes))) throw new DecodeError(MailboxErrorCode.bodyCrc, 'mailbox sector: body checksum mismatch');
  const slot = v.getUint8(b);
  const diskIndex = v.getUint32(b + 4, true);
  if (slot !== expectSlot || diskIndex !== expectDisk) {
    throw new DecodeError(MailboxErrorCode.misdirected, `mailbox sector: record for slot ${slot} disk ${diskIndex} found in slot ${expectSlot} disk ${expectDisk}`);
  }
  let status: StatusMessage;
  try {
    status = decodeStatus(bytes.subarray(b + 8, b + 8 + statusMessageBytes));
  } catch (e) {
    throw new DecodeError(MailboxErrorCode.status, `mailbox sector: embedded status: ${(e as Error).message}`);
  }
  if (status.bladeIndex !== slot) throw new DecodeError(MailboxErrorCode.misdirected, `mailbox sector: status of blade ${status.bladeIndex} in slot ${slot}`);
  return { slot: slot as 0 | 1, diskIndex, status };
}
