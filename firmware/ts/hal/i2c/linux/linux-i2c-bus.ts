// Linux I2C driver on the `i2c-bus` library (/dev/i2c-N through i2c-dev). Operations on one
// bus are serialized so that a two-transfer writeThenRead is never split by our own calls.
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';
import { I2cErrorCode, type I2cBus } from '../i2c-bus.ts';
import { checkI2cAddress, checkI2cByte, checkI2cLength, checkI2cWord } from '../i2c-args.ts';
import type { I2cFuncs, PromisifiedBus } from 'i2c-bus';

/** Largest raw transfer we issue (i2c-dev allows 8192 per message; many adapters fewer). */
export const linuxI2cTransferMaxBytes = 4096;
/** SMBus I2C-block reads carry at most 32 bytes. */
export const smbusBlockMaxBytes = 32;

/** Maps an i2c-bus (errno) error to the portable one: a NACK of the address is ERR_I2C_NO_DEVICE. */
export function mapI2cError(e: unknown, what: string): TwinbladeError {
  if (e instanceof TwinbladeError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  const detail = e instanceof Error ? e.message : String(e);
  // ENXIO: no ACK to the address; EREMOTEIO: NACK during the transfer (adapter-dependent).
  if (code === 'ENXIO' || code === 'EREMOTEIO') return new TwinbladeError(I2cErrorCode.noDevice, 'io', `${what}: no device acknowledged (${detail})`, { cause: e });
  if (code === 'ETIMEDOUT') return new TwinbladeError(I2cErrorCode.io, 'timeout', `${what}: timed out (${detail})`, { cause: e });
  if (code === 'ENOENT' || code === 'EACCES') return new TwinbladeError(I2cErrorCode.io, 'unsupported', `${what}: ${detail}`, { cause: e });
  return new TwinbladeError(I2cErrorCode.io, 'io', `${what}: ${detail}`, { cause: e });
}

export interface LinuxI2cOptions {
  /** Talk to addresses a kernel driver has claimed (I2C_SLAVE_FORCE). Default false. */
  forceAccess?: boolean;
}

/** Opens /dev/i2c-`busNumber`. Rejects ERR_I2C_IO (kind unsupported) when the bus does not exist. */
export async function openLinuxI2cBus(busNumber: number, options: LinuxI2cOptions = {}): Promise<I2cBus> {
  if (!Number.isInteger(busNumber) || busNumber < 0) throw new InvalidArgumentError(I2cErrorCode.invalidArgument, `bad I2C bus number ${busNumber}`);
  const { openPromisified } = await import('i2c-bus');
  let bus: PromisifiedBus;
  let funcs: I2cFuncs;
  try {
    bus = await openPromisified(busNumber, { forceAccess: options.forceAccess ?? false });
    funcs = await bus.i2cFuncs();
  } catch (e) {
    throw mapI2cError(e, `/dev/i2c-${busNumber}`);
  }
  return new LinuxI2cBus(`i2c-${busNumber}`, bus, funcs);
}

class LinuxI2cBus implements I2cBus {
  readonly maxTransferBytes = linuxI2cTransferMaxBytes;
  private closed = false;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly name: string,
    private readonly bus: PromisifiedBus,
    private readonly funcs: I2cFuncs,
  ) {}

  /**
   * Runs `op` after every earlier operation on this bus has settled. Operations issued before
   * `close` still run; `close` waits for them before releasing the file descriptor.
   */
  private serial<T>(what: string, op: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new TwinbladeError(I2cErrorCode.closed, 'closed', `${this.name} is closed`));
    const run = async (): Promise<T> => {
      try {
        return await op();
      } catch (e) {
        throw mapI2cError(e, `${this.name} ${what}`);
      }
    };
    const p = this.tail.then(run, run);
    this.tail = p.catch(() => undefined);
    return p;
  }

  readByte(address: number, register: number): Promise<number> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    return this.serial(`readByte 0x${address.toString(16)}`, () => this.bus.readByte(address, register));
  }

  writeByte(address: number, register: number, value: number): Promise<void> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    checkI2cByte(value, 'value');
    return this.serial(`writeByte 0x${address.toString(16)}`, () => this.bus.writeByte(address, register, value));
  }

  readWord(address: number, register: number): Promise<number> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    return this.serial(`readWord 0x${address.toString(16)}`, () => this.bus.readWord(address, register));
  }

  writeWord(address: number, register: number, value: number): Promise<void> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    checkI2cWord(value);
    return this.serial(`writeWord 0x${address.toString(16)}`, () => this.bus.writeWord(address, register, value));
  }

  i2cRead(address: number, length: number): Promise<Uint8Array> {
    checkI2cAddress(address);
    checkI2cLength(length, this.maxTransferBytes);
    return this.serial(`i2cRead 0x${address.toString(16)}`, async () => {
      const r = await this.bus.i2cRead(address, length, Buffer.alloc(length));
      return this.exact(r.bytesRead, length, r.buffer);
    });
  }

  i2cWrite(address: number, data: Uint8Array): Promise<void> {
    checkI2cAddress(address);
    checkI2cLength(data.length, this.maxTransferBytes);
    const copy = Buffer.from(data);
    return this.serial(`i2cWrite 0x${address.toString(16)}`, async () => {
      const r = await this.bus.i2cWrite(address, copy.length, copy);
      if (r.bytesWritten !== copy.length) throw new TwinbladeError(I2cErrorCode.io, 'io', `${this.name}: short write ${r.bytesWritten}/${copy.length}`);
    });
  }

  /**
   * A one-byte write followed by a read of at most 32 bytes is one SMBus "I2C block read"
   * (repeated start, atomic) when the adapter supports it. Anything else (an FRAM's 2-byte
   * address) is two transfers with a STOP between them: atomic against our own callers (the
   * bus is serialized), not against another master on the same wires. The devices we drive
   * keep their address pointer across the STOP, so a single-master board is unaffected.
   */
  writeThenRead(address: number, data: Uint8Array, length: number): Promise<Uint8Array> {
    checkI2cAddress(address);
    checkI2cLength(data.length, this.maxTransferBytes);
    checkI2cLength(length, this.maxTransferBytes);
    const copy = Buffer.from(data);
    return this.serial(`writeThenRead 0x${address.toString(16)}`, async () => {
      if (copy.length === 1 && length <= smbusBlockMaxBytes && this.funcs.smbusReadI2cBlock) {
        const r = await this.bus.readI2cBlock(address, copy[0] as number, length, Buffer.alloc(length));
        return this.exact(r.bytesRead, length, r.buffer);
      }
      const w = await this.bus.i2cWrite(address, copy.length, copy);
      if (w.bytesWritten !== copy.length) throw new TwinbladeError(I2cErrorCode.io, 'io', `${this.name}: short write ${w.bytesWritten}/${copy.length}`);
      const r = await this.bus.i2cRead(address, length, Buffer.alloc(length));
      return this.exact(r.bytesRead, length, r.buffer);
    });
  }

  private exact(got: number, want: number, buffer: Buffer): Uint8Array {
    if (got !== want) throw new TwinbladeError(I2cErrorCode.io, 'io', `${this.name}: short read ${got}/${want}`);
    return new Uint8Array(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + want));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    try {
      await this.bus.close();
    } catch (e) {
      throw mapI2cError(e, `${this.name} close`);
    }
  }
}
