// Argument checks shared by every I2C driver: the contract makes them synchronous
// ERR_I2C_INVALID_ARGUMENT throws, identical whichever driver is behind the interface.
import { InvalidArgumentError } from '../../core/errors.ts';
import { I2cErrorCode } from './i2c-bus.ts';

export function checkI2cAddress(address: number): void {
  if (!Number.isInteger(address) || address < 0x03 || address > 0x77) {
    throw new InvalidArgumentError(I2cErrorCode.invalidArgument, `I2C address must be a 7-bit address 0x03..0x77, got ${String(address)}`);
  }
}

export function checkI2cByte(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xff) throw new InvalidArgumentError(I2cErrorCode.invalidArgument, `${what} must be a byte, got ${String(value)}`);
}

export function checkI2cWord(value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new InvalidArgumentError(I2cErrorCode.invalidArgument, `word must be 0..0xffff, got ${String(value)}`);
}

export function checkI2cLength(length: number, max: number): void {
  if (!Number.isInteger(length) || length < 1 || length > max) throw new InvalidArgumentError(I2cErrorCode.invalidArgument, `length must be 1..${max}, got ${String(length)}`);
}
