// The HA status message (SPEC HA-2): what each blade tells its partner on every path, and
// its codec. Fixed 56-byte record: a 16-byte header (magic, version, body length, CRC32C of
// the body, CRC32C of the header) and a 40-byte body. Layout: docs/formats.md "Status message".
import { crc32c } from '../../core/crc32c.ts';
import { dataView } from '../../core/bytes.ts';
import { DecodeError, InvalidArgumentError } from '../../core/errors.ts';

/** 'TBHS' read as a little-endian u32. */
export const statusMagic = 0x53484254;
/** The status protocol version this firmware speaks. */
export const statusProtocolVersion = 1;
export const statusHeaderBytes = 16;
/** Body length of protocol version 1; later versions may only append fields. */
export const statusBodyBytesV1 = 40;
export const statusMessageBytes = statusHeaderBytes + statusBodyBytesV1;
/** Largest body a later protocol version may send (its v1 prefix is still read). */
export const statusBodyBytesMax = 1024;
/** Sequence numbers are u32; a blade that would pass this starts a new generation. */
export const statusSequenceMax = 0xffff_ffff;

/** Stable decode error codes (in `DecodeError.code`). */
export const StatusErrorCode = {
  short: 'ERR_STATUS_SHORT',
  magic: 'ERR_STATUS_MAGIC',
  headerCrc: 'ERR_STATUS_HEADER_CRC',
  length: 'ERR_STATUS_LENGTH',
  bodyCrc: 'ERR_STATUS_BODY_CRC',
  version: 'ERR_STATUS_VERSION',
  field: 'ERR_STATUS_FIELD',
} as const;

/** The state indicator of HA-2 (what the sender says about takeover). */
export const StateIndicator = { normal: 1, takeover: 2, noTakeover: 3, disable: 4 } as const;
export type StateIndicator = (typeof StateIndicator)[keyof typeof StateIndicator];

/** The sender's machine state (seed 003 figure 2): NORMAL, TAKEOVER, STOPPED, REBOOTING. */
export const HaPhase = { normal: 1, takeover: 2, stopped: 3, rebooting: 4 } as const;
export type HaPhase = (typeof HaPhase)[keyof typeof HaPhase];

/** Flag bits of the status message. */
export const StatusFlag = {
  /** The sender's NVRAM mirror with its partner is in sync. */
  mirrorSynced: 1 << 0,
  /** The sender is recovering (HA-11 status report) and waits for the partner to give back its disks. */
  awaitingGiveback: 1 << 1,
  /** The sender is part-way through a takeover (announced, not yet serving). */
  takeoverInProgress: 1 << 2,
} as const;

/** Why takeover is disabled (bit set in `reasons`, HA-8). */
export const DisableReason = {
  operator: 1 << 0,
  mirror: 1 << 1,
  version: 1 << 2,
  damped: 1 << 3,
  partnerDisable: 1 << 4,
  partnerNoTakeover: 1 << 5,
} as const;

export interface StatusMessage {
  /** Protocol version the sender speaks (decoded from the header). */
  protocolVersion: number;
  /** The pair's system id: a message from another pair is rejected by the receiver. */
  systemId: number;
  bladeIndex: 0 | 1;
  indicator: StateIndicator;
  phase: HaPhase;
  flags: number;
  /** DisableReason bits of the sender. */
  reasons: number;
  generation: number;
  sequence: number;
  /** Last generation/sequence the sender received from its partner (0/0: none yet). */
  peerGeneration: number;
  peerSequence: number;
  firmwareVersion: number;
  /** Disk sets the sender holds: bit i = the set normally owned by blade i. */
  claimedSets: number;
  /**
   * A random id of the sender's incarnation, new at every power-on. It tells a partner that
   * lost its persistent memory (and counts generations from 1 again) from stale records of
   * its previous life that carry higher stamps.
   */
  bootId: number;
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new InvalidArgumentError('ERR_STATUS_ARGUMENT', `status ${name} must be a u32, got ${v}`);
}

function checkU16(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new InvalidArgumentError('ERR_STATUS_ARGUMENT', `status ${name} must be a u16, got ${v}`);
}

function isIndicator(v: number): v is StateIndicator {
  return v >= 1 && v <= 4;
}

function isPhase(v: number): v is HaPhase {
  return v >= 1 && v <= 4;
}

/** Encodes a status message (always as protocol version `statusProtocolVersion`). */
export function encodeStatus(m: StatusMessage): Uint8Array {
  checkU32('systemId', m.systemId);
  checkU32('generation', m.generation);
  checkU32('sequence', m.sequence);
  checkU32('peerGeneration', m.peerGeneration);
  checkU32('peerSequence', m.peerSequence);
  checkU32('firmwareVersion', m.firmwareVersion);
  checkU32('bootId', m.bootId);
  checkU16('flags', m.flags);
  checkU16('reasons', m.reasons);
  if (m.bladeIndex !== 0 && m.bladeIndex !== 1) throw new InvalidArgumentError('ERR_STATUS_ARGUMENT', 'status bladeIndex must be 0 or 1');
  if (!isIndicator(m.indicator) || !isPhase(m.phase)) throw new InvalidArgumentError('ERR_STATUS_ARGUMENT', 'status indicator/phase out of range');
  if (!Number.isInteger(m.claimedSets) || m.claimedSets < 0 || m.claimedSets > 3) throw new InvalidArgumentError('ERR_STATUS_ARGUMENT', 'status claimedSets must be 0..3');
  const out = new Uint8Array(statusMessageBytes);
  const v = dataView(out);
  const b = statusHeaderBytes;
  v.setUint32(b + 0, m.systemId, true);
  v.setUint8(b + 4, m.bladeIndex);
  v.setUint8(b + 5, m.indicator);
  v.setUint8(b + 6, m.phase);
  v.setUint8(b + 7, m.claimedSets);
  v.setUint16(b + 8, m.flags, true);
  v.setUint16(b + 10, m.reasons, true);
  v.setUint32(b + 12, m.generation, true);
  v.setUint32(b + 16, m.sequence, true);
  v.setUint32(b + 20, m.peerGeneration, true);
  v.setUint32(b + 24, m.peerSequence, true);
  v.setUint32(b + 28, m.firmwareVersion, true);
  v.setUint32(b + 32, m.bootId, true);
  // Bytes 36..39 of the body are reserved and stay zero.
  v.setUint32(0, statusMagic, true);
  v.setUint16(4, statusProtocolVersion, true);
  v.setUint16(6, statusBodyBytesV1, true);
  v.setUint32(8, crc32c(out.subarray(statusHeaderBytes)), true);
  v.setUint32(12, crc32c(out.subarray(0, 12)), true);
  return out;
}

/** Total length of the status message at the start of `bytes`, once its header is valid. */
export function statusEncodedLength(bytes: Uint8Array): number {
  return statusHeaderBytes + dataView(bytes).getUint16(6, true);
}

/**
 * Decodes one status message from the start of `bytes` (trailing bytes are ignored).
 * Throws DecodeError with a `StatusErrorCode`. A message of a later protocol version is
 * accepted if its checksums hold and its body carries the version-1 prefix, so that a
 * version mismatch is *seen* (and disables takeover, HA-8) rather than looking like silence.
 */
export function decodeStatus(bytes: Uint8Array): StatusMessage {
  if (bytes.length < statusHeaderBytes) throw new DecodeError(StatusErrorCode.short, `status message: ${bytes.length} bytes, header needs ${statusHeaderBytes}`);
  const v = dataView(bytes);
  if (v.getUint32(0, true) !== statusMagic) throw new DecodeError(StatusErrorCode.magic, 'status message: bad magic');
  if (v.getUint32(12, true) !== crc32c(bytes.subarray(0, 12))) throw new DecodeError(StatusErrorCode.headerCrc, 'status message: header checksum mismatch');
  const version = v.getUint16(4, true);
  const bodyLength = v.getUint16(6, true);
  if (version === 0) throw new DecodeError(StatusErrorCode.version, 'status message: version 0');
  if (bodyLength < statusBodyBytesV1 || bodyLength > statusBodyBytesMax || (version === statusProtocolVersion && bodyLength !== statusBodyBytesV1)) {
    throw new DecodeError(StatusErrorCode.length, `status message: body length ${bodyLength} invalid for version ${version}`);
  }
  if (bytes.length < statusHeaderBytes + bodyLength) throw new DecodeError(StatusErrorCode.short, `status message: ${bytes.length} bytes, needs ${statusHeaderBytes + bodyLength}`);
  const body = bytes.subarray(statusHeaderBytes, statusHeaderBytes + bodyLength);
  if (v.getUint32(8, true) !== crc32c(body)) throw new DecodeError(StatusErrorCode.bodyCrc, 'status message: body checksum mismatch');
  const b = statusHeaderBytes;
  const bladeIndex = v.getUint8(b + 4);
  const indicator = v.getUint8(b + 5);
  const phase = v.getUint8(b + 6);
  const claimedSets = v.getUint8(b + 7);
  if (bladeIndex > 1) throw new DecodeError(StatusErrorCode.field, `status message: blade index ${bladeIndex}`);
  if (!isIndicator(indicator)) throw new DecodeError(StatusErrorCode.field, `status message: state indicator ${indicator}`);
  if (!isPhase(phase)) throw new DecodeError(StatusErrorCode.field, `status message: phase ${phase}`);
  if (claimedSets > 3) throw new DecodeError(StatusErrorCode.field, `status message: claimed sets ${claimedSets}`);
  return {
    protocolVersion: version,
    systemId: v.getUint32(b + 0, true),
    bladeIndex: bladeIndex as 0 | 1,
    indicator,
    phase,
    claimedSets,
    flags: v.getUint16(b + 8, true),
    reasons: v.getUint16(b + 10, true),
    generation: v.getUint32(b + 12, true),
    sequence: v.getUint32(b + 16, true),
    peerGeneration: v.getUint32(b + 20, true),
    peerSequence: v.getUint32(b + 24, true),
    firmwareVersion: v.getUint32(b + 28, true),
    bootId: v.getUint32(b + 32, true),
  };
}

/** Short names for logs and scenario output. */
export function indicatorName(i: StateIndicator): string {
  return i === StateIndicator.normal ? 'NORMAL' : i === StateIndicator.takeover ? 'TAKEOVER' : i === StateIndicator.noTakeover ? 'NO-TAKEOVER' : 'DISABLE';
}

export function phaseName(p: HaPhase): string {
  return p === HaPhase.normal ? 'NORMAL' : p === HaPhase.takeover ? 'TAKEOVER' : p === HaPhase.stopped ? 'STOPPED' : 'REBOOTING';
}

export function reasonNames(reasons: number): string[] {
  const out: string[] = [];
  for (const [name, bit] of Object.entries(DisableReason)) if (reasons & bit) out.push(name);
  return out;
}
