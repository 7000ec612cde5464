// Stream deframer: fuzzed with random and mutated bytes (fast-check). Nothing throws, every
// byte is accounted for (accepted, discarded or still buffered), every rejection is counted,
// and a frame is never accepted unless it is exactly one that was sent.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Deframer } from '../../firmware/ts/link/core/deframer.ts';
import { FrameErrorCode, FrameType, encodeFrame } from '../../firmware/ts/link/core/frame.ts';
import type { Frame } from '../../firmware/ts/link/core/frame.ts';
import { concatBytes, toHex } from '../../firmware/ts/core/bytes.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';

const mac = hmacSha256Mac(new Uint8Array(32).fill(3));
const strangerMac = hmacSha256Mac(new Uint8Array(32).fill(4));

function frame(seq: number, size: number): Frame {
  return {
    type: FrameType.data, flags: 0, channel: 2, srcGeneration: 1, dstGeneration: 2, seq, ack: 0,
    payload: new Uint8Array(size).map((_, i) => (seq * 7 + i) & 0xff),
  };
}

function wireBytes(frames: Frame[]): Uint8Array[] {
  return frames.map((f) => encodeFrame(f, mac));
}

function feed(d: Deframer, bytes: Uint8Array, cuts: number[]): Frame[] {
  const out: Frame[] = [];
  let prev = 0;
  for (const c of [...cuts.map((x) => x % (bytes.length + 1)).sort((x, y) => x - y), bytes.length]) {
    out.push(...d.push(bytes.subarray(prev, Math.max(prev, c))));
    prev = Math.max(prev, c);
  }
  return out;
}

function totalRejects(d: Deframer): number {
  return Object.values(d.stats.rejects).reduce((a, b) => a + b, 0);
}

/** bytesIn = bytes of accepted frames + bytes discarded + bytes still held. */
function conserved(d: Deframer, got: Frame[]): boolean {
  const acceptedBytes = got.reduce((n, f) => n + 36 + f.payload.length + mac.tagBytes, 0);
  return d.stats.bytesIn === acceptedBytes + d.stats.bytesDiscarded + d.bufferedBytes;
}

describe('link deframer', () => {
  it('finds every frame whatever the chunking', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 700 }), { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 30 }), (sizes, cuts) => {
        const frames = sizes.map((s, i) => frame(i + 1, s));
        const bytes = concatBytes(wireBytes(frames));
        const d = new Deframer({ mac });
        const got = feed(d, bytes, cuts);
        expect(got).toEqual(frames);
        expect(totalRejects(d)).toBe(0);
        expect(d.bufferedBytes).toBe(0);
      }),
      { numRuns: 150 },
    );
  });

  it('survives random bytes: never throws, accounts for every byte, counts the garbage', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4000 }), fc.array(fc.nat(), { maxLength: 20 }), (bytes, cuts) => {
        const d = new Deframer({ mac });
        const got = feed(d, bytes, cuts);
        expect(got).toEqual([]);
        expect(conserved(d, got)).toBe(true);
        if (d.stats.bytesDiscarded > 0) expect(totalRejects(d)).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });

  it('survives random bytes that contain the magic and plausible headers', () => {
    const magic = new Uint8Array([0x54, 0x42, 0x4c, 0x46]);
    const piece = fc.oneof(fc.uint8Array({ maxLength: 60 }), fc.constant(magic), fc.constant(concatBytes([magic, new Uint8Array([1, 2, 0, 1])])));
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 40 }), (pieces) => {
        const d = new Deframer({ mac });
        const got = d.push(concatBytes(pieces));
        expect(got).toEqual([]);
        expect(conserved(d, got)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('under mutation (flips, deletions, insertions, splices) accepts only frames that were sent, and counts each refusal', () => {
    const frames = [frame(1, 0), frame(2, 10), frame(3, 300), frame(4, 64), frame(5, 1000), frame(6, 4), frame(7, 77)];
    const wires = wireBytes(frames);
    const sent = new Set(frames.map((f) => toHex(encodeFrame(f, mac))));
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 50 }) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 50 }) }),
      fc.record({ kind: fc.constant('splice' as const), at: fc.nat(), from: fc.nat(), n: fc.integer({ min: 1, max: 80 }) }),
    );
    fc.assert(
      fc.property(fc.array(mutation, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (muts, cuts) => {
        let b = concatBytes(wires);
        for (const m of muts) {
          const at = m.at % (b.length + 1);
          if (m.kind === 'flip' && b.length > 0) {
            b = b.slice();
            const i = at % b.length;
            b[i] = (b[i] as number) ^ (1 << m.bit);
          } else if (m.kind === 'delete') {
            b = concatBytes([b.subarray(0, at), b.subarray(at + m.n)]);
          } else if (m.kind === 'insert') {
            b = concatBytes([b.subarray(0, at), m.bytes, b.subarray(at)]);
          } else if (m.kind === 'splice') {
            // A copy of another part of the stream: duplicated or torn frames.
            const from = m.from % (b.length + 1);
            b = concatBytes([b.subarray(0, at), b.slice(from, from + m.n), b.subarray(at)]);
          }
        }
        const d = new Deframer({ mac });
        const got = feed(d, b, cuts);
        for (const f of got) expect(sent.has(toHex(encodeFrame(f, mac)))).toBe(true);
        expect(conserved(d, got)).toBe(true);
        // The body CRC covers the tag, so no damage to genuine frames ever reads as forgery.
        expect(d.stats.rejects[FrameErrorCode.mac] ?? 0).toBe(0);
        if (d.stats.bytesDiscarded > 0) expect(totalRejects(d)).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
  });

  it('resynchronises after a torn frame: the frames after it arrive', () => {
    const frames = [frame(1, 100), frame(2, 200), frame(3, 50), frame(4, 10)];
    const [w1, w2, w3, w4] = wireBytes(frames) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    // Frame 2 loses its tail (the line dropped bytes); frame 3 starts where its body should be.
    const stream = concatBytes([w1, w2.subarray(0, 120), w3, w4]);
    const d = new Deframer({ mac });
    const got = d.push(stream);
    expect(got.map((f) => f.seq)).toEqual([1, 3, 4]);
    expect(d.stats.rejects[FrameErrorCode.bodyCrc]).toBe(1);
    expect(conserved(d, got)).toBe(true);
  });

  it('resynchronises after garbage between frames and counts one rejection per garbage run', () => {
    const [w1, w2] = wireBytes([frame(1, 20), frame(2, 20)]) as [Uint8Array, Uint8Array];
    const d = new Deframer({ mac });
    const got = [...d.push(concatBytes([new Uint8Array([1, 2, 3]), w1])), ...d.push(new Uint8Array(50).fill(0x54)), ...d.push(w2)];
    expect(got.map((f) => f.seq)).toEqual([1, 2]);
    expect(d.stats.rejects[FrameErrorCode.magic]).toBe(2);
    expect(d.stats.bytesDiscarded).toBe(53);
  });

  it('drops a frame signed with another key whole (ERR_FRAME_MAC) and keeps the next', () => {
    const forged = encodeFrame(frame(9, 40), strangerMac);
    const good = encodeFrame(frame(10, 40), mac);
    const d = new Deframer({ mac });
    const got = d.push(concatBytes([forged, good]));
    expect(got.map((f) => f.seq)).toEqual([10]);
    expect(d.stats.rejects).toEqual({ [FrameErrorCode.mac]: 1 });
    expect(d.stats.bytesDiscarded).toBe(forged.length);
  });

  it('bounds the declared length: a header claiming more than payloadBytesMax is refused, not awaited', () => {
    const big = encodeFrame(frame(1, 2000), mac);
    const small = encodeFrame(frame(2, 10), mac);
    const d = new Deframer({ mac, payloadBytesMax: 1024 });
    const got = d.push(concatBytes([big, small]));
    expect(got.map((f) => f.seq)).toEqual([2]);
    expect(d.stats.rejects[FrameErrorCode.length]).toBe(1);
  });

  it('reset() drops a partial frame and counts it', () => {
    const w = encodeFrame(frame(1, 100), mac);
    const d = new Deframer({ mac });
    expect(d.push(w.subarray(0, 50))).toEqual([]);
    d.reset();
    expect(d.bufferedBytes).toBe(0);
    expect(d.stats.rejects[FrameErrorCode.truncated]).toBe(1);
    expect(d.push(w).map((f) => f.seq)).toEqual([1]);
  });
});
