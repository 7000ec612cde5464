// Opens the GPIO lines and the battery gauge a board descriptor names, through whichever
// driver the board says (the opener is injected, so the rig and sim drivers plug in the same
// way as the Linux one). The composition root calls this once at start-up.
import type { GpioDirection, GpioLine, GpioValue } from '../hal/gpio/gpio.ts';
import type { I2cBus } from '../hal/i2c/i2c-bus.ts';
import { openBatteryGauge, type BatteryGauge } from '../hal/i2c/gauges.ts';
import { openLinuxGpio } from '../hal/gpio/linux/linux-gpio.ts';
import type { Board, GpioLineSpec } from './schema.ts';

/** What it takes to open one line: the board's spec plus the role's direction and initial level. */
export interface GpioOpenRequest {
  /** Role name for logs: `powerFail`, `partnerReset`, `partnerPower`, `led.status`, `mux.a0`. */
  name: string;
  spec: GpioLineSpec;
  direction: GpioDirection;
  /** Logical level an output starts at. */
  initial: GpioValue;
}

export type GpioOpener = (req: GpioOpenRequest) => Promise<GpioLine>;

/** The Linux opener (sysfs through onoff). */
export const linuxGpioOpener: GpioOpener = (req) =>
  openLinuxGpio({ chip: req.spec.chip, line: req.spec.line, direction: req.direction, activeLow: req.spec.activeLow, initial: req.initial, name: req.name });

export interface BoardGpio {
  powerFail: GpioLine | undefined;
  partnerReset: GpioLine | undefined;
  /** Input, logical 1 = the partner's power is good (watch it with `PartnerPowerWatch`). */
  partnerPower: GpioLine | undefined;
  leds: Map<string, GpioLine>;
  /** By disk id. Logical 1 = the MUX connects the disk to this blade's path. */
  muxSelect: Map<string, GpioLine>;
  /** Closes every line (idempotent per line). */
  close(): Promise<void>;
}

/**
 * Opens every GPIO line of the board. Outputs start inactive: the partner is not held in
 * reset, LEDs are off, and no MUX is switched to this blade until the HA layer decides so
 * (a booting blade must not steal its partner's disk paths). If one line fails to open, the
 * lines opened so far are closed and the error is rethrown.
 */
export async function openBoardGpio(board: Board, open: GpioOpener): Promise<BoardGpio> {
  const opened: GpioLine[] = [];
  const take = async (req: GpioOpenRequest): Promise<GpioLine> => {
    const line = await open(req);
    opened.push(line);
    return line;
  };
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled(opened.map((l) => l.close()));
  };
  try {
    const g = board.gpio;
    const powerFail = g.powerFail === undefined ? undefined : await take({ name: 'powerFail', spec: g.powerFail, direction: 'in', initial: 0 });
    const partnerReset = g.partnerReset === undefined ? undefined : await take({ name: 'partnerReset', spec: g.partnerReset, direction: 'out', initial: 0 });
    const partnerPower = g.partnerPower === undefined ? undefined : await take({ name: 'partnerPower', spec: g.partnerPower, direction: 'in', initial: 0 });
    const leds = new Map<string, GpioLine>();
    for (const [k, spec] of Object.entries(g.leds)) leds.set(k, await take({ name: `led.${k}`, spec, direction: 'out', initial: 0 }));
    const muxSelect = new Map<string, GpioLine>();
    for (const [k, spec] of Object.entries(g.muxSelect)) muxSelect.set(k, await take({ name: `mux.${k}`, spec, direction: 'out', initial: 0 }));
    return { powerFail, partnerReset, partnerPower, leds, muxSelect, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** The board's battery gauge on `bus` (undefined when the board has none). */
export function boardGauge(board: Board, bus: I2cBus): BatteryGauge | undefined {
  const g = board.i2c.gauge;
  return g === undefined ? undefined : openBatteryGauge(bus, g);
}
