// The battery decision of the change log (NV-7): a gauge reading (or a run of failed
// readings) becomes good / low / failed; anything but good means write-through.
import type { BatteryState } from './layout.ts';

export const batteryLimits = {
  /** Below this state of charge the battery may not carry the NVRAM through an outage. */
  batteryLowPercent: 20,
  /** Consecutive failed gauge reads after which the battery counts as failed. */
  gaugeReadFailuresMax: 3,
  batteryPollIntervalMs: 1000,
} as const;

export interface GaugeSample {
  stateOfChargePercent: number;
  lowAlert: boolean;
  batteryPresent: boolean;
}

/** Classifies one reading; `undefined` means the read failed (`failures` in a row so far). */
export function classifyBattery(sample: GaugeSample | undefined, failures: number, limits: { batteryLowPercent: number; gaugeReadFailuresMax: number } = batteryLimits): { state: BatteryState; reason: string } | undefined {
  if (sample === undefined) {
    // One missed read is noise on a shared bus; several mean nobody can vouch for the battery.
    return failures >= limits.gaugeReadFailuresMax ? { state: 'failed', reason: `battery gauge unreadable ${failures} times in a row` } : undefined;
  }
  if (!sample.batteryPresent) return { state: 'failed', reason: 'no battery connected' };
  if (sample.lowAlert || sample.stateOfChargePercent < limits.batteryLowPercent) return { state: 'low', reason: `battery at ${sample.stateOfChargePercent.toFixed(1)}%` };
  return { state: 'good', reason: `battery at ${sample.stateOfChargePercent.toFixed(1)}%` };
}
