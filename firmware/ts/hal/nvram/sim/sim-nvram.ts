// The simulated NVRAM driver: battery-backed memory that survives `powerCut()` while the
// battery is good (tearing only the last write not yet covered by `persist`, at 8-byte word
// granularity) and loses everything at a power cut while the battery has failed.
import type { Nvram } from '../nvram.ts';
import { NvramErrorCode } from '../nvram.ts';
import type { Prng } from '../../../core/prng.ts';
import { InvalidArgumentError } from '../../../core/errors.ts';
import { checkNvramData, checkNvramParts, checkNvramRange, joinNvramParts, nvramClosedError, persistRange } from './nvram-range.ts';

/** Stores of this size, aligned to it, are atomic: a power cut never tears them. */
export const nvramAtomicWordBytes = 8;

export interface SimNvramOptions {
  sizeBytes: number;
  prng: Prng;
  /** Name for logs (default "sim-nvram"). */
  name?: string;
  /** What memory holds after a power cut with a failed battery: prng garbage (default, like SRAM at power-on) or zeros. */
  lostContent?: 'random' | 'zeros';
}

/** What a power cut did. */
export interface SimNvramPowerCutReport {
  /** The whole content was lost (battery failed). */
  lost: boolean;
  /** Bytes of the last unpersisted write that reverted to their old value. */
  tornBytes: number;
}

interface Piece {
  offset: number;
  before: Uint8Array;
  after: Uint8Array;
}

/** The memory shared by every handle on one simulated NVRAM. */
interface SimNvramMemory {
  readonly data: Uint8Array;
  readonly prng: Prng;
  readonly lostContent: 'random' | 'zeros';
  batteryFailed: boolean;
  // The last write not yet covered by persist, as pieces (persisting part of it splits it).
  // Earlier unpersisted writes have left the store buffer by the time a later one is issued.
  last: Piece[];
  powerCuts: number;
}

export class SimNvram implements Nvram {
  readonly name: string;
  readonly sizeBytes: number;
  private readonly mem: SimNvramMemory;
  private closed = false;

  /** Makes new memory (zeroed) and a handle on it. (`mem` is internal: `reopen()` passes it.) */
  constructor(options: SimNvramOptions, mem?: SimNvramMemory) {
    this.name = options.name ?? 'sim-nvram';
    if (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes <= 0) {
      throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${this.name}: sizeBytes must be a positive integer`);
    }
    this.mem = mem ?? { data: new Uint8Array(options.sizeBytes), prng: options.prng, lostContent: options.lostContent ?? 'random', batteryFailed: false, last: [], powerCuts: 0 };
    this.sizeBytes = this.mem.data.length;
  }

  /** A new handle on the same memory: what the blade opens after it reboots. */
  reopen(name: string = this.name): SimNvram {
    return new SimNvram({ sizeBytes: this.sizeBytes, prng: this.mem.prng, name }, this.mem);
  }

  read(offset: number, length: number): Uint8Array {
    checkNvramRange(this.name, this.sizeBytes, offset, length);
    if (this.closed) throw nvramClosedError(this.name);
    return this.mem.data.slice(offset, offset + length);
  }

  write(offset: number, data: Uint8Array): void {
    checkNvramData(this.name, data);
    checkNvramRange(this.name, this.sizeBytes, offset, data.length);
    if (this.closed) throw nvramClosedError(this.name);
    if (data.length === 0) return;
    const before = this.mem.data.slice(offset, offset + data.length);
    this.mem.data.set(data, offset);
    this.mem.last = [{ offset, before, after: data.slice() }];
  }

  /** One write of the joined parts: a power cut may tear it like any last unpersisted write. */
  writeParts(offset: number, parts: readonly Uint8Array[]): void {
    checkNvramParts(this.name, this.sizeBytes, offset, parts);
    if (this.closed) throw nvramClosedError(this.name);
    this.write(offset, joinNvramParts(parts));
  }

  persist(offset?: number, length?: number): Promise<void> {
    const [off, len] = persistRange(this.name, this.sizeBytes, offset, length);
    if (this.closed) return Promise.reject(nvramClosedError(this.name));
    this.trimLast(off, len);
    return Promise.resolve();
  }

  // Keeps only the parts of the last unpersisted write outside [off, off+len).
  private trimLast(off: number, len: number): void {
    const end = off + len;
    const kept: Piece[] = [];
    for (const p of this.mem.last) {
      const pEnd = p.offset + p.after.length;
      if (pEnd <= off || p.offset >= end) {
        kept.push(p);
        continue;
      }
      if (p.offset < off) kept.push({ offset: p.offset, before: p.before.subarray(0, off - p.offset), after: p.after.subarray(0, off - p.offset) });
      if (pEnd > end) kept.push({ offset: end, before: p.before.subarray(end - p.offset), after: p.after.subarray(end - p.offset) });
    }
    this.mem.last = kept;
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  // ---- Fault injection and back door (act on the memory, whichever handle) ----

  /** While set, the next power cut loses the whole content (NV-7: the blade must stop relying on NVRAM). */
  get batteryFailed(): boolean {
    return this.mem.batteryFailed;
  }

  set batteryFailed(failed: boolean) {
    this.mem.batteryFailed = failed;
  }

  /**
   * A power cut. With a good battery the content survives, except that each aligned 8-byte
   * word of the last unpersisted write independently keeps its new value or reverts to its old
   * one (prng). With a failed battery everything is lost. Handles stay usable (the power came back).
   */
  powerCut(): SimNvramPowerCutReport {
    const m = this.mem;
    m.powerCuts++;
    if (m.batteryFailed) {
      if (m.lostContent === 'random') m.data.set(m.prng.bytes(m.data.length));
      else m.data.fill(0);
      m.last = [];
      return { lost: true, tornBytes: 0 };
    }
    let tornBytes = 0;
    for (const p of m.last) {
      let pos = p.offset;
      const end = p.offset + p.after.length;
      while (pos < end) {
        const wordEnd = Math.min(end, (Math.floor(pos / nvramAtomicWordBytes) + 1) * nvramAtomicWordBytes);
        if (m.prng.chance(0.5)) {
          m.data.set(p.before.subarray(pos - p.offset, wordEnd - p.offset), pos);
          tornBytes += wordEnd - pos;
        }
        pos = wordEnd;
      }
    }
    m.last = [];
    return { lost: false, tornBytes };
  }

  /** Bytes of the last write not yet covered by persist (what a power cut may tear). */
  get unpersistedBytes(): number {
    return this.mem.last.reduce((n, p) => n + p.after.length, 0);
  }

  get powerCutCount(): number {
    return this.mem.powerCuts;
  }

  /** The content, without the closed check (for checkers). */
  peek(offset: number, length: number): Uint8Array {
    checkNvramRange(this.name, this.sizeBytes, offset, length);
    return this.mem.data.slice(offset, offset + length);
  }

  /** Stores bytes as already persisted (for corrupting entries or seeding a log image). */
  poke(offset: number, data: Uint8Array): void {
    checkNvramData(this.name, data);
    checkNvramRange(this.name, this.sizeBytes, offset, data.length);
    this.mem.data.set(data, offset);
    this.trimLast(offset, data.length);
  }

  /** Overwrites a range with prng garbage, as persisted. */
  corrupt(offset: number, length: number): void {
    this.poke(offset, this.mem.prng.bytes(length));
  }
}
