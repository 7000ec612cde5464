// The status message and mailbox sector codecs (SPEC HA-2, docs/formats.md): round trips,
// every rejection code, version tolerance, and fuzzing with random and mutated bytes.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32c } from '../../firmware/ts/core/crc32c.ts';
import { bytesEqual, dataView } from '../../firmware/ts/core/bytes.ts';
import { DecodeError, isTwinbladeError } from '../../firmware/ts/core/errors.ts';
import {
  decodeStatus,
  encodeStatus,
  HaPhase,
  StateIndicator,
  StatusErrorCode,
  statusHeaderBytes,
  statusMessageBytes,
  type StatusMessage,
} from '../../firmware/ts/ha/core/status.ts';
import { decodeMailbox, encodeMailbox, MailboxErrorCode, mailboxRecordBytes } from '../../firmware/ts/ha/core/mailbox.ts';

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const arbStatus: fc.Arbitrary<StatusMessage> = fc.record({
  protocolVersion: fc.constant(1),
  systemId: u32,
  bladeIndex: fc.constantFrom(0 as const, 1 as const),
  indicator: fc.constantFrom(...Object.values(StateIndicator)),
  phase: fc.constantFrom(...Object.values(HaPhase)),
  flags: u16,
  reasons: u16,
  generation: u32,
  sequence: u32,
  peerGeneration: u32,
  peerSequence: u32,
  firmwareVersion: u32,
  claimedSets: fc.integer({ min: 0, max: 3 }),
  bootId: u32,
});

const sample: StatusMessage = {
  protocolVersion: 1,
  systemId: 0x7b1ade01,
  bladeIndex: 1,
  indicator: StateIndicator.takeover,
  phase: HaPhase.normal,
  flags: 5,
  reasons: 0,
  generation: 7,
  sequence: 1234,
  peerGeneration: 3,
  peerSequence: 99,
  firmwareVersion: 0x00010003,
  claimedSets: 2,
  bootId: 0xb007,
};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(DecodeError);
    return isTwinbladeError(e) ? e.code : 'not-a-twinblade-error';
  }
}

/** Re-seals the header CRC after a test edits header bytes 0..11. */
function resealHeader(b: Uint8Array): void {
  dataView(b).setUint32(12, crc32c(b.subarray(0, 12)), true);
}

describe('status message codec', () => {
  it('HA-2 round-trips every field (property)', () => {
    fc.assert(
      fc.property(arbStatus, (m) => {
        const bytes = encodeStatus(m);
        expect(bytes.length).toBe(statusMessageBytes);
        expect(decodeStatus(bytes)).toEqual(m);
      }),
      { numRuns: 300 },
    );
  });

  it('HA-2 carries version, system id, state, generation/sequence and the partner stamp at fixed offsets', () => {
    const b = encodeStatus(sample);
    const v = dataView(b);
    expect(v.getUint32(0, true)).toBe(0x53484254);
    expect(v.getUint16(4, true)).toBe(1);
    expect(v.getUint16(6, true)).toBe(40);
    expect(v.getUint32(16, true)).toBe(sample.systemId);
    expect(v.getUint8(21)).toBe(StateIndicator.takeover);
    expect(v.getUint32(28, true)).toBe(7);
    expect(v.getUint32(32, true)).toBe(1234);
    expect(v.getUint32(36, true)).toBe(3);
    expect(v.getUint32(40, true)).toBe(99);
  });

  it('rejects each kind of damage with its stable code', () => {
    const good = encodeStatus(sample);
    expect(codeOf(() => decodeStatus(good.subarray(0, 10)))).toBe(StatusErrorCode.short);
    let b = good.slice();
    b[0] = 0;
    expect(codeOf(() => decodeStatus(b))).toBe(StatusErrorCode.magic);
    b = good.slice();
    b[9] = (b[9] as number) ^ 1;
    expect(codeOf(() => decodeStatus(b))).toBe(StatusErrorCode.headerCrc);
    b = good.slice();
    b[statusHeaderBytes + 12] = (b[statusHeaderBytes + 12] as number) ^ 0x80;
    expect(codeOf(() => decodeStatus(b))).toBe(StatusErrorCode.bodyCrc);
    b = good.slice();
    dataView(b).setUint16(6, 41, true);
    resealHeader(b);
    expect(codeOf(() => decodeStatus(b))).toBe(StatusErrorCode.length);
    b = good.slice();
    dataView(b).setUint16(4, 0, true);
    resealHeader(b);
    expect(codeOf(() => decodeStatus(b))).toBe(StatusErrorCode.version);
    expect(codeOf(() => decodeStatus(good.subarray(0, statusMessageBytes - 1)))).toBe(StatusErrorCode.short);
  });

  it('rejects out-of-range fields even under a valid checksum', () => {
    for (const [offset, value] of [
      [4, 2],
      [5, 9],
      [6, 0],
      [7, 4],
    ] as const) {
      const b = encodeStatus(sample);
      b[statusHeaderBytes + offset] = value;
      dataView(b).setUint32(8, crc32c(b.subarray(statusHeaderBytes)), true);
      resealHeader(b);
      expect(codeOf(() => decodeStatus(b))).toBe(StatusErrorCode.field);
    }
  });

  it('HA-8 reads the version-1 prefix of a later protocol version, so a mismatch is seen, not silent', () => {
    const body = new Uint8Array(48);
    body.set(encodeStatus(sample).subarray(statusHeaderBytes));
    const b = new Uint8Array(statusHeaderBytes + body.length);
    b.set(body, statusHeaderBytes);
    const v = dataView(b);
    v.setUint32(0, 0x53484254, true);
    v.setUint16(4, 2, true);
    v.setUint16(6, body.length, true);
    v.setUint32(8, crc32c(body), true);
    resealHeader(b);
    const m = decodeStatus(b);
    expect(m.protocolVersion).toBe(2);
    expect(m.generation).toBe(sample.generation);
  });

  it('refuses to encode values that do not fit', () => {
    expect(() => encodeStatus({ ...sample, sequence: 2 ** 32 })).toThrow(/u32/);
    expect(() => encodeStatus({ ...sample, claimedSets: 4 })).toThrow(/claimedSets/);
  });
});

describe('mailbox sector codec', () => {
  it('HA-1 round-trips a record in 512- and 4096-byte sectors (property)', () => {
    fc.assert(
      fc.property(arbStatus, fc.integer({ min: 0, max: 15 }), fc.constantFrom(512, 4096), (m, disk, sector) => {
        const bytes = encodeMailbox({ slot: m.bladeIndex, diskIndex: disk, status: m }, sector);
        expect(bytes.length).toBe(sector);
        expect(decodeMailbox(bytes, m.bladeIndex, disk)).toEqual({ slot: m.bladeIndex, diskIndex: disk, status: m });
      }),
      { numRuns: 200 },
    );
  });

  it('tells a never-written slot from a corrupt one', () => {
    expect(codeOf(() => decodeMailbox(new Uint8Array(512), 0, 0))).toBe(MailboxErrorCode.empty);
    const junk = new Uint8Array(512);
    junk[300] = 1;
    junk[0] = 7;
    expect(codeOf(() => decodeMailbox(junk, 0, 0))).toBe(MailboxErrorCode.magic);
  });

  it('detects a misdirected write (wrong slot or wrong disk)', () => {
    const b = encodeMailbox({ slot: 1, diskIndex: 2, status: sample });
    expect(codeOf(() => decodeMailbox(b, 0, 2))).toBe(MailboxErrorCode.misdirected);
    expect(codeOf(() => decodeMailbox(b, 1, 3))).toBe(MailboxErrorCode.misdirected);
    expect(decodeMailbox(b, 1, 2).status.sequence).toBe(sample.sequence);
  });

  it('rejects damage with stable codes', () => {
    const good = encodeMailbox({ slot: 1, diskIndex: 2, status: sample });
    expect(codeOf(() => decodeMailbox(good.subarray(0, mailboxRecordBytes - 1), 1, 2))).toBe(MailboxErrorCode.short);
    let b = good.slice();
    b[13] = (b[13] as number) ^ 4;
    expect(codeOf(() => decodeMailbox(b, 1, 2))).toBe(MailboxErrorCode.headerCrc);
    b = good.slice();
    b[40] = (b[40] as number) ^ 4;
    expect(codeOf(() => decodeMailbox(b, 1, 2))).toBe(MailboxErrorCode.bodyCrc);
    b = good.slice();
    dataView(b).setUint16(4, 9, true);
    resealHeader(b);
    expect(codeOf(() => decodeMailbox(b, 1, 2))).toBe(MailboxErrorCode.version);
    b = good.slice();
    dataView(b).setUint16(6, 10, true);
    resealHeader(b);
    expect(codeOf(() => decodeMailbox(b, 1, 2))).toBe(MailboxErrorCode.length);
  });

  it('a blade writes only its own slot', () => {
    expect(() => encodeMailbox({ slot: 0, diskIndex: 0, status: sample })).toThrow(/own mailbox slot/);
    expect(() => encodeMailbox({ slot: 1, diskIndex: 0, status: sample }, 1000)).toThrow(/multiple of 512/);
  });
});

describe('decoder fuzzing', () => {
  const statusCodes = new Set<string>(Object.values(StatusErrorCode));
  const mailboxCodes = new Set<string>(Object.values(MailboxErrorCode));

  /** Decodes and classifies: every input is either accepted or rejected with a known code. */
  function classify(decode: () => unknown, known: Set<string>, tally: Map<string, number>): void {
    try {
      decode();
      tally.set('accepted', (tally.get('accepted') ?? 0) + 1);
    } catch (e) {
      expect(e).toBeInstanceOf(DecodeError);
      const code = (e as DecodeError).code;
      expect(known.has(code)).toBe(true);
      tally.set(code, (tally.get(code) ?? 0) + 1);
    }
  }

  it('random bytes never crash the status decoder; every rejection has a stable code', () => {
    const tally = new Map<string, number>();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (bytes) => classify(() => decodeStatus(bytes), statusCodes, tally)),
      { numRuns: 2000 },
    );
    const total = [...tally.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(2000);
  });

  it('mutated valid messages are rejected or decode to a checksummed message (status and mailbox)', () => {
    const statusTally = new Map<string, number>();
    const mailboxTally = new Map<string, number>();
    fc.assert(
      fc.property(
        arbStatus,
        fc.array(fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 4 }),
        fc.nat({ max: 3 }),
        (m, flips, cut) => {
          const s = encodeStatus(m);
          const mb = encodeMailbox({ slot: m.bladeIndex, diskIndex: 1, status: m });
          for (const f of flips) {
            const i = f.at % s.length;
            s[i] = (s[i] as number) ^ f.xor;
            const j = f.at % mailboxRecordBytes;
            mb[j] = (mb[j] as number) ^ f.xor;
          }
          // Flips that cancel out leave a valid record; those are not corruption.
          const sameStatus = cut === 0 && bytesEqual(s, encodeStatus(m));
          const sameMailbox = bytesEqual(mb, encodeMailbox({ slot: m.bladeIndex, diskIndex: 1, status: m }));
          classify(() => decodeStatus(s.subarray(0, s.length - cut)), statusCodes, sameStatus ? new Map() : statusTally);
          classify(() => decodeMailbox(mb, m.bladeIndex, 1), mailboxCodes, sameMailbox ? new Map() : mailboxTally);
        },
      ),
      { numRuns: 1500 },
    );
    // CRC32C catches every 1-4 byte corruption of these short records.
    expect(statusTally.get('accepted') ?? 0).toBe(0);
    expect(mailboxTally.get('accepted') ?? 0).toBe(0);
  });

  it('random sectors never crash the mailbox decoder', () => {
    const tally = new Map<string, number>();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.constantFrom(0 as const, 1 as const), (bytes, slot) => classify(() => decodeMailbox(bytes, slot, 0), mailboxCodes, tally)),
      { numRuns: 1500 },
    );
    expect([...tally.values()].reduce((a, b) => a + b, 0)).toBe(1500);
  });
});
