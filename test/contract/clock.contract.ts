// The Clock/Timers contract (core/clock.ts), run against every clock driver by clock.test.ts.
import { describe, expect, it } from 'vitest';
import type { Clock, Timers } from '../../firmware/ts/core/clock.ts';

export interface ClockUnderTest {
  clock: Clock;
  timers: Timers;
  /** Lets at least `ms` of this clock's time pass and due callbacks run. */
  advance(ms: number): Promise<void>;
}

export function clockContract(driver: string, make: () => ClockUnderTest): void {
  describe(`Clock contract: ${driver}`, () => {
    it('nowMs never goes back, and wallNs is near the Unix epoch time in nanoseconds', async () => {
      const { clock, advance } = make();
      const a = clock.nowMs();
      await advance(2);
      const b = clock.nowMs();
      expect(b).toBeGreaterThanOrEqual(a + 2 - 0.5);
      const wall = clock.wallNs();
      expect(typeof wall).toBe('bigint');
      // After 2020 and before 2100.
      expect(wall > 1_577_836_800_000_000_000n && wall < 4_102_444_800_000_000_000n).toBe(true);
    });

    it('after() never calls back inside after(), and calls back once the delay has passed', async () => {
      const { timers, advance } = make();
      let calls = 0;
      timers.after(0, () => calls++);
      expect(calls).toBe(0);
      timers.after(5, () => calls++);
      await advance(20);
      expect(calls).toBe(2);
      await advance(20);
      expect(calls).toBe(2);
    });

    it('cancel() prevents the callback and is idempotent', async () => {
      const { timers, advance } = make();
      let calls = 0;
      const h = timers.after(5, () => calls++);
      h.cancel();
      h.cancel();
      await advance(20);
      expect(calls).toBe(0);
    });

    it('refresh() re-arms a fired or pending timer for its original delay', async () => {
      const { timers, advance } = make();
      let calls = 0;
      const h = timers.after(5, () => calls++);
      await advance(20);
      expect(calls).toBe(1);
      h.refresh();
      await advance(20);
      expect(calls).toBe(2);
      h.refresh();
      h.refresh();
      await advance(20);
      expect(calls).toBe(3);
    });

    it('sleep() resolves after its delay', async () => {
      const { timers, advance } = make();
      let done = false;
      void timers.sleep(5).then(() => (done = true));
      await advance(20);
      expect(done).toBe(true);
    });
  });
}
