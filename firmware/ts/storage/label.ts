// The RAID disk label: the 4 KiB record at the start of every shared disk that says which
// pair, volume and RAID position the disk belongs to (format: docs/formats.md "Disk label").
// Codec plus read/write helpers; the assembly decisions that use it live in storage/raid/.

import { dataView, toHex, utf8Decode, utf8Encode } from '../core/bytes.ts';
import { crc32c } from '../core/crc32c.ts';
import { DecodeError, InvalidArgumentError, isTwinbladeError } from '../core/errors.ts';
import type { BlockDevice } from '../hal/block/block-device.ts';
import { diskLayout } from './layout.ts';

/** "TBRL" in ASCII, read as a little-endian u32. */
export const labelMagic = 0x4c524254;
export const labelVersion = 1;
/** Bytes of the fixed part before the member table. */
export const labelFixedBytes = 128;
/** Bytes per member-table entry: 16-byte disk uuid, state, 3 reserved. */
export const labelMemberEntryBytes = 20;
/** The most members (data + parity) a RAID group may have; keeps the label well inside 4 KiB. */
export const labelMemberCountMax = 32;
/** Pair and volume ids are UTF-8 strings of at most this many bytes. */
export const labelIdBytesMax = 32;
export const diskUuidBytes = 16;
/** `position` of a spare, which has no place in the group. */
export const sparePosition = 0xffff;

export const LabelErrorCode = {
  /** The first bytes are not the label magic (a blank or foreign disk). */
  magic: 'ERR_LABEL_MAGIC',
  version: 'ERR_LABEL_VERSION',
  /** The record length is impossible for its member count or exceeds the label slot. */
  length: 'ERR_LABEL_LENGTH',
  /** The checksum does not match: the label is corrupt. */
  crc: 'ERR_LABEL_CRC',
  /** A field holds a value the format forbids (checked after the checksum). */
  field: 'ERR_LABEL_FIELD',
  /** encodeLabel was given a label that cannot be represented. */
  invalid: 'ERR_LABEL_INVALID',
} as const;

export type DiskRole = 'data' | 'parity' | 'spare';
/** State of a RAID position in the member table. */
export type MemberState = 'ok' | 'failed' | 'rebuilding';

export interface LabelMember {
  /** 32 hex digits. */
  uuid: string;
  state: MemberState;
}

export interface DiskLabel {
  /** Raised on every membership change; the highest generation's member table is authoritative. */
  generation: number;
  pairId: string;
  volumeId: string;
  /** This disk's own id, 32 hex digits, fixed when it was formatted. */
  diskUuid: string;
  role: DiskRole;
  /** 0..memberCount-2 for data disks, memberCount-1 for the parity disk, `sparePosition` for a spare. */
  position: number;
  /** Members of the RAID group (data disks + the parity disk); spares are not counted. */
  memberCount: number;
  stripeUnitBytes: number;
  /** Stripes in the volume; every member holds `stripeCount * stripeUnitBytes` bytes of RAID data. */
  stripeCount: number;
  /** While this disk is being rebuilt: the first stripe not yet known rebuilt and flushed. */
  rebuildCursorStripe: number;
  /** One entry per position. */
  members: LabelMember[];
}

const roleCodes: Record<DiskRole, number> = { data: 0, parity: 1, spare: 2 };
const stateCodes: Record<MemberState, number> = { ok: 0, failed: 1, rebuilding: 2 };

export function labelRecordBytes(memberCount: number): number {
  return labelFixedBytes + memberCount * labelMemberEntryBytes + 4;
}

function invalid(message: string): never {
  throw new InvalidArgumentError(LabelErrorCode.invalid, `disk label: ${message}`);
}

function encodeId(out: Uint8Array, at: number, id: string, what: string): void {
  const b = utf8Encode(id);
  if (b.length === 0 || b.length > labelIdBytesMax) invalid(`${what} must be 1..${labelIdBytesMax} UTF-8 bytes`);
  if (b.includes(0)) invalid(`${what} must not contain NUL`);
  out.set(b, at);
}

function encodeUuid(out: Uint8Array, at: number, uuid: string, what: string): void {
  if (!/^[0-9a-f]{32}$/.test(uuid)) invalid(`${what} must be 32 lower-case hex digits`);
  for (let i = 0; i < diskUuidBytes; i++) out[at + i] = parseInt(uuid.slice(i * 2, i * 2 + 2), 16);
}

function setU64(v: DataView, at: number, n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) invalid(`${what} must be a non-negative safe integer`);
  v.setUint32(at, n % 0x1_0000_0000, true);
  v.setUint32(at + 4, Math.floor(n / 0x1_0000_0000), true);
}

function getU64(v: DataView, at: number, what: string): number {
  const n = v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x1_0000_0000;
  if (!Number.isSafeInteger(n)) throw new DecodeError(LabelErrorCode.field, `disk label: ${what} exceeds 2^53`);
  return n;
}

function checkShape(l: DiskLabel): void {
  if (!Number.isInteger(l.memberCount) || l.memberCount < 2 || l.memberCount > labelMemberCountMax) {
    invalid(`memberCount must be 2..${labelMemberCountMax}`);
  }
  if (l.members.length !== l.memberCount) invalid('members must have memberCount entries');
  if (!Number.isInteger(l.stripeUnitBytes) || l.stripeUnitBytes < 4096 || l.stripeUnitBytes % 4096 !== 0 || l.stripeUnitBytes > 0x8000_0000) {
    invalid('stripeUnitBytes must be a positive multiple of 4096');
  }
  if (l.role === 'spare') {
    if (l.position !== sparePosition) invalid('a spare has position sparePosition');
  } else {
    const parityPosition = l.memberCount - 1;
    const ok = l.role === 'parity' ? l.position === parityPosition : Number.isInteger(l.position) && l.position >= 0 && l.position < parityPosition;
    if (!ok) invalid(`position ${l.position} does not fit role ${l.role}`);
  }
}

/** Encodes a label into a full 4 KiB slot (the record, then zeros). Throws ERR_LABEL_INVALID. */
export function encodeLabel(l: DiskLabel): Uint8Array {
  checkShape(l);
  const out = new Uint8Array(diskLayout.labelBytes);
  const v = dataView(out);
  const recordBytes = labelRecordBytes(l.memberCount);
  v.setUint32(0, labelMagic, true);
  v.setUint16(4, labelVersion, true);
  v.setUint16(6, recordBytes, true);
  v.setUint32(8, 0, true); // flags, none defined in version 1
  setU64(v, 12, l.generation, 'generation');
  encodeId(out, 20, l.pairId, 'pairId');
  encodeId(out, 52, l.volumeId, 'volumeId');
  encodeUuid(out, 84, l.diskUuid, 'diskUuid');
  v.setUint8(100, roleCodes[l.role]);
  v.setUint8(101, 0);
  v.setUint16(102, l.position, true);
  v.setUint16(104, l.memberCount, true);
  v.setUint16(106, 0, true);
  v.setUint32(108, l.stripeUnitBytes, true);
  setU64(v, 112, l.stripeCount, 'stripeCount');
  setU64(v, 120, l.rebuildCursorStripe, 'rebuildCursorStripe');
  if (l.rebuildCursorStripe > l.stripeCount) invalid('rebuildCursorStripe beyond stripeCount');
  l.members.forEach((m, i) => {
    const at = labelFixedBytes + i * labelMemberEntryBytes;
    encodeUuid(out, at, m.uuid, `members[${i}].uuid`);
    v.setUint8(at + 16, stateCodes[m.state]);
  });
  v.setUint32(recordBytes - 4, crc32c(out.subarray(0, recordBytes - 4)), true);
  return out;
}

function decodeId(b: Uint8Array, what: string): string {
  let end = b.indexOf(0);
  if (end < 0) end = b.length;
  if (end === 0) throw new DecodeError(LabelErrorCode.field, `disk label: empty ${what}`);
  for (let i = end; i < b.length; i++) if (b[i] !== 0) throw new DecodeError(LabelErrorCode.field, `disk label: ${what} has bytes after its NUL padding`);
  try {
    return utf8Decode(b.subarray(0, end));
  } catch {
    throw new DecodeError(LabelErrorCode.field, `disk label: ${what} is not UTF-8`);
  }
}

/**
 * Decodes a label slot (at least the record; usually the whole 4 KiB). Checks, in order:
 * magic, version, length, CRC32C, then every field. Throws DecodeError with a
 * `LabelErrorCode`; never anything else, whatever the bytes.
 */
export function decodeLabel(slot: Uint8Array): DiskLabel {
  const fail = (code: string, message: string): never => {
    throw new DecodeError(code, `disk label: ${message}`);
  };
  if (slot.length < labelFixedBytes) fail(LabelErrorCode.length, `only ${slot.length} bytes`);
  const v = dataView(slot);
  const magic = v.getUint32(0, true);
  if (magic !== labelMagic) fail(LabelErrorCode.magic, `bad magic 0x${magic.toString(16).padStart(8, '0')}`);
  const version = v.getUint16(4, true);
  if (version !== labelVersion) fail(LabelErrorCode.version, `unsupported version ${version}`);
  const recordBytes = v.getUint16(6, true);
  const memberCount = v.getUint16(104, true);
  if (memberCount < 2 || memberCount > labelMemberCountMax || recordBytes !== labelRecordBytes(memberCount) || recordBytes > slot.length) {
    fail(LabelErrorCode.length, `record length ${recordBytes} does not fit member count ${memberCount}`);
  }
  const stored = v.getUint32(recordBytes - 4, true);
  const actual = crc32c(slot.subarray(0, recordBytes - 4));
  if (stored !== actual) fail(LabelErrorCode.crc, `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${actual.toString(16)})`);
  if (v.getUint32(8, true) !== 0) fail(LabelErrorCode.field, 'unknown flags');
  const roleCode = v.getUint8(100);
  const role: DiskRole | undefined = roleCode === 0 ? 'data' : roleCode === 1 ? 'parity' : roleCode === 2 ? 'spare' : undefined;
  if (role === undefined) return fail(LabelErrorCode.field, `unknown role ${roleCode}`);
  const position = v.getUint16(102, true);
  const stripeUnitBytes = v.getUint32(108, true);
  if (stripeUnitBytes < 4096 || stripeUnitBytes % 4096 !== 0 || stripeUnitBytes > 0x8000_0000) fail(LabelErrorCode.field, `bad stripe unit ${stripeUnitBytes}`);
  if (role === 'spare' ? position !== sparePosition : role === 'parity' ? position !== memberCount - 1 : position >= memberCount - 1) {
    fail(LabelErrorCode.field, `position ${position} does not fit role ${role}`);
  }
  const stripeCount = getU64(v, 112, 'stripeCount');
  const rebuildCursorStripe = getU64(v, 120, 'rebuildCursorStripe');
  if (rebuildCursorStripe > stripeCount) fail(LabelErrorCode.field, 'rebuild cursor beyond the volume');
  const members: LabelMember[] = [];
  for (let i = 0; i < memberCount; i++) {
    const at = labelFixedBytes + i * labelMemberEntryBytes;
    const code = v.getUint8(at + 16);
    const state: MemberState | undefined = code === 0 ? 'ok' : code === 1 ? 'failed' : code === 2 ? 'rebuilding' : undefined;
    if (state === undefined) return fail(LabelErrorCode.field, `member ${i} has unknown state ${code}`);
    members.push({ uuid: toHex(slot.subarray(at, at + diskUuidBytes)), state });
  }
  return {
    generation: getU64(v, 12, 'generation'),
    pairId: decodeId(slot.subarray(20, 52), 'pairId'),
    volumeId: decodeId(slot.subarray(52, 84), 'volumeId'),
    diskUuid: toHex(slot.subarray(84, 100)),
    role,
    position,
    memberCount,
    stripeUnitBytes,
    stripeCount,
    rebuildCursorStripe,
    members,
  };
}

/** What the label slot of a disk holds. */
export type LabelReadResult =
  | { kind: 'label'; label: DiskLabel }
  /** All zeros: a new disk, never formatted. */
  | { kind: 'blank' }
  /** Something that is not a valid label (foreign data, or a corrupted label). */
  | { kind: 'invalid'; code: string; message: string }
  /** The label slot could not be read. */
  | { kind: 'unreadable'; code: string; message: string };

/** Reads and classifies a disk's label slot. Never throws for disk errors or bad bytes. */
export async function readLabel(disk: BlockDevice): Promise<LabelReadResult> {
  let slot: Uint8Array;
  try {
    slot = await disk.read(diskLayout.labelOffsetBytes, diskLayout.labelBytes);
  } catch (e) {
    return { kind: 'unreadable', code: isTwinbladeError(e) ? e.code : 'ERR_BLOCK_IO', message: e instanceof Error ? e.message : String(e) };
  }
  if (slot.every((b) => b === 0)) return { kind: 'blank' };
  try {
    return { kind: 'label', label: decodeLabel(slot) };
  } catch (e) {
    if (isTwinbladeError(e)) return { kind: 'invalid', code: e.code, message: e.message };
    throw e;
  }
}

/** Writes a label into the disk's label slot (not flushed: the caller flushes). */
export async function writeLabel(disk: BlockDevice, label: DiskLabel): Promise<void> {
  await disk.write(diskLayout.labelOffsetBytes, encodeLabel(label));
}
