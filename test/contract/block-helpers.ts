// Test helpers shared by the block, NVRAM and serial suites: a directory where O_DIRECT works,
// and hand-driven timers so that simulated drivers run deterministically inside a test.
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TimerHandle, Timers } from '../../firmware/ts/core/clock.ts';
import { directIoSupported } from '../../firmware/ts/hal/block/linux/linux-block-device.ts';

const repoTmp = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'tmp');

/**
 * A directory for temporary disk images that supports O_DIRECT: os.tmpdir() when it does
 * (ext4, xfs, tmpfs on Linux 6.6+), else the repository's gitignored tmp/ on the real disk.
 */
export function directIoTempDir(): string {
  const sys = tmpdir();
  if (directIoSupported(sys)) return sys;
  mkdirSync(repoTmp, { recursive: true });
  if (directIoSupported(repoTmp)) return repoTmp;
  throw new Error(`no directory supporting O_DIRECT (tried ${sys} and ${repoTmp})`);
}

/**
 * A scratch directory in `directIoTempDir()` for the test file that calls this (made before
 * its tests, removed after): `dir()` is its path, `makeFile` a sparse file of `size` bytes in it.
 */
export function directIoScratch(prefix: string): { dir: () => string; makeFile: (name: string, size: number) => string } {
  let dir: string | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(directIoTempDir(), prefix));
  });
  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  const at = (): string => {
    if (dir === undefined) throw new Error('directIoScratch: used outside the tests of its file');
    return dir;
  };
  return {
    dir: at,
    makeFile(name, size) {
      const path = join(at(), name);
      const fd = openSync(path, 'w');
      ftruncateSync(fd, size);
      closeSync(fd);
      return path;
    },
  };
}

interface ManualEvent {
  atMs: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * Timers that only fire when the test says so. `run()` fires everything due, in time order
 * (FIFO for equal times), letting promise callbacks settle between events.
 */
export class ManualTimers implements Timers {
  nowMs = 0;
  private seq = 0;
  private events: ManualEvent[] = [];

  after(delayMs: number, fn: () => void): TimerHandle {
    const ev: ManualEvent = { atMs: this.nowMs + Math.max(0, delayMs), seq: this.seq++, fn, cancelled: false };
    this.events.push(ev);
    return {
      cancel: () => {
        ev.cancelled = true;
      },
      refresh: () => {
        ev.atMs = this.nowMs + Math.max(0, delayMs);
        ev.seq = this.seq++;
      },
    };
  }

  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.after(delayMs, resolve));
  }

  get pendingCount(): number {
    return this.events.filter((e) => !e.cancelled).length;
  }

  /** Fires the next event; false when none is left. */
  step(): boolean {
    this.events = this.events.filter((e) => !e.cancelled);
    if (this.events.length === 0) return false;
    let best = 0;
    for (let i = 1; i < this.events.length; i++) {
      const e = this.events[i] as ManualEvent;
      const b = this.events[best] as ManualEvent;
      if (e.atMs < b.atMs || (e.atMs === b.atMs && e.seq < b.seq)) best = i;
    }
    const ev = this.events[best] as ManualEvent;
    this.events.splice(best, 1);
    this.nowMs = Math.max(this.nowMs, ev.atMs);
    ev.fn();
    return true;
  }

  /** Fires events (and lets promise chains react) until none is left or `untilMs` is reached. */
  async run(untilMs = Number.POSITIVE_INFINITY): Promise<void> {
    for (;;) {
      await flushMicrotasks();
      const next = this.events.filter((e) => !e.cancelled).reduce((m, e) => Math.min(m, e.atMs), Number.POSITIVE_INFINITY);
      if (next === Number.POSITIVE_INFINITY || next > untilMs) break;
      this.step();
    }
    if (untilMs !== Number.POSITIVE_INFINITY) this.nowMs = Math.max(this.nowMs, untilMs);
    await flushMicrotasks();
  }
}

/** Lets every queued promise callback run (a macrotask turn). */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Runs a promise to completion while driving manual timers. */
export async function drive<T>(timers: ManualTimers, p: Promise<T>): Promise<T> {
  let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  // The handlers are attached at once so that a rejection is never reported as unhandled
  // while the timers are still being driven.
  void p.then(
    (value) => {
      outcome = { ok: true, value };
    },
    (error: unknown) => {
      outcome = { ok: false, error };
    },
  );
  while (outcome === undefined) {
    await flushMicrotasks();
    if (outcome === undefined && !timers.step()) {
      await flushMicrotasks();
      if (outcome === undefined) throw new Error('drive: the promise is pending and no timer is left to fire');
    }
  }
  const o = outcome as { ok: true; value: T } | { ok: false; error: unknown };
  if (!o.ok) throw o.error;
  return o.value;
}
