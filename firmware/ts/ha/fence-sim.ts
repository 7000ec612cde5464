// The simulated fence: per disk, a SCSI-3 write-exclusive reservation (holder and
// registrations), plus a record of every write it allowed or refused. It is both the fence
// the simulated blades use and the oracle the simulation's safety checkers read.
import { FenceError, FenceErrorCode, type BladeIndex, type Fence } from './fence.ts';

interface DiskReservation {
  holder: BladeIndex | undefined;
  registered: [boolean, boolean];
  /** Increments on every change of holder; writes are attributed to an epoch. */
  epoch: number;
  /** Blades that wrote successfully during the current epoch. */
  writersThisEpoch: Set<BladeIndex>;
}

export interface FenceViolation {
  disk: number;
  epoch: number;
  blades: BladeIndex[];
  atMs: number;
}

export interface FencedWrite {
  disk: number;
  blade: BladeIndex;
  holder: BladeIndex | undefined;
  atMs: number;
}

export class SimFenceArray {
  private readonly disks: DiskReservation[];
  /** Two different blades wrote the same disk within one holder epoch: the split brain the fence exists to prevent. */
  readonly violations: FenceViolation[] = [];
  /** Writes refused because the writer did not hold the reservation (the fence doing its job). */
  readonly fencedWrites: FencedWrite[] = [];
  writeCount = 0;
  preemptCount = 0;

  constructor(diskCount: number, private readonly nowMs: () => number = () => 0) {
    this.disks = Array.from({ length: diskCount }, () => ({ holder: undefined, registered: [false, false], epoch: 0, writersThisEpoch: new Set<BladeIndex>() }));
  }

  get diskCount(): number {
    return this.disks.length;
  }

  private disk(d: number): DiskReservation {
    const r = this.disks[d];
    if (r === undefined) throw new FenceError(FenceErrorCode.unknownDisk, `sim fence: no disk ${d}`);
    return r;
  }

  private setHolder(r: DiskReservation, h: BladeIndex | undefined): void {
    if (r.holder === h) return;
    r.holder = h;
    r.epoch++;
    r.writersThisEpoch.clear();
  }

  register(d: number, blade: BladeIndex): void {
    this.disk(d).registered[blade] = true;
  }

  reserve(d: number, blade: BladeIndex): void {
    const r = this.disk(d);
    r.registered[blade] = true;
    if (r.holder !== undefined && r.holder !== blade) throw new FenceError(FenceErrorCode.conflict, `disk ${d} is reserved by blade ${r.holder}`);
    this.setHolder(r, blade);
  }

  preempt(d: number, blade: BladeIndex): void {
    const r = this.disk(d);
    if (!r.registered[blade]) throw new FenceError(FenceErrorCode.notRegistered, `blade ${blade} is not registered on disk ${d} (preempted)`);
    r.registered[blade === 0 ? 1 : 0] = false;
    this.preemptCount++;
    this.setHolder(r, blade);
  }

  release(d: number, blade: BladeIndex): void {
    const r = this.disk(d);
    if (r.holder === blade) this.setHolder(r, undefined);
  }

  holder(d: number): BladeIndex | undefined {
    return this.disk(d).holder;
  }

  /**
   * A write from `blade` reaches disk `d`. Write-exclusive semantics: with a holder only the
   * holder writes; without one any registered blade may. Returns whether it was allowed.
   */
  write(d: number, blade: BladeIndex): boolean {
    const r = this.disk(d);
    const allowed = r.holder === undefined ? r.registered[blade] : r.holder === blade;
    if (!allowed) {
      this.fencedWrites.push({ disk: d, blade, holder: r.holder, atMs: this.nowMs() });
      return false;
    }
    this.writeCount++;
    r.writersThisEpoch.add(blade);
    if (r.writersThisEpoch.size > 1) {
      this.violations.push({ disk: d, epoch: r.epoch, blades: [...r.writersThisEpoch].sort(), atMs: this.nowMs() });
    }
    return true;
  }

  /** The Fence of one blade over this array (async like a real driver). */
  forBlade(blade: BladeIndex): Fence {
    return new SimFence(this, blade);
  }
}

class SimFence implements Fence {
  readonly kind = 'sim';
  readonly readsUnheldDisks = true;
  constructor(private readonly array: SimFenceArray, private readonly blade: BladeIndex) {}
  register(disk: number): Promise<void> {
    return settle(() => this.array.register(disk, this.blade));
  }
  reserve(disk: number): Promise<void> {
    return settle(() => this.array.reserve(disk, this.blade));
  }
  preempt(disk: number): Promise<void> {
    return settle(() => this.array.preempt(disk, this.blade));
  }
  release(disk: number): Promise<void> {
    return settle(() => this.array.release(disk, this.blade));
  }
  holder(disk: number): Promise<BladeIndex | undefined> {
    return settle(() => this.array.holder(disk));
  }
}

function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e as Error);
  }
}
