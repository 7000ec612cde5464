// Shared fixtures of the mailbox-driver tests: a status message to write, and a way to run
// virtual time until a promise settles (the sim disk completes its I/O on timers).
import type { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';
import { HaPhase, StateIndicator, type StatusMessage } from '../../firmware/ts/ha/core/status.ts';

/** A NORMAL status message of `blade` with `sequence`; `over` replaces any field. */
export function statusMessage(blade: 0 | 1, sequence: number, over: Partial<StatusMessage> = {}): StatusMessage {
  return {
    protocolVersion: 1,
    systemId: 9,
    bladeIndex: blade,
    indicator: StateIndicator.normal,
    phase: HaPhase.normal,
    flags: 0,
    reasons: 0,
    generation: 1,
    sequence,
    peerGeneration: 0,
    peerSequence: 0,
    firmwareVersion: 1,
    claimedSets: 1 << blade,
    bootId: 3,
    ...over,
  };
}

/** Runs virtual time until `p` settles. */
export async function untilSettled<T>(vt: VirtualTime, p: Promise<T>): Promise<T> {
  let done = false;
  const q = p.finally(() => {
    done = true;
  });
  for (let i = 0; i < 10_000 && !done; i++) {
    await new Promise((r) => setImmediate(r));
    if (!done && !vt.runNext()) await new Promise((r) => setImmediate(r));
  }
  return q;
}
