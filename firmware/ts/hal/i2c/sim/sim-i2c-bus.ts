// Simulated I2C bus: device models attached at 7-bit addresses, SMBus operations mapped onto
// the byte transactions a real controller would perform, optional transfer latency through
// the injected Timers, and a back door to make a device vanish (NACK) or fail (bus error).
import type { Timers } from '../../../core/clock.ts';
import { TwinbladeError } from '../../../core/errors.ts';
import { I2cErrorCode, type I2cBus } from '../i2c-bus.ts';
import { checkI2cAddress, checkI2cByte, checkI2cLength, checkI2cWord } from '../i2c-args.ts';

/**
 * A device model. One transaction is an optional write phase followed by an optional read
 * phase after a repeated start; the model keeps its own register/address pointer like the chip.
 */
export interface SimI2cDevice {
  transfer(write: Uint8Array, readLength: number): Uint8Array;
}

export interface SimI2cBusOptions {
  name?: string;
  maxTransferBytes?: number;
  /** With timers, each operation completes after its time on the wire at `busHz`. */
  timers?: Timers;
  /** Bus clock (default 400 kHz, fast mode). */
  busHz?: number;
}

interface Slot {
  device: SimI2cDevice;
  absent: boolean;
  failing: boolean;
}

export class SimI2cBus implements I2cBus {
  readonly name: string;
  readonly maxTransferBytes: number;
  private readonly slots = new Map<number, Slot>();
  private closed = false;
  private readonly timers: Timers | undefined;
  private readonly busHz: number;
  /** Transactions performed (for tests and the rig's statistics). */
  transactions = 0;

  constructor(options: SimI2cBusOptions = {}) {
    this.name = options.name ?? 'sim-i2c';
    this.maxTransferBytes = options.maxTransferBytes ?? 4096;
    this.timers = options.timers;
    this.busHz = options.busHz ?? 400_000;
  }

  // ---- back door ----

  attach(address: number, device: SimI2cDevice): void {
    checkI2cAddress(address);
    this.slots.set(address, { device, absent: false, failing: false });
  }

  detach(address: number): void {
    this.slots.delete(address);
  }

  /** An absent device does not acknowledge its address (unplugged, unpowered). */
  setAbsent(address: number, absent: boolean): void {
    const s = this.slots.get(address);
    if (s !== undefined) s.absent = absent;
  }

  /** A failing device acknowledges but the transfer fails (arbitration lost, clock stretching timeout). */
  setFailing(address: number, failing: boolean): void {
    const s = this.slots.get(address);
    if (s !== undefined) s.failing = failing;
  }

  // ---- I2cBus ----

  private run(address: number, write: Uint8Array, readLength: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new TwinbladeError(I2cErrorCode.closed, 'closed', `${this.name} is closed`));
    const exec = (): Uint8Array => {
      this.transactions++;
      const s = this.slots.get(address);
      if (s === undefined || s.absent) {
        throw new TwinbladeError(I2cErrorCode.noDevice, 'io', `${this.name}: no device acknowledged address 0x${address.toString(16)}`);
      }
      if (s.failing) throw new TwinbladeError(I2cErrorCode.io, 'io', `${this.name}: transfer to 0x${address.toString(16)} failed`);
      return s.device.transfer(write.slice(), readLength);
    };
    if (this.timers === undefined) {
      try {
        return Promise.resolve(exec());
      } catch (e) {
        return Promise.reject(e as Error);
      }
    }
    // Start + address + bytes (9 clocks each with the ACK) + stop, plus a repeated start.
    const bits = 9 * (1 + write.length + (readLength > 0 ? 1 + readLength : 0)) + 2;
    const ms = (bits / this.busHz) * 1000;
    const timers = this.timers;
    return new Promise((resolve, reject) => {
      timers.after(ms, () => {
        if (this.closed) {
          reject(new TwinbladeError(I2cErrorCode.closed, 'closed', `${this.name} is closed`));
          return;
        }
        try {
          resolve(exec());
        } catch (e) {
          reject(e as Error);
        }
      });
    });
  }

  readByte(address: number, register: number): Promise<number> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    return this.run(address, Uint8Array.of(register), 1).then((b) => b[0] as number);
  }

  writeByte(address: number, register: number, value: number): Promise<void> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    checkI2cByte(value, 'value');
    return this.run(address, Uint8Array.of(register, value), 0).then(() => undefined);
  }

  readWord(address: number, register: number): Promise<number> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    // SMBus words are little-endian on the wire: the first byte read is the low byte.
    return this.run(address, Uint8Array.of(register), 2).then((b) => (b[0] as number) | ((b[1] as number) << 8));
  }

  writeWord(address: number, register: number, value: number): Promise<void> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    checkI2cWord(value);
    return this.run(address, Uint8Array.of(register, value & 0xff, value >>> 8), 0).then(() => undefined);
  }

  i2cRead(address: number, length: number): Promise<Uint8Array> {
    checkI2cAddress(address);
    checkI2cLength(length, this.maxTransferBytes);
    return this.run(address, new Uint8Array(0), length);
  }

  i2cWrite(address: number, data: Uint8Array): Promise<void> {
    checkI2cAddress(address);
    checkI2cLength(data.length, this.maxTransferBytes);
    return this.run(address, data, 0).then(() => undefined);
  }

  writeThenRead(address: number, data: Uint8Array, length: number): Promise<Uint8Array> {
    checkI2cAddress(address);
    checkI2cLength(data.length, this.maxTransferBytes);
    checkI2cLength(length, this.maxTransferBytes);
    // One transaction with a repeated start: atomic on the simulated bus.
    return this.run(address, data, length);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
