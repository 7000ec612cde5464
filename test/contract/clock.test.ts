// Runs the Clock contract against the virtual clock (alone and under the kernel) and the real clock.
import { describe, expect, it } from 'vitest';
import { clockContract } from './clock.contract.ts';
import { VirtualTime, VirtualClock } from '../../firmware/ts/hal/clock/sim/virtual.ts';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { RealClock, RealTimers } from '../../firmware/ts/hal/clock/real.ts';

clockContract('virtual (VirtualTime.advanceBy)', () => {
  const vt = new VirtualTime();
  return { clock: vt.clock, timers: vt.timers, advance: async (ms) => vt.advanceBy(ms) };
});

clockContract('virtual (Simulation kernel)', () => {
  const sim = new Simulation({ seed: 1 });
  return { clock: sim.clock, timers: sim.timers, advance: (ms) => sim.runUntil(sim.nowMs + ms) };
});

clockContract('real', () => {
  const clock = new RealClock();
  return { clock, timers: new RealTimers(), advance: (ms) => new Promise((r) => setTimeout(r, ms + 5)) };
});

describe('virtual clock specifics', () => {
  it('advanceBy fires due timers in time order, then first-scheduled first on ties', () => {
    const vt = new VirtualTime();
    const seen: string[] = [];
    vt.timers.after(10, () => seen.push('b'));
    vt.timers.after(5, () => seen.push('a'));
    vt.timers.after(10, () => seen.push('c'));
    vt.timers.after(11, () => seen.push('late'));
    vt.advanceBy(10);
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(vt.clock.nowMs()).toBe(10);
    expect(vt.nextEventMs()).toBe(11);
  });

  it('a timer scheduled by a callback at the current instant runs in the same advance', () => {
    const vt = new VirtualTime();
    const seen: number[] = [];
    vt.timers.after(1, () => vt.timers.after(0, () => seen.push(vt.clock.nowMs())));
    vt.advanceBy(1);
    expect(seen).toEqual([1]);
  });

  it('wallNs follows virtual time from a fixed origin and rejects NaN delays', () => {
    const c = new VirtualClock(1_000_000_000n);
    c.advanceTo(1.5);
    expect(c.wallNs()).toBe(1_001_500_000n);
    expect(() => c.advanceTo(1)).toThrow(/go back/);
    const vt = new VirtualTime();
    expect(() => vt.timers.after(Number.NaN, () => undefined)).toThrow(expect.objectContaining({ code: 'ERR_TIMER_INVALID_DELAY' }));
  });
});
