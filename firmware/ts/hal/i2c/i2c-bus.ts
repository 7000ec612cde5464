// The I2C bus interface of the hardware abstraction layer: the SMBus operations that a
// battery fuel gauge (MAX17048, BQ27441) and an FRAM (FM24CL64 style) need.
// Drivers: linux/ (the `i2c-bus` library), sim/ (with device models), rig/.

export const I2cErrorCode = {
  closed: 'ERR_I2C_CLOSED',
  invalidArgument: 'ERR_I2C_INVALID_ARGUMENT',
  /** No device acknowledged the address (ENXIO / EREMOTEIO on Linux). */
  noDevice: 'ERR_I2C_NO_DEVICE',
  io: 'ERR_I2C_IO',
} as const;

/**
 * An I2C bus.
 *
 * Contract (test/contract/i2c.contract.ts):
 * - `address` is a 7-bit address (0x03..0x77); `register` a byte; word values 16-bit;
 *   lengths 1..`maxTransferBytes`. Anything else throws `ERR_I2C_INVALID_ARGUMENT`
 *   synchronously.
 * - An address with no device rejects `ERR_I2C_NO_DEVICE`.
 * - Word operations are SMBus words: little-endian on the wire (the gauge drivers swap
 *   where a device is big-endian).
 * - `i2cWrite` / `i2cRead` are raw transfers (used by an FRAM: a 2-byte memory address
 *   followed by data).
 * - Calls after `close` reject `ERR_I2C_CLOSED`; `close` is idempotent.
 */
export interface I2cBus {
  readonly name: string;
  readonly maxTransferBytes: number;
  readByte(address: number, register: number): Promise<number>;
  writeByte(address: number, register: number, value: number): Promise<void>;
  readWord(address: number, register: number): Promise<number>;
  writeWord(address: number, register: number, value: number): Promise<void>;
  i2cRead(address: number, length: number): Promise<Uint8Array>;
  i2cWrite(address: number, data: Uint8Array): Promise<void>;
  /** A write of `data` followed by a repeated-start read of `length` bytes (one transaction). */
  writeThenRead(address: number, data: Uint8Array, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}
