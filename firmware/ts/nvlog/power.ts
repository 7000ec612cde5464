// Battery and power-fail handling for the change log (NV-7, ST-5): polls the battery gauge
// over I2C and watches the power-fail GPIO input. A low or failed battery switches the log to
// write-through and raises an alert; a power-fail edge stops new changes, persists what is in
// flight and seals the log so the next boot knows it lost power with an intact log.
import type { TimerHandle, Timers } from '../core/clock.ts';
import type { GpioLine } from '../hal/gpio/gpio.ts';
import type { BatteryGauge } from '../hal/i2c/gauges.ts';
import { batteryLimits, classifyBattery } from './core/battery.ts';
import type { BatteryState } from './core/layout.ts';

export const PowerAlertCode = {
  batteryLow: 'ALERT_NVRAM_BATTERY_LOW',
  batteryFailed: 'ALERT_NVRAM_BATTERY_FAILED',
  batteryGood: 'ALERT_NVRAM_BATTERY_GOOD',
  powerFail: 'ALERT_POWER_FAIL',
  sealed: 'ALERT_NVRAM_SEALED',
} as const;

export interface PowerAlert {
  code: (typeof PowerAlertCode)[keyof typeof PowerAlertCode];
  message: string;
  /** True while the log answers clients only after committing to disk. */
  writeThrough: boolean;
}

/** What the monitor needs from the change log (NvLog implements it). */
export interface PowerControlledLog {
  readonly battery: BatteryState;
  readonly writeThrough: boolean;
  setBattery(state: BatteryState): Promise<void>;
  powerFail(): Promise<void>;
}

export interface PowerMonitorOptions {
  log: PowerControlledLog;
  timers: Timers;
  gauge?: BatteryGauge;
  /** Logical 1 = input power is failing (the driver handles active-low wiring). */
  powerFailLine?: GpioLine;
  onAlert?: (a: PowerAlert) => void;
  limits?: Partial<typeof batteryLimits>;
}

export class PowerMonitor {
  private readonly limits: { batteryLowPercent: number; gaugeReadFailuresMax: number; batteryPollIntervalMs: number };
  private failures = 0;
  private timer: TimerHandle | undefined;
  private unwatch: (() => void) | undefined;
  private powerFailing = false;
  private polling: Promise<BatteryState> | undefined;

  constructor(private readonly opts: PowerMonitorOptions) {
    this.limits = { ...batteryLimits, ...opts.limits };
  }

  /** Reads the battery once, starts polling, and watches the power-fail line. */
  async start(): Promise<void> {
    if (this.opts.powerFailLine !== undefined) {
      this.unwatch = this.opts.powerFailLine.watch('rising', (v) => {
        if (v === 1) void this.onPowerFail();
      });
      // A supply already failing at boot is handled at once.
      if ((await this.opts.powerFailLine.read()) === 1) await this.onPowerFail();
    }
    if (this.opts.gauge !== undefined) {
      await this.poll();
      this.timer = this.opts.timers.after(this.limits.batteryPollIntervalMs, () => {
        void this.poll().finally(() => this.timer?.refresh());
      });
    }
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.unwatch?.();
    this.unwatch = undefined;
  }

  /** One gauge reading applied to the log; returns the resulting battery state. */
  poll(): Promise<BatteryState> {
    this.polling ??= this.pollOnce().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async pollOnce(): Promise<BatteryState> {
    const gauge = this.opts.gauge;
    if (gauge === undefined) return this.opts.log.battery;
    let verdict;
    try {
      const r = await gauge.read();
      this.failures = 0;
      verdict = classifyBattery(r, 0, this.limits);
    } catch {
      this.failures++;
      verdict = classifyBattery(undefined, this.failures, this.limits);
    }
    if (verdict === undefined || verdict.state === this.opts.log.battery) return this.opts.log.battery;
    await this.opts.log.setBattery(verdict.state);
    const code = verdict.state === 'good' ? PowerAlertCode.batteryGood : verdict.state === 'low' ? PowerAlertCode.batteryLow : PowerAlertCode.batteryFailed;
    this.alert(code, `NVRAM battery ${verdict.state}: ${verdict.reason}${this.opts.log.writeThrough ? '; write-through: changes are committed to disk before clients are answered' : ''}`);
    return verdict.state;
  }

  private async onPowerFail(): Promise<void> {
    if (this.powerFailing) return;
    this.powerFailing = true;
    this.alert(PowerAlertCode.powerFail, 'input power failing: no new changes accepted, persisting what is in flight');
    await this.opts.log.powerFail();
    this.alert(PowerAlertCode.sealed, 'change log sealed: the next boot will find an intact log');
  }

  private alert(code: PowerAlert['code'], message: string): void {
    this.opts.onAlert?.({ code, message, writeThrough: this.opts.log.writeThrough });
  }
}
