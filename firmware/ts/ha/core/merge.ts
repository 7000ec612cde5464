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

/**
 * The merged stream of one partner's messages. `offer` says whether a message is new for
 * the stream (only new ones change what we believe about the partner) and, separately,
 * whether it advanced the path it came on: a path that keeps delivering fresh stamps of its
 * own shows the partner alive on that path even when a faster path got them there first.
 */
export class StatusStream {
  private newest: GenSeq | undefined;
  private readonly perPath = new Map<string, GenSeq>();
  private newCount = 0;
  private oldCount = 0;

  offer(path: string, stamp: GenSeq): { isNew: boolean; pathAdvanced: boolean } {
    const last = this.perPath.get(path);
    const pathAdvanced = last === undefined || compareGenSeq(stamp, last) > 0;
    if (pathAdvanced) this.perPath.set(path, { generation: stamp.generation, sequence: stamp.sequence });
    const isNew = this.newest === undefined || compareGenSeq(stamp, this.newest) > 0;
    if (isNew) {
      this.newest = { generation: stamp.generation, sequence: stamp.sequence };
      this.newCount++;
    } else {
      this.oldCount++;
    }
    return { isNew, pathAdvanced };
  }

  /** The newest stamp seen (undefined before the first message). */
  latest(): GenSeq | undefined {
    return this.newest;
  }

  counts(): { newCount: number; oldCount: number } {
    return { newCount: this.newCount, oldCount: this.oldCount };
  }
}
