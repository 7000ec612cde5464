// Device models for the simulated I2C bus: an FRAM (FM24CL64 style) and two battery fuel
// gauges (MAX17048, BQ27441), each with a back door to set the battery state.
import type { SimI2cDevice } from './sim-i2c-bus.ts';

/** FM24CL64-like FRAM: 8 KiB, 2-byte big-endian memory address, auto-increment wrapping at the end. */
export class SimFram implements SimI2cDevice {
  readonly memory: Uint8Array;
  private pointer = 0;

  constructor(readonly sizeBytes = 8192) {
    this.memory = new Uint8Array(sizeBytes);
  }

  transfer(write: Uint8Array, readLength: number): Uint8Array {
    if (write.length >= 2) {
      // Unused high address bits are ignored, as on the chip.
      this.pointer = (((write[0] as number) << 8) | (write[1] as number)) % this.sizeBytes;
      for (let i = 2; i < write.length; i++) {
        this.memory[this.pointer] = write[i] as number;
        this.pointer = (this.pointer + 1) % this.sizeBytes;
      }
    } else if (write.length === 1) {
      // Only the high address byte arrived: the chip latches it and the low byte stays.
      this.pointer = (((write[0] as number) << 8) | (this.pointer & 0xff)) % this.sizeBytes;
    }
    const out = new Uint8Array(readLength);
    for (let i = 0; i < readLength; i++) {
      out[i] = this.memory[this.pointer] as number;
      this.pointer = (this.pointer + 1) % this.sizeBytes;
    }
    return out;
  }
}

/** A battery state shared by the gauge models' back doors. */
export interface SimBatteryState {
  stateOfChargePercent: number;
  voltageV: number;
  /** The pack is charging (BQ27441 DSG clear). */
  charging: boolean;
  /** The pack is connected (BQ27441 BAT_DET). */
  present: boolean;
}

/** Base for 16-bit register devices with a register pointer. */
abstract class WordRegisterDevice implements SimI2cDevice {
  protected pointer = 0;
  /** Byte at register byte-address `addr` (big- or little-endian words per chip). */
  protected abstract readByteAt(addr: number): number;
  protected abstract writeBytes(addr: number, bytes: Uint8Array): void;

  transfer(write: Uint8Array, readLength: number): Uint8Array {
    if (write.length >= 1) {
      this.pointer = write[0] as number;
      if (write.length > 1) {
        this.writeBytes(this.pointer, write.subarray(1));
        this.pointer = (this.pointer + write.length - 1) & 0xff;
      }
    }
    const out = new Uint8Array(readLength);
    for (let i = 0; i < readLength; i++) {
      out[i] = this.readByteAt(this.pointer);
      this.pointer = (this.pointer + 1) & 0xff;
    }
    return out;
  }
}

export const max17048Register = {
  vcell: 0x02,
  soc: 0x04,
  mode: 0x06,
  version: 0x08,
  hibrt: 0x0a,
  config: 0x0c,
  valrt: 0x14,
  crate: 0x16,
  vreset: 0x18,
  status: 0x1a,
  cmd: 0xfe,
} as const;

/** MAX17048 STATUS bits (the register's high byte, seen as a 16-bit big-endian value). */
export const max17048Status = {
  resetIndicator: 0x0100,
  voltageHigh: 0x0200,
  voltageLow: 0x0400,
  voltageReset: 0x0800,
  socLow: 0x1000,
  socChange: 0x2000,
  enableVoltageReset: 0x4000,
} as const;

/** CONFIG.ALRT: the alert flag (set on any alert, cleared by the host). */
export const max17048ConfigAlert = 0x0020;
/** 78.125 µV per VCELL LSB. */
export const max17048VcellVoltsPerLsb = 78.125e-6;

/** MAX17048 fuel gauge: 16-bit registers, big-endian on the wire (MSB first). */
export class SimMax17048 extends WordRegisterDevice {
  private readonly regs = new Map<number, number>([
    [max17048Register.mode, 0x0000],
    [max17048Register.version, 0x0012],
    [max17048Register.hibrt, 0x8030],
    [max17048Register.config, 0x971c],
    [max17048Register.valrt, 0x00ff],
    [max17048Register.crate, 0x0000],
    [max17048Register.vreset, 0x9600],
    [max17048Register.status, max17048Status.resetIndicator],
  ]);
  private readonly battery: SimBatteryState;

  constructor(initial: Partial<SimBatteryState> = {}) {
    super();
    this.battery = { stateOfChargePercent: 80, voltageV: 3.9, charging: false, present: true, ...initial };
  }

  private word(reg: number): number {
    switch (reg) {
      case max17048Register.vcell:
        return this.battery.present ? Math.min(0xffff, Math.round(this.battery.voltageV / max17048VcellVoltsPerLsb)) : 0;
      case max17048Register.soc:
        return Math.min(0xffff, Math.round(Math.max(0, this.battery.stateOfChargePercent) * 256));
      default:
        return this.regs.get(reg) ?? 0;
    }
  }

  protected readByteAt(addr: number): number {
    const reg = addr & 0xfe;
    const w = this.word(reg);
    return (addr & 1) === 0 ? w >>> 8 : w & 0xff;
  }

  protected writeBytes(addr: number, bytes: Uint8Array): void {
    // Word writes: MSB then LSB. Read-only registers (VCELL, SOC, VERSION) ignore writes.
    for (let i = 0; i + 1 < bytes.length; i += 2) {
      const reg = (addr + i) & 0xfe;
      const value = ((bytes[i] as number) << 8) | (bytes[i + 1] as number);
      if (reg === max17048Register.vcell || reg === max17048Register.soc || reg === max17048Register.version) continue;
      if (reg === max17048Register.config) {
        // ALRT can only be cleared by the host, never set.
        const old = this.regs.get(reg) ?? 0;
        this.regs.set(reg, (value & ~max17048ConfigAlert) | (old & value & max17048ConfigAlert));
      } else if (reg === max17048Register.status) {
        // Status flags are cleared by writing 0 to them.
        const old = this.regs.get(reg) ?? 0;
        this.regs.set(reg, old & value);
      } else this.regs.set(reg, value);
    }
  }

  /** Alert threshold in percent: 32 - ATHD (CONFIG bits 4:0). */
  get alertThresholdPercent(): number {
    return 32 - ((this.regs.get(max17048Register.config) ?? 0) & 0x1f);
  }

  private raise(statusBits: number): void {
    this.regs.set(max17048Register.status, (this.regs.get(max17048Register.status) ?? 0) | statusBits);
    this.regs.set(max17048Register.config, (this.regs.get(max17048Register.config) ?? 0) | max17048ConfigAlert);
  }

  // ---- back door ----

  setStateOfCharge(percent: number): void {
    const before = this.battery.stateOfChargePercent;
    this.battery.stateOfChargePercent = percent;
    // The low-SOC alert fires on crossing the threshold downwards.
    if (before >= this.alertThresholdPercent && percent < this.alertThresholdPercent) this.raise(max17048Status.socLow);
    if (Math.floor(before) !== Math.floor(percent)) this.regs.set(max17048Register.status, (this.regs.get(max17048Register.status) ?? 0) | max17048Status.socChange);
  }

  setVoltage(volts: number): void {
    this.battery.voltageV = volts;
    const valrt = this.regs.get(max17048Register.valrt) ?? 0x00ff;
    // VALRT: MSB = minimum, LSB = maximum, 20 mV per LSB.
    if (volts < (valrt >>> 8) * 0.02) this.raise(max17048Status.voltageLow);
    if (volts > (valrt & 0xff) * 0.02) this.raise(max17048Status.voltageHigh);
  }

  setPresent(present: boolean): void {
    this.battery.present = present;
  }
}

export const bq27441Command = {
  control: 0x00,
  temperature: 0x02,
  voltage: 0x04,
  flags: 0x06,
  nominalAvailableCapacity: 0x08,
  fullAvailableCapacity: 0x0a,
  remainingCapacity: 0x0c,
  fullChargeCapacity: 0x0e,
  averageCurrent: 0x10,
  stateOfCharge: 0x1c,
  stateOfHealth: 0x20,
} as const;

export const bq27441Flags = {
  overTemperature: 0x8000,
  underTemperature: 0x4000,
  fullCharge: 0x0200,
  charging: 0x0100,
  ocvTaken: 0x0080,
  itpor: 0x0020,
  cfgUpdate: 0x0010,
  batteryDetected: 0x0008,
  soc1: 0x0004,
  socFinal: 0x0002,
  discharging: 0x0001,
} as const;

export const bq27441ControlSubcommand = {
  controlStatus: 0x0000,
  deviceType: 0x0001,
  fwVersion: 0x0002,
} as const;

/** BQ27441-G1 fuel gauge: standard commands are 16-bit little-endian values. */
export class SimBq27441 extends WordRegisterDevice {
  private readonly battery: SimBatteryState;
  private controlResult = 0;
  /** SOC1 set / SOCF set thresholds in percent (data-memory defaults). */
  readonly soc1SetPercent = 10;
  readonly socFinalSetPercent = 2;
  designCapacityMah = 1200;

  constructor(initial: Partial<SimBatteryState> = {}) {
    super();
    this.battery = { stateOfChargePercent: 80, voltageV: 3.9, charging: false, present: true, ...initial };
  }

  private flags(): number {
    const b = this.battery;
    let f = 0;
    if (b.present) f |= bq27441Flags.batteryDetected;
    if (b.stateOfChargePercent <= this.soc1SetPercent) f |= bq27441Flags.soc1;
    if (b.stateOfChargePercent <= this.socFinalSetPercent) f |= bq27441Flags.socFinal;
    if (b.charging) f |= bq27441Flags.charging;
    else f |= bq27441Flags.discharging;
    if (b.stateOfChargePercent >= 100) f |= bq27441Flags.fullCharge;
    return f;
  }

  private word(cmd: number): number {
    const b = this.battery;
    switch (cmd) {
      case bq27441Command.control:
        return this.controlResult;
      case bq27441Command.temperature:
        return 2982; // 25 °C in 0.1 K
      case bq27441Command.voltage:
        return b.present ? Math.round(b.voltageV * 1000) : 0;
      case bq27441Command.flags:
        return this.flags();
      case bq27441Command.remainingCapacity:
        return Math.round((this.designCapacityMah * b.stateOfChargePercent) / 100);
      case bq27441Command.fullChargeCapacity:
        return this.designCapacityMah;
      case bq27441Command.averageCurrent:
        return (b.charging ? 300 : -150) & 0xffff;
      case bq27441Command.stateOfCharge:
        return Math.max(0, Math.min(100, Math.round(b.stateOfChargePercent)));
      case bq27441Command.stateOfHealth:
        return 0x0164; // 100 %, status "good"
      default:
        return 0;
    }
  }

  protected readByteAt(addr: number): number {
    const w = this.word(addr & 0xfe);
    return (addr & 1) === 0 ? w & 0xff : w >>> 8;
  }

  protected writeBytes(addr: number, bytes: Uint8Array): void {
    // Only Control() is writable among the standard commands: a subcommand, little-endian.
    if (addr === bq27441Command.control && bytes.length >= 2) {
      const sub = (bytes[0] as number) | ((bytes[1] as number) << 8);
      this.controlResult =
        sub === bq27441ControlSubcommand.deviceType ? 0x0421 : sub === bq27441ControlSubcommand.fwVersion ? 0x0109 : sub === bq27441ControlSubcommand.controlStatus ? 0x0000 : 0;
    }
  }

  // ---- back door ----

  setStateOfCharge(percent: number): void {
    this.battery.stateOfChargePercent = percent;
  }
  setVoltage(volts: number): void {
    this.battery.voltageV = volts;
  }
  setCharging(charging: boolean): void {
    this.battery.charging = charging;
  }
  setPresent(present: boolean): void {
    this.battery.present = present;
  }
}
