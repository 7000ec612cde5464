// The rig driver of the I2C HAL: each SMBus operation is one request on the rig control
// channel (ops i2c.*), executed by the rig's emulated bus and devices (rig/hw/blade-hw.ts).
// Byte strings travel as lowercase hex. Argument checks are the shared synchronous ones, so
// misuse fails the same way as on the Linux and sim drivers.
import { TwinbladeError, isTwinbladeError } from '../../../core/errors.ts';
import type { RigControlClient } from '../../rigctl/client.ts';
import { I2cErrorCode, type I2cBus } from '../i2c-bus.ts';
import { checkI2cAddress, checkI2cByte, checkI2cLength, checkI2cWord } from '../i2c-args.ts';

/** Longest raw transfer: 4 KiB is 8 KiB of hex, well inside one control-channel line. */
export const rigI2cTransferBytesMax = 4096;

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

function unhex(s: unknown, length: number, name: string): Uint8Array {
  if (typeof s !== 'string' || s.length !== 2 * length || !/^[0-9a-f]*$/.test(s)) {
    throw new TwinbladeError(I2cErrorCode.io, 'io', `${name}: the rig answered a malformed transfer`);
  }
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export class RigI2cBus implements I2cBus {
  readonly name: string;
  readonly maxTransferBytes = rigI2cTransferBytesMax;
  private closed = false;

  constructor(
    private readonly client: RigControlClient,
    name?: string,
  ) {
    this.name = name ?? `rig-i2c-${client.blade}`;
  }

  /** One request; the rig's I2C codes pass through, a failed channel is an I/O error. */
  private async call(op: string, args: Record<string, unknown>): Promise<unknown> {
    if (this.closed) throw new TwinbladeError(I2cErrorCode.closed, 'closed', `${this.name} is closed`);
    try {
      return await this.client.request(op, args);
    } catch (e) {
      if (isTwinbladeError(e) && e.code.startsWith('ERR_I2C_')) {
        throw new TwinbladeError(e.code, e.code === I2cErrorCode.invalidArgument ? 'invalid-argument' : 'io', `${this.name}: ${e.message}`, { cause: e });
      }
      throw new TwinbladeError(I2cErrorCode.io, 'io', `${this.name}: rig control channel: ${(e as Error).message}`, { cause: e });
    }
  }

  private async word(op: string, args: Record<string, unknown>, max: number): Promise<number> {
    const v = await this.call(op, args);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new TwinbladeError(I2cErrorCode.io, 'io', `${this.name}: the rig answered ${String(v)}`);
    return v;
  }

  readByte(address: number, register: number): Promise<number> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    return this.word('i2c.readByte', { address, register }, 0xff);
  }

  writeByte(address: number, register: number, value: number): Promise<void> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    checkI2cByte(value, 'value');
    return this.call('i2c.writeByte', { address, register, value }).then(() => undefined);
  }

  readWord(address: number, register: number): Promise<number> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    return this.word('i2c.readWord', { address, register }, 0xffff);
  }

  writeWord(address: number, register: number, value: number): Promise<void> {
    checkI2cAddress(address);
    checkI2cByte(register, 'register');
    checkI2cWord(value);
    return this.call('i2c.writeWord', { address, register, value }).then(() => undefined);
  }

  i2cRead(address: number, length: number): Promise<Uint8Array> {
    checkI2cAddress(address);
    checkI2cLength(length, this.maxTransferBytes);
    return this.call('i2c.i2cRead', { address, length }).then((r) => unhex(r, length, this.name));
  }

  i2cWrite(address: number, data: Uint8Array): Promise<void> {
    checkI2cAddress(address);
    checkI2cLength(data.length, this.maxTransferBytes);
    return this.call('i2c.i2cWrite', { address, data: hex(data) }).then(() => undefined);
  }

  writeThenRead(address: number, data: Uint8Array, length: number): Promise<Uint8Array> {
    checkI2cAddress(address);
    checkI2cLength(data.length, this.maxTransferBytes);
    checkI2cLength(length, this.maxTransferBytes);
    return this.call('i2c.writeThenRead', { address, data: hex(data), length }).then((r) => unhex(r, length, this.name));
  }

  /** The control channel is shared with the other rig drivers: closing the bus leaves it open. */
  async close(): Promise<void> {
    this.closed = true;
  }
}
