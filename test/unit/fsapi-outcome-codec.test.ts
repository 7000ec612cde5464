// The change outcome codec (fsapi/codec.ts, docs/formats.md "Change outcome"): what the
// state-machine log keeps to answer a retransmission (SM-2). Round trips, fixed sizes, and a
// strict decoder: garbage and damaged encodings fail with a stable ERR_OUTCOME_* code.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DecodeError, isTwinbladeError } from '../../firmware/ts/core/errors.ts';
import {
  OUTCOME_ATTR_BYTES,
  OUTCOME_WCC_BYTES,
  OutcomeCodecErrorCode,
  changeOutcomeBytes,
  decodeChangeOutcome,
  encodeChangeOutcome,
  encodeChangeOutcomeInto,
  type StoredChangeOutcome,
} from '../../firmware/ts/fsapi/codec.ts';
import { FileType, FsStatus, type Attr, type ChangeResult, type WccAttr } from '../../firmware/ts/fsapi/ops.ts';

const u32 = fc.nat(0xffffffff);
const u64 = fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const time = fc.record({ sec: u64, nsec: fc.integer({ min: 0, max: 999_999_999 }) });
const wcc: fc.Arbitrary<WccAttr> = fc.record({ size: u64, mtime: time, ctime: time });
const attr: fc.Arbitrary<Attr> = fc.record({
  type: fc.constantFrom(...Object.values(FileType)),
  mode: fc.nat(0o7777),
  nlink: u32,
  uid: u32,
  gid: u32,
  size: u64,
  used: u64,
  rdev: fc.record({ major: u32, minor: u32 }),
  ino: u64,
  gen: u32,
  atime: time,
  mtime: time,
  ctime: time,
});
const result: fc.Arbitrary<ChangeResult> = fc.oneof(
  fc.record({ op: fc.constant('setattr' as const), pre: wcc, post: attr }),
  fc.record({ op: fc.constant('write' as const), pre: wcc, post: attr, count: fc.nat(1 << 20) }),
  fc.record({ op: fc.constantFrom('create' as const, 'mkdir' as const, 'symlink' as const, 'mknod' as const), obj: attr, dirPre: wcc, dirPost: attr }),
  fc.record({ op: fc.constantFrom('remove' as const, 'rmdir' as const), dirPre: wcc, dirPost: attr }),
  fc.record({ op: fc.constant('rename' as const), fromPre: wcc, fromPost: attr, toPre: wcc, toPost: attr }),
  fc.record({ op: fc.constant('link' as const), obj: attr, dirPre: wcc, dirPost: attr }),
);
const failStatus = fc.constantFrom(...Object.values(FsStatus).filter((s) => s !== FsStatus.OK));
const outcome: fc.Arbitrary<StoredChangeOutcome> = fc.oneof(
  result.map((r) => ({ ok: true as const, result: r })),
  fc.record({ ok: fc.constant(false as const), status: failStatus, dirPre: wcc, dirPost: attr }, { requiredKeys: ['ok', 'status'] }),
);

const codes: string[] = Object.values(OutcomeCodecErrorCode);

function decodeResult(b: Uint8Array): 'ok' | string {
  try {
    decodeChangeOutcome(b);
    return 'ok';
  } catch (e) {
    expect(e).toBeInstanceOf(DecodeError);
    expect(isTwinbladeError(e) && codes.includes(e.code)).toBe(true);
    return (e as DecodeError).code;
  }
}

describe('change outcome codec', () => {
  it('SM-2 round-trips every result kind and every failure, with or without its directory wcc', () => {
    fc.assert(
      fc.property(outcome, (o) => {
        expect(decodeChangeOutcome(encodeChangeOutcome(o))).toEqual(o);
      }),
      { numRuns: 500 },
    );
  });

  it('encodes into a buffer behind a prefix the same bytes, and refuses a buffer too small', () => {
    fc.assert(
      fc.property(outcome, fc.nat(9), (o, at) => {
        const whole = encodeChangeOutcome(o);
        expect(changeOutcomeBytes(o)).toBe(whole.length);
        const out = new Uint8Array(at + whole.length + 3).fill(0xaa);
        encodeChangeOutcomeInto(o, out, at);
        expect(out.subarray(at, at + whole.length)).toEqual(whole);
        expect([...out.subarray(0, at), ...out.subarray(at + whole.length)].every((b) => b === 0xaa)).toBe(true);
        expect(() => encodeChangeOutcomeInto(o, new Uint8Array(whole.length - 1 + at), at)).toThrow(expect.objectContaining({ code: OutcomeCodecErrorCode.invalid }));
      }),
      { numRuns: 200 },
    );
  });

  it('has fixed sizes: a 4 KiB WRITE outcome is 2 + wcc + attr + count bytes', () => {
    const a: Attr = { type: FileType.REG, mode: 0o644, nlink: 1, uid: 0, gid: 0, size: 4096, used: 4096, rdev: { major: 0, minor: 0 }, ino: 9, gen: 1, atime: { sec: 1, nsec: 2 }, mtime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 } };
    const w: WccAttr = { size: 0, mtime: { sec: 1, nsec: 0 }, ctime: { sec: 1, nsec: 0 } };
    expect(encodeChangeOutcome({ ok: true, result: { op: 'write', pre: w, post: a, count: 4096 } }).length).toBe(2 + OUTCOME_WCC_BYTES + OUTCOME_ATTR_BYTES + 4);
    expect(encodeChangeOutcome({ ok: false, status: FsStatus.NOENT }).length).toBe(7);
  });

  it('refuses a truncated, extended, unknown-version or unknown-kind encoding with its code', () => {
    fc.assert(
      fc.property(outcome, fc.nat(), (o, cut) => {
        const b = encodeChangeOutcome(o);
        expect(decodeResult(b.subarray(0, cut % b.length))).toBe(OutcomeCodecErrorCode.truncated);
        const longer = new Uint8Array(b.length + 1);
        longer.set(b);
        expect(decodeResult(longer)).toBe(OutcomeCodecErrorCode.trailing);
        const v = b.slice();
        v[0] = 2;
        expect(decodeResult(v)).toBe(OutcomeCodecErrorCode.version);
        const k = b.slice();
        k[1] = 11;
        expect(decodeResult(k)).toBe(OutcomeCodecErrorCode.kind);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses out-of-range fields: a bad file type, status, flag or nsec', () => {
    const ok = encodeChangeOutcome({ ok: false, status: FsStatus.EXIST, dirPost: { type: FileType.DIR, mode: 0o755, nlink: 2, uid: 0, gid: 0, size: 0, used: 0, rdev: { major: 0, minor: 0 }, ino: 2, gen: 1, atime: { sec: 0, nsec: 0 }, mtime: { sec: 0, nsec: 0 }, ctime: { sec: 0, nsec: 0 } } });
    expect(decodeResult(ok)).toBe('ok');
    const badStatus = ok.slice();
    badStatus[2] = 0; // status 0 is not a failure
    expect(decodeResult(badStatus)).toBe(OutcomeCodecErrorCode.field);
    const badFlags = ok.slice();
    badFlags[6] = 4;
    expect(decodeResult(badFlags)).toBe(OutcomeCodecErrorCode.field);
    const badType = ok.slice();
    badType[7] = 9;
    expect(decodeResult(badType)).toBe(OutcomeCodecErrorCode.field);
    const badNsec = ok.slice();
    new DataView(badNsec.buffer).setUint32(7 + OUTCOME_ATTR_BYTES - 4, 1e9, true);
    expect(decodeResult(badNsec)).toBe(OutcomeCodecErrorCode.field);
    const bigU64 = ok.slice();
    new DataView(bigU64.buffer).setUint32(7 + 1 + 16 + 4, 0xffffffff, true); // size's high word
    expect(decodeResult(bigU64)).toBe(OutcomeCodecErrorCode.field);
  });

  it('never throws anything but its DecodeErrors on random or mutated bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        decodeResult(b);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(outcome, fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }), (o, flips) => {
        const b = encodeChangeOutcome(o);
        for (const [at, v] of flips) b[at % b.length] = v;
        const r = decodeResult(b);
        if (r === 'ok') expect(encodeChangeOutcome(decodeChangeOutcome(b))).toEqual(b);
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses to encode values that do not fit (ERR_OUTCOME_INVALID)', () => {
    const a: Attr = { type: FileType.REG, mode: 0o644, nlink: 1, uid: 0, gid: 0, size: -1, used: 0, rdev: { major: 0, minor: 0 }, ino: 9, gen: 1, atime: { sec: 1, nsec: 2 }, mtime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 } };
    const w: WccAttr = { size: 0, mtime: { sec: 1, nsec: 0 }, ctime: { sec: 1, nsec: 0 } };
    expect(() => encodeChangeOutcome({ ok: true, result: { op: 'setattr', pre: w, post: a } })).toThrow(expect.objectContaining({ code: OutcomeCodecErrorCode.invalid }));
    expect(() => encodeChangeOutcome({ ok: false, status: FsStatus.OK })).toThrow(expect.objectContaining({ code: OutcomeCodecErrorCode.invalid }));
    expect(() => encodeChangeOutcome({ ok: true, result: { op: 'setattr', pre: { ...w, mtime: { sec: 1, nsec: 1e9 } }, post: { ...a, size: 0 } } })).toThrow(expect.objectContaining({ code: OutcomeCodecErrorCode.invalid }));
  });
});
