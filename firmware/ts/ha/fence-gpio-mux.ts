// The fence for SATA disks behind GPIO-driven 2:1 MUXes. Each disk's MUX connects it to
// exactly one blade. Its select input is held by a small latch that either blade can set
// to itself with a pulse on its own *claim* line; each blade reads the latch back on a
// *sense* line (0: blade 0, 1: blade 1). "Holding" a disk is having it selected to us.
//
// Unlike a SCSI-3 reservation: (1) the partner loses the disk entirely — it cannot even
// read it, so it cannot read the mailboxes on disks it does not hold; (2) there is no
// "nobody" position, so `release` leaves the MUX where it is and the partner takes the disk
// with a claim (the HA machine does this when the partner says it holds nothing of ours);
// (3) a MUX cannot arbitrate two blades claiming at once — the HA tie-break delay keeps
// that from happening, and the sense read-back after each claim catches it if it does.
import type { GpioLine } from '../hal/gpio/gpio.ts';
import { isTwinbladeError } from '../core/errors.ts';
import { FenceError, FenceErrorCode, type BladeIndex, type Fence } from './fence.ts';

export interface MuxLines {
  /** Output: a pulse selects the disk to this blade. */
  claim: GpioLine;
  /** Input: the MUX's current selection (0: blade 0, 1: blade 1). */
  sense: GpioLine;
}

export interface GpioMuxFenceOptions {
  bladeIndex: BladeIndex;
  /** The MUX lines of each disk, by disk index (from the board description). */
  muxes: ReadonlyMap<number, MuxLines>;
}

export class GpioMuxFence implements Fence {
  readonly kind = 'gpio-mux';
  readonly readsUnheldDisks = false;
  private readonly blade: BladeIndex;
  private readonly muxes: ReadonlyMap<number, MuxLines>;

  constructor(opts: GpioMuxFenceOptions) {
    this.blade = opts.bladeIndex;
    this.muxes = opts.muxes;
    for (const [disk, m] of this.muxes) {
      if (m.claim.direction !== 'out') throw new FenceError(FenceErrorCode.unknownDisk, `MUX claim line for disk ${disk} (${m.claim.name}) is not an output`);
      if (m.sense.direction !== 'in') throw new FenceError(FenceErrorCode.unknownDisk, `MUX sense line for disk ${disk} (${m.sense.name}) is not an input`);
    }
  }

  private mux(disk: number): MuxLines {
    const m = this.muxes.get(disk);
    if (m === undefined) throw new FenceError(FenceErrorCode.unknownDisk, `no MUX lines for disk ${disk}`);
    return m;
  }

  private async io<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof FenceError) throw e;
      const code = isTwinbladeError(e) ? e.code : 'unknown';
      throw new FenceError(FenceErrorCode.io, `MUX ${what}: ${code}: ${(e as Error).message}`);
    }
  }

  async holder(disk: number): Promise<BladeIndex> {
    const m = this.mux(disk);
    return this.io(`read ${m.sense.name}`, () => m.sense.read());
  }

  /** A MUX has no registrations: nothing to do beyond checking the disk has a MUX. */
  register(disk: number): Promise<void> {
    this.mux(disk);
    return Promise.resolve();
  }

  /** Succeeds if the MUX selects us (the board's power-on default gives each blade its own disks). */
  async reserve(disk: number): Promise<void> {
    const h = await this.holder(disk);
    if (h !== this.blade) throw new FenceError(FenceErrorCode.conflict, `disk ${disk} is selected to blade ${h}`);
  }

  /** Pulses our claim line; the partner's path to the disk is cut at once. The read-back must show us. */
  async preempt(disk: number): Promise<void> {
    const m = this.mux(disk);
    await this.io(`pulse ${m.claim.name}`, async () => {
      await m.claim.write(1);
      await m.claim.write(0);
    });
    const h = await this.holder(disk);
    if (h !== this.blade) throw new FenceError(FenceErrorCode.notRegistered, `disk ${disk}: claimed, but the MUX selects blade ${h} (the partner claimed it at the same time)`);
  }

  /** There is no "nobody" position: the MUX stays until the partner claims the disk. */
  release(disk: number): Promise<void> {
    this.mux(disk);
    return Promise.resolve();
  }
}
