// The real clock and timers (process time). The virtual ones live in sim/.
import type { Clock, TimerHandle, Timers } from '../../core/clock.ts';

export class RealClock implements Clock {
  nowMs(): number {
    return performance.now();
  }
  wallNs(): bigint {
    return process.hrtime.bigint() - hrtimeOrigin + wallOriginNs;
  }
}

const hrtimeOrigin = process.hrtime.bigint();
const wallOriginNs = BigInt(Date.now()) * 1_000_000n;

export class RealTimers implements Timers {
  after(delayMs: number, fn: () => void): TimerHandle {
    const t = setTimeout(fn, Math.max(0, delayMs));
    t.unref();
    return {
      cancel: () => clearTimeout(t),
      refresh: () => {
        t.refresh();
      },
    };
  }
  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.max(0, delayMs)));
  }
}

export const realClock = new RealClock();
export const realTimers = new RealTimers();
