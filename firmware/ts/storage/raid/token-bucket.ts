// A token bucket on the injected clock and timers: bounds the average rate of background
// work (rebuild, scrub) so that it leaves disk bandwidth to the clients.

import type { Clock, Timers } from '../../core/clock.ts';
import { InvalidArgumentError } from '../../core/errors.ts';
import { RaidErrorCode } from './errors.ts';

export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  /**
   * @param rateBytesPerSec average rate; Infinity disables the limit.
   * @param burstBytes the most that may be taken at once without waiting.
   */
  constructor(
    private readonly clock: Clock,
    private readonly timers: Timers,
    readonly rateBytesPerSec: number,
    readonly burstBytes: number,
  ) {
    if (!(rateBytesPerSec > 0)) throw new InvalidArgumentError(RaidErrorCode.badConfig, 'token bucket: rate must be positive');
    if (!(burstBytes >= 0)) throw new InvalidArgumentError(RaidErrorCode.badConfig, 'token bucket: burst must be non-negative');
    // Start empty: a rebuild that starts must not begin with a burst on top of the client load.
    this.tokens = 0;
    this.lastMs = clock.nowMs();
  }

  /**
   * Takes `bytes` tokens, waiting until the bucket holds them. A take larger than the bucket
   * waits for a full bucket and leaves it in debt, which later takes wait off. So over any
   * interval of T seconds at most `burstBytes + rate * T` bytes are taken.
   */
  async take(bytes: number): Promise<void> {
    if (this.rateBytesPerSec === Infinity) return;
    this.refill();
    const need = Math.min(bytes, this.burstBytes);
    while (this.tokens < need) {
      // At least a microsecond: a wait shorter than the clock's resolution would not advance it.
      await this.timers.sleep(Math.max(0.001, ((need - this.tokens) / this.rateBytesPerSec) * 1000));
      this.refill();
    }
    this.tokens -= bytes;
  }

  private refill(): void {
    const now = this.clock.nowMs();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.lastMs) / 1000) * this.rateBytesPerSec);
    this.lastMs = now;
  }
}
