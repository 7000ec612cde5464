// Unit tests of the Linux I2C driver with `i2c-bus` mocked by a fake that forwards to the sim
// device models, so the driver's logic (argument checks, errno mapping, the atomic or
// two-transfer writeThenRead, serialization, close) runs in CI without an I2C adapter.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { SimFram, SimMax17048 } from '../../firmware/ts/hal/i2c/sim/devices.ts';
import type { SimI2cDevice } from '../../firmware/ts/hal/i2c/sim/sim-i2c-bus.ts';

const state = vi.hoisted(() => ({
  calls: [] as string[],
  devices: new Map<number, unknown>(),
  funcs: { i2c: true, smbusReadI2cBlock: true, smbusWriteI2cBlock: true, smbusReadWord: true, smbusWriteWord: true, smbusReadByte: true, smbusWriteByte: true },
  openError: undefined as Error | undefined,
  nextError: undefined as Error | undefined,
  closed: 0,
}));

vi.mock('i2c-bus', () => {
  const dev = (addr: number): { transfer(w: Uint8Array, n: number): Uint8Array } => {
    if (state.nextError !== undefined) {
      const e = state.nextError;
      state.nextError = undefined;
      throw e;
    }
    const d = state.devices.get(addr);
    if (d === undefined) throw Object.assign(new Error('Remote I/O error'), { code: 'ENXIO', errno: -6 });
    return d as { transfer(w: Uint8Array, n: number): Uint8Array };
  };
  // Every operation yields to the event loop, like the real library's thread-pool calls.
  const later = <T>(fn: () => T): Promise<T> => new Promise((resolve, reject) => setImmediate(() => {
    try {
      resolve(fn());
    } catch (e) {
      reject(e as Error);
    }
  }));
  const bus = {
    close: () => later(() => void state.closed++),
    i2cFuncs: () => later(() => state.funcs),
    readByte: (a: number, c: number) => later(() => (state.calls.push(`readByte ${a} ${c}`), dev(a).transfer(Uint8Array.of(c), 1)[0])),
    writeByte: (a: number, c: number, b: number) => later(() => void (state.calls.push(`writeByte ${a} ${c}`), dev(a).transfer(Uint8Array.of(c, b), 0))),
    readWord: (a: number, c: number) => later(() => {
      state.calls.push(`readWord ${a} ${c}`);
      const r = dev(a).transfer(Uint8Array.of(c), 2);
      return (r[0] as number) | ((r[1] as number) << 8);
    }),
    writeWord: (a: number, c: number, w: number) => later(() => void (state.calls.push(`writeWord ${a} ${c}`), dev(a).transfer(Uint8Array.of(c, w & 0xff, w >> 8), 0))),
    readI2cBlock: (a: number, c: number, n: number, buf: Buffer) => later(() => {
      state.calls.push(`readI2cBlock ${a} ${c} ${n}`);
      buf.set(dev(a).transfer(Uint8Array.of(c), n));
      return { bytesRead: n, buffer: buf };
    }),
    i2cRead: (a: number, n: number, buf: Buffer) => later(() => {
      state.calls.push(`i2cRead ${a} ${n}`);
      buf.set(dev(a).transfer(new Uint8Array(0), n));
      return { bytesRead: n, buffer: buf };
    }),
    i2cWrite: (a: number, n: number, buf: Buffer) => later(() => {
      state.calls.push(`i2cWrite ${a} ${n}`);
      dev(a).transfer(Uint8Array.from(buf.subarray(0, n)), 0);
      return { bytesWritten: n, buffer: buf };
    }),
  };
  return {
    openPromisified: (n: number) => (state.openError !== undefined ? Promise.reject(state.openError) : Promise.resolve({ ...bus, busNumber: n })),
  };
});

const { openLinuxI2cBus, mapI2cError } = await import('../../firmware/ts/hal/i2c/linux/linux-i2c-bus.ts');
const { Max17048Gauge } = await import('../../firmware/ts/hal/i2c/gauges.ts');

beforeEach(() => {
  state.calls = [];
  state.devices = new Map<number, SimI2cDevice>([
    [0x50, new SimFram()],
    [0x36, new SimMax17048({ stateOfChargePercent: 42, voltageV: 3.6 })],
  ]);
  state.funcs.smbusReadI2cBlock = true;
  state.openError = undefined;
  state.nextError = undefined;
  state.closed = 0;
});

describe('Linux I2C driver (i2c-bus mocked)', () => {
  it('reads a gauge through SMBus words', async () => {
    const bus = await openLinuxI2cBus(1);
    expect(bus.name).toBe('i2c-1');
    const r = await new Max17048Gauge(bus).read();
    expect(r.stateOfChargePercent).toBeCloseTo(42, 5);
    expect(r.voltageV).toBeCloseTo(3.6, 3);
    await bus.close();
  });

  it('writeThenRead: one atomic I2C-block read for a 1-byte register, two transfers for an FRAM address', async () => {
    const bus = await openLinuxI2cBus(1);
    await bus.i2cWrite(0x50, Uint8Array.of(0x00, 0x10, 9, 8, 7));
    state.calls = [];
    expect(await bus.writeThenRead(0x50, Uint8Array.of(0x00, 0x10), 3)).toEqual(Uint8Array.of(9, 8, 7));
    expect(state.calls).toEqual(['i2cWrite 80 2', 'i2cRead 80 3']);
    state.calls = [];
    expect(await bus.writeThenRead(0x36, Uint8Array.of(0x08), 2)).toEqual(Uint8Array.of(0x00, 0x12));
    expect(state.calls).toEqual(['readI2cBlock 54 8 2']);
    state.funcs.smbusReadI2cBlock = false;
    const bus2 = await openLinuxI2cBus(2);
    state.calls = [];
    await bus2.writeThenRead(0x36, Uint8Array.of(0x08), 2);
    expect(state.calls).toEqual(['i2cWrite 54 1', 'i2cRead 54 2']);
  });

  it('serializes operations so a two-transfer writeThenRead is never split', async () => {
    const bus = await openLinuxI2cBus(1);
    await bus.i2cWrite(0x50, Uint8Array.of(0x00, 0x00, 1, 2, 3, 4));
    state.calls = [];
    const [a, b] = await Promise.all([bus.writeThenRead(0x50, Uint8Array.of(0x00, 0x00), 2), bus.writeThenRead(0x50, Uint8Array.of(0x00, 0x02), 2)]);
    expect(a).toEqual(Uint8Array.of(1, 2));
    expect(b).toEqual(Uint8Array.of(3, 4));
    expect(state.calls).toEqual(['i2cWrite 80 2', 'i2cRead 80 2', 'i2cWrite 80 2', 'i2cRead 80 2']);
  });

  it('maps errno errors: ENXIO/EREMOTEIO to NO_DEVICE, others to IO with the cause', async () => {
    const bus = await openLinuxI2cBus(1);
    await expect(bus.readByte(0x20, 0)).rejects.toMatchObject({ code: 'ERR_I2C_NO_DEVICE' });
    const eio = Object.assign(new Error('Input/output error'), { code: 'EIO' });
    state.nextError = eio;
    const err = await bus.readWord(0x36, 0x02).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_I2C_IO', kind: 'io' });
    expect((err as Error).cause).toBe(eio);
    // The bus keeps working after a failed operation.
    await expect(bus.readWord(0x36, 0x08)).resolves.toBe(0x1200);
    expect(mapI2cError(Object.assign(new Error('x'), { code: 'EREMOTEIO' }), 'op')).toMatchObject({ code: 'ERR_I2C_NO_DEVICE' });
    expect(mapI2cError(Object.assign(new Error('x'), { code: 'ETIMEDOUT' }), 'op')).toMatchObject({ code: 'ERR_I2C_IO', kind: 'timeout' });
    state.openError = Object.assign(new Error('ENOENT, no such file'), { code: 'ENOENT' });
    await expect(openLinuxI2cBus(9)).rejects.toMatchObject({ code: 'ERR_I2C_IO', kind: 'unsupported' });
  });

  it('checks arguments synchronously and rejects after close (close idempotent)', async () => {
    await expect(openLinuxI2cBus(-1)).rejects.toMatchObject({ code: 'ERR_I2C_INVALID_ARGUMENT' });
    const bus = await openLinuxI2cBus(1);
    expect(() => bus.readByte(0x80, 0)).toThrow(expect.objectContaining({ code: 'ERR_I2C_INVALID_ARGUMENT' }));
    expect(() => bus.writeThenRead(0x50, Uint8Array.of(0), bus.maxTransferBytes + 1)).toThrow(expect.objectContaining({ code: 'ERR_I2C_INVALID_ARGUMENT' }));
    const pending = bus.readByte(0x36, 0x08);
    await bus.close();
    await bus.close();
    expect(state.closed).toBe(1);
    await expect(pending).resolves.toBe(0x00);
    await expect(bus.readByte(0x36, 0x08)).rejects.toMatchObject({ code: 'ERR_I2C_CLOSED' });
  });
});
