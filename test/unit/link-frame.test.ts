// Link frame codec: round trip, every corruption refused with its stable code, wrong key refused.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  FrameErrorCode, FrameFlag, FrameType, decodeFrame, encodeFrame, frameHeaderBytes, framePayloadBytesMax, frameWireBytes,
} from '../../firmware/ts/link/core/frame.ts';
import type { Frame, FrameType as FrameTypeT } from '../../firmware/ts/link/core/frame.ts';
import { hmacSha256Mac, linkKeyFromHex } from '../../firmware/ts/link/mac.ts';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';

const mac = hmacSha256Mac(new Uint8Array(32).fill(7));
const otherMac = hmacSha256Mac(new Uint8Array(32).fill(8));

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const frameArb = fc.record({
  type: fc.constantFrom<FrameTypeT>(FrameType.hello, FrameType.data, FrameType.ack, FrameType.datagram),
  flags: fc.constantFrom(0, FrameFlag.fromB, FrameFlag.more, FrameFlag.fromB | FrameFlag.more),
  channel: fc.integer({ min: 0, max: 255 }),
  srcGeneration: u32,
  dstGeneration: u32,
  seq: u32,
  ack: u32,
  payload: fc.uint8Array({ maxLength: 600 }),
});

function sample(): Frame {
  return { type: FrameType.data, flags: 0, channel: 1, srcGeneration: 5, dstGeneration: 9, seq: 42, ack: 41, payload: new Uint8Array([1, 2, 3, 4, 5]) };
}

describe('link frame codec', () => {
  it('round-trips every field and the payload', () => {
    fc.assert(
      fc.property(frameArb, (f) => {
        const bytes = encodeFrame(f, mac);
        expect(bytes.length).toBe(frameWireBytes(f.payload.length, mac));
        const r = decodeFrame(bytes, mac);
        expect(r.ok).toBe(true);
        if (r.ok) expect(r.frame).toEqual({ ...f, payload: new Uint8Array(f.payload) });
      }),
      { numRuns: 200 },
    );
  });

  it('has a fixed 36-byte header with the magic "TBLF" and version 1 first', () => {
    const bytes = encodeFrame(sample(), mac);
    expect(frameHeaderBytes).toBe(36);
    expect([...bytes.subarray(0, 5)]).toEqual([0x54, 0x42, 0x4c, 0x46, 1]);
  });

  it('refuses every single-bit flip anywhere in the frame', () => {
    const good = encodeFrame(sample(), mac);
    const seen = new Set<string>();
    for (let i = 0; i < good.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = good.slice();
        bad[i] = (bad[i] as number) ^ (1 << bit);
        const r = decodeFrame(bad, mac);
        expect(r.ok, `flip at byte ${i} bit ${bit}`).toBe(false);
        if (!r.ok) seen.add(r.code);
      }
    }
    // Header bytes fail the magic or header CRC; payload and tag bytes fail the body CRC, so line
    // noise is never mistaken for forgery.
    expect(seen).toEqual(new Set([FrameErrorCode.magic, FrameErrorCode.headerCrc, FrameErrorCode.bodyCrc]));
  });

  it('refuses a frame signed with another key (ERR_FRAME_MAC)', () => {
    const forged = encodeFrame(sample(), otherMac);
    expect(decodeFrame(forged, mac)).toEqual({ ok: false, code: FrameErrorCode.mac });
  });

  it('refuses a truncated datagram, and trailing bytes after the MAC', () => {
    const good = encodeFrame(sample(), mac);
    for (const n of [0, 3, 4, 20, 35, 36, good.length - 1]) {
      const r = decodeFrame(good.subarray(0, n), mac);
      expect(r.ok).toBe(false);
      if (!r.ok) expect([FrameErrorCode.truncated, FrameErrorCode.magic]).toContain(r.code);
    }
    const long = new Uint8Array(good.length + 1);
    long.set(good);
    expect(decodeFrame(long, mac)).toEqual({ ok: false, code: FrameErrorCode.length });
  });

  it('refuses an unknown version, type or flag even with a valid header CRC', async () => {
    const { crc32c } = await import('../../firmware/ts/core/crc32c.ts');
    const cases: [number, number, string][] = [[4, 2, FrameErrorCode.version], [5, 9, FrameErrorCode.type], [6, 0x80, FrameErrorCode.flags]];
    for (const [offset, value, code] of cases) {
      const bad = encodeFrame(sample(), mac);
      bad[offset] = value;
      new DataView(bad.buffer).setUint32(32, crc32c(bad.subarray(0, 32)));
      expect(decodeFrame(bad, mac)).toEqual({ ok: false, code });
    }
  });

  it('refuses a declared length above framePayloadBytesMax before reading the body', async () => {
    const { crc32c } = await import('../../firmware/ts/core/crc32c.ts');
    const bad = encodeFrame(sample(), mac);
    new DataView(bad.buffer).setUint32(8, framePayloadBytesMax + 1);
    new DataView(bad.buffer).setUint32(32, crc32c(bad.subarray(0, 32)));
    expect(decodeFrame(bad, mac)).toEqual({ ok: false, code: FrameErrorCode.length });
  });

  it('rejects bad arguments synchronously with stable codes', () => {
    const cases: Frame[] = [
      { ...sample(), payload: new Uint8Array(framePayloadBytesMax + 1) },
      { ...sample(), channel: 256 },
      { ...sample(), flags: 4 },
      { ...sample(), seq: -1 },
      { ...sample(), type: 99 as FrameTypeT },
    ];
    for (const f of cases) {
      let err: unknown;
      try {
        encodeFrame(f, mac);
      } catch (e) {
        err = e;
      }
      expect(isTwinbladeError(err)).toBe(true);
    }
  });

  it('never throws on random datagrams', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const r = decodeFrame(b, mac);
        expect(r.ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('reads the pair key from its hex form in the board config and refuses short keys', () => {
    expect(linkKeyFromHex('00112233445566778899aabbccddeeff').length).toBe(16);
    expect(() => linkKeyFromHex('0011')).toThrow(/at least 16 bytes/);
    expect(() => linkKeyFromHex('zz')).toThrow(/not a hex/);
    expect(() => hmacSha256Mac(new Uint8Array(8))).toThrow(/at least 16 bytes/);
  });
});
