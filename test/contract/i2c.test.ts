// Runs the I2C contract against the sim bus (with FRAM and gauge models), and against a real
// bus when TWINBLADE_TEST_I2C_BUS=<bus>[:fram=0x50][:max17048=0x36|:bq27441=0x55] names one.
import { describe } from 'vitest';
import { i2cContract } from './i2c.contract.ts';
import { SimI2cBus } from '../../firmware/ts/hal/i2c/sim/sim-i2c-bus.ts';
import { SimBq27441, SimFram, SimMax17048 } from '../../firmware/ts/hal/i2c/sim/devices.ts';
import { openLinuxI2cBus } from '../../firmware/ts/hal/i2c/linux/linux-i2c-bus.ts';
import { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';
import type { GaugeModel } from '../../firmware/ts/hal/i2c/gauges.ts';

for (const model of ['max17048', 'bq27441'] as const) {
  i2cContract(`sim (FRAM + ${model})`, async () => {
    const bus = new SimI2cBus();
    bus.attach(0x50, new SimFram());
    const address = model === 'max17048' ? 0x36 : 0x55;
    bus.attach(address, model === 'max17048' ? new SimMax17048() : new SimBq27441());
    return { bus, framAddress: 0x50, gauge: { model, address }, absentAddress: 0x20, dispose: () => bus.close() };
  });
}

i2cContract('sim with wire latency on virtual timers', async () => {
  const vt = new VirtualTime();
  const bus = new SimI2cBus({ timers: vt.timers, busHz: 100_000 });
  bus.attach(0x50, new SimFram());
  bus.attach(0x36, new SimMax17048());
  // Drive virtual time while the suite awaits: advance whenever a transfer is pending.
  const pump = setInterval(() => vt.advanceBy(10), 0);
  return {
    bus,
    framAddress: 0x50,
    gauge: { model: 'max17048', address: 0x36 },
    absentAddress: 0x21,
    dispose: async () => {
      clearInterval(pump);
      await bus.close();
    },
  };
});

const hw = process.env['TWINBLADE_TEST_I2C_BUS'];
describe.runIf(hw !== undefined)('real hardware (enabled by TWINBLADE_TEST_I2C_BUS=<bus>[:fram=0x50][:max17048=0x36|:bq27441=0x55])', () => {
  const [busText, ...parts] = (hw ?? '0').split(':');
  const opts = new Map(parts.map((p) => p.split('=') as [string, string]));
  i2cContract(`linux /dev/i2c-${busText ?? ''}`, async () => {
    const bus = await openLinuxI2cBus(Number(busText));
    const fram = opts.get('fram');
    const gaugeEntry = [...opts.entries()].find(([k]) => k === 'max17048' || k === 'bq27441');
    return {
      bus,
      ...(fram !== undefined ? { framAddress: Number(fram) } : {}),
      ...(gaugeEntry !== undefined ? { gauge: { model: gaugeEntry[0] as GaugeModel, address: Number(gaugeEntry[1]) } } : {}),
      absentAddress: Number(opts.get('absent') ?? '0x77'),
      dispose: () => bus.close().catch(() => undefined),
    };
  });
});
