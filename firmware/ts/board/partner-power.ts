// Watches the board's partner-power sense input (the partner's power-good rail, or its BMC's
// signal; logical 1 = power good) and reports every change, for the HA layer's
// hardware-assisted takeover (docs/ha.md "Partner power sense").
import type { TimerHandle, Timers } from '../core/clock.ts';
import type { GpioLine, GpioValue } from '../hal/gpio/gpio.ts';

/**
 * Backstop poll of the line. Edges report a change at once; the poll catches one that was
 * missed (a driver that drops edges, a control channel that reconnected) within this time.
 */
export const partnerPowerPollIntervalMs = 100;

export interface PartnerPowerWatchOptions {
  line: GpioLine;
  timers: Timers;
  /** Called with the first reading and on every change after it (never twice with the same value in a row). */
  onChange(good: boolean): void;
  /** A read of the line failed (the last reading stands). */
  onError?(e: unknown): void;
  pollIntervalMs?: number;
}

export class PartnerPowerWatch {
  private last: boolean | undefined;
  private timer: TimerHandle | undefined;
  private unwatch: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly o: PartnerPowerWatchOptions) {}

  /** What the line said last (undefined: not read yet). */
  get good(): boolean | undefined {
    return this.last;
  }

  /** Subscribes to edges, reads the line once and starts the backstop poll. */
  async start(): Promise<void> {
    this.unwatch = this.o.line.watch('both', (v) => this.report(v));
    await this.poll();
    this.timer = this.o.timers.after(this.o.pollIntervalMs ?? partnerPowerPollIntervalMs, () => {
      void this.poll().finally(() => {
        if (!this.stopped) this.timer?.refresh();
      });
    });
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.unwatch?.();
    this.unwatch = undefined;
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    try {
      this.report(await this.o.line.read());
    } catch (e) {
      if (!this.stopped) this.o.onError?.(e);
    }
  }

  private report(v: GpioValue): void {
    if (this.stopped) return;
    const good = v === 1;
    if (good === this.last) return;
    this.last = good;
    this.o.onChange(good);
  }
}
