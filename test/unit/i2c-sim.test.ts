// Unit tests of the simulated I2C devices (FRAM, MAX17048, BQ27441) and of the BatteryGauge
// drivers reading them: register encodings, alerts, back doors, failures.
import { describe, expect, it } from 'vitest';
import { SimI2cBus } from '../../firmware/ts/hal/i2c/sim/sim-i2c-bus.ts';
import { SimBq27441, SimFram, SimMax17048, bq27441Flags, max17048Status } from '../../firmware/ts/hal/i2c/sim/devices.ts';
import { Bq27441Gauge, Max17048Gauge, openBatteryGauge } from '../../firmware/ts/hal/i2c/gauges.ts';
import { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';

describe('SimFram', () => {
  it('uses a 2-byte big-endian address, auto-increments and wraps at 8 KiB', async () => {
    const bus = new SimI2cBus();
    const fram = new SimFram();
    bus.attach(0x50, fram);
    await bus.i2cWrite(0x50, Uint8Array.of(0x1f, 0xfe, 1, 2, 3, 4));
    expect(fram.memory[0x1ffe]).toBe(1);
    expect(fram.memory[0x1fff]).toBe(2);
    expect(fram.memory[0]).toBe(3);
    expect(fram.memory[1]).toBe(4);
    expect(await bus.writeThenRead(0x50, Uint8Array.of(0x1f, 0xff), 3)).toEqual(Uint8Array.of(2, 3, 4));
    // Unused high address bits are ignored: 0xE000 | 0x0001 is address 1.
    expect(await bus.writeThenRead(0x50, Uint8Array.of(0xe0, 0x01), 1)).toEqual(Uint8Array.of(4));
  });
});

describe('MAX17048 model and gauge driver', () => {
  it('reads charge and voltage from big-endian registers', async () => {
    const bus = new SimI2cBus();
    const chip = new SimMax17048({ stateOfChargePercent: 57.5, voltageV: 3.7 });
    bus.attach(0x36, chip);
    const g = new Max17048Gauge(bus);
    expect(await g.identify()).toBe(0x0012);
    const r = await g.read();
    expect(r.model).toBe('max17048');
    expect(r.stateOfChargePercent).toBeCloseTo(57.5, 5);
    expect(r.voltageV).toBeCloseTo(3.7, 3);
    expect(r.lowAlert).toBe(false);
    expect(r.batteryPresent).toBe(true);
    // Raw register bytes are MSB first on the wire.
    expect(await bus.writeThenRead(0x36, Uint8Array.of(0x04), 2)).toEqual(Uint8Array.of(57, 128));
  });

  it('latches the low-charge alert on crossing the threshold until the host clears it', async () => {
    const bus = new SimI2cBus();
    const chip = new SimMax17048({ stateOfChargePercent: 50 });
    bus.attach(0x36, chip);
    const g = openBatteryGauge(bus, { model: 'max17048' });
    expect(chip.alertThresholdPercent).toBe(4); // CONFIG default 0x971C: ATHD = 28
    chip.setStateOfCharge(3);
    let r = await g.read();
    expect(r.lowAlert).toBe(true);
    expect(r.rawStatus & max17048Status.socLow).not.toBe(0);
    await g.clearAlert();
    r = await g.read();
    expect(r.lowAlert).toBe(false);
    expect(r.rawStatus & max17048Status.socLow).toBe(0);
    // The host cannot set ALRT, and VERSION is read-only.
    await bus.writeWord(0x36, 0x0c, 0x2000);
    await bus.writeWord(0x36, 0x08, 0xffff);
    expect((await g.read()).lowAlert).toBe(false);
    expect(await g.identify()).toBe(0x0012);
  });

  it('raises the voltage-low alert against VALRT and reports a missing cell', async () => {
    const bus = new SimI2cBus();
    const chip = new SimMax17048();
    bus.attach(0x36, chip);
    const g = new Max17048Gauge(bus);
    // VALRT min = 0xA0 * 20 mV = 3.2 V (written MSB first, so the SMBus word is swapped).
    await bus.writeWord(0x36, 0x14, 0xffa0);
    chip.setVoltage(3.1);
    const r = await g.read();
    expect(r.lowAlert).toBe(true);
    expect(r.rawStatus & max17048Status.voltageLow).not.toBe(0);
    chip.setPresent(false);
    expect((await g.read()).batteryPresent).toBe(false);
  });
});

describe('BQ27441 model and gauge driver', () => {
  it('reads little-endian standard commands and flags', async () => {
    const bus = new SimI2cBus();
    const chip = new SimBq27441({ stateOfChargePercent: 64, voltageV: 3.82 });
    bus.attach(0x55, chip);
    const g = new Bq27441Gauge(bus);
    expect(await g.identify()).toBe(0x0421);
    let r = await g.read();
    expect(r).toMatchObject({ model: 'bq27441', stateOfChargePercent: 64, voltageV: 3.82, lowAlert: false, batteryPresent: true });
    expect(r.rawStatus & bq27441Flags.discharging).not.toBe(0);
    chip.setStateOfCharge(9);
    r = await g.read();
    expect(r.lowAlert).toBe(true);
    expect(r.rawStatus & bq27441Flags.soc1).not.toBe(0);
    expect(r.rawStatus & bq27441Flags.socFinal).toBe(0);
    chip.setStateOfCharge(1);
    chip.setCharging(true);
    r = await g.read();
    expect(r.rawStatus & bq27441Flags.socFinal).not.toBe(0);
    expect(r.rawStatus & bq27441Flags.charging).not.toBe(0);
    chip.setPresent(false);
    expect((await g.read()).batteryPresent).toBe(false);
    await g.clearAlert();
  });

  it('a gauge at the wrong address or of the wrong model is reported', async () => {
    const bus = new SimI2cBus();
    bus.attach(0x55, new SimBq27441());
    bus.attach(0x36, new SimMax17048());
    await expect(new Max17048Gauge(bus, 0x55).identify()).rejects.toMatchObject({ code: 'ERR_GAUGE_WRONG_CHIP' });
    await expect(new Bq27441Gauge(bus, 0x36).identify()).rejects.toMatchObject({ code: 'ERR_GAUGE_WRONG_CHIP' });
    await expect(new Max17048Gauge(bus, 0x37).read()).rejects.toMatchObject({ code: 'ERR_I2C_NO_DEVICE' });
    expect(() => openBatteryGauge(bus, { model: 'ltc2941' as 'max17048' })).toThrow(/unknown gauge model/);
  });
});

describe('SimI2cBus back door and timing', () => {
  it('an absent device NACKs, a failing one errors, and both recover', async () => {
    const bus = new SimI2cBus();
    bus.attach(0x36, new SimMax17048());
    const g = new Max17048Gauge(bus);
    bus.setAbsent(0x36, true);
    await expect(g.read()).rejects.toMatchObject({ code: 'ERR_I2C_NO_DEVICE', kind: 'io' });
    bus.setAbsent(0x36, false);
    bus.setFailing(0x36, true);
    await expect(g.read()).rejects.toMatchObject({ code: 'ERR_I2C_IO' });
    bus.setFailing(0x36, false);
    await expect(g.read()).resolves.toMatchObject({ model: 'max17048' });
    bus.detach(0x36);
    await expect(g.read()).rejects.toMatchObject({ code: 'ERR_I2C_NO_DEVICE' });
  });

  it('with timers, a transfer completes after its time on the wire', async () => {
    const vt = new VirtualTime();
    const bus = new SimI2cBus({ timers: vt.timers, busHz: 100_000 });
    bus.attach(0x50, new SimFram());
    let done = false;
    void bus.i2cWrite(0x50, new Uint8Array(100)).then(() => (done = true));
    // 102 bytes plus the address byte at 9 clocks each, 100 kHz: about 9.3 ms.
    vt.advanceBy(9);
    await Promise.resolve();
    expect(done).toBe(false);
    vt.advanceBy(1);
    await Promise.resolve();
    await Promise.resolve();
    expect(done).toBe(true);
    expect(bus.transactions).toBe(1);
  });
});

describe('SimFram (property)', () => {
  it('behaves like a byte array with a wrapping address pointer under any mix of writes and reads', async () => {
    const fc = (await import('fast-check')).default;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.record({ kind: fc.constant('write' as const), at: fc.integer({ min: 0, max: 0xffff }), data: fc.uint8Array({ minLength: 0, maxLength: 40 }) }),
            fc.record({ kind: fc.constant('read' as const), at: fc.integer({ min: 0, max: 0xffff }), n: fc.integer({ min: 1, max: 40 }) }),
            fc.record({ kind: fc.constant('continue' as const), n: fc.integer({ min: 1, max: 40 }) }),
          ),
          { maxLength: 30 },
        ),
        async (ops) => {
          const bus = new SimI2cBus();
          bus.attach(0x50, new SimFram());
          const model = new Uint8Array(8192);
          let ptr = 0;
          for (const op of ops) {
            if (op.kind === 'write') {
              await bus.i2cWrite(0x50, Uint8Array.of(op.at >> 8, op.at & 0xff, ...op.data));
              ptr = op.at % 8192;
              for (const b of op.data) {
                model[ptr] = b;
                ptr = (ptr + 1) % 8192;
              }
            } else {
              const got = op.kind === 'read' ? await bus.writeThenRead(0x50, Uint8Array.of(op.at >> 8, op.at & 0xff), op.n) : await bus.i2cRead(0x50, op.n);
              if (op.kind === 'read') ptr = op.at % 8192;
              const want = new Uint8Array(op.n);
              for (let i = 0; i < op.n; i++) {
                want[i] = model[ptr] as number;
                ptr = (ptr + 1) % 8192;
              }
              expect(got).toEqual(want);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
