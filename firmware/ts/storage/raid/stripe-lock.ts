// Exclusive locks on ranges of stripes, granted first come first served. A stripe's data
// and parity must change together: a full-stripe write, a repair of a bad block and the
// rebuild of a stripe each hold its lock, so none of them ever sees another half-done.

import { assert } from '../../core/assert.ts';

interface Range {
  lo: number;
  hi: number;
}

interface Waiter {
  range: Range;
  grant: () => void;
}

const overlaps = (a: Range, b: Range): boolean => a.lo < b.hi && b.lo < a.hi;

export class StripeLocks {
  private readonly held: Range[] = [];
  private readonly waiting: Waiter[] = [];

  /** Waits for an exclusive lock on stripes [lo, hi) and returns its release function (idempotent). */
  async acquire(lo: number, hi: number): Promise<() => void> {
    const now = this.tryAcquire(lo, hi);
    if (now !== undefined) return now;
    const range: Range = { lo, hi };
    await new Promise<void>((resolve) => this.waiting.push({ range, grant: resolve }));
    return this.releaser(range);
  }

  /**
   * The lock on stripes [lo, hi) at once if it is free and nobody overlapping waits (same
   * order as `acquire`), else undefined: lets a writer issue its I/O in the same turn.
   */
  tryAcquire(lo: number, hi: number): (() => void) | undefined {
    assert(lo < hi, () => `StripeLocks.acquire: empty range [${lo}, ${hi})`);
    const range: Range = { lo, hi };
    if (this.held.some((h) => overlaps(h, range)) || this.waiting.some((w) => overlaps(w.range, range))) return undefined;
    this.held.push(range);
    return this.releaser(range);
  }

  private releaser(range: Range): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const i = this.held.indexOf(range);
      assert(i >= 0, 'released stripe lock was held');
      this.held.splice(i, 1);
      this.grantWaiters();
    };
  }

  /** Number of ranges currently held. */
  get heldCount(): number {
    return this.held.length;
  }

  /** Number of requests waiting. */
  get waitingCount(): number {
    return this.waiting.length;
  }

  private grantWaiters(): void {
    // FIFO among overlapping requests: a waiter never overtakes an earlier waiter it overlaps.
    for (let i = 0; i < this.waiting.length; i++) {
      const w = this.waiting[i] as Waiter;
      const blocked = this.held.some((h) => overlaps(h, w.range)) || this.waiting.slice(0, i).some((e) => overlaps(e.range, w.range));
      if (blocked) continue;
      this.waiting.splice(i, 1);
      i--;
      this.held.push(w.range);
      w.grant();
    }
  }
}
