// HA-3: merging the status messages that arrive on every path into one ordered stream.
// A message is new iff its generation is greater than the newest seen, or equal with a
// greater sequence; anything else is a duplicate or stale copy from a slower path.

export interface GenSeq {
  generation: number;
  sequence: number;
}

/** Compares two (generation, sequence) stamps: negative, zero or positive. */
export function compareGenSeq(a: GenSeq, b: GenSeq): number {
  if (a.generation !== b.generation) return a.generation < b.generation ? -1 : 1;
  if (a.sequence !== b.sequence) return a.sequence < b.sequence ? -1 : 1;
  return 0;
}

export interface OfferResult {
  /** New for the merged stream: only new messages change what we believe about the partner. */
  isNew: boolean;
  /** Newer than anything this path delivered before. */
  pathAdvanced: boolean;
  /**
   * When the partner was last known alive according to this message: now for a new one;
   * for an older one, the arrival time of the first stream message at least as new. A
   * stale record read from a disk after a long gap therefore witnesses an old time, not now.
   */
  witnessMs: number;
}

/** How long the stream remembers arrival times of its new messages. */
export const streamHistoryMsMax = 10_000;

/**
 * The merged stream of one partner's messages, with per-path progress. A path that keeps
 * delivering fresh stamps of its own shows the partner alive on that path even when a
 * faster path got them there first; `witnessMs` says how fresh that evidence is.
 */
export class StatusStream {
  private newest: GenSeq | undefined;
  private readonly perPath = new Map<string, GenSeq>();
  /** New stamps and their arrival times, oldest first (stamps ascending). */
  private readonly history: { stamp: GenSeq; atMs: number }[] = [];
  private newCount = 0;
  private oldCount = 0;

  offer(path: string, stamp: GenSeq, nowMs: number): OfferResult {
    const last = this.perPath.get(path);
    const pathAdvanced = last === undefined || compareGenSeq(stamp, last) > 0;
    if (pathAdvanced) this.perPath.set(path, { generation: stamp.generation, sequence: stamp.sequence });
    const isNew = this.newest === undefined || compareGenSeq(stamp, this.newest) > 0;
    if (isNew) {
      this.newest = { generation: stamp.generation, sequence: stamp.sequence };
      this.newCount++;
      this.history.push({ stamp: this.newest, atMs: nowMs });
      while (this.history.length > 0 && (this.history[0] as { atMs: number }).atMs < nowMs - streamHistoryMsMax) this.history.shift();
      return { isNew, pathAdvanced, witnessMs: nowMs };
    }
    this.oldCount++;
    return { isNew, pathAdvanced, witnessMs: this.firstArrivalAtLeast(stamp) };
  }

  private firstArrivalAtLeast(stamp: GenSeq): number {
    const h = this.history;
    let lo = 0;
    let hi = h.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareGenSeq((h[mid] as { stamp: GenSeq }).stamp, stamp) >= 0) hi = mid;
      else lo = mid + 1;
    }
    const e = h[lo];
    // Older than everything remembered: evidence from before the history window.
    if (e === undefined || (lo === 0 && compareGenSeq(e.stamp, stamp) !== 0)) return -Infinity;
    return e.atMs;
  }

  /** Forgets everything: the partner's count restarted below what we knew (it lost its NVRAM). */
  reset(): void {
    this.newest = undefined;
    this.perPath.clear();
    this.history.length = 0;
  }

  /** The newest stamp `path` has delivered. */
  pathLatest(path: string): GenSeq | undefined {
    return this.perPath.get(path);
  }

  /** The newest stamp seen (undefined before the first message). */
  latest(): GenSeq | undefined {
    return this.newest;
  }

  counts(): { newCount: number; oldCount: number } {
    return { newCount: this.newCount, oldCount: this.oldCount };
  }
}
