// Time as an injected port: every component that needs "now" or a timer receives these
// interfaces, so the simulator can substitute virtual time (see hal/clock for drivers).

/** A monotonic clock plus a wall clock. */
export interface Clock {
  /** Monotonic milliseconds (fractional allowed) since an arbitrary origin; never goes back. */
  nowMs(): number;
  /** Wall-clock time in nanoseconds since the Unix epoch (for file timestamps). */
  wallNs(): bigint;
}

/** A one-shot timer that can be re-armed without being recreated (undici style). */
export interface TimerHandle {
  /** Cancels the timer; idempotent. */
  cancel(): void;
  /** Re-arms the timer for its original delay from now. */
  refresh(): void;
}

/** Timers bound to a Clock. Callbacks never run re-entrantly inside `after`. */
export interface Timers {
  /** Runs `fn` once, `delayMs` from now. Real timers are unref()'d: they never keep a process alive. */
  after(delayMs: number, fn: () => void): TimerHandle;
  /** Resolves after `delayMs`. */
  sleep(delayMs: number): Promise<void>;
}
