// The hand-off between a CP's freeze and its writers: the freeze pushes each volume write as
// soon as all of its blocks are placed, so the first writes' gather and I/O overlap the rest
// of the freeze; the writers pull until the freeze has pushed the last one and closed it.

/** A FIFO that some producer closes; `next` waits for an item or the close. */
export class CpWriteQueue<T> {
  private readonly items: T[] = [];
  private head = 0;
  private closed = false;
  private readonly waiters: Array<(item: T | undefined) => void> = [];

  /** Items pushed and not yet taken. */
  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    if (this.closed) throw new Error('CpWriteQueue: push after close');
    const waiter = this.waiters.shift();
    if (waiter !== undefined) waiter(item);
    else this.items.push(item);
  }

  /** No more items: every waiting and later `next` gets undefined once the queue is empty. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  /** The next item, or undefined once the queue is closed and empty. */
  async next(): Promise<T | undefined> {
    if (this.head < this.items.length) {
      const item = this.items[this.head++] as T;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      }
      return item;
    }
    if (this.closed) return undefined;
    return new Promise<T | undefined>((resolve) => this.waiters.push(resolve));
  }
}
