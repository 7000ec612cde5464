// The fence for SATA disks behind GPIO-driven 2:1 MUXes: each disk's MUX connects it to
// exactly one blade, chosen by a select line (0: blade 0, 1: blade 1). "Holding" a disk is
// having it selected to us. Unlike a reservation, the partner loses the disk entirely — it
// can no longer read it either, so it cannot read the mailboxes of disks it does not own —
// and a MUX cannot arbitrate two blades switching it at once: the HA tie-break delay is
// what keeps that from happening (docs/ha.md "Fencing drivers").
import type { GpioLine } from '../hal/gpio/gpio.ts';
import { isTwinbladeError } from '../core/errors.ts';
import { FenceError, FenceErrorCode, type BladeIndex, type Fence } from './fence.ts';

export interface GpioMuxFenceOptions {
  bladeIndex: BladeIndex;
  /** The select line of each disk's MUX, by disk index (from the board description). */
  selectLines: ReadonlyMap<number, GpioLine>;
}

export class GpioMuxFence implements Fence {
  readonly kind = 'gpio-mux';
  readonly readsUnheldDisks = false;
  private readonly blade: BladeIndex;
  private readonly lines: ReadonlyMap<number, GpioLine>;

  constructor(opts: GpioMuxFenceOptions) {
    this.blade = opts.bladeIndex;
    this.lines = opts.selectLines;
    for (const [disk, line] of this.lines) {
      if (line.direction !== 'out') throw new FenceError(FenceErrorCode.unknownDisk, `MUX select line for disk ${disk} (${line.name}) is not an output`);
    }
  }

  private line(disk: number): GpioLine {
    const l = this.lines.get(disk);
    if (l === undefined) throw new FenceError(FenceErrorCode.unknownDisk, `no MUX select line for disk ${disk}`);
    return l;
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
    const line = this.line(disk);
    return this.io(`read ${line.name}`, () => line.read());
  }

  /** A MUX has no registrations: nothing to do beyond checking the line exists. */
  register(disk: number): Promise<void> {
    this.line(disk);
    return Promise.resolve();
  }

  /** Succeeds if the MUX already selects us (the board's power-on default gives each blade its own disks). */
  async reserve(disk: number): Promise<void> {
    const h = await this.holder(disk);
    if (h !== this.blade) throw new FenceError(FenceErrorCode.conflict, `disk ${disk} is selected to blade ${h}`);
  }

  /** Switches the MUX to us; the partner's path to the disk is cut at once. */
  async preempt(disk: number): Promise<void> {
    const line = this.line(disk);
    await this.io(`write ${line.name}`, () => line.write(this.blade));
  }

  /** A MUX has no "nobody" position: releasing hands the disk to the partner. */
  async release(disk: number): Promise<void> {
    const line = this.line(disk);
    if ((await this.holder(disk)) !== this.blade) return;
    await this.io(`write ${line.name}`, () => line.write(this.blade === 0 ? 1 : 0));
  }
}
