// The duplicate-request cache's key encoding: encoded once per request (cached by key object)
// yet always the bytes of the key as it is, and hex keys of the state-machine table unchanged.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeRequestKey, encodeRequestKey, type RequestKey } from '../../firmware/ts/nfs/core/drc.ts';
import { toHex } from '../../firmware/ts/core/bytes.ts';

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const arbKey = fc.record({ client: fc.string({ maxLength: 40 }), xid: u32, prog: u32, vers: u32, proc: u32, argsCrc: u32, argsBytes: u32 });

describe('request keys', () => {
  it('SM-2 a key encodes to the same bytes every time, cached or fresh, and decodes back', () => {
    fc.assert(
      fc.property(arbKey, (k: RequestKey) => {
        const first = encodeRequestKey(k);
        expect(encodeRequestKey(k)).toBe(first);
        expect(encodeRequestKey({ ...k })).toEqual(first);
        expect(decodeRequestKey(first)).toEqual(k);
      }),
      { numRuns: 200 },
    );
  });

  it('a key object changed after encoding is encoded again', () => {
    const k: RequestKey = { client: '10.0.0.1', xid: 1, prog: 100003, vers: 3, proc: 7, argsCrc: 5, argsBytes: 9 };
    const a = encodeRequestKey(k);
    k.xid = 2;
    const b = encodeRequestKey(k);
    expect(b).not.toEqual(a);
    expect(decodeRequestKey(b).xid).toBe(2);
  });

  it('toHex gives two lower-case digits per byte', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(toHex(b)).toBe(Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(''));
      }),
      { numRuns: 200 },
    );
  });
});
