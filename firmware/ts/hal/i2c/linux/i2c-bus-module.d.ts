// Type declarations for the part of the `i2c-bus` package (which ships none) that the Linux
// I2C driver uses: the promisified bus.
declare module 'i2c-bus' {
  export interface I2cFuncs {
    i2c: boolean;
    smbusReadI2cBlock: boolean;
    smbusWriteI2cBlock: boolean;
    smbusReadWord: boolean;
    smbusWriteWord: boolean;
    smbusReadByte: boolean;
    smbusWriteByte: boolean;
  }
  export interface PromisifiedBus {
    close(): Promise<void>;
    i2cFuncs(): Promise<I2cFuncs>;
    readByte(address: number, command: number): Promise<number>;
    readWord(address: number, command: number): Promise<number>;
    writeByte(address: number, command: number, byte: number): Promise<void>;
    writeWord(address: number, command: number, word: number): Promise<void>;
    readI2cBlock(address: number, command: number, length: number, buffer: Buffer): Promise<{ bytesRead: number; buffer: Buffer }>;
    i2cRead(address: number, length: number, buffer: Buffer): Promise<{ bytesRead: number; buffer: Buffer }>;
    i2cWrite(address: number, length: number, buffer: Buffer): Promise<{ bytesWritten: number; buffer: Buffer }>;
  }
  export function openPromisified(busNumber: number, options?: { forceAccess?: boolean }): Promise<PromisifiedBus>;
}
