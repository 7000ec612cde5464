// The rig's emulated board hardware, per blade: a GPIO controller (power-fail input, partner
// reset output, LEDs, a test jumper) and an I2C bus with a MAX17048 battery gauge and an
// FRAM, built from the simulator's device models but on real timers. The blades reach them
// through the rig control channel (ops gpio.* and i2c.*, events `gpio`), and the rig's fault
// commands act on them (power-fail, battery-fail, sense-wire). The partner-reset output is
// wired to the partner's power relay, as on a board where each blade can hold the other in
// reset, and the partner's relay drives the partner-power input (its power-good rail).
import type { Timers } from '../../firmware/ts/core/clock.ts';
import { InvalidArgumentError, TwinbladeError } from '../../firmware/ts/core/errors.ts';
import { realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { SimGpioChip } from '../../firmware/ts/hal/gpio/sim/sim-gpio.ts';
import { GpioErrorCode, type GpioLine, type GpioValue } from '../../firmware/ts/hal/gpio/gpio.ts';
import { SimI2cBus } from '../../firmware/ts/hal/i2c/sim/sim-i2c-bus.ts';
import { SimFram, SimMax17048 } from '../../firmware/ts/hal/i2c/sim/devices.ts';
import { I2cErrorCode } from '../../firmware/ts/hal/i2c/i2c-bus.ts';
import { rigI2cTransferBytesMax } from '../../firmware/ts/hal/i2c/rig/rig-i2c-bus.ts';
import type { RigBladeId } from '../../firmware/ts/hal/rigctl/protocol.ts';
import type { RigControlServer } from '../control/server.ts';
import {
  rigBatteryGood,
  rigFramAddress,
  rigGauge,
  rigGpioChip,
  rigGpioActiveLow,
  rigGpioDirections,
  rigGpioIdleLevel,
  rigGpioLineCount,
  rigGpioLines,
  rigPowerFailHoldUpMs,
} from './wiring.ts';

/** The power relays the hardware acts on (the Rig's powerCut / powerRestore). */
export interface RigPowerRelays {
  cut(blade: RigBladeId): Promise<void>;
  restore(blade: RigBladeId): Promise<void>;
}

export interface RigHardwareOptions {
  power: RigPowerRelays;
  /** Default: real timers (the rig runs in real time). */
  timers?: Timers;
  powerFailHoldUpMs?: number;
  /** Failures of relay actions started by a GPIO edge (nobody awaits those). */
  onError?: (e: unknown) => void;
  /**
   * Whether both blades have power when the hardware is made (default true). The Rig says
   * false and reports each power-on (`powerRestored`), so the partner-power lines follow.
   */
  poweredAtStart?: boolean;
}

/** One blade's board: its GPIO controller and I2C bus. */
export class RigBladeHardware {
  readonly gpio: SimGpioChip;
  readonly i2c: SimI2cBus;
  readonly gauge: SimMax17048;
  readonly fram: SimFram;
  /** The rig's handles on the blade's output lines (it writes them on the blade's behalf). */
  readonly outputs = new Map<number, GpioLine>();
  /** The rig's handles on the input lines (it watches them to forward edges). */
  readonly inputs = new Map<number, GpioLine>();
  /**
   * Input lines the blade asked edge events for, with the number of subscriptions: a blade may
   * hold several connections (its GPIO drivers, its fence), and one unsubscribing must not
   * silence another. Handlers only know the blade, not the connection, hence a count.
   */
  readonly watched = new Map<number, number>();
  /** What the outputs were last set to, for `rig status` and tests: line -> level. */
  readonly outputLog: Array<{ line: number; value: GpioValue }> = [];

  constructor(
    readonly blade: RigBladeId,
    timers: Timers,
  ) {
    this.gpio = new SimGpioChip({ timers }, `${rigGpioChip}-${blade}`, rigGpioLineCount);
    this.i2c = new SimI2cBus({ name: `rig-i2c-${blade}`, timers, maxTransferBytes: rigI2cTransferBytesMax });
    this.gauge = new SimMax17048({ ...rigBatteryGood });
    this.fram = new SimFram();
    this.i2c.attach(rigGauge.address, this.gauge);
    this.i2c.attach(rigFramAddress, this.fram);
    for (const [line, dir] of rigGpioDirections) {
      // The rig's handles work in physical levels; outputs start idle (an active-low one high).
      const handle = this.gpio.open(line, dir === 'out' ? { direction: dir, name: `${blade}:${line}`, initial: rigGpioIdleLevel(line) } : { direction: dir, name: `${blade}:${line}` });
      if (dir === 'out') {
        this.outputs.set(line, handle);
        this.gpio.onOutput(line, (value) => this.outputLog.push({ line, value }));
      } else this.inputs.set(line, handle);
    }
    this.gpio.onOutput(rigGpioLines.jumperOut, (level) => this.gpio.drive(rigGpioLines.jumperIn, level));
    this.gpio.drive(rigGpioLines.powerFail, rigGpioIdleLevel(rigGpioLines.powerFail));
  }

  /** Drives the power-fail input: asserted (the supply is failing) or idle. */
  setPowerFail(asserted: boolean): void {
    const idle = rigGpioIdleLevel(rigGpioLines.powerFail);
    this.gpio.drive(rigGpioLines.powerFail, asserted ? ((1 - idle) as GpioValue) : idle);
  }

  /** Whether a line is asserted (its logical level, whatever its polarity). */
  asserted(line: number): GpioValue {
    return rigGpioActiveLow.has(line) ? ((1 - this.level(line)) as GpioValue) : this.level(line);
  }

  level(line: number): GpioValue {
    return this.gpio.level(line);
  }
}

const other = (b: RigBladeId): RigBladeId => (b === 'a' ? 'b' : 'a');

function lineArg(args: Record<string, unknown>): number {
  const line = args['line'];
  if (typeof line !== 'number' || !rigGpioDirections.has(line)) {
    throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `the rig board has no GPIO line ${String(line)}`);
  }
  return line;
}

function hexArg(args: Record<string, unknown>, key: string): Uint8Array {
  const v = args[key];
  if (typeof v !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(v)) throw new InvalidArgumentError(I2cErrorCode.invalidArgument, `${key} must be lowercase hex bytes`);
  return Uint8Array.from(Buffer.from(v, 'hex'));
}

function num(args: Record<string, unknown>, key: string): number {
  const v = args[key];
  // The bus's own checks reject anything that is not an integer in range.
  return typeof v === 'number' ? v : Number.NaN;
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');

/** Both blades' boards, their control-channel ops, and the hardware faults. */
export class RigHardware {
  private readonly boards: Record<RigBladeId, RigBladeHardware>;
  private readonly timers: Timers;
  private readonly holdUpMs: number;
  /** Partners this blade's reset output powered off (so releasing it powers them on again). */
  private readonly heldInReset = new Set<RigBladeId>();
  private readonly pendingPowerFail = new Map<RigBladeId, { cancel(): void }>();
  /** Relay actions run one at a time, in the order the edges happened. */
  private relayChain: Promise<void> = Promise.resolve();
  /** Each blade's power as its relay has it. */
  private readonly powered: Record<RigBladeId, boolean>;
  /** A broken partner-power wire of the reading blade: stuck at good (true) or lost (false). */
  private readonly senseStuck = new Map<RigBladeId, boolean>();

  constructor(
    private readonly server: RigControlServer,
    private readonly opts: RigHardwareOptions,
  ) {
    this.timers = opts.timers ?? realTimers;
    this.holdUpMs = opts.powerFailHoldUpMs ?? rigPowerFailHoldUpMs;
    this.boards = { a: new RigBladeHardware('a', this.timers), b: new RigBladeHardware('b', this.timers) };
    const on = opts.poweredAtStart ?? true;
    this.powered = { a: on, b: on };
    this.drivePartnerPower('a');
    this.drivePartnerPower('b');
    for (const blade of ['a', 'b'] as const) {
      const hw = this.boards[blade];
      for (const [line, input] of hw.inputs) {
        input.watch('both', (value) => {
          if (hw.watched.has(line)) server.emitTo(blade, 'gpio', { line, value });
        });
      }
      const partner: RigBladeId = blade === 'a' ? 'b' : 'a';
      hw.gpio.onOutput(rigGpioLines.partnerReset, () => this.onPartnerReset(partner, hw.asserted(rigGpioLines.partnerReset)));
    }
    this.register(server);
  }

  board(blade: RigBladeId): RigBladeHardware {
    return this.boards[blade];
  }

  // ---- faults ----

  /**
   * The supply of `blade` is failing: its power-fail input rises now and the relay cuts its
   * power after the hold-up time. Resolves once the power is off.
   */
  powerFail(blade: RigBladeId): Promise<void> {
    this.pendingPowerFail.get(blade)?.cancel();
    this.boards[blade].setPowerFail(true);
    return new Promise<void>((resolve, reject) => {
      const h = this.timers.after(this.holdUpMs, () => {
        this.pendingPowerFail.delete(blade);
        this.opts.power.cut(blade).then(resolve, reject);
      });
      this.pendingPowerFail.set(blade, {
        cancel: () => {
          h.cancel();
          resolve();
        },
      });
    });
  }

  /** The supply is back: a power failure still in its hold-up time is called off; a blade it cut is powered on. */
  async healPowerFail(blade: RigBladeId): Promise<void> {
    const pending = this.pendingPowerFail.get(blade);
    this.pendingPowerFail.delete(blade);
    if (pending !== undefined) {
      pending.cancel();
      this.boards[blade].setPowerFail(false);
      return;
    }
    await this.opts.power.restore(blade);
  }

  /** A failed battery: the gauge reports no cell, 0 V and 0 % (and raises its low alert). */
  setBattery(blade: RigBladeId, state: 'good' | 'failed'): void {
    const g = this.boards[blade].gauge;
    if (state === 'failed') {
      g.setPresent(false);
      g.setVoltage(0);
      g.setStateOfCharge(0);
    } else {
      g.setPresent(true);
      g.setVoltage(rigBatteryGood.voltageV);
      g.setStateOfCharge(rigBatteryGood.stateOfChargePercent);
    }
  }

  /**
   * The blade lost power: its outputs float to inactive (LEDs off, and a partner it held in
   * reset is released and powers on), and its edge subscriptions end with its connection.
   */
  powerLost(blade: RigBladeId): void {
    // The partner's power-good input drops with the rail, before anything else happens.
    this.powered[blade] = false;
    this.drivePartnerPower(other(blade));
    const hw = this.boards[blade];
    hw.watched.clear();
    for (const [line, out] of hw.outputs) void out.write(rigGpioIdleLevel(line)).catch(() => undefined);
  }

  /** The blade has power again: the power-fail input is low (the supply is good). */
  powerRestored(blade: RigBladeId): void {
    this.pendingPowerFail.get(blade)?.cancel();
    this.pendingPowerFail.delete(blade);
    this.boards[blade].setPowerFail(false);
    this.powered[blade] = true;
    this.drivePartnerPower(other(blade));
  }

  /**
   * Breaks (`stuck` 'good' or 'lost') or mends (undefined) the partner-power wire that
   * `reader` reads: a lying line, which the HA layer must survive (the fence keeps it safe).
   */
  setSenseWire(reader: RigBladeId, stuck: 'good' | 'lost' | undefined): void {
    if (stuck === undefined) this.senseStuck.delete(reader);
    else this.senseStuck.set(reader, stuck === 'good');
    this.drivePartnerPower(reader);
  }

  /** What `reader`'s partner-power wire is stuck at (undefined: intact). */
  senseWire(reader: RigBladeId): 'good' | 'lost' | undefined {
    const s = this.senseStuck.get(reader);
    return s === undefined ? undefined : s ? 'good' : 'lost';
  }

  private drivePartnerPower(reader: RigBladeId): void {
    const good = this.senseStuck.get(reader) ?? this.powered[other(reader)];
    this.boards[reader].gpio.drive(rigGpioLines.partnerPower, good ? 1 : 0);
  }

  /** Waits until the relay actions started by GPIO edges so far have finished (tests, shutdown). */
  settled(): Promise<void> {
    return this.relayChain;
  }

  close(): void {
    for (const p of this.pendingPowerFail.values()) p.cancel();
    this.pendingPowerFail.clear();
  }

  /** Whether each wired line is asserted (logical level, 1 = active), per blade (for `rig status`). */
  status(): Record<RigBladeId, Record<string, GpioValue>> {
    const one = (b: RigBladeId): Record<string, GpioValue> => Object.fromEntries(Object.entries(rigGpioLines).map(([k, line]) => [k, this.boards[b].asserted(line)]));
    return { a: one('a'), b: one('b') };
  }

  private onPartnerReset(partner: RigBladeId, asserted: GpioValue): void {
    this.relayChain = this.relayChain
      .then(async () => {
        if (asserted === 1) {
          // Reset holds a running board; it does not give power back to one that lost it
          // (a survivor's reset pulse after a power cut must leave the partner off).
          if (!this.powered[partner]) return;
          this.heldInReset.add(partner);
          await this.opts.power.cut(partner);
        } else if (this.heldInReset.delete(partner)) {
          await this.opts.power.restore(partner);
        }
      })
      .catch((e: unknown) => this.opts.onError?.(e));
  }

  // ---- the control channel ----

  private register(server: RigControlServer): void {
    const hw = (blade: RigBladeId): RigBladeHardware => this.boards[blade];
    server.handle('gpio.open', (blade, args) => {
      const line = lineArg(args);
      const want = args['direction'];
      const wired = rigGpioDirections.get(line);
      if (want !== wired) {
        throw new TwinbladeError(GpioErrorCode.direction, 'invalid-argument', `rig GPIO line ${line} is wired as an ${String(wired)}put, not ${String(want)}`);
      }
      return { direction: wired, level: hw(blade).level(line) };
    });
    server.handle('gpio.read', async (blade, args) => {
      const line = lineArg(args);
      const h = hw(blade).outputs.get(line) ?? hw(blade).inputs.get(line);
      return (h as GpioLine).read();
    });
    server.handle('gpio.write', async (blade, args) => {
      const line = lineArg(args);
      const value = args['value'];
      if (value !== 0 && value !== 1) throw new InvalidArgumentError(GpioErrorCode.invalidArgument, `GPIO value must be 0 or 1, got ${String(value)}`);
      const out = hw(blade).outputs.get(line);
      if (out === undefined) throw new TwinbladeError(GpioErrorCode.direction, 'invalid-argument', `rig GPIO line ${line} is an input`);
      await out.write(value);
      return null;
    });
    server.handle('gpio.watch', (blade, args) => {
      const line = lineArg(args);
      if (!hw(blade).inputs.has(line)) throw new TwinbladeError(GpioErrorCode.direction, 'invalid-argument', `rig GPIO line ${line} is an output`);
      hw(blade).watched.set(line, (hw(blade).watched.get(line) ?? 0) + 1);
      return { level: hw(blade).level(line) };
    });
    server.handle('gpio.unwatch', (blade, args) => {
      const line = lineArg(args);
      const n = (hw(blade).watched.get(line) ?? 0) - 1;
      if (n > 0) hw(blade).watched.set(line, n);
      else hw(blade).watched.delete(line);
      return null;
    });
    server.handle('i2c.readByte', (blade, args) => hw(blade).i2c.readByte(num(args, 'address'), num(args, 'register')));
    server.handle('i2c.writeByte', async (blade, args) => {
      await hw(blade).i2c.writeByte(num(args, 'address'), num(args, 'register'), num(args, 'value'));
      return null;
    });
    server.handle('i2c.readWord', (blade, args) => hw(blade).i2c.readWord(num(args, 'address'), num(args, 'register')));
    server.handle('i2c.writeWord', async (blade, args) => {
      await hw(blade).i2c.writeWord(num(args, 'address'), num(args, 'register'), num(args, 'value'));
      return null;
    });
    server.handle('i2c.i2cRead', async (blade, args) => hex(await hw(blade).i2c.i2cRead(num(args, 'address'), num(args, 'length'))));
    server.handle('i2c.i2cWrite', async (blade, args) => {
      await hw(blade).i2c.i2cWrite(num(args, 'address'), hexArg(args, 'data'));
      return null;
    });
    server.handle('i2c.writeThenRead', async (blade, args) =>
      hex(await hw(blade).i2c.writeThenRead(num(args, 'address'), hexArg(args, 'data'), num(args, 'length'))),
    );
  }
}
