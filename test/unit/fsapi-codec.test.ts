// The change-descriptor codec: every ChangeOp round-trips; truncated, trailing, versioned and
// garbage input is rejected with a stable DecodeError code and never crashes (fuzzed).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';
import { ChangeCodecErrorCode, decodeChangeOp, encodeChangeOp } from '../../firmware/ts/fsapi/codec.ts';
import { FileType, type ChangeOp, type SetAttr } from '../../firmware/ts/fsapi/ops.ts';

const u32 = fc.nat(0xffffffff);
const ino = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const time = fc.record({ sec: fc.integer({ min: 0, max: 2 ** 40 }), nsec: fc.integer({ min: 0, max: 999_999_999 }) });
const ref = fc.record({ ino, gen: u32 });
const name = fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme' }).filter((s) => new TextEncoder().encode(s).length <= 255);
const cred = fc.record({ uid: u32, gid: u32, gids: fc.array(u32, { maxLength: 16 }) });
const attrs: fc.Arbitrary<SetAttr> = fc.record(
  { mode: fc.nat(0o7777), uid: u32, gid: u32, size: fc.integer({ min: 0, max: 2 ** 44 }), atime: time, mtime: time },
  { requiredKeys: [] },
);
const base = { time, cred };
const newInode = { newIno: ino, newGen: u32 };

const changeOp: fc.Arbitrary<ChangeOp> = fc.oneof(
  fc.record({ ...base, op: fc.constant('setattr' as const), target: ref, attrs, guardCtime: time }, { requiredKeys: ['time', 'cred', 'op', 'target', 'attrs'] }),
  fc.record({ ...base, op: fc.constant('write' as const), target: ref, offset: fc.integer({ min: 0, max: 2 ** 40 }), data: fc.uint8Array({ maxLength: 5000 }) }),
  fc.record({ ...base, op: fc.constant('create' as const), dir: ref, name, how: fc.constantFrom('unchecked' as const, 'guarded' as const), attrs, ...newInode }),
  fc.record({ ...base, op: fc.constant('create' as const), dir: ref, name, how: fc.constant('exclusive' as const), attrs, verifier: fc.uint8Array({ minLength: 8, maxLength: 8 }), ...newInode }),
  fc.record({ ...base, op: fc.constant('mkdir' as const), dir: ref, name, attrs, ...newInode }),
  fc.record({ ...base, op: fc.constant('symlink' as const), dir: ref, name, target: fc.string({ maxLength: 300 }), attrs, ...newInode }),
  fc.record({
    ...base,
    op: fc.constant('mknod' as const),
    dir: ref,
    name,
    type: fc.constantFrom(FileType.BLK, FileType.CHR, FileType.SOCK, FileType.FIFO),
    attrs,
    rdev: fc.record({ major: u32, minor: u32 }),
    ...newInode,
  }),
  fc.record({ ...base, op: fc.constantFrom('remove' as const, 'rmdir' as const), dir: ref, name }),
  fc.record({ ...base, op: fc.constant('rename' as const), fromDir: ref, fromName: name, toDir: ref, toName: name }),
  fc.record({ ...base, op: fc.constant('link' as const), target: ref, dir: ref, name }),
);

const codes = Object.values(ChangeCodecErrorCode);

function decodeOutcome(b: Uint8Array): 'ok' | string {
  try {
    decodeChangeOp(b);
    return 'ok';
  } catch (e) {
    if (isTwinbladeError(e) && e.kind === 'corrupt') return e.code;
    throw e;
  }
}

describe('change descriptor codec', () => {
  it('NV-1 round-trips every operation of the FS operation set', () => {
    fc.assert(
      fc.property(changeOp, (c) => {
        expect(decodeChangeOp(encodeChangeOp(c))).toEqual(c);
      }),
      { numRuns: 500 },
    );
  });

  it('covers every operation name', () => {
    const seen = new Set(fc.sample(changeOp, 2000).map((c) => c.op));
    expect([...seen].sort()).toEqual(['create', 'link', 'mkdir', 'mknod', 'remove', 'rename', 'rmdir', 'setattr', 'symlink', 'write']);
  });

  it('rejects every truncation with ERR_CHANGE_TRUNCATED and trailing bytes with ERR_CHANGE_TRAILING', () => {
    fc.assert(
      fc.property(changeOp, (c) => {
        const b = encodeChangeOp(c);
        for (const cut of [0, 1, 5, b.length >> 1, b.length - 1]) if (cut < b.length) expect(decodeOutcome(b.subarray(0, cut))).toBe('ERR_CHANGE_TRUNCATED');
        const longer = new Uint8Array(b.length + 1);
        longer.set(b);
        expect(decodeOutcome(longer)).toBe('ERR_CHANGE_TRAILING');
      }),
      { numRuns: 100 },
    );
  });

  it('rejects an unknown version and an unknown opcode', () => {
    const b = encodeChangeOp({ op: 'remove', time: { sec: 1, nsec: 2 }, cred: { uid: 0, gid: 0, gids: [] }, dir: { ino: 1, gen: 1 }, name: 'x' });
    const v = b.slice();
    v[0] = 2;
    expect(decodeOutcome(v)).toBe('ERR_CHANGE_VERSION');
    const o = b.slice();
    o[1] = 99;
    expect(decodeOutcome(o)).toBe('ERR_CHANGE_OPCODE');
  });

  it('fuzz: mutated encodings decode or fail with a stable code, never crash', () => {
    fc.assert(
      fc.property(changeOp, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (c, flips) => {
        const b = encodeChangeOp(c);
        for (const [at, x] of flips) b[at % b.length] = (b[at % b.length] as number) ^ x;
        const out = decodeOutcome(b);
        expect(out === 'ok' || codes.includes(out as (typeof codes)[number])).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('fuzz: random bytes never crash the decoder', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const out = decodeOutcome(b);
        expect(out === 'ok' || codes.includes(out as (typeof codes)[number])).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses to encode descriptors that break a limit (ERR_CHANGE_INVALID)', () => {
    const t = { sec: 1, nsec: 0 };
    const cr = { uid: 0, gid: 0, gids: [] };
    const bad: ChangeOp[] = [
      { op: 'remove', time: t, cred: cr, dir: { ino: 1, gen: 1 }, name: '' },
      { op: 'remove', time: t, cred: cr, dir: { ino: 1, gen: 1 }, name: 'x'.repeat(256) },
      { op: 'remove', time: { sec: 1, nsec: 1e9 }, cred: cr, dir: { ino: 1, gen: 1 }, name: 'x' },
      { op: 'remove', time: t, cred: { uid: 0, gid: 0, gids: new Array(17).fill(1) }, dir: { ino: 1, gen: 1 }, name: 'x' },
      { op: 'write', time: t, cred: cr, target: { ino: 1, gen: 1 }, offset: 0, data: new Uint8Array(1024 * 1024 + 1) },
      { op: 'create', time: t, cred: cr, dir: { ino: 1, gen: 1 }, name: 'x', how: 'exclusive', attrs: {}, newIno: 2, newGen: 1 },
      { op: 'create', time: t, cred: cr, dir: { ino: 1, gen: 1 }, name: 'x', how: 'guarded', attrs: {}, verifier: new Uint8Array(8), newIno: 2, newGen: 1 },
      { op: 'setattr', time: t, cred: cr, target: { ino: 1, gen: 1 }, attrs: { mode: 0o10000 } },
      { op: 'setattr', time: t, cred: cr, target: { ino: -1, gen: 1 }, attrs: {} },
    ];
    for (const c of bad) expect(() => encodeChangeOp(c)).toThrow(expect.objectContaining({ code: 'ERR_CHANGE_INVALID', kind: 'invalid-argument' }));
  });

  it('keeps a 4 KiB write descriptor small: 4 KiB plus a fixed header', () => {
    const b = encodeChangeOp({ op: 'write', time: { sec: 1, nsec: 0 }, cred: { uid: 1, gid: 1, gids: [] }, target: { ino: 5, gen: 1 }, offset: 0, data: new Uint8Array(4096) });
    expect(b.length).toBeLessThan(4096 + 64);
  });
});
