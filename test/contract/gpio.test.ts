// Runs the GPIO contract against the sim driver, and against real lines when
// TWINBLADE_TEST_GPIOCHIP=<chip>:<outputLine>:<inputLine> names two lines wired together.
import { describe, expect, it } from 'vitest';
import { gpioContract } from './gpio.contract.ts';
import { SimGpioChip } from '../../firmware/ts/hal/gpio/sim/sim-gpio.ts';
import { openLinuxGpio } from '../../firmware/ts/hal/gpio/linux/linux-gpio.ts';
import { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';

gpioContract('sim', async ({ inputActiveLow }) => {
  const vt = new VirtualTime();
  const chip = new SimGpioChip({ timers: vt.timers });
  // A jumper from line 1 (output) to line 2 (input), made with the back door.
  const unwire = chip.onOutput(1, (level) => chip.drive(2, level));
  const output = chip.open(1, { direction: 'out' });
  const input = chip.open(2, { direction: 'in', activeLow: inputActiveLow });
  return {
    output,
    input,
    settle: async () => vt.advanceBy(1),
    dispose: async () => {
      unwire();
      await output.close();
      await input.close();
    },
  };
});

const hw = process.env['TWINBLADE_TEST_GPIOCHIP'];
describe.runIf(hw !== undefined)('real hardware (enabled by TWINBLADE_TEST_GPIOCHIP=<chip>:<out>:<in>)', () => {
  const [chip, out, inp] = (hw ?? '::').split(':');
  gpioContract(`linux on ${hw ?? ''}`, async ({ inputActiveLow }) => {
    const chipSpec = /^\d+$/.test(chip ?? '') ? Number(chip) : (chip ?? '');
    const output = await openLinuxGpio({ chip: chipSpec, line: Number(out), direction: 'out' });
    const input = await openLinuxGpio({ chip: chipSpec, line: Number(inp), direction: 'in', activeLow: inputActiveLow });
    return {
      output,
      input,
      settle: () => new Promise((r) => setTimeout(r, 50)),
      dispose: async () => {
        await output.close().catch(() => undefined);
        await input.close().catch(() => undefined);
      },
    };
  });
});

describe('sim GPIO back door', () => {
  it('delivers edges through the injected timers, not synchronously', () => {
    const vt = new VirtualTime();
    const chip = new SimGpioChip({ timers: vt.timers }, 'chip', 8, { edgeLatencyMs: 2 });
    const powerFail = chip.open(3, { direction: 'in', activeLow: true, name: 'power-fail' });
    const seen: number[] = [];
    powerFail.watch('rising', (v) => seen.push(v));
    chip.drive(3, 1);
    chip.drive(3, 0); // active-low: physical low = logical 1 = power failing
    expect(seen).toEqual([]);
    vt.advanceBy(1);
    expect(seen).toEqual([]);
    vt.advanceBy(1);
    expect(seen).toEqual([1]);
  });

  it('observes outputs, injects I/O failures, and refuses to drive an output or open a line twice', async () => {
    const vt = new VirtualTime();
    const chip = new SimGpioChip({ timers: vt.timers });
    const reset = chip.open(5, { direction: 'out', activeLow: true, initial: 0, name: 'partner-reset' });
    expect(chip.level(5)).toBe(1);
    const levels: number[] = [];
    chip.onOutput(5, (l) => levels.push(l));
    await reset.write(1);
    expect(levels).toEqual([0]);
    expect(() => chip.drive(5, 1)).toThrow(expect.objectContaining({ code: 'ERR_GPIO_DIRECTION' }));
    expect(() => chip.open(5, { direction: 'in' })).toThrow(/already open/);
    expect(() => chip.open(99, { direction: 'in' })).toThrow(expect.objectContaining({ code: 'ERR_GPIO_INVALID_ARGUMENT' }));
    chip.setFailed(5, true);
    await expect(reset.write(0)).rejects.toMatchObject({ code: 'ERR_GPIO_IO', kind: 'io' });
    await expect(reset.read()).rejects.toMatchObject({ code: 'ERR_GPIO_IO' });
    chip.setFailed(5, false);
    await reset.close();
    expect(() => chip.open(5, { direction: 'in' })).not.toThrow();
  });
});
