// Runs the I2C contract against the rig driver: the rig's emulated bus (MAX17048 gauge and an
// FRAM, on real timers) reached over a real rig control channel.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { i2cContract } from './i2c.contract.ts';
import { RigControlServer } from '../../rig/control/server.ts';
import { RigHardware } from '../../rig/hw/blade-hw.ts';
import { rigFramAddress, rigGauge } from '../../rig/hw/wiring.ts';
import { RigControlClient } from '../../firmware/ts/hal/rigctl/client.ts';
import { RigI2cBus } from '../../firmware/ts/hal/i2c/rig/rig-i2c-bus.ts';
import { openBatteryGauge } from '../../firmware/ts/hal/i2c/gauges.ts';

async function setup(): Promise<{ bus: RigI2cBus; hw: RigHardware; server: RigControlServer; client: RigControlClient; socketPath: string; dispose(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-rigi2c-'));
  const socketPath = path.join(dir, 'control.sock');
  const server = new RigControlServer(socketPath);
  const hw = new RigHardware(server, { power: { cut: async () => undefined, restore: async () => undefined } });
  await server.start();
  const client = new RigControlClient({ socketPath, blade: 'b' });
  await client.connect();
  const bus = new RigI2cBus(client);
  return {
    bus,
    hw,
    server,
    client,
    socketPath,
    dispose: async () => {
      await bus.close();
      await client.close();
      hw.close();
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

i2cContract('rig (control channel; FRAM + max17048)', async () => {
  const s = await setup();
  return { bus: s.bus, framAddress: rigFramAddress, gauge: rigGauge, absentAddress: 0x21, dispose: s.dispose };
});

describe('rig I2C driver', () => {
  it('reads the blade\'s own gauge; a battery fault on the rig shows as a missing, empty cell with the low alert', async () => {
    const s = await setup();
    try {
      const gauge = openBatteryGauge(s.bus, rigGauge);
      expect(await gauge.identify()).toBe(0x0012);
      const good = await gauge.read();
      expect(good).toMatchObject({ model: 'max17048', batteryPresent: true, lowAlert: false });
      expect(good.stateOfChargePercent).toBeCloseTo(80, 0);
      s.hw.setBattery('b', 'failed');
      const failed = await gauge.read();
      expect(failed).toMatchObject({ batteryPresent: false, lowAlert: true, stateOfChargePercent: 0, voltageV: 0 });
      // The other blade's battery is untouched.
      const clientA = new RigControlClient({ socketPath: s.socketPath, blade: 'a' });
      await clientA.connect();
      expect((await openBatteryGauge(new RigI2cBus(clientA), rigGauge).read()).batteryPresent).toBe(true);
      await clientA.close();
      s.hw.setBattery('b', 'good');
      await gauge.clearAlert();
      expect(await gauge.read()).toMatchObject({ batteryPresent: true, lowAlert: false });
    } finally {
      await s.dispose();
    }
  });

  it('a device failure on the rig is ERR_I2C_IO; a dead channel is ERR_I2C_IO too', async () => {
    const s = await setup();
    try {
      s.hw.board('b').i2c.setFailing(rigGauge.address, true);
      await expect(s.bus.readWord(rigGauge.address, 0x02)).rejects.toMatchObject({ code: 'ERR_I2C_IO', kind: 'io' });
      s.hw.board('b').i2c.setFailing(rigGauge.address, false);
      s.server.disconnect('b');
      await new Promise((r) => setTimeout(r, 20));
      await expect(s.bus.readWord(rigGauge.address, 0x02)).rejects.toMatchObject({ code: 'ERR_I2C_IO' });
    } finally {
      await s.dispose();
    }
  });
});
