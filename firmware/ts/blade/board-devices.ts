// Opens the small devices a board descriptor names — the rig control channel, the GPIO lines
// (power-fail input, partner reset) and the battery gauge — through whichever driver the board
// says: Linux (sysfs GPIO, i2c-dev), the rig (its control channel), or none.
import type { Board } from '../board/schema.ts';
import { openBoardGpio, boardGauge, linuxGpioOpener, type BoardGpio } from '../board/devices.ts';
import type { BatteryGauge } from '../hal/i2c/gauges.ts';
import { RigControlClient } from '../hal/rigctl/client.ts';
import { rigGpioOpener } from '../hal/gpio/rig/rig-gpio.ts';
import { RigI2cBus } from '../hal/i2c/rig/rig-i2c-bus.ts';
import { openLinuxI2cBus } from '../hal/i2c/linux/linux-i2c-bus.ts';
import type { I2cBus } from '../hal/i2c/i2c-bus.ts';

export interface BoardDevices {
  rig: RigControlClient | undefined;
  gpio: BoardGpio | undefined;
  gauge: BatteryGauge | undefined;
  close(): Promise<void>;
}

export async function openBoardDevices(board: Board): Promise<BoardDevices> {
  let rig: RigControlClient | undefined;
  if (board.rigControl) {
    rig = new RigControlClient({ socketPath: board.rigControl.path, blade: board.identity.blade });
    await rig.connect();
  }
  let gpio: BoardGpio | undefined;
  if (board.gpio.driver === 'rig' && rig) gpio = await openBoardGpio(board, rigGpioOpener(rig));
  else if (board.gpio.driver === 'linux') gpio = await openBoardGpio(board, linuxGpioOpener);
  let bus: I2cBus | undefined;
  if (board.i2c.driver === 'rig' && rig) bus = new RigI2cBus(rig);
  else if (board.i2c.driver === 'linux' && board.i2c.bus !== undefined) bus = await openLinuxI2cBus(board.i2c.bus);
  const gauge = bus ? boardGauge(board, bus) : undefined;
  return {
    rig,
    gpio,
    gauge,
    close: async () => {
      await gpio?.close();
      await bus?.close();
      await rig?.close();
    },
  };
}
