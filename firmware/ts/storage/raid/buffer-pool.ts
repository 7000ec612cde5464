// A free list of the volume's scratch buffers (per-member stripe runs, parity), reused from
// one full-stripe write to the next. Fresh large buffers are expensive: the kernel maps and
// zero-fills every page on first touch, which cost more than the parity arithmetic itself.

export class BufferPool {
  private readonly free = new Map<number, Uint8Array[]>();
  private freeBytes = 0;

  /**
   * @param allocate makes a new buffer (the aligned allocator with O_DIRECT disks)
   * @param bytesMax at most this many bytes are kept for reuse; the rest is left to the GC
   */
  constructor(
    private readonly allocate: (bytes: number) => Uint8Array,
    private readonly bytesMax: number,
  ) {}

  /** A buffer of exactly `bytes` bytes with arbitrary contents. */
  take(bytes: number): Uint8Array {
    const list = this.free.get(bytes);
    const buf = list?.pop();
    if (buf !== undefined) {
      this.freeBytes -= bytes;
      return buf;
    }
    return this.allocate(bytes);
  }

  /** Returns buffers nobody references any more (no I/O of them in flight). */
  give(...bufs: Uint8Array[]): void {
    for (const b of bufs) {
      if (this.freeBytes + b.length > this.bytesMax) continue;
      let list = this.free.get(b.length);
      if (list === undefined) {
        list = [];
        this.free.set(b.length, list);
      }
      list.push(b);
      this.freeBytes += b.length;
    }
  }

  /** Bytes held for reuse. */
  get heldBytes(): number {
    return this.freeBytes;
  }
}
