// File handles (FS-2): stable for the same key on either blade, rejected when forged.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FsError, FsStatus } from '../../firmware/ts/fsapi/ops.ts';
import { FH_BYTES, FileHandleCodec } from '../../firmware/ts/nfs/fh.ts';
import { ExportPolicy } from '../../firmware/ts/nfs/core/exports.ts';

const key = new Uint8Array(32).fill(3);

describe('file handles', () => {
  it('FS-2 the same key on two blades mints identical handles that both accept', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: 0xffffffff }), (fsid, ino, gen) => {
        const a = new FileHandleCodec(key);
        const b = new FileHandleCodec(key);
        const h = a.encode({ fsid, ino, gen });
        expect(h.length).toBe(FH_BYTES);
        expect(b.encode({ fsid, ino, gen })).toEqual(h);
        expect(b.decode(h)).toEqual({ fsid, ino, gen });
      }),
      { numRuns: 200 },
    );
  });

  it('FS-2 any altered byte, another key, or a wrong length is BADHANDLE', () => {
    const a = new FileHandleCodec(key);
    const h = a.encode({ fsid: 5n, ino: 77, gen: 2 });
    fc.assert(
      fc.property(fc.nat(FH_BYTES - 1), fc.integer({ min: 1, max: 255 }), (pos, x) => {
        const f = h.slice();
        f[pos] = (f[pos] as number) ^ x;
        expect(() => new FileHandleCodec(key).decode(f)).toThrow(FsError);
      }),
      { numRuns: 300 },
    );
    const other = new FileHandleCodec(new Uint8Array(32).fill(4));
    try {
      other.decode(h);
      throw new Error('accepted a handle sealed with another key');
    } catch (e) {
      expect((e as FsError).status).toBe(FsStatus.BADHANDLE);
    }
    expect(() => a.decode(h.subarray(0, 39))).toThrow(FsError);
    expect(() => new FileHandleCodec(new Uint8Array(8))).toThrow();
  });
});

describe('export policy', () => {
  it('matches addresses, IPv4 networks and IPv4-mapped IPv6 addresses', () => {
    const p = new ExportPolicy({ clients: ['10.1.0.0/16', '192.168.1.7', '::1'] });
    expect(p.allows('10.1.200.3')).toBe(true);
    expect(p.allows('::ffff:10.1.0.1')).toBe(true);
    expect(p.allows('10.2.0.1')).toBe(false);
    expect(p.allows('192.168.1.7')).toBe(true);
    expect(p.allows('192.168.1.8')).toBe(false);
    expect(p.allows('::1')).toBe(true);
    expect(new ExportPolicy({}).allows('1.2.3.4')).toBe(true);
    expect(() => new ExportPolicy({ clients: ['10.0.0.0/40'] })).toThrow();
  });
  it('squashes root (and everyone with all_squash) to the anonymous ids', () => {
    const sys = { stamp: 0, machineName: 'm', uid: 0, gid: 0, gids: [0, 5] };
    expect(new ExportPolicy({}).cred(sys)).toEqual({ uid: 65534, gid: 65534, gids: [65534, 5] });
    expect(new ExportPolicy({ rootSquash: false }).cred(sys)).toEqual({ uid: 0, gid: 0, gids: [0, 5] });
    expect(new ExportPolicy({ allSquash: true, anonUid: 9, anonGid: 8 }).cred({ ...sys, uid: 1 })).toEqual({ uid: 9, gid: 8, gids: [] });
    expect(new ExportPolicy({}).cred(undefined)).toEqual({ uid: 65534, gid: 65534, gids: [] });
  });
});

describe('write verifier', () => {
  it('is the same on both blades for an epoch, changes with the epoch, and does not reveal the key', async () => {
    const { deriveWriteVerifier } = await import('../../firmware/ts/nfs/fh.ts');
    const a = deriveWriteVerifier(key, 1n);
    expect(a.length).toBe(8);
    expect(deriveWriteVerifier(key.slice(), 1n)).toEqual(a);
    expect(deriveWriteVerifier(key, 2n)).not.toEqual(a);
    expect(a).not.toEqual(key.subarray(0, 8));
  });
});
