// An in-memory Volume with the durability model of a disk array: writes are visible at once
// but durable only after `flush`; a power cut drops, keeps or tears (per 512-byte sector)
// each unflushed write. It stands in for RAID over simulated disks in file-system tests.
import { TwinbladeError } from '../../core/errors.ts';
import type { Prng } from '../../core/prng.ts';
import { type Volume, type VolumeStatus, VolumeErrorCode } from '../volume.ts';

const sectorBytes = 512;

export interface MemVolumeOptions {
  blockCount: number;
  stripeBlocks: number;
}

export class MemVolume implements Volume {
  readonly blockSize = 4096;
  readonly blockCount: number;
  readonly stripeBlocks: number;
  /** Blocks as they would survive a power cut now (absent: zeros). */
  private readonly durable = new Map<number, Uint8Array>();
  /** What reads see: durable plus unflushed writes. */
  private readonly current = new Map<number, Uint8Array>();
  /** Unflushed writes in issue order. */
  private pending: Array<{ block: number; data: Uint8Array }> = [];
  private down = false;
  private epoch = 0;
  /** Counts writeStripes and flush calls, for cutting power at a chosen step. */
  ioCount = 0;
  private cutAt: { step: number; prng: Prng } | undefined;

  constructor(opts: MemVolumeOptions) {
    this.blockCount = opts.blockCount;
    this.stripeBlocks = opts.stripeBlocks;
  }

  async readBlocks(firstBlock: number, count: number): Promise<Uint8Array> {
    this.check(firstBlock, count);
    const out = new Uint8Array(count * this.blockSize);
    for (let i = 0; i < count; i++) {
      const b = this.current.get(firstBlock + i);
      if (b !== undefined) out.set(b, i * this.blockSize);
    }
    return out;
  }

  async writeStripes(firstBlock: number, data: Uint8Array): Promise<void> {
    const count = data.length / this.blockSize;
    if (firstBlock % this.stripeBlocks !== 0 || !Number.isInteger(count) || count % this.stripeBlocks !== 0) {
      throw new TwinbladeError(VolumeErrorCode.notFullStripe, 'invalid-argument', `write of ${data.length} bytes at block ${firstBlock} is not whole stripes`);
    }
    this.check(firstBlock, count);
    this.step();
    for (let i = 0; i < count; i++) {
      const copy = data.slice(i * this.blockSize, (i + 1) * this.blockSize);
      this.current.set(firstBlock + i, copy);
      this.pending.push({ block: firstBlock + i, data: copy });
    }
  }

  async flush(): Promise<void> {
    if (this.down) throw offline();
    this.step();
    for (const w of this.pending) this.durable.set(w.block, w.data);
    this.pending = [];
  }

  status(): VolumeStatus {
    return { state: this.down ? 'offline' : 'normal', disks: [{ name: 'mem0', role: 'data', state: this.down ? 'failed' : 'ok' }] };
  }

  /** Cuts power when the `step`-th writeStripes/flush call from now is issued (that call fails). */
  cutPowerAtStep(step: number, prng: Prng): void {
    this.cutAt = { step: this.ioCount + step, prng };
  }

  /**
   * Power cut: every unflushed write is dropped, kept, or torn at sector boundaries, chosen
   * by `prng`. The volume then refuses I/O until `powerOn`.
   */
  powerCut(prng: Prng): void {
    for (const w of this.pending) {
      const r = prng.int(3);
      if (r === 0) continue;
      if (r === 1) {
        this.durable.set(w.block, w.data);
        continue;
      }
      const torn = (this.durable.get(w.block) ?? new Uint8Array(this.blockSize)).slice();
      for (let s = 0; s < this.blockSize / sectorBytes; s++) {
        if (prng.chance(0.5)) torn.set(w.data.subarray(s * sectorBytes, (s + 1) * sectorBytes), s * sectorBytes);
      }
      this.durable.set(w.block, torn);
    }
    this.pending = [];
    this.down = true;
    this.epoch++;
    this.cutAt = undefined;
  }

  /**
   * A view of this volume for one boot of the file system: after a power cut the view stays
   * dead even once power returns, as the process that held it would be.
   */
  session(): Volume {
    const epoch = this.epoch;
    const alive = (): void => {
      if (this.epoch !== epoch) throw offline();
    };
    return {
      blockSize: this.blockSize,
      blockCount: this.blockCount,
      stripeBlocks: this.stripeBlocks,
      readBlocks: async (first, count) => {
        alive();
        const r = await this.readBlocks(first, count);
        alive();
        return r;
      },
      writeStripes: async (first, data) => {
        alive();
        await this.writeStripes(first, data);
      },
      flush: async () => {
        alive();
        await this.flush();
      },
      status: () => this.status(),
    };
  }

  /** Power returns: reads see exactly what was durable. */
  powerOn(): void {
    this.current.clear();
    for (const [b, d] of this.durable) this.current.set(b, d);
    this.down = false;
  }

  get isDown(): boolean {
    return this.down;
  }

  /** Flips one byte of a block, durably (bit rot, a bad write that RAID did not catch). */
  corrupt(block: number, byteOffset: number): void {
    for (const m of [this.durable, this.current]) {
      const b = (m.get(block) ?? new Uint8Array(this.blockSize)).slice();
      b[byteOffset] = ((b[byteOffset] as number) ^ 0xff) & 0xff;
      m.set(block, b);
    }
  }

  private step(): void {
    if (this.down) throw offline();
    const cut = this.cutAt;
    if (cut !== undefined && this.ioCount >= cut.step) {
      this.powerCut(cut.prng);
      throw offline();
    }
    this.ioCount++;
  }

  private check(firstBlock: number, count: number): void {
    if (this.down) throw offline();
    if (!Number.isInteger(firstBlock) || !Number.isInteger(count) || firstBlock < 0 || count < 0 || firstBlock + count > this.blockCount) {
      throw new TwinbladeError(VolumeErrorCode.outOfRange, 'out-of-range', `blocks ${firstBlock}+${count} outside 0..${this.blockCount}`);
    }
  }
}

function offline(): TwinbladeError {
  return new TwinbladeError(VolumeErrorCode.offline, 'io', 'volume is powered off');
}
