// The rig's emulated board hardware wired into a real Rig (blades are stand-in processes; the
// test plays blade firmware over the control channel with the rig HAL drivers): the
// power-fail fault, the battery fault on the gauge, the partner-reset wiring to the power
// relay, and the board descriptors the rig writes for its blades.
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Rig } from '../../rig/rig.ts';
import { applyFault } from '../../rig/faults.ts';
import { rigGauge, rigGpioLines, rigPowerFailHoldUpMs } from '../../rig/hw/wiring.ts';
import { RigControlClient } from '../../firmware/ts/hal/rigctl/client.ts';
import { openRigGpio, rigGpioOpener } from '../../firmware/ts/hal/gpio/rig/rig-gpio.ts';
import { RigI2cBus } from '../../firmware/ts/hal/i2c/rig/rig-i2c-bus.ts';
import { openBatteryGauge } from '../../firmware/ts/hal/i2c/gauges.ts';
import { boardSchema } from '../../firmware/ts/board/schema.ts';
import { boardGauge, openBoardGpio } from '../../firmware/ts/board/devices.ts';
import type { RigBladeId } from '../../firmware/ts/hal/rigctl/protocol.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('rig hardware (GPIO, I2C gauge) in a running rig', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  async function up(): Promise<{ rig: Rig; connect(blade: RigBladeId): Promise<RigControlClient> }> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-righw-'));
    cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
    // Stand-in blades: processes that idle until the relay cuts them.
    const rig = new Rig({ dir, dataDisksPerBlade: 1, diskBytes: 1 << 20, nvramBytes: 64 * 1024, bladeCommand: () => [process.execPath, '-e', 'setInterval(() => {}, 1000)'] });
    await rig.up();
    cleanup.push(() => rig.down());
    return {
      rig,
      connect: async (blade) => {
        const c = new RigControlClient({ socketPath: rig.controlSocketPath, blade });
        await c.connect();
        cleanup.push(() => c.close());
        return c;
      },
    };
  }

  it('ST-5 power-fail: the input rises at once, the power goes after the hold-up time, the heal brings it back low', async () => {
    const { rig, connect } = await up();
    const a = await connect('a');
    const pf = await openRigGpio(a, { line: rigGpioLines.powerFail, direction: 'in', activeLow: true, name: 'powerFail' });
    expect(await pf.read()).toBe(0);
    const edges: number[] = [];
    pf.watch('rising', (v) => edges.push(v));
    await a.request('ping');
    const cut = applyFault(rig, 'power-fail', ['a'], false);
    // At once: the input is asserted while the blade still has power (the hold-up time).
    expect(rig.status().gpio?.a.powerFail).toBe(1);
    expect(rig.blade('a').power).toBe('on');
    await until('the power-fail edge', () => edges.length > 0);
    expect(edges).toEqual([1]);
    expect(await cut).toMatch(/supply failed/);
    expect(rig.blade('a').power).toBe('off');
    expect(rig.blade('b').power).toBe('on');
    expect(rig.status().gpio?.a.powerFail).toBe(1);
    expect(rigPowerFailHoldUpMs).toBeGreaterThan(0);
    await applyFault(rig, 'power-fail', ['a'], true);
    expect(rig.blade('a').power).toBe('on');
    expect(rig.blade('a').bootCount).toBe(2);
    expect(rig.status().gpio?.a.powerFail).toBe(0);
  });

  it('a power-fail healed within the hold-up time never cuts the power', async () => {
    const { rig } = await up();
    const cut = applyFault(rig, 'power-fail', ['b'], false);
    expect(rig.status().gpio?.b.powerFail).toBe(1);
    // Healed in the same turn: well inside the hold-up time whatever the host's load.
    await applyFault(rig, 'power-fail', ['b'], true);
    await cut;
    expect(rig.blade('b').power).toBe('on');
    expect(rig.blade('b').bootCount).toBe(1);
    expect(rig.status().gpio?.b.powerFail).toBe(0);
  });

  it('NV-7 battery fault: `rig fault battery-fail a` makes a\'s gauge report no cell and the low alert; b\'s is untouched', async () => {
    const { rig, connect } = await up();
    const gaugeA = openBatteryGauge(new RigI2cBus(await connect('a')), rigGauge);
    const gaugeB = openBatteryGauge(new RigI2cBus(await connect('b')), rigGauge);
    expect(await gaugeA.read()).toMatchObject({ batteryPresent: true, lowAlert: false });
    await applyFault(rig, 'battery-fail', ['a'], false);
    expect(await gaugeA.read()).toMatchObject({ batteryPresent: false, lowAlert: true, stateOfChargePercent: 0 });
    expect(await gaugeB.read()).toMatchObject({ batteryPresent: true, lowAlert: false });
    expect(rig.status().batteries).toEqual({ a: 'failed', b: 'good' });
    await applyFault(rig, 'battery-fail', ['a'], true);
    expect(await gaugeA.read()).toMatchObject({ batteryPresent: true });
  });

  it('pulsing the partner-reset output power-cycles the partner; a blade losing power releases the reset it held', async () => {
    const { rig, connect } = await up();
    const a = await connect('a');
    const reset = await openRigGpio(a, { line: rigGpioLines.partnerReset, direction: 'out', activeLow: true, name: 'partnerReset' });
    await reset.write(1);
    await rig.hardware().settled();
    expect(rig.blade('b').power).toBe('off');
    expect(rig.blade('a').power).toBe('on');
    await reset.write(0);
    await rig.hardware().settled();
    expect(rig.blade('b').power).toBe('on');
    expect(rig.blade('b').bootCount).toBe(2);
    // Hold b in reset, then a loses power: its output floats inactive and b powers on.
    await reset.write(1);
    await rig.hardware().settled();
    expect(rig.blade('b').power).toBe('off');
    await applyFault(rig, 'power-cut', ['a'], false);
    await rig.hardware().settled();
    expect(rig.blade('b').power).toBe('on');
    expect(rig.blade('b').bootCount).toBe(3);
    expect(rig.status().gpio?.a.partnerReset).toBe(0);
  });

  it('writes board descriptors with the rig GPIO and I2C drivers that open through the board helpers', async () => {
    const { rig, connect } = await up();
    const board = boardSchema.parse(JSON.parse(await fs.readFile(path.join(rig.dir, 'b', 'blade.json'), 'utf8')));
    expect(board.gpio.driver).toBe('rig');
    expect(board.i2c).toMatchObject({ driver: 'rig', gauge: rigGauge });
    expect(board.rigControl?.path).toBe(rig.controlSocketPath);
    const client = await connect('b');
    const gpio = await openBoardGpio(board, rigGpioOpener(client));
    expect(gpio.powerFail?.direction).toBe('in');
    expect(gpio.partnerReset?.direction).toBe('out');
    expect([...gpio.leds.keys()].sort()).toEqual(['fault', 'status', 'takeover']);
    await gpio.leds.get('status')?.write(1);
    expect(rig.status().gpio?.b.ledStatus).toBe(1);
    const gauge = boardGauge(board, new RigI2cBus(client));
    expect(await gauge?.identify()).toBe(0x0012);
    await gpio.close();
    // The hand-written example descriptor of the process rig agrees with the rig's wiring.
    const example = boardSchema.parse(JSON.parse(await fs.readFile('boards/process-rig-a.json', 'utf8')));
    expect(example.gpio.powerFail).toEqual(board.gpio.powerFail);
    expect(example.gpio.partnerReset).toEqual(board.gpio.partnerReset);
    for (const [k, spec] of Object.entries(example.gpio.leds)) expect(spec).toEqual(board.gpio.leds[k]);
    expect(example.i2c.gauge).toEqual(board.i2c.gauge);
  });
});
