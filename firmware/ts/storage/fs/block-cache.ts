// The clean-block cache and sequential read-ahead of the copy-on-write file system's read
// path: data blocks as the disks hold them, keyed by physical block number, bounded in bytes.
// Copy-on-write makes the key safe: a block on disk never changes in place while it is in
// use; it changes only after it was freed and reused, and freeing invalidates it here.

/** Named limits of the block cache and read-ahead (CowFsOptions may override them). */
export const blockCacheDefaults = {
  /**
   * Bytes of read buffers the cache may hold. Counted per backing buffer (a read-ahead of many
   * blocks is one buffer, kept whole while any of its blocks is cached), so this is a true
   * bound on the memory the cache keeps alive.
   */
  blockCacheBytesMax: 64 * 1024 * 1024,
  /** The largest read-ahead window of one sequential stream (it starts small and doubles). */
  readAheadBytesMax: 4 * 1024 * 1024,
  /** The first window once a stream is seen to be sequential. */
  readAheadBytesMin: 256 * 1024,
  /** Blocks per volume read issued by read-ahead: whole stripes at a time on RAID-4. */
  readAheadCallBytesMax: 1024 * 1024,
  /** Files whose sequential state is tracked at once (least recently read forgotten first). */
  readStreamsMax: 256,
} as const;

export interface BlockCacheStats {
  hits: number;
  misses: number;
  /** Blocks a reader found in flight (read-ahead that had not landed yet). */
  pendingHits: number;
  readAheadBlocks: number;
  invalidations: number;
  bytes: number;
  blocks: number;
  /** The bound on `bytes` (blockCacheBytesMax). */
  bytesMax: number;
}

interface Entry {
  data: Uint8Array;
  /** Hit since it was (re)queued: eviction gives it a second chance instead of dropping it. */
  referenced: boolean;
}

/** A read in flight that will bring blocks [first, first + count). */
export interface Fill {
  first: number;
  /** The blocks read, one view per block from `first` (undefined: the read failed). */
  promise: Promise<readonly Uint8Array[] | undefined>;
}

/**
 * What a read brought, as one view per block: one buffer of `count` blocks, or consecutive
 * pieces of whole blocks (Volume.readBlockParts). Anything else is a failed read.
 */
export function blockViews(data: Uint8Array | readonly Uint8Array[], count: number, blockBytes: number): Uint8Array[] {
  const out = new Array<Uint8Array>(count);
  let n = 0;
  const split = (b: Uint8Array): void => {
    if (b.length % blockBytes !== 0 || n + b.length / blockBytes > count) throw new RangeError(`block cache: a read returned ${b.length} bytes, not whole blocks of the ${count} asked for`);
    for (let at = 0; at < b.length; at += blockBytes) out[n++] = b.subarray(at, at + blockBytes);
  };
  if (data instanceof Uint8Array) split(data);
  else for (const b of data) split(b);
  if (n !== count) throw new RangeError(`block cache: a read returned ${n} blocks of the ${count} asked for`);
  return out;
}

/**
 * Clean blocks by physical address, least recently used evicted first (approximately: a hit
 * only marks the entry, and eviction requeues a marked one once — the CLOCK "second chance"
 * — rather than moving the entry on every hit, which was a Map delete and insert per 4 KiB
 * block read), and the reads in flight that will fill it. Pure: the caller supplies the reads.
 *
 * Invariant: an address is cached (or filled) only while the caller's block map has it in
 * use; `invalidate` is called when it is freed, and a fill that was in flight then does not
 * insert its (possibly stale) data.
 */
export class BlockCache {
  private readonly entries = new Map<number, Entry>();
  private readonly fills = new Map<number, Fill>();
  /** Cached blocks per backing buffer, so each buffer is counted once. */
  private readonly buffers = new Map<ArrayBufferLike, number>();
  private bytes = 0;
  private readonly inFlight = new Set<Promise<unknown>>();
  readonly stats: BlockCacheStats;

  constructor(readonly bytesMax: number) {
    this.stats = { hits: 0, misses: 0, pendingHits: 0, readAheadBlocks: 0, invalidations: 0, bytes: 0, blocks: 0, bytesMax };
  }

  /** The cached block at `addr` (a view: callers copy from it and never write to it). */
  get(addr: number): Uint8Array | undefined {
    const e = this.entries.get(addr);
    if (e === undefined) return undefined;
    e.referenced = true;
    this.stats.hits++;
    return e.data;
  }

  /** A read in flight that will bring `addr` (resolves undefined if it failed). */
  pending(addr: number, _blockBytes?: number): Promise<Uint8Array | undefined> | undefined {
    const f = this.pendingFill(addr);
    if (f === undefined) return undefined;
    const i = addr - f.first;
    return f.promise.then((blocks) => blocks?.[i]);
  }

  /**
   * The read in flight that will bring `addr`, as block `addr - first` of what it resolves to
   * (undefined if the read failed). Unlike `pending`, no promise per block: a reader waiting
   * for many blocks of one fill awaits it once.
   */
  pendingFill(addr: number): Readonly<Fill> | undefined {
    const f = this.fills.get(addr);
    if (f !== undefined) this.stats.pendingHits++;
    return f;
  }

  /** Counts a block the caller had to read itself. */
  noteMiss(count = 1): void {
    this.stats.misses += count;
  }

  /**
   * Caches consecutive blocks at `first`: one block, several in one buffer, or consecutive
   * pieces of whole blocks (what Volume.readBlockParts returns).
   */
  put(first: number, data: Uint8Array | readonly Uint8Array[], blockBytes: number): void {
    const pieces = data instanceof Uint8Array ? [data] : data;
    let addr = first;
    for (const b of pieces) {
      for (let at = 0; at + blockBytes <= b.length; at += blockBytes) this.insert(addr++, b.subarray(at, at + blockBytes));
    }
    this.evict();
  }

  /**
   * Reads `count` blocks at `first` in the background with `read` and caches them (the
   * caller leaves out blocks already cached or in flight). Errors are swallowed: a reader
   * that finds nothing falls back to its own read, which reports the error or reconstructs.
   */
  fill(first: number, count: number, blockBytes: number, read: () => Promise<Uint8Array | readonly Uint8Array[]>): void {
    const fill: Fill = { first, promise: Promise.resolve(undefined) };
    const forget = (): undefined => {
      for (let i = 0; i < count; i++) if (this.fills.get(first + i) === fill) this.fills.delete(first + i);
      return undefined;
    };
    fill.promise = read().then((data) => {
      let blocks: Uint8Array[];
      try {
        blocks = blockViews(data, count, blockBytes);
      } catch {
        return forget();
      }
      for (let i = 0; i < count; i++) {
        // Only blocks still registered to this fill: an invalidated one may be stale.
        if (this.fills.get(first + i) === fill) {
          this.fills.delete(first + i);
          this.insert(first + i, blocks[i] as Uint8Array);
        }
      }
      this.evict();
      return blocks;
    }, forget);
    for (let i = 0; i < count; i++) this.fills.set(first + i, fill);
    this.stats.readAheadBlocks += count;
    const tracked = fill.promise.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** `addr` was freed (or is about to be rewritten): forget it, and let no fill in flight insert it. */
  invalidate(addr: number): void {
    // A CP invalidates every block it places (49,152 for 192 MiB): nothing to look up when empty.
    if (this.entries.size === 0 && this.fills.size === 0) return;
    const e = this.entries.get(addr);
    if (e !== undefined) {
      this.entries.delete(addr);
      this.release(e.data);
      this.stats.invalidations++;
    }
    if (this.fills.delete(addr)) this.stats.invalidations++;
    this.sync();
  }

  /** Drops everything (the file system stopped, or a test wants a cold cache). */
  clear(): void {
    this.entries.clear();
    this.fills.clear();
    this.buffers.clear();
    this.bytes = 0;
    this.sync();
  }

  /** Resolves once no background read is in flight (close waits for it before the volume goes). */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  get blockCount(): number {
    return this.entries.size;
  }

  get byteCount(): number {
    return this.bytes;
  }

  has(addr: number): boolean {
    return this.entries.has(addr) || this.fills.has(addr);
  }

  private insert(addr: number, data: Uint8Array): void {
    const old = this.entries.get(addr);
    if (old !== undefined) {
      this.entries.delete(addr);
      this.release(old.data);
    }
    this.entries.set(addr, { data, referenced: false });
    const buf = data.buffer;
    const refs = this.buffers.get(buf) ?? 0;
    if (refs === 0) this.bytes += buf.byteLength;
    this.buffers.set(buf, refs + 1);
  }

  private release(data: Uint8Array): void {
    const buf = data.buffer;
    const refs = (this.buffers.get(buf) ?? 1) - 1;
    if (refs <= 0) {
      this.buffers.delete(buf);
      this.bytes -= buf.byteLength;
    } else this.buffers.set(buf, refs);
  }

  private evict(): void {
    // Oldest first (a Map iterates in insertion order). A referenced entry is requeued at the
    // end unmarked, so the loop ends: each entry is requeued at most once per call.
    if (this.bytes > this.bytesMax) {
      for (const [addr, e] of this.entries) {
        if (this.bytes <= this.bytesMax) break;
        this.entries.delete(addr);
        if (e.referenced) {
          e.referenced = false;
          this.entries.set(addr, e);
        } else this.release(e.data);
      }
    }
    this.sync();
  }

  private sync(): void {
    this.stats.bytes = this.bytes;
    this.stats.blocks = this.entries.size;
  }
}

/**
 * Sequential-access detection per file: a read that starts where the last one of the same
 * file ended (within one window, since pipelined reads may complete a little out of order)
 * is sequential, and its window doubles up to the maximum; any other read resets it.
 */
export class ReadStreams {
  private readonly streams = new Map<number, { next: number; window: number; aheadTo: number }>();

  constructor(private readonly o: { readAheadBytesMin: number; readAheadBytesMax: number; readStreamsMax: number }) {}

  /**
   * Notes a read of [offset, offset + n) of file `ino`; returns the byte range to read ahead
   * (empty when the stream is not sequential or the range ahead is already being read).
   */
  note(ino: number, offset: number, n: number, size: number): { from: number; to: number } | undefined {
    let s = this.streams.get(ino);
    const end = offset + n;
    if (s === undefined) {
      s = { next: end, window: 0, aheadTo: end };
      this.remember(ino, s);
      // The first read of a file from its start is taken as the start of a stream.
      if (offset !== 0) return undefined;
    } else {
      this.streams.delete(ino);
      this.streams.set(ino, s);
      const sequential = Math.abs(offset - s.next) <= Math.max(s.window, this.o.readAheadBytesMin);
      if (!sequential) {
        // A jump (or a new pass from the start): a new stream begins at this read.
        s.next = end;
        s.window = 0;
        s.aheadTo = end;
        if (offset !== 0) return undefined;
      } else s.next = Math.max(s.next, end);
    }
    s.window = s.window === 0 ? this.o.readAheadBytesMin : Math.min(this.o.readAheadBytesMax, s.window * 2);
    // Issue the next window once the reader is within half a window of what is already ahead.
    const from = Math.max(s.aheadTo, end);
    if (from - end > s.window / 2) return undefined;
    const to = Math.min(size, end + s.window);
    if (to <= from) return undefined;
    s.aheadTo = to;
    return { from, to };
  }

  forget(ino: number): void {
    this.streams.delete(ino);
  }

  private remember(ino: number, s: { next: number; window: number; aheadTo: number }): void {
    this.streams.set(ino, s);
    while (this.streams.size > this.o.readStreamsMax) {
      const first = this.streams.keys().next();
      if (first.done === true) break;
      this.streams.delete(first.value);
    }
  }
}
