// How the rig's emulated blade board is wired: which GPIO line number is which signal, what
// sits on each blade's I2C bus. Shared by the rig's hardware emulation (rig/hw/blade-hw.ts)
// and the board descriptors it writes for the blades (rig/boards.ts), so the two agree.
import type { GaugeModel } from '../../firmware/ts/hal/i2c/gauges.ts';

/** The chip name the rig boards use in their GPIO line specs. */
export const rigGpioChip = 'rig';

/** Line numbers on each blade's emulated GPIO controller. */
export const rigGpioLines = {
  /** Input, driven by the rig, active-low: asserted = the supply is failing (the blade has `rigPowerFailHoldUpMs` left). */
  powerFail: 0,
  /** Output, active-low (an nRESET): asserted holds the partner in reset (the rig cuts its power; releasing powers it on). */
  partnerReset: 1,
  /** Output LEDs (the rig only records them). */
  ledStatus: 2,
  ledFault: 3,
  ledTakeover: 4,
  /**
   * Input, driven by the rig, active-high: the partner's power is good. The partner's power
   * relay drives it (a power cut reads as lost at once); `rig fault sense-wire` breaks it.
   */
  partnerPower: 5,
  /** A jumper on the rig board from an output to an input: the loopback the GPIO contract tests use. */
  jumperOut: 6,
  jumperIn: 7,
} as const;

export type RigLineDirection = 'in' | 'out';

/** Each wired line's direction as seen by the blade. */
export const rigGpioDirections: ReadonlyMap<number, RigLineDirection> = new Map([
  [rigGpioLines.powerFail, 'in'],
  [rigGpioLines.partnerReset, 'out'],
  [rigGpioLines.ledStatus, 'out'],
  [rigGpioLines.ledFault, 'out'],
  [rigGpioLines.ledTakeover, 'out'],
  [rigGpioLines.partnerPower, 'in'],
  [rigGpioLines.jumperOut, 'out'],
  [rigGpioLines.jumperIn, 'in'],
]);

/**
 * Lines that are active-low on the rig board, as an nRESET and an open-drain power-fail
 * signal are on real ones: they idle high (pulled up), so a blade that is off or has not
 * opened them yet leaves them inactive. The board descriptors mark them `activeLow`.
 */
export const rigGpioActiveLow: ReadonlySet<number> = new Set([rigGpioLines.powerFail, rigGpioLines.partnerReset]);

/** The physical level of a line when nobody drives it active. */
export function rigGpioIdleLevel(line: number): 0 | 1 {
  return rigGpioActiveLow.has(line) ? 1 : 0;
}

/** Lines on the emulated controller (numbers not in `rigGpioDirections` are unconnected). */
export const rigGpioLineCount = 8;

/** The battery gauge of each blade. */
export const rigGauge: { model: GaugeModel; address: number } = { model: 'max17048', address: 0x36 };

/** An FRAM on each blade's bus (not the NVRAM; there for raw-transfer tests of the I2C path). */
export const rigFramAddress = 0x50;

/**
 * Time between the power-fail input rising and the supply actually dropping, as the hold-up
 * capacitors of a board's supply would give: the blade's window to finish what it must.
 */
export const rigPowerFailHoldUpMs = 200;

/** The healthy battery the gauges report at power-on (and again when a battery fault heals). */
export const rigBatteryGood = { stateOfChargePercent: 80, voltageV: 3.9 } as const;
