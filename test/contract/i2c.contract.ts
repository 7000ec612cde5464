// The I2cBus contract (hal/i2c/i2c-bus.ts), run by i2c.test.ts against the sim driver always
// and against a real bus when TWINBLADE_TEST_I2C_BUS names one (with an FRAM and/or a gauge).
import { afterEach, describe, expect, it } from 'vitest';
import type { I2cBus } from '../../firmware/ts/hal/i2c/i2c-bus.ts';
import { openBatteryGauge, type GaugeModel } from '../../firmware/ts/hal/i2c/gauges.ts';

export interface I2cUnderTest {
  bus: I2cBus;
  /** An FRAM (FM24CL64 style) on the bus, if any; the suite writes only its last 256 bytes. */
  framAddress?: number;
  gauge?: { model: GaugeModel; address: number };
  /** An address where nothing answers. */
  absentAddress: number;
  dispose(): Promise<void>;
}

export function i2cContract(driver: string, make: () => Promise<I2cUnderTest>): void {
  describe(`I2cBus contract: ${driver}`, () => {
    let t: I2cUnderTest | undefined;
    const setup = async (): Promise<I2cUnderTest> => {
      t = await make();
      return t;
    };
    afterEach(async () => {
      await t?.dispose();
      t = undefined;
    });

    it('rejects bad arguments synchronously with ERR_I2C_INVALID_ARGUMENT', async () => {
      const { bus } = await setup();
      const bad = expect.objectContaining({ code: 'ERR_I2C_INVALID_ARGUMENT' });
      expect(() => bus.readByte(0x78, 0)).toThrow(bad);
      expect(() => bus.readByte(0x02, 0)).toThrow(bad);
      expect(() => bus.readByte(0x50, 256)).toThrow(bad);
      expect(() => bus.writeByte(0x50, 0, -1)).toThrow(bad);
      expect(() => bus.writeWord(0x50, 0, 0x10000)).toThrow(bad);
      expect(() => bus.i2cRead(0x50, 0)).toThrow(bad);
      expect(() => bus.i2cRead(0x50, bus.maxTransferBytes + 1)).toThrow(bad);
      expect(() => bus.i2cWrite(0x50, new Uint8Array(0))).toThrow(bad);
      expect(() => bus.writeThenRead(0x50, Uint8Array.of(0), 0)).toThrow(bad);
    });

    it('an address with no device rejects ERR_I2C_NO_DEVICE', async () => {
      const { bus, absentAddress } = await setup();
      await expect(bus.readByte(absentAddress, 0)).rejects.toMatchObject({ code: 'ERR_I2C_NO_DEVICE' });
      await expect(bus.i2cRead(absentAddress, 1)).rejects.toMatchObject({ code: 'ERR_I2C_NO_DEVICE' });
    });

    it('raw transfers: an FRAM write then a write-then-read and a continued read return the data', async (ctx) => {
      const { bus, framAddress } = await setup();
      if (framAddress === undefined) ctx.skip();
      const a = framAddress as number;
      const data = Uint8Array.from({ length: 16 }, (_, i) => (i * 37 + 11) & 0xff);
      await bus.i2cWrite(a, Uint8Array.of(0x1f, 0x00, ...data));
      expect(await bus.writeThenRead(a, Uint8Array.of(0x1f, 0x00), 8)).toEqual(data.subarray(0, 8));
      // The address pointer auto-increments across transactions.
      expect(await bus.i2cRead(a, 8)).toEqual(data.subarray(8, 16));
    });

    it('word operations are SMBus words, little-endian on the wire', async (ctx) => {
      const { bus, gauge } = await setup();
      if (gauge === undefined) ctx.skip();
      const g = gauge as { model: GaugeModel; address: number };
      if (g.model === 'max17048') {
        // VERSION is 0x001X sent MSB first, so the SMBus word has it in the high byte.
        const w = await bus.readWord(g.address, 0x08);
        expect(w & 0xff).toBe(0x00);
        expect(w >>> 12).toBe(0x1);
      } else {
        await bus.writeWord(g.address, 0x00, 0x0001);
        expect(await bus.readWord(g.address, 0x00)).toBe(0x0421);
      }
      const reading = await openBatteryGauge(bus, g).read();
      expect(reading.stateOfChargePercent).toBeGreaterThanOrEqual(0);
      expect(reading.stateOfChargePercent).toBeLessThanOrEqual(100);
      expect(reading.voltageV).toBeGreaterThanOrEqual(0);
      expect(reading.voltageV).toBeLessThan(6);
    });

    it('after close calls reject ERR_I2C_CLOSED and close is idempotent', async () => {
      const { bus } = await setup();
      await bus.close();
      await bus.close();
      await expect(bus.readByte(0x50, 0)).rejects.toMatchObject({ code: 'ERR_I2C_CLOSED' });
      await expect(bus.i2cWrite(0x50, Uint8Array.of(1))).rejects.toMatchObject({ code: 'ERR_I2C_CLOSED' });
    });
  });
}
