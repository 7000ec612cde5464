// The in-place record reader as the TCP server runs it (small records copied into shared
// slabs, an allocator that skips the zero fill): the same records as the chunk decoder
// whatever the read sizes, no record's bytes changed by later reads, large ones in memory
// of their own.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InPlaceRecordReader, RecordDecoder } from '../../firmware/ts/nfs/core/rpc.ts';
import { feedReads, frame } from './record-stream.ts';

/** An allocator like the server's: memory of its own, not zeroed (here: filled with junk). */
function junkAllocate(bytes: number): Uint8Array {
  return new Uint8Array(bytes).fill(0xa5);
}

describe('in-place record reader with slabs (the TCP server)', () => {
  it('gives the chunk decoder’s records whatever the read sizes; none changes after it was handed out; large ones own their memory', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 3 }), { maxLength: 14 }),
        fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 16, max: 700 }),
        (records, cuts, inPlaceMin, slabBytes) => {
          const stream = frame(records);
          const want = new RecordDecoder(1 << 20).push(stream).map((r) => [...r]);
          const reader = new InPlaceRecordReader(1 << 20, inPlaceMin, 16, { allocate: junkAllocate, slabBytes });
          const got: Uint8Array[] = [];
          const then: number[][] = [];
          feedReads(reader, stream, cuts, (rec) => {
            got.push(rec);
            then.push([...rec]);
          });
          expect(then).toEqual(want);
          // Read on: later reads and slabs must not write over what was handed out.
          expect(got.map((r) => [...r])).toEqual(want);
          for (const r of got) {
            if (r.length >= inPlaceMin && r.length > 0) {
              expect(r.byteOffset).toBe(0);
              expect(r.buffer.byteLength).toBe(r.length);
            }
          }
          expect(reader.bufferedBytes).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('small records share a slab until it is full, then a new one; the full one is never written again', () => {
    const reader = new InPlaceRecordReader(1 << 20, 1024, 4096, { slabBytes: 1000 });
    const recs = Array.from({ length: 30 }, (_, i) => [new Uint8Array(90 + i).fill(i + 1)]);
    const stream = frame(recs);
    const out: Uint8Array[] = [];
    for (let off = 0; off < stream.length; ) {
      const into = reader.nextBuffer();
      const n = Math.min(into.length, stream.length - off, 700);
      into.set(stream.subarray(off, off + n));
      off += n;
      out.push(...reader.filled(n));
    }
    expect(out).toHaveLength(30);
    out.forEach((r, i) => expect(r.every((b) => b === i + 1) && r.length === 90 + i).toBe(true));
    const slabs = new Set(out.map((r) => r.buffer));
    expect(slabs.size).toBeGreaterThan(1);
    expect(slabs.size).toBeLessThan(10);
    for (const s of slabs) expect(s.byteLength).toBe(1000);
  });
});
