// The in-place record reader (the RPC client's socket reads) against the chunk decoder: the
// same records and the same errors whatever the read sizes, bounded memory on garbage.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InPlaceRecordReader, RecordDecoder } from '../../firmware/ts/nfs/core/rpc.ts';
import { feedReads, frame } from './record-stream.ts';

/** Every record the reader gives for `bytes` read in pieces of `cuts` (see feedReads). */
function readAll(r: InPlaceRecordReader, bytes: Uint8Array, cuts: readonly number[], onRead?: () => void): number[][] {
  const out: number[][] = [];
  feedReads(r, bytes, cuts, (rec) => out.push([...rec]), onRead);
  return out;
}

describe('in-place RPC record reader', () => {
  it('gives the records of any valid stream whatever the read sizes, small and in-place fragments alike', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 4 }), { maxLength: 10 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 1, max: 64 }),
        (records, cuts, inPlaceMin) => {
          // A small scratch and threshold, so that compaction and in-place reads both happen.
          const r = new InPlaceRecordReader(1 << 20, inPlaceMin, 16);
          expect(readAll(r, frame(records), cuts)).toEqual(records.map((frags) => frags.flatMap((f) => [...f])));
          expect(r.bufferedBytes).toBe(0);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('a 64 KiB reply read in socket-sized pieces lands whole, with memory bounded by the record', () => {
    const data = Uint8Array.from({ length: 64 * 1024 + 120 }, (_, i) => (i * 7) & 255);
    const r = new InPlaceRecordReader(1 << 20);
    const got = readAll(r, frame([[data], [data.subarray(0, 100)]]), [65536, 3, 4000], () => expect(r.bufferedBytes).toBeLessThanOrEqual(data.length + 65536));
    expect(got).toEqual([[...data], [...data.subarray(0, 100)]]);
  });

  it('garbage: the same error as the chunk decoder (record too long) or nothing, and bounded memory', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 40 }), fc.integer({ min: 1, max: 128 }), (chunks, cut) => {
        const bytes = Uint8Array.from(chunks.flatMap((c) => [...c]));
        const d = new RecordDecoder(4096);
        const r = new InPlaceRecordReader(4096, 32, 64);
        let expected: unknown[] | string;
        try {
          expected = d.push(bytes).map((x) => [...x]);
        } catch (e) {
          expected = (e as { code: string }).code;
        }
        let got: unknown[] | string;
        try {
          got = readAll(r, bytes, [cut], () => expect(r.bufferedBytes).toBeLessThanOrEqual(4096 + 128 + 4));
        } catch (e) {
          got = (e as { code: string }).code;
        }
        expect(got).toEqual(expected);
      }),
      { numRuns: 2000 },
    );
  });
});
