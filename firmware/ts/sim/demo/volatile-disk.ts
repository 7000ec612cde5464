// A minimal simulated disk for the demo area: a volatile write cache in front of a durable
// image, random completion latency, and a power-cut model that keeps or drops each unflushed
// sector independently (sector-atomic tearing), like FoundationDB's non-durable file.
import type { Timers } from '../../core/clock.ts';
import type { Prng } from '../../core/prng.ts';
import { InvalidArgumentError, TwinbladeError } from '../../core/errors.ts';
import { BlockErrorCode, type BlockDevice } from '../../hal/block/block-device.ts';
import { drawLatencyMs, type LatencyRange } from '../kernel.ts';

export interface VolatileDiskOptions {
  timers: Timers;
  prng: Prng;
  sizeBytes: number;
  sectorSize?: number;
  writeLatency?: LatencyRange;
  flushLatency?: LatencyRange;
}

export class VolatileDisk implements BlockDevice {
  readonly name = 'demo-disk';
  readonly sizeBytes: number;
  readonly sectorSize: number;
  private readonly durable: Uint8Array;
  /** Completed but unflushed sector contents, by sector number. */
  private readonly cache = new Map<number, Uint8Array>();
  /** Writes issued but not completed: on a power cut each sector may or may not have landed. */
  private readonly inFlight = new Map<number, { sector: number; data: Uint8Array }[]>();
  private inFlightSeq = 0;
  /** Bumped by a power cut: completions of operations from an older generation never settle. */
  private generation = 0;
  private closed = false;
  private readonly writeLatency: LatencyRange;
  private readonly flushLatency: LatencyRange;

  constructor(private readonly options: VolatileDiskOptions) {
    this.sectorSize = options.sectorSize ?? 512;
    this.sizeBytes = options.sizeBytes;
    this.durable = new Uint8Array(options.sizeBytes);
    this.writeLatency = options.writeLatency ?? { minMs: 0.05, maxMs: 2 };
    this.flushLatency = options.flushLatency ?? { minMs: 0.5, maxMs: 5 };
  }

  private check(offset: number, length: number): void {
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset % this.sectorSize !== 0 || length % this.sectorSize !== 0) {
      throw new InvalidArgumentError(BlockErrorCode.unaligned, `unaligned range ${offset}+${length}`);
    }
    if (offset + length > this.sizeBytes) throw new InvalidArgumentError(BlockErrorCode.outOfRange, `range ${offset}+${length} beyond ${this.sizeBytes}`);
  }

  private later<T>(range: LatencyRange, fn: () => T): Promise<T> {
    const gen = this.generation;
    return new Promise<T>((resolve) => {
      this.options.timers.after(drawLatencyMs(this.options.prng, range), () => {
        // An operation in flight across a power cut never completes: its caller is gone.
        if (gen === this.generation) resolve(fn());
      });
    });
  }

  private sectorView(sector: number): Uint8Array {
    return this.cache.get(sector) ?? this.durable.subarray(sector * this.sectorSize, (sector + 1) * this.sectorSize);
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    this.check(offset, length);
    if (this.closed) return Promise.reject(new TwinbladeError(BlockErrorCode.closed, 'closed', 'disk closed'));
    return this.later(this.writeLatency, () => {
      const out = new Uint8Array(length);
      for (let i = 0; i < length / this.sectorSize; i++) out.set(this.sectorView(offset / this.sectorSize + i), i * this.sectorSize);
      return out;
    });
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    this.check(offset, data.length);
    if (this.closed) return Promise.reject(new TwinbladeError(BlockErrorCode.closed, 'closed', 'disk closed'));
    const sectors: { sector: number; data: Uint8Array }[] = [];
    for (let i = 0; i < data.length / this.sectorSize; i++) {
      sectors.push({ sector: offset / this.sectorSize + i, data: data.slice(i * this.sectorSize, (i + 1) * this.sectorSize) });
    }
    const id = this.inFlightSeq++;
    this.inFlight.set(id, sectors);
    return this.later(this.writeLatency, () => {
      this.inFlight.delete(id);
      for (const s of sectors) this.cache.set(s.sector, s.data);
    });
  }

  flush(): Promise<void> {
    if (this.closed) return Promise.reject(new TwinbladeError(BlockErrorCode.closed, 'closed', 'disk closed'));
    // The barrier covers what had completed when flush was called.
    const snapshot = [...this.cache.entries()];
    return this.later(this.flushLatency, () => {
      for (const [sector, data] of snapshot) {
        this.durable.set(data, sector * this.sectorSize);
        if (this.cache.get(sector) === data) this.cache.delete(sector);
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Power cut: every unflushed or in-flight sector independently lands or is lost; pending operations never complete. */
  powerCut(): { kept: number; lost: number } {
    let kept = 0;
    let lost = 0;
    const candidates: { sector: number; data: Uint8Array }[] = [...this.cache.entries()].map(([sector, data]) => ({ sector, data }));
    for (const w of this.inFlight.values()) candidates.push(...w);
    for (const c of candidates) {
      if (this.options.prng.chance(0.5)) {
        this.durable.set(c.data, c.sector * this.sectorSize);
        kept++;
      } else lost++;
    }
    this.cache.clear();
    this.inFlight.clear();
    this.generation++;
    return { kept, lost };
  }
}
