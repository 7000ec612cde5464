// The FRAM NVRAM driver: an I2C FRAM (FM24CL64, MB85RC256, ...) behind a RAM shadow. The Nvram
// interface is synchronous, an I2C bus is not: the shadow is loaded at open(), reads are served
// from it, writes update it at once and go to the FRAM in the background; persist() waits for them.
import type { Nvram } from '../nvram.ts';
import { NvramErrorCode } from '../nvram.ts';
import type { I2cBus } from '../../i2c/i2c-bus.ts';
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';
import { checkNvramData, checkNvramParts, checkNvramRange, nvramClosedError, persistRange } from '../sim/nvram-range.ts';

/** The 7-bit address of an FRAM with its address pins low (FM24CL64, MB85RC256). */
export const framDefaultAddress = 0x50;
/** FM24CL64: 64 Kbit. */
export const framDefaultSizeBytes = 8192;
/** FRAMs of this family take a 2-byte memory address, so at most 64 KiB. */
export const framAddressableBytesMax = 65536;

export interface FramNvramOptions {
  /** 7-bit I2C address (default 0x50). */
  address?: number;
  /** Device size (default 8192, an FM24CL64; 32768 for an MB85RC256). */
  sizeBytes?: number;
  /** Name for logs (default "fram@<bus>:0x50"). */
  name?: string;
}

interface Range {
  start: number;
  end: number;
}

interface Waiter {
  resolve: () => void;
  reject: (e: Error) => void;
}

function ioError(name: string, what: string, cause: unknown): TwinbladeError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new TwinbladeError(NvramErrorCode.io, 'io', `${name}: ${what}: ${detail}`, { cause });
}

/**
 * NVRAM on an I2C FRAM. Writes are queued in order (adjacent or overlapping queued ranges are
 * merged) and sent from the shadow in chunks that fit the bus's `maxTransferBytes` and end on
 * 8-byte boundaries. A failed transfer stays queued; `persist()` rejects `ERR_NVRAM_IO` and the
 * next `write` or `persist` retries it. The bus belongs to the caller: `close()` leaves it open.
 */
export class FramNvram implements Nvram {
  readonly name: string;
  readonly sizeBytes: number;
  readonly address: number;
  private readonly bus: I2cBus;
  private readonly shadow: Uint8Array;
  private readonly chunkBytesMax: number;
  private queue: Range[] = [];
  private sending: Range | undefined;
  private pumping = false;
  private lastError: TwinbladeError | undefined;
  private waiters: Waiter[] = [];
  private closed = false;

  private constructor(bus: I2cBus, address: number, shadow: Uint8Array, name: string) {
    this.bus = bus;
    this.address = address;
    this.shadow = shadow;
    this.sizeBytes = shadow.length;
    this.name = name;
    this.chunkBytesMax = bus.maxTransferBytes - 2;
  }

  /** Reads the whole FRAM into the shadow. Rejects `ERR_NVRAM_IO` if the device does not answer. */
  static async open(bus: I2cBus, options: FramNvramOptions = {}): Promise<FramNvram> {
    const address = options.address ?? framDefaultAddress;
    const sizeBytes = options.sizeBytes ?? framDefaultSizeBytes;
    const name = options.name ?? `fram@${bus.name}:0x${address.toString(16)}`;
    if (!Number.isInteger(address) || address < 0x03 || address > 0x77) throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: bad I2C address`);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes > framAddressableBytesMax) {
      throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: sizeBytes must be 1..${framAddressableBytesMax}`);
    }
    if (!(bus.maxTransferBytes >= 3)) throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: the bus must carry at least 3 bytes per transfer`);
    const shadow = new Uint8Array(sizeBytes);
    for (let off = 0; off < sizeBytes; off += bus.maxTransferBytes) {
      const n = Math.min(bus.maxTransferBytes, sizeBytes - off);
      let chunk: Uint8Array;
      try {
        chunk = await bus.writeThenRead(address, Uint8Array.of(off >>> 8, off & 0xff), n);
      } catch (e) {
        throw ioError(name, `load ${off}+${n}`, e);
      }
      if (chunk.length !== n) throw ioError(name, `load ${off}+${n}`, new Error(`short read (${chunk.length})`));
      shadow.set(chunk, off);
    }
    return new FramNvram(bus, address, shadow, name);
  }

  read(offset: number, length: number): Uint8Array {
    checkNvramRange(this.name, this.sizeBytes, offset, length);
    if (this.closed) throw nvramClosedError(this.name);
    return this.shadow.slice(offset, offset + length);
  }

  write(offset: number, data: Uint8Array): void {
    checkNvramData(this.name, data);
    checkNvramRange(this.name, this.sizeBytes, offset, data.length);
    if (this.closed) throw nvramClosedError(this.name);
    if (data.length === 0) return;
    this.shadow.set(data, offset);
    this.queueRange(offset, data.length);
  }

  writeParts(offset: number, parts: readonly Uint8Array[]): void {
    const length = checkNvramParts(this.name, this.sizeBytes, offset, parts);
    if (this.closed) throw nvramClosedError(this.name);
    if (length === 0) return;
    let at = offset;
    for (const p of parts) {
      this.shadow.set(p, at);
      at += p.length;
    }
    this.queueRange(offset, length);
  }

  /** Queues [offset, offset+length) of the shadow for the FRAM and starts the pump. */
  private queueRange(offset: number, length: number): void {
    const r: Range = { start: offset, end: offset + length };
    // Merge with the newest queued range when they touch: the bytes sent are read from the
    // shadow when sent, so a merged range carries both writes.
    const tail = this.queue[this.queue.length - 1];
    if (tail !== undefined && r.start <= tail.end && tail.start <= r.end) {
      tail.start = Math.min(tail.start, r.start);
      tail.end = Math.max(tail.end, r.end);
    } else {
      this.queue.push(r);
    }
    this.pump();
  }

  /** Resolves once every write issued so far is in the FRAM (the range is not narrowed: FRAM writes are ordered). */
  persist(offset?: number, length?: number): Promise<void> {
    persistRange(this.name, this.sizeBytes, offset, length);
    if (this.closed) return Promise.reject(nvramClosedError(this.name));
    if (this.queue.length === 0 && !this.pumping) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.lastError = undefined;
      this.pump();
    });
  }

  /** Bytes still waiting to be sent to the FRAM. */
  get pendingBytes(): number {
    const inFlight = this.sending === undefined ? 0 : this.sending.end - this.sending.start;
    return this.queue.reduce((n, r) => n + r.end - r.start, inFlight);
  }

  /** Waits (best effort) for queued writes, then refuses further calls. The bus stays open. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.queue.length > 0 || this.pumping) {
      await new Promise<void>((resolve) => {
        this.waiters.push({ resolve, reject: () => resolve() });
        this.pump();
      });
    }
    this.closed = true;
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    void this.drain();
  }

  private async drain(): Promise<void> {
    for (;;) {
      // The range being sent leaves the queue, so that a write merging into the queue's tail
      // meanwhile can never move the bounds of a transfer in progress.
      const r = this.queue.shift();
      if (r === undefined) break;
      this.sending = r;
      let failed = false;
      while (r.start < r.end) {
        const n = this.chunkLength(r.start, r.end);
        // Copied out of the shadow now: later writes to the same bytes queue their own range.
        const payload = new Uint8Array(2 + n);
        payload[0] = r.start >>> 8;
        payload[1] = r.start & 0xff;
        payload.set(this.shadow.subarray(r.start, r.start + n), 2);
        try {
          await this.bus.i2cWrite(this.address, payload);
        } catch (e) {
          this.lastError = ioError(this.name, `write ${r.start}+${n}`, e);
          failed = true;
          break;
        }
        r.start += n;
      }
      this.sending = undefined;
      if (failed) {
        this.queue.unshift(r);
        break;
      }
    }
    this.pumping = false;
    const waiters = this.waiters;
    this.waiters = [];
    const err = this.queue.length > 0 ? (this.lastError ?? ioError(this.name, 'write', new Error('not written'))) : undefined;
    for (const w of waiters) {
      if (err === undefined) w.resolve();
      else w.reject(err);
    }
  }

  /** The next chunk of [start, end): at most the bus's payload, cut on an 8-byte boundary when possible. */
  private chunkLength(start: number, end: number): number {
    const max = Math.min(this.chunkBytesMax, end - start);
    if (max === end - start) return max;
    const aligned = Math.floor((start + max) / 8) * 8 - start;
    return aligned > 0 ? aligned : max;
  }
}
