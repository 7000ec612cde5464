// A simulated NVRAM for the change-log simulation and crash-point tests. It is stricter than
// the HAL's sim driver in two ways that matter for the log: *every* write not yet covered by a
// completed persist may tear (each aligned 8-byte word independently keeps its new or old
// value), and `persist` completes as its own scheduled step, so a power cut can fall between
// a write and its persist. A failed battery loses everything at the cut.
import { NvramErrorCode, type Nvram } from '../../hal/nvram/nvram.ts';
import { TwinbladeError } from '../../core/errors.ts';
import type { Prng } from '../../core/prng.ts';

export type TearMode = 'tear' | 'drop' | 'keep';

interface Pending {
  offset: number;
  before: Uint8Array;
}

export class TearingNvram implements Nvram {
  readonly name: string;
  readonly sizeBytes: number;
  private readonly data: Uint8Array;
  /** Writes not yet made durable, oldest first, with the bytes they replaced. */
  private pending: Pending[] = [];
  private generation = 0;
  batteryFailed = false;

  constructor(
    sizeBytes: number,
    private readonly prng: Prng,
    /** Schedules the completion of a persist (a step of the simulation). */
    private readonly defer: (label: string, fn: () => void) => void,
    name = 'tearing-nvram',
  ) {
    this.name = name;
    this.sizeBytes = sizeBytes;
    this.data = new Uint8Array(sizeBytes);
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new TwinbladeError(NvramErrorCode.invalidArgument, 'invalid-argument', `${this.name}: bad range ${offset}+${length}`);
    }
    if (offset + length > this.sizeBytes) throw new TwinbladeError(NvramErrorCode.outOfRange, 'out-of-range', `${this.name}: ${offset}+${length} beyond ${this.sizeBytes}`);
  }

  read(offset: number, length: number): Uint8Array {
    this.check(offset, length);
    return this.data.slice(offset, offset + length);
  }

  write(offset: number, data: Uint8Array): void {
    this.check(offset, data.length);
    this.pending.push({ offset, before: this.data.slice(offset, offset + data.length) });
    this.data.set(data, offset);
  }

  writeParts(offset: number, parts: readonly Uint8Array[]): void {
    let length = 0;
    for (const p of parts) {
      if (!(p instanceof Uint8Array)) throw new TwinbladeError(NvramErrorCode.invalidArgument, 'invalid-argument', `${this.name}: parts must be Uint8Arrays`);
      length += p.length;
    }
    this.check(offset, length);
    // One pending write: a power cut tears it per word like any other.
    this.pending.push({ offset, before: this.data.slice(offset, offset + length) });
    let at = offset;
    for (const p of parts) {
      this.data.set(p, at);
      at += p.length;
    }
  }

  persist(offset = 0, length = this.sizeBytes - offset): Promise<void> {
    this.check(offset, length);
    const gen = this.generation;
    // The writes issued so far in the range become durable when the fence completes.
    const covered = this.pending.filter((p) => p.offset >= offset && p.offset + p.before.length <= offset + length);
    return new Promise((resolve) => {
      this.defer('nvram-persist', () => {
        // A power cut in between: this fence never completed (and never resolves).
        if (gen !== this.generation) return;
        this.pending = this.pending.filter((p) => !covered.includes(p));
        resolve();
      });
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Bytes written but not yet durable. */
  get unpersistedBytes(): number {
    return this.pending.reduce((n, p) => n + p.before.length, 0);
  }

  /**
   * Cuts the power. With a good battery each unpersisted write is torn per 8-byte word
   * (`tear`), rolled back (`drop`) or kept (`keep`); with a failed battery the content is lost
   * (random garbage, as SRAM powers up). Persists in flight never complete.
   */
  powerCut(mode: TearMode = 'tear'): void {
    this.generation++;
    if (this.batteryFailed) {
      this.data.set(this.prng.bytes(this.sizeBytes));
      this.pending = [];
      return;
    }
    // Undo newest first so that overlapping writes restore the oldest durable bytes.
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const p = this.pending[i] as Pending;
      if (mode === 'keep') continue;
      for (let w = 0; w < p.before.length; w += 8) {
        const revert = mode === 'drop' || this.prng.chance(0.5);
        if (revert) this.data.set(p.before.subarray(w, Math.min(w + 8, p.before.length)), p.offset + w);
      }
    }
    this.pending = [];
  }

  /** Overwrites bytes as if already durable (tests corrupt entries with this). */
  poke(offset: number, data: Uint8Array): void {
    this.check(offset, data.length);
    this.data.set(data, offset);
  }
}
