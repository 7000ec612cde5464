// Unit tests of the Linux GPIO driver with `onoff` mocked, so its logic (chip base lookup,
// activeLow, edge filtering, error mapping, close) runs in CI without GPIO hardware.
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Cb = (err: Error | null | undefined, value: 0 | 1) => void;

const fake = vi.hoisted(() => {
  class FakeGpio {
    static accessible = true;
    static instances: FakeGpio[] = [];
    static failNext: Error | undefined;
    value: 0 | 1 = 0;
    watchers: ((err: Error | null | undefined, value: 0 | 1) => void)[] = [];
    unexported = false;
    failIo: Error | undefined;
    constructor(
      readonly number: number,
      readonly dir: string,
      readonly edge: string,
      readonly options: Record<string, unknown>,
    ) {
      if (FakeGpio.failNext !== undefined) {
        const e = FakeGpio.failNext;
        FakeGpio.failNext = undefined;
        throw e;
      }
      if (dir === 'high') this.value = options['activeLow'] === true ? 0 : 1;
      FakeGpio.instances.push(this);
    }
    async read(): Promise<0 | 1> {
      if (this.failIo !== undefined) throw this.failIo;
      return this.value;
    }
    readSync(): 0 | 1 {
      return this.value;
    }
    async write(v: 0 | 1): Promise<void> {
      if (this.failIo !== undefined) throw this.failIo;
      this.value = v;
    }
    watch(cb: (err: Error | null | undefined, value: 0 | 1) => void): void {
      this.watchers.push(cb);
    }
    unwatch(cb: (err: Error | null | undefined, value: 0 | 1) => void): void {
      this.watchers = this.watchers.filter((w) => w !== cb);
    }
    unwatchAll(): void {
      this.watchers = [];
    }
    unexport(): void {
      this.unexported = true;
    }
    /** What the kernel does on an interrupt: report the (logical) value. */
    fire(v: 0 | 1): void {
      this.value = v;
      for (const w of this.watchers) w(null, v);
    }
  }
  return { FakeGpio };
});

vi.mock('onoff', () => ({ Gpio: fake.FakeGpio }));

const { openLinuxGpio, resolveChipBase, mapGpioError } = await import('../../firmware/ts/hal/gpio/linux/linux-gpio.ts');

function errno(code: string): Error {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

let sysfs = '';
beforeAll(async () => {
  sysfs = await mkdtemp(join(tmpdir(), 'twinblade-gpio-'));
  for (const [chip, label, base] of [['gpiochip512', 'pinctrl-bcm2711', '512'], ['gpiochip570', 'raspberrypi-exp-gpio', '570']] as const) {
    await mkdir(join(sysfs, chip));
    await writeFile(join(sysfs, chip, 'label'), `${label}\n`);
    await writeFile(join(sysfs, chip, 'base'), `${base}\n`);
  }
});
afterAll(async () => {
  await rm(sysfs, { recursive: true, force: true });
});
beforeEach(() => {
  fake.FakeGpio.instances = [];
  fake.FakeGpio.accessible = true;
});

describe('Linux GPIO driver (onoff mocked)', () => {
  it('resolves the sysfs number from a chip name, a label or a base', async () => {
    expect(await resolveChipBase('gpiochip512', sysfs)).toBe(512);
    expect(await resolveChipBase('raspberrypi-exp-gpio', sysfs)).toBe(570);
    expect(await resolveChipBase(100, sysfs)).toBe(100);
    expect(await resolveChipBase(undefined, sysfs)).toBe(0);
    await expect(resolveChipBase('nope', sysfs)).rejects.toMatchObject({ code: 'ERR_GPIO_IO', kind: 'unsupported' });
    const line = await openLinuxGpio({ chip: 'pinctrl-bcm2711', line: 17, direction: 'in', sysfsRoot: sysfs });
    expect(fake.FakeGpio.instances[0]?.number).toBe(529);
    expect(line.name).toBe('gpio529');
  });

  it('opens inputs on both edges and outputs glitch-free at their initial raw level', async () => {
    await openLinuxGpio({ line: 4, direction: 'in', activeLow: true, debounceMs: 10 });
    await openLinuxGpio({ line: 5, direction: 'out', initial: 1 });
    await openLinuxGpio({ line: 6, direction: 'out', initial: 1, activeLow: true });
    await openLinuxGpio({ line: 7, direction: 'out', initial: 0, activeLow: true });
    const [i, o1, o2, o3] = fake.FakeGpio.instances;
    expect([i?.dir, i?.edge, i?.options['activeLow'], i?.options['debounceTimeout']]).toEqual(['in', 'both', true, 10]);
    expect([o1?.dir, o1?.edge]).toEqual(['high', 'none']);
    expect(o2?.dir).toBe('low');
    expect(o3?.dir).toBe('high');
  });

  it('filters edges per watcher and drops repeated levels', async () => {
    const line = await openLinuxGpio({ line: 4, direction: 'in' });
    const g = fake.FakeGpio.instances[0] as InstanceType<typeof fake.FakeGpio>;
    const rising: number[] = [];
    const both: number[] = [];
    const off = line.watch('rising', (v) => rising.push(v));
    line.watch('both', (v) => both.push(v));
    expect(g.watchers).toHaveLength(1);
    g.fire(1);
    g.fire(1);
    g.fire(0);
    expect(rising).toEqual([1]);
    expect(both).toEqual([1, 0]);
    off();
    g.fire(1);
    expect(rising).toEqual([1]);
    expect(both).toEqual([1, 0, 1]);
    (g.watchers[0] as Cb)(new Error('poll failed'), 0);
    expect(both).toEqual([1, 0, 1]);
  });

  it('maps onoff errors to ERR_GPIO_IO with a kind and keeps the cause', async () => {
    fake.FakeGpio.failNext = errno('EBUSY');
    await expect(openLinuxGpio({ line: 1, direction: 'in' })).rejects.toMatchObject({ code: 'ERR_GPIO_IO', kind: 'busy' });
    fake.FakeGpio.failNext = errno('EINVAL');
    await expect(openLinuxGpio({ line: 1, direction: 'in' })).rejects.toMatchObject({ code: 'ERR_GPIO_IO', kind: 'unsupported' });
    const line = await openLinuxGpio({ line: 2, direction: 'out' });
    const g = fake.FakeGpio.instances[0] as InstanceType<typeof fake.FakeGpio>;
    g.failIo = errno('EIO');
    const err = await line.write(1).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_GPIO_IO', kind: 'io' });
    expect((err as Error).cause).toBe(g.failIo);
    expect(mapGpioError('weird', 'x')).toMatchObject({ code: 'ERR_GPIO_IO' });
    fake.FakeGpio.accessible = false;
    await expect(openLinuxGpio({ line: 3, direction: 'in' })).rejects.toMatchObject({ code: 'ERR_GPIO_IO', message: expect.stringContaining('not accessible') });
  });

  it('enforces the contract argument and lifecycle rules and unexports on close', async () => {
    await expect(openLinuxGpio({ line: -1, direction: 'in' })).rejects.toMatchObject({ code: 'ERR_GPIO_INVALID_ARGUMENT' });
    const out = await openLinuxGpio({ line: 2, direction: 'out' });
    const inp = await openLinuxGpio({ line: 3, direction: 'in' });
    expect(() => out.write(5 as 1)).toThrow(expect.objectContaining({ code: 'ERR_GPIO_INVALID_ARGUMENT' }));
    await expect(inp.write(1)).rejects.toMatchObject({ code: 'ERR_GPIO_DIRECTION' });
    expect(() => out.watch('both', () => undefined)).toThrow(expect.objectContaining({ code: 'ERR_GPIO_DIRECTION' }));
    await out.write(1);
    expect(await out.read()).toBe(1);
    await out.close();
    await out.close();
    expect(fake.FakeGpio.instances[0]?.unexported).toBe(true);
    await expect(out.read()).rejects.toMatchObject({ code: 'ERR_GPIO_CLOSED' });
    await expect(out.write(0)).rejects.toMatchObject({ code: 'ERR_GPIO_CLOSED' });
  });
});
