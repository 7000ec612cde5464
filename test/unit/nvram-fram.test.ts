// The FRAM NVRAM driver: the Nvram contract on the simulated I2C bus with its FRAM model
// (hal/i2c/sim) and on a small fake bus that can hold transfers; the RAM shadow with
// asynchronous write-through (persist waits for the FRAM), chunking to the bus's transfer
// size, and I/O errors that persist reports and a later persist retries.
import { describe, expect, it } from 'vitest';
import { nvramContract } from '../contract/nvram.contract.ts';
import { FramNvram } from '../../firmware/ts/hal/nvram/linux/fram-i2c-nvram.ts';
import { NvramErrorCode } from '../../firmware/ts/hal/nvram/nvram.ts';
import type { I2cBus } from '../../firmware/ts/hal/i2c/i2c-bus.ts';
import { I2cErrorCode } from '../../firmware/ts/hal/i2c/i2c-bus.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';
import { SimI2cBus } from '../../firmware/ts/hal/i2c/sim/sim-i2c-bus.ts';
import { SimFram } from '../../firmware/ts/hal/i2c/sim/devices.ts';

/**
 * An I2C bus with one FRAM: a 2-byte big-endian memory address, then data (writes) or a
 * repeated-start read. Transfers complete on a later macrotask; `hold()` parks writes until
 * `release()`; `failWrites` makes the next writes fail like a NACK.
 */
class FakeFramBus implements I2cBus {
  readonly name = 'fake-i2c';
  readonly memory: Uint8Array;
  readonly transfers: number[] = [];
  failWrites = 0;
  private held: (() => void)[] | undefined;

  constructor(
    readonly maxTransferBytes: number,
    sizeBytes: number,
    readonly framAddress = 0x50,
  ) {
    this.memory = new Uint8Array(sizeBytes);
  }

  hold(): void {
    this.held = [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const go of held) go();
  }

  private async turn(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.held !== undefined) await new Promise<void>((resolve) => this.held?.push(resolve));
  }

  private check(address: number, length: number): void {
    if (length < 1 || length > this.maxTransferBytes) throw new TwinbladeError(I2cErrorCode.invalidArgument, 'invalid-argument', `transfer of ${length}`);
    if (address !== this.framAddress) throw new TwinbladeError(I2cErrorCode.noDevice, 'io', `no device at ${address}`);
  }

  async i2cWrite(address: number, data: Uint8Array): Promise<void> {
    this.check(address, data.length);
    await this.turn();
    if (this.failWrites > 0) {
      this.failWrites--;
      throw new TwinbladeError(I2cErrorCode.io, 'io', 'NACK');
    }
    const at = ((data[0] as number) << 8) | (data[1] as number);
    this.memory.set(data.subarray(2), at);
    this.transfers.push(data.length);
  }

  async writeThenRead(address: number, data: Uint8Array, length: number): Promise<Uint8Array> {
    this.check(address, length);
    await new Promise((resolve) => setImmediate(resolve));
    const at = ((data[0] as number) << 8) | (data[1] as number);
    return this.memory.slice(at, at + length);
  }

  i2cRead(): Promise<Uint8Array> {
    return Promise.reject(new Error('unused'));
  }
  readByte(): Promise<number> {
    return Promise.reject(new Error('unused'));
  }
  writeByte(): Promise<void> {
    return Promise.reject(new Error('unused'));
  }
  readWord(): Promise<number> {
    return Promise.reject(new Error('unused'));
  }
  writeWord(): Promise<void> {
    return Promise.reject(new Error('unused'));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

nvramContract('linux fram-i2c (sim I2C bus, MB85RC256 model, 32-byte transfers)', async () => {
  const bus = new SimI2cBus({ maxTransferBytes: 32 });
  bus.attach(0x50, new SimFram(32768));
  const nvram = await FramNvram.open(bus, { sizeBytes: 32768 });
  return { nvram, reopen: () => FramNvram.open(bus, { sizeBytes: 32768 }) };
});

nvramContract('linux fram-i2c (fake bus)', async () => {
  const bus = new FakeFramBus(32, 8192);
  const nvram = await FramNvram.open(bus);
  return { nvram, reopen: () => FramNvram.open(bus) };
});

describe('FramNvram', () => {
  it('loads the shadow from the FRAM at open', async () => {
    const bus = new FakeFramBus(32, 1024);
    bus.memory.set([1, 2, 3], 500);
    const nv = await FramNvram.open(bus, { sizeBytes: 1024 });
    expect([...nv.read(499, 5)]).toEqual([0, 1, 2, 3, 0]);
    expect(nv.name).toBe('fram@fake-i2c:0x50');
  });

  it('writes through in the background; persist resolves only once the FRAM has the bytes', async () => {
    const bus = new FakeFramBus(32, 8192);
    const nv = await FramNvram.open(bus);
    bus.hold();
    nv.write(1000, new Uint8Array(100).fill(7));
    expect(nv.read(1000, 100).every((b) => b === 7)).toBe(true);
    expect(nv.pendingBytes).toBe(100);
    let persisted = false;
    const p = nv.persist().then(() => {
      persisted = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(persisted).toBe(false);
    expect(bus.memory[1000]).toBe(0);
    bus.release();
    await p;
    expect(persisted).toBe(true);
    expect(bus.memory.subarray(1000, 1100).every((b) => b === 7)).toBe(true);
    expect(nv.pendingBytes).toBe(0);
  });

  it('loses only unpersisted writes when the blade dies (a new open sees the FRAM)', async () => {
    const bus = new FakeFramBus(32, 8192);
    const nv = await FramNvram.open(bus);
    nv.write(0, new Uint8Array(8).fill(1));
    await nv.persist();
    bus.hold();
    nv.write(8, new Uint8Array(8).fill(2));
    // The blade loses power now: the held transfer never happens.
    const after = await (async () => {
      const fresh = new FakeFramBus(32, 8192);
      fresh.memory.set(bus.memory);
      return FramNvram.open(fresh);
    })();
    expect(after.read(0, 8).every((b) => b === 1)).toBe(true);
    expect(after.read(8, 8).every((b) => b === 0)).toBe(true);
  });

  it('chunks transfers to the bus size with 8-byte aligned cuts and merges adjacent writes', async () => {
    const bus = new FakeFramBus(20, 8192);
    const nv = await FramNvram.open(bus);
    bus.hold();
    nv.write(3, new Uint8Array(40).fill(5)); // starts at once: leaves the queue
    nv.write(100, new Uint8Array(8).fill(6));
    nv.write(108, new Uint8Array(8).fill(7)); // adjacent to the queued range: merged
    bus.release();
    await nv.persist();
    expect(bus.transfers.every((n) => n <= 20)).toBe(true);
    // Payloads (+2 address bytes): 3..16 (cut on 16), 16..32, 32..43, then 100..116 in one.
    expect(bus.transfers).toEqual([15, 18, 13, 18]);
    expect(bus.memory.subarray(3, 43).every((b) => b === 5)).toBe(true);
    expect(bus.memory.subarray(100, 108).every((b) => b === 6)).toBe(true);
    expect(bus.memory.subarray(108, 116).every((b) => b === 7)).toBe(true);
  });

  it('reports a failed transfer from persist with ERR_NVRAM_IO and retries it on the next persist', async () => {
    const bus = new FakeFramBus(32, 8192);
    const nv = await FramNvram.open(bus);
    bus.failWrites = 1;
    nv.write(200, new Uint8Array(16).fill(9));
    const e: unknown = await nv.persist().catch((err: unknown) => err);
    expect((e as TwinbladeError).code).toBe(NvramErrorCode.io);
    expect(nv.pendingBytes).toBe(16);
    await nv.persist();
    expect(bus.memory.subarray(200, 216).every((b) => b === 9)).toBe(true);
  });

  it('reports a failing FRAM on the sim bus from persist, and recovers when it answers again', async () => {
    const bus = new SimI2cBus({ maxTransferBytes: 64 });
    const fram = new SimFram(8192);
    bus.attach(0x50, fram);
    const nv = await FramNvram.open(bus);
    bus.setFailing(0x50, true);
    nv.write(4000, new Uint8Array(100).fill(3));
    await expect(nv.persist()).rejects.toMatchObject({ code: NvramErrorCode.io, kind: 'io' });
    expect(nv.read(4000, 100).every((b) => b === 3)).toBe(true);
    bus.setFailing(0x50, false);
    await nv.persist();
    expect(fram.memory.subarray(4000, 4100).every((b) => b === 3)).toBe(true);
    bus.setAbsent(0x50, true);
    await expect(FramNvram.open(bus)).rejects.toMatchObject({ code: NvramErrorCode.io });
  });

  it('waits for queued writes at close and leaves the bus open', async () => {
    const bus = new FakeFramBus(32, 8192);
    const nv = await FramNvram.open(bus);
    nv.write(300, new Uint8Array(64).fill(4));
    await nv.close();
    expect(bus.memory.subarray(300, 364).every((b) => b === 4)).toBe(true);
  });

  it('refuses bad options and a missing device', async () => {
    const bus = new FakeFramBus(32, 8192);
    await expect(FramNvram.open(bus, { address: 0x51 })).rejects.toMatchObject({ code: NvramErrorCode.io });
    await expect(FramNvram.open(bus, { address: 0x80 })).rejects.toMatchObject({ code: NvramErrorCode.invalidArgument });
    await expect(FramNvram.open(bus, { sizeBytes: 70000 })).rejects.toMatchObject({ code: NvramErrorCode.invalidArgument });
    await expect(FramNvram.open(new FakeFramBus(2, 64))).rejects.toMatchObject({ code: NvramErrorCode.invalidArgument });
  });
});
