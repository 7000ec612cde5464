// The GpioLine contract (hal/gpio/gpio.ts), run by gpio.test.ts against the sim driver always
// and against the Linux driver when TWINBLADE_TEST_GPIOCHIP names a wired pair of real lines.
import { afterEach, describe, expect, it } from 'vitest';
import type { GpioLine } from '../../firmware/ts/hal/gpio/gpio.ts';

/** An output line wired to an input line (a jumper on a board; the back door in the sim). */
export interface GpioLoopback {
  output: GpioLine;
  input: GpioLine;
  /** Lets the edges caused so far reach the watchers. */
  settle(): Promise<void>;
  dispose(): Promise<void>;
}

export function gpioContract(driver: string, make: (options: { inputActiveLow: boolean }) => Promise<GpioLoopback>): void {
  describe(`GpioLine contract: ${driver}`, () => {
    let open: GpioLoopback | undefined;
    const setup = async (inputActiveLow = false): Promise<GpioLoopback> => {
      open = await make({ inputActiveLow });
      return open;
    };
    afterEach(async () => {
      await open?.dispose();
      open = undefined;
    });

    it('an output reads back the level last written, and the wired input follows it', async () => {
      const { output, input, settle } = await setup();
      expect(output.direction).toBe('out');
      expect(input.direction).toBe('in');
      await output.write(1);
      await settle();
      expect(await output.read()).toBe(1);
      expect(await input.read()).toBe(1);
      await output.write(0);
      await settle();
      expect(await output.read()).toBe(0);
      expect(await input.read()).toBe(0);
    });

    it('watch reports matching edges with the new value, and unsubscribes', async () => {
      const { output, input, settle } = await setup();
      await output.write(0);
      await settle();
      const rising: number[] = [];
      const falling: number[] = [];
      const both: number[] = [];
      const offRising = input.watch('rising', (v) => rising.push(v));
      input.watch('falling', (v) => falling.push(v));
      input.watch('both', (v) => both.push(v));
      await output.write(1);
      await settle();
      await output.write(0);
      await settle();
      expect(rising).toEqual([1]);
      expect(falling).toEqual([0]);
      expect(both).toEqual([1, 0]);
      offRising();
      await output.write(1);
      await settle();
      expect(rising).toEqual([1]);
      expect(both).toEqual([1, 0, 1]);
    });

    it('an activeLow input reports logical levels', async () => {
      const { output, input, settle } = await setup(true);
      const seen: number[] = [];
      await output.write(0);
      await settle();
      expect(await input.read()).toBe(1);
      input.watch('falling', (v) => seen.push(v));
      await output.write(1);
      await settle();
      expect(await input.read()).toBe(0);
      expect(seen).toEqual([0]);
    });

    it('misuse fails with the contract codes: direction, bad value (synchronous)', async () => {
      const { output, input } = await setup();
      await expect(input.write(1)).rejects.toMatchObject({ code: 'ERR_GPIO_DIRECTION' });
      expect(() => output.write(2 as 0)).toThrow(expect.objectContaining({ code: 'ERR_GPIO_INVALID_ARGUMENT' }));
      expect(() => output.watch('rising', () => undefined)).toThrow(expect.objectContaining({ code: 'ERR_GPIO_DIRECTION' }));
    });

    it('after close calls fail ERR_GPIO_CLOSED, watchers are gone, and close is idempotent', async () => {
      const { output, input, settle } = await setup();
      const seen: number[] = [];
      input.watch('both', (v) => seen.push(v));
      await input.close();
      await input.close();
      await output.write(1);
      await settle();
      expect(seen).toEqual([]);
      await expect(input.read()).rejects.toMatchObject({ code: 'ERR_GPIO_CLOSED' });
      expect(() => input.watch('both', () => undefined)).toThrow(expect.objectContaining({ code: 'ERR_GPIO_CLOSED' }));
      await output.close();
      await expect(output.write(0)).rejects.toMatchObject({ code: 'ERR_GPIO_CLOSED' });
    });
  });
}
