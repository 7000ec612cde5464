// Battery fuel-gauge drivers over any I2cBus: MAX17048 and BQ27441 behind one small
// interface, so the NVRAM battery monitor can decide "battery good / low / failed" without
// knowing the chip. Chip choice and address come from the board descriptor.
import { InvalidArgumentError, TwinbladeError } from '../../core/errors.ts';
import type { I2cBus } from './i2c-bus.ts';

export type GaugeModel = 'max17048' | 'bq27441';

export const gaugeDefaultAddress: Readonly<Record<GaugeModel, number>> = { max17048: 0x36, bq27441: 0x55 };

export const GaugeErrorCode = {
  /** The chip answered but is not the model the board names. */
  wrongChip: 'ERR_GAUGE_WRONG_CHIP',
} as const;

/** One reading of the battery, in portable units. */
export interface BatteryReading {
  model: GaugeModel;
  /** 0..100 (fractional on MAX17048). */
  stateOfChargePercent: number;
  voltageV: number;
  /** The gauge raised its low-charge alert (MAX17048 CONFIG.ALRT; BQ27441 SOC1/SOCF). */
  lowAlert: boolean;
  /** A battery is connected (BQ27441 BAT_DET; MAX17048: cell voltage above `batteryPresentMinV`). */
  batteryPresent: boolean;
  /** The chip's raw status word (MAX17048 STATUS, BQ27441 Flags) for logs. */
  rawStatus: number;
}

export interface BatteryGauge {
  readonly model: GaugeModel;
  readonly address: number;
  /** Checks that the chip is there and is the expected model (VERSION / DEVICE_TYPE). */
  identify(): Promise<number>;
  read(): Promise<BatteryReading>;
  /** Clears a latched alert, where the chip latches one. */
  clearAlert(): Promise<void>;
}

/** A cell below this voltage is taken as "no battery" on a gauge without a detect pin. */
export const batteryPresentMinV = 2.0;

function swap16(w: number): number {
  return ((w & 0xff) << 8) | (w >>> 8);
}

/**
 * MAX17048: 16-bit registers sent MSB first, i.e. big-endian, while SMBus words are
 * little-endian, so every word is byte-swapped here.
 */
export class Max17048Gauge implements BatteryGauge {
  readonly model = 'max17048' as const;
  constructor(
    private readonly bus: I2cBus,
    readonly address = gaugeDefaultAddress.max17048,
  ) {}

  private async reg(r: number): Promise<number> {
    return swap16(await this.bus.readWord(this.address, r));
  }

  async identify(): Promise<number> {
    const version = await this.reg(0x08);
    // MAX17048/9 report 0x001X.
    if ((version & 0xfff0) !== 0x0010) throw new TwinbladeError(GaugeErrorCode.wrongChip, 'unsupported', `0x${this.address.toString(16)} VERSION 0x${version.toString(16)} is not a MAX17048`);
    return version;
  }

  async read(): Promise<BatteryReading> {
    const vcell = await this.reg(0x02);
    const soc = await this.reg(0x04);
    const config = await this.reg(0x0c);
    const status = await this.reg(0x1a);
    const voltageV = vcell * 78.125e-6;
    return {
      model: this.model,
      stateOfChargePercent: soc / 256,
      voltageV,
      lowAlert: (config & 0x0020) !== 0,
      batteryPresent: voltageV >= batteryPresentMinV,
      rawStatus: status,
    };
  }

  async clearAlert(): Promise<void> {
    const config = await this.reg(0x0c);
    await this.bus.writeWord(this.address, 0x0c, swap16(config & ~0x0020));
    // Clear the latched status flags too (keep EnVR, bit 14).
    const status = await this.reg(0x1a);
    await this.bus.writeWord(this.address, 0x1a, swap16(status & 0x4000));
  }
}

/** BQ27441-G1: standard commands are little-endian words, which is what SMBus reads give. */
export class Bq27441Gauge implements BatteryGauge {
  readonly model = 'bq27441' as const;
  constructor(
    private readonly bus: I2cBus,
    readonly address = gaugeDefaultAddress.bq27441,
  ) {}

  async identify(): Promise<number> {
    // Control(DEVICE_TYPE), then read the result back from Control().
    await this.bus.writeWord(this.address, 0x00, 0x0001);
    const type = await this.bus.readWord(this.address, 0x00);
    if (type !== 0x0421) throw new TwinbladeError(GaugeErrorCode.wrongChip, 'unsupported', `0x${this.address.toString(16)} DEVICE_TYPE 0x${type.toString(16)} is not a BQ27441`);
    return type;
  }

  async read(): Promise<BatteryReading> {
    const mv = await this.bus.readWord(this.address, 0x04);
    const flags = await this.bus.readWord(this.address, 0x06);
    const soc = await this.bus.readWord(this.address, 0x1c);
    return {
      model: this.model,
      stateOfChargePercent: Math.min(100, soc),
      voltageV: mv / 1000,
      lowAlert: (flags & 0x0006) !== 0,
      batteryPresent: (flags & 0x0008) !== 0,
      rawStatus: flags,
    };
  }

  async clearAlert(): Promise<void> {
    // SOC1/SOCF follow the charge; there is nothing latched to clear.
  }
}

/** The gauge a board names: `{ model, address }` (address defaults to the chip's usual one). */
export function openBatteryGauge(bus: I2cBus, spec: { model: GaugeModel; address?: number }): BatteryGauge {
  switch (spec.model) {
    case 'max17048':
      return new Max17048Gauge(bus, spec.address ?? gaugeDefaultAddress.max17048);
    case 'bq27441':
      return new Bq27441Gauge(bus, spec.address ?? gaugeDefaultAddress.bq27441);
    default:
      throw new InvalidArgumentError('ERR_GAUGE_MODEL', `unknown gauge model ${String((spec as { model: unknown }).model)}`);
  }
}
