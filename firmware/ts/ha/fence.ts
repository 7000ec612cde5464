// The fence (SPEC ST-4): excluding the partner from writing disks we took over. One
// interface with the semantics of SCSI-3 persistent reservations of the *write exclusive*
// kind (everyone reads, only the holder writes), implemented by: fence-sim.ts (the
// simulator's recording fence and oracle), fence-gpio-mux.ts (SATA disks behind 2:1 MUXes),
// and later the rig's loop controller and SG_IO reservations on iSCSI/SAS disks.
import { TwinbladeError } from '../core/errors.ts';

export const FenceErrorCode = {
  /** Another blade holds the reservation (reserve refused; a write refused). */
  conflict: 'ERR_FENCE_CONFLICT',
  /** This blade's registration was removed by the partner's preempt: it lost the race. */
  notRegistered: 'ERR_FENCE_NOT_REGISTERED',
  /** The disk or its control path failed. */
  io: 'ERR_FENCE_IO',
  /** The disk index is not one this fence controls. */
  unknownDisk: 'ERR_FENCE_UNKNOWN_DISK',
} as const;

export class FenceError extends TwinbladeError {
  constructor(code: string, message: string) {
    super(code, code === FenceErrorCode.io ? 'io' : code === FenceErrorCode.unknownDisk ? 'invalid-argument' : 'fenced', message);
    this.name = 'FenceError';
  }
}

export type BladeIndex = 0 | 1;

/**
 * The fence of one blade (the initiator) over the shared disks, by disk index.
 *
 * Contract (test/unit/ha-fence.test.ts runs it against every driver):
 * - `register(disk)` registers this blade's key (done at boot for every shared disk; a
 *   preempt needs it). It never changes who holds the disk.
 * - `reserve(disk)` registers this blade and takes the reservation if nobody holds it; it
 *   succeeds if this blade already holds it; it rejects `ERR_FENCE_CONFLICT` if the partner does.
 * - `preempt(disk)` takes the reservation whoever holds it and removes the partner's
 *   registration, so the partner's writes fail from then on. It rejects
 *   `ERR_FENCE_NOT_REGISTERED` if the partner preempted *us* since our last `reserve` — so of
 *   two blades preempting each other at once, exactly one wins.
 * - `release(disk)` gives the reservation up if this blade holds it (else does nothing).
 * - `holder(disk)` says who holds it now (undefined: nobody).
 * - Errors are `FenceError`s with a `FenceErrorCode`.
 */
export interface Fence {
  /** Which mechanism this is, for logs and docs. */
  readonly kind: 'sim' | 'gpio-mux' | 'rig-loop' | 'scsi3';
  /**
   * Whether this blade can read disks it does not hold. True for reservations (write
   * exclusive); false for MUX path selection, where the partner's disks are not even
   * visible — so the mailboxes of disks a blade does not own cannot carry status to it.
   */
  readonly readsUnheldDisks: boolean;
  register(disk: number): Promise<void>;
  reserve(disk: number): Promise<void>;
  preempt(disk: number): Promise<void>;
  release(disk: number): Promise<void>;
  holder(disk: number): Promise<BladeIndex | undefined>;
}

/** Applies one fence command to every disk of a set, in order; the first failure rejects. */
export async function fenceSet(fence: Fence, op: 'register' | 'reserve' | 'preempt' | 'release', disks: readonly number[]): Promise<void> {
  for (const d of disks) await fence[op](d);
}
