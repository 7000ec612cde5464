// The partner-power sense line in HA terms (hardware-assisted takeover): how late a message
// sent before a power cut may still arrive, and the worst-case detection and takeover times
// of a power cut that the line reports. docs/timing-budget.md "Power cut with the sense line".
import { pathTimeoutMs, type HaTiming, type PathKind } from './timing.ts';

/**
 * How long after the line reported the partner's power lost a message may still arrive on a
 * path of `kind` without proving that the partner lives: a datagram or serial frame sent just
 * before the cut (well within one heartbeat interval), or the partner's last mailbox record,
 * which our next polls read (two polls, as a disk heartbeat needs two reads in a row, plus a
 * tick). Anything newer on the path means the partner still runs: the line lies.
 */
export function powerSenseSlackMs(t: HaTiming, kind: PathKind): number {
  return kind === 'mailbox' ? 2 * t.mailboxPollIntervalMs + t.tickIntervalMs : t.heartbeatIntervalMs;
}

/**
 * Worst-case time from a power cut that the sense line reports at once to the partner being
 * declared failed: the interconnect and network paths must time out (the mailboxes are not
 * waited for: a powered-off partner cannot write them), then the next tick decides.
 */
export function powerLossDetectionBoundMs(t: HaTiming): number {
  return pathTimeoutMs(t, 'interconnect') + t.tickIntervalMs;
}

/**
 * Worst-case time from such a power cut to serving the partner's disks, given the time the
 * disk commands take (`ioBoundMs`). No tie-break delay: only one blade can see its partner's
 * power lost.
 */
export function powerLossTakeoverBoundMs(t: HaTiming, ioBoundMs: number): number {
  return powerLossDetectionBoundMs(t) + t.takeoverGraceMs + t.resetPulseMs + 2 * t.tickIntervalMs + ioBoundMs;
}
