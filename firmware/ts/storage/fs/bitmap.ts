// A fixed-size bitmap over 32-bit words, used for the block map and the inode map. Map
// blocks on disk carry `mapBitsPerBlock` bits each, a whole number of words, so a map block
// is a plain slice of the words.
import { assert } from '../../core/assert.ts';
import { dataView } from '../../core/bytes.ts';
import { blockHeaderBytes, fsBlockBytes, mapBitsPerBlock } from './format.ts';

const wordsPerMapBlock = mapBitsPerBlock / 32;

export class Bitmap {
  readonly words: Uint32Array;
  private ones = 0;

  constructor(readonly size: number) {
    this.words = new Uint32Array(Math.ceil(size / 32));
  }

  get count(): number {
    return this.ones;
  }

  get(i: number): boolean {
    return (((this.words[i >>> 5] as number) >>> (i & 31)) & 1) === 1;
  }

  set(i: number): void {
    assert(i >= 0 && i < this.size, () => `bitmap: bit ${i} outside 0..${this.size - 1}`);
    const w = i >>> 5;
    const m = 1 << (i & 31);
    const cur = this.words[w] as number;
    if ((cur & m) === 0) {
      this.words[w] = cur | m;
      this.ones++;
    }
  }

  clear(i: number): void {
    assert(i >= 0 && i < this.size, () => `bitmap: bit ${i} outside 0..${this.size - 1}`);
    const w = i >>> 5;
    const m = 1 << (i & 31);
    const cur = this.words[w] as number;
    if ((cur & m) !== 0) {
      this.words[w] = cur & ~m;
      this.ones--;
    }
  }

  setRange(first: number, count: number): void {
    for (let i = first; i < first + count; i++) this.set(i);
  }

  /** True when no bit in [first, first+count) is set in this map nor in any of `others`. */
  rangeClear(first: number, count: number, others: readonly (Bitmap | undefined)[] = []): boolean {
    let i = first;
    const end = first + count;
    while (i < end) {
      if ((i & 31) === 0 && end - i >= 32) {
        const w = i >>> 5;
        let x = this.words[w] as number;
        for (const o of others) if (o !== undefined) x |= o.words[w] as number;
        if (x !== 0) return false;
        i += 32;
      } else {
        if (this.get(i)) return false;
        for (const o of others) if (o !== undefined && o.get(i)) return false;
        i++;
      }
    }
    return true;
  }

  clone(): Bitmap {
    const b = new Bitmap(this.size);
    b.words.set(this.words);
    b.ones = this.ones;
    return b;
  }

  equalsSlice(other: Bitmap, mapBlock: number): boolean {
    const lo = mapBlock * wordsPerMapBlock;
    const hi = Math.min(lo + wordsPerMapBlock, this.words.length);
    for (let w = lo; w < hi; w++) if (this.words[w] !== other.words[w]) return false;
    return true;
  }

  /** Writes map block `mapBlock`'s bits into the payload of `block` (after the header). */
  writeSlice(block: Uint8Array, mapBlock: number): void {
    assert(block.length === fsBlockBytes, 'bitmap: map block size');
    const v = dataView(block);
    const lo = mapBlock * wordsPerMapBlock;
    for (let k = 0; k < wordsPerMapBlock; k++) {
      const w = lo + k;
      v.setUint32(blockHeaderBytes + k * 4, w < this.words.length ? (this.words[w] as number) : 0, true);
    }
  }

  /** Loads map block `mapBlock`'s bits from the payload of `block`; bits past `size` must be zero. */
  readSlice(block: Uint8Array, mapBlock: number): boolean {
    const v = dataView(block);
    const lo = mapBlock * wordsPerMapBlock;
    let ok = true;
    for (let k = 0; k < wordsPerMapBlock; k++) {
      const w = lo + k;
      let x = v.getUint32(blockHeaderBytes + k * 4, true);
      if (w >= this.words.length) {
        if (x !== 0) ok = false;
        continue;
      }
      const firstBit = w * 32;
      if (firstBit + 32 > this.size) {
        const valid = this.size - firstBit;
        const mask = valid >= 32 ? 0xffffffff : ((1 << valid) - 1) >>> 0;
        if ((x & ~mask) !== 0) ok = false;
        x &= mask;
      }
      const old = this.words[w] as number;
      this.ones += popcount(x) - popcount(old);
      this.words[w] = x;
    }
    return ok;
  }

  /** First clear bit at or after `from` (wrapping once), not set in `others`; -1 if none. */
  findClear(from: number, others: readonly (Bitmap | Set<number>)[] = []): number {
    for (let pass = 0; pass < 2; pass++) {
      const lo = pass === 0 ? from : 0;
      const hi = pass === 0 ? this.size : Math.min(from, this.size);
      let i = lo;
      while (i < hi) {
        if ((i & 31) === 0 && (this.words[i >>> 5] as number) === 0xffffffff) {
          i += 32;
          continue;
        }
        if (!this.get(i) && !others.some((o) => (o instanceof Bitmap ? o.get(i) : o.has(i)))) return i;
        i++;
      }
    }
    return -1;
  }
}

function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}
