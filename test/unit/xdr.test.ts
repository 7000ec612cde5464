// XDR reader/writer bounds and the NFSv3/MOUNT/RPC codecs' round trips (RFC 4506, 1813, 5531).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../firmware/ts/core/errors.ts';
import { XdrReader, XdrWriter, decode, encode, list, opaque, string, u32 } from '../../firmware/ts/nfs/core/xdr.ts';
import * as x from '../../firmware/ts/nfs/core/nfs3.ts';
import { sattr } from '../../firmware/ts/nfs/core/nfs3.ts';
import { exportRes, mntRes } from '../../firmware/ts/nfs/core/mount.ts';
import { AuthFlavor, decodeAuthSys, decodeCall, decodeReply, encodeAuthSys, encodeCall, replyBody, beginAcceptedReply } from '../../firmware/ts/nfs/core/rpc.ts';

const time = fc.record({ sec: fc.nat({ max: 0xffffffff }), nsec: fc.nat({ max: 999_999_999 }) });
const u64n = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const fh = fc.uint8Array({ maxLength: 64 }).map((b) => Uint8Array.from(b));
const name = fc.string({ maxLength: 40 });
const fattr = fc.record({
  type: fc.integer({ min: 1, max: 7 }),
  mode: fc.nat({ max: 0o7777 }),
  nlink: fc.nat({ max: 0xffffffff }),
  uid: fc.nat({ max: 0xffffffff }),
  gid: fc.nat({ max: 0xffffffff }),
  size: u64n,
  used: u64n,
  rdev: fc.record({ major: fc.nat({ max: 0xffffffff }), minor: fc.nat({ max: 0xffffffff }) }),
  fsid: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fileid: u64n,
  atime: time,
  mtime: time,
  ctime: time,
});
const setTime = fc.oneof(fc.constant('dont' as const), fc.constant('server' as const), time);
const sattrA = fc.record({
  mode: fc.option(fc.nat({ max: 0o7777 }), { nil: undefined }),
  uid: fc.option(fc.nat({ max: 0xffffffff }), { nil: undefined }),
  gid: fc.option(fc.nat({ max: 0xffffffff }), { nil: undefined }),
  size: fc.option(u64n, { nil: undefined }),
  atime: setTime,
  mtime: setTime,
});
const wcc = fc.record({
  before: fc.option(fc.record({ size: u64n, mtime: time, ctime: time }), { nil: undefined }),
  after: fc.option(fattr, { nil: undefined }),
});

function roundTrip<T>(c: { enc(w: XdrWriter, v: T): void; dec(r: XdrReader): T }, arb: fc.Arbitrary<T>): void {
  fc.assert(
    fc.property(arb, (v) => {
      expect(decode(c, encode(c, v))).toEqual(v);
    }),
    { numRuns: 200 },
  );
}

describe('XDR reader', () => {
  it('rejects short input, over-long opaques, bad bools, non-zero padding and trailing bytes with stable codes', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(DecodeError);
        return (e as DecodeError).code;
      }
      return 'none';
    };
    expect(code(() => new XdrReader(new Uint8Array(3)).u32())).toBe('ERR_XDR_SHORT');
    expect(code(() => new XdrReader(Uint8Array.from([0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0])).opaque(8))).toBe('ERR_XDR_TOO_LONG');
    expect(code(() => new XdrReader(Uint8Array.from([0, 0, 0, 2])).bool())).toBe('ERR_XDR_BOOL');
    expect(code(() => new XdrReader(Uint8Array.from([0, 0, 0, 1, 7, 1, 0, 0])).opaque(8))).toBe('ERR_XDR_PAD');
    expect(code(() => decode(u32, new Uint8Array(8)))).toBe('ERR_XDR_TRAILING');
    expect(code(() => new XdrReader(Uint8Array.from([0, 0, 0, 2, 0xc3, 0x28, 0, 0])).string(8))).toBe('ERR_XDR_UTF8');
    expect(code(() => new XdrReader(Uint8Array.from([0xff, 0xff, 0xff, 0xff])).opaque(0xffffffff))).toBe('ERR_XDR_SHORT');
    expect(code(() => list(u32, 2).dec(new XdrReader(Uint8Array.from([0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 7]))))).toBe('ERR_XDR_TOO_LONG');
  });

  it('never throws anything but DecodeError on random input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: x.nfs3Codecs.length - 1 }), (b, proc) => {
        const c = x.nfs3Codecs[proc] as { args: { dec(r: XdrReader): unknown }; res: { dec(r: XdrReader): unknown } };
        for (const codec of [c.args, c.res]) {
          try {
            codec.dec(new XdrReader(b));
          } catch (e) {
            expect(e).toBeInstanceOf(DecodeError);
          }
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('encodes u64 values above 2^32 exactly and pads opaques to 4 bytes', () => {
    const w = new XdrWriter();
    w.u64(2 ** 40 + 5);
    w.opaque(Uint8Array.from([1, 2, 3]));
    expect([...w.bytes()]).toEqual([0, 0, 1, 0, 0, 0, 0, 5, 0, 0, 0, 3, 1, 2, 3, 0]);
    expect(new XdrReader(w.bytes()).u64()).toBe(2 ** 40 + 5);
    expect(decode(string(10), encode(string(10), 'héllo'))).toBe('héllo');
    expect(decode(opaque(4), encode(opaque(4), new Uint8Array(0)))).toEqual(new Uint8Array(0));
  });
});

describe('NFSv3 codecs round-trip', () => {
  it('attributes, sattr3, wcc_data', () => {
    roundTrip(x.fattr3, fattr);
    roundTrip(x.sattr3, sattrA);
    roundTrip(x.wccData, wcc);
  });
  it('arguments of every procedure', () => {
    roundTrip(x.setattrArgs, fc.record({ fh, attrs: sattrA, guard: fc.option(time, { nil: undefined }) }));
    roundTrip(x.lookupArgs, fc.record({ dir: fh, name }));
    roundTrip(x.readArgs, fc.record({ fh, offset: u64n, count: fc.nat({ max: 0xffffffff }) }));
    roundTrip(x.writeArgs, fc.record({ fh, offset: u64n, count: fc.nat({ max: 0xffffffff }), stable: fc.integer({ min: 0, max: 2 }), data: fc.uint8Array({ maxLength: 100 }) }));
    roundTrip(
      x.createArgs,
      fc.record({
        where: fc.record({ dir: fh, name }),
        how: fc.oneof(
          fc.record({ mode: fc.constantFrom(0 as const, 1 as const), attrs: sattrA }),
          fc.record({ mode: fc.constant(2 as const), verf: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
        ),
      }),
    );
    roundTrip(x.symlinkArgs, fc.record({ where: fc.record({ dir: fh, name }), attrs: sattrA, path: fc.string({ maxLength: 100 }) }));
    roundTrip(
      x.mknodArgs,
      fc.record({
        where: fc.record({ dir: fh, name }),
        what: fc.oneof(
          fc.record({ type: fc.constantFrom(3 as const, 4 as const), attrs: sattrA, spec: fc.record({ major: fc.nat({ max: 255 }), minor: fc.nat({ max: 255 }) }) }),
          fc.record({ type: fc.constantFrom(6 as const, 7 as const), attrs: sattrA }),
          fc.record({ type: fc.constantFrom(1 as const, 2 as const, 5 as const) }),
        ),
      }),
    );
    roundTrip(x.renameArgs, fc.record({ from: fc.record({ dir: fh, name }), to: fc.record({ dir: fh, name }) }));
    roundTrip(x.readdirplusArgs, fc.record({ dir: fh, cookie: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), verf: fc.uint8Array({ minLength: 8, maxLength: 8 }), dircount: fc.nat(), maxcount: fc.nat() }));
  });
  it('results with their OK and failure arms', () => {
    roundTrip(x.getattrRes, fc.oneof(fc.record({ status: fc.constant(0 as const), attr: fattr }), fc.record({ status: fc.constant(70 as const) })));
    roundTrip(x.writeRes, fc.oneof(
      fc.record({ status: fc.constant(0 as const), wcc, count: fc.nat({ max: 1 << 20 }), committed: fc.integer({ min: 0, max: 2 }), verf: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
      fc.record({ status: fc.constant(28 as const), wcc }),
    ));
    roundTrip(x.readdirplusRes, fc.record({
      status: fc.constant(0 as const),
      dirAttr: fc.option(fattr, { nil: undefined }),
      verf: fc.uint8Array({ minLength: 8, maxLength: 8 }),
      entries: fc.array(fc.record({ fileid: u64n, name, cookie: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), attr: fc.option(fattr, { nil: undefined }), fh: fc.option(fh, { nil: undefined }) }), { maxLength: 5 }),
      eof: fc.boolean(),
    }));
    roundTrip(mntRes, fc.oneof(fc.record({ status: fc.constant(0 as const), fh, authFlavors: fc.array(fc.nat({ max: 10 }), { maxLength: 4 }) }), fc.record({ status: fc.constant(13 as const) })));
    roundTrip(exportRes, fc.array(fc.record({ dir: fc.string({ maxLength: 30 }), groups: fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }) }), { maxLength: 4 }));
  });
  it('sattr() fills unset fields', () => {
    expect(sattr({ mode: 1 })).toEqual({ mode: 1, uid: undefined, gid: undefined, size: undefined, atime: 'dont', mtime: 'dont' });
  });
});

describe('RPC messages', () => {
  it('AUTH_SYS round-trips and rejects too many groups', () => {
    const a = { stamp: 5, machineName: 'host', uid: 1, gid: 2, gids: [3, 4] };
    expect(decodeAuthSys(encodeAuthSys(a))).toEqual(a);
    expect(() => decodeAuthSys(encodeAuthSys({ ...a, gids: Array.from({ length: 17 }, (_, i) => i) }))).toThrow(DecodeError);
  });
  it('a call decodes back to its header; a reply to its xid and results', () => {
    const cred = { flavor: AuthFlavor.SYS, body: encodeAuthSys({ stamp: 0, machineName: 'm', uid: 7, gid: 8, gids: [] }) };
    const body = replyBody(encodeCall(99, 100003, 3, 1, cred, Uint8Array.from([0, 0, 0, 0])));
    const d = decodeCall(body.slice());
    expect(d.kind).toBe('call');
    if (d.kind === 'call') expect(d.call).toMatchObject({ xid: 99, prog: 100003, vers: 3, proc: 1, authSys: { uid: 7, gid: 8 }, argsOffset: body.length - 4 });
    const w = beginAcceptedReply(99, 0);
    w.u32(1234);
    const r = decodeReply(replyBody(w).slice());
    expect(r.kind === 'success' && r.results.u32()).toBe(1234);
  });
  it('headers that are not calls are dropped, never thrown', () => {
    expect(decodeCall(new Uint8Array(3)).kind).toBe('drop');
    expect(decodeCall(Uint8Array.from([0, 0, 0, 1, 0, 0, 0, 1])).kind).toBe('drop');
    expect(decodeCall(Uint8Array.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2])).kind).toBe('deny-auth');
  });
});

describe('XDR writer buffers', () => {
  it('writers never share bytes, even when carved from the same slab', () => {
    const a = new XdrWriter(16);
    const b = new XdrWriter(16);
    a.u32(0x11111111);
    b.u32(0x22222222);
    for (let i = 0; i < 100; i++) a.u32(i); // grows past its first region
    expect(new XdrReader(b.bytes()).u32()).toBe(0x22222222);
    expect(b.bytes().length).toBe(4);
    expect(new XdrReader(a.bytes()).u32()).toBe(0x11111111);
  });

  it('a tail opaque is sent by reference, padded, and ends the message', () => {
    const w = new XdrWriter(16, 4);
    w.u32(7);
    const data = Uint8Array.from([1, 2, 3, 4, 5]);
    w.opaqueTail(data);
    expect(w.length(4)).toBe(4 + 4 + 8);
    const segs = w.segments(4);
    expect(segs[1]).toBe(data);
    expect([...w.bytes(4)]).toEqual([0, 0, 0, 7, 0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0]);
    expect(() => w.u32(1)).toThrow();
    const r = new XdrReader(w.bytes(4));
    expect(r.u32()).toBe(7);
    expect([...r.opaque(8)]).toEqual([1, 2, 3, 4, 5]);
  });
});
