// Test helpers for RPC record marking: frame records into a TCP stream, and feed a stream to an
// InPlaceRecordReader the way a socket does (reads of bounded sizes into nextBuffer()).
import { expect } from 'vitest';
import type { InPlaceRecordReader } from '../../firmware/ts/nfs/core/rpc.ts';

/** The stream of `records`, each a list of fragments, with their record marks. */
export function frame(records: readonly (readonly Uint8Array[])[]): Uint8Array {
  const stream: number[] = [];
  for (const frags of records) {
    frags.forEach((f, i) => {
      const mark = ((i === frags.length - 1 ? 0x80000000 : 0) | f.length) >>> 0;
      stream.push(mark >>> 24, (mark >>> 16) & 255, (mark >>> 8) & 255, mark & 255, ...f);
    });
  }
  return Uint8Array.from(stream);
}

/**
 * Feeds `bytes` to the reader as a socket would: reads of at most `cuts[i]` bytes (cycling)
 * into nextBuffer(), which must never be empty; `onRecord` gets every record as it completes,
 * `onRead` runs after each read.
 */
export function feedReads(r: InPlaceRecordReader, bytes: Uint8Array, cuts: readonly number[], onRecord: (rec: Uint8Array) => void, onRead?: () => void): void {
  for (let off = 0, i = 0; off < bytes.length; i++) {
    const into = r.nextBuffer();
    expect(into.length).toBeGreaterThan(0);
    const n = Math.min(cuts[i % cuts.length] as number, into.length, bytes.length - off);
    into.set(bytes.subarray(off, off + n));
    off += n;
    for (const rec of r.filled(n)) onRecord(rec);
    onRead?.();
  }
}
