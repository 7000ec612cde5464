// The HA timing limits (named, with their defaults) and the worst-case detection and
// takeover times they imply. docs/timing-budget.md explains the numbers; tests and the
// simulator's liveness checker use the same functions, so the document cannot drift.

export type PathKind = 'interconnect' | 'network' | 'mailbox';

export interface HaTiming {
  /** How often the machine wants `tick`; detection times are late by up to one tick. */
  tickIntervalMs: number;
  /** Status send interval on the interconnect (serial) and network paths. */
  heartbeatIntervalMs: number;
  /** Missed heartbeats before an interconnect or network path is declared down (HA-5). */
  heartbeatMissCountMax: number;
  /** How often a blade writes its mailbox slot. */
  mailboxWriteIntervalMs: number;
  /** How often a blade reads the partner's mailbox slots (driver side). */
  mailboxPollIntervalMs: number;
  /** Missed mailbox writes before a mailbox path is declared down. */
  mailboxMissCountMax: number;
  /** Consecutive undecodable mailbox reads before the path is marked bad at once. */
  mailboxCorruptCountMax: number;
  /** Extra wait before blade `i` starts an automatic takeover: `i * tieBreakDelayMs` (tie-break). */
  tieBreakDelayMs: number;
  /** After announcing TAKEOVER, the time the partner gets to stop writing before it is fenced. */
  takeoverGraceMs: number;
  /** Length of the partner-reset pulse that makes sure the partner is passive. */
  resetPulseMs: number;
  /** Damping: automatic takeovers allowed within `takeoverWindowMs` before takeover is held off. */
  takeoverCountMax: number;
  takeoverWindowMs: number;
  /** Damping: minimum time in TAKEOVER before an automatic giveback. */
  givebackDelayMinMs: number;
  /** How long a recovering blade listens for its partner before deciding (step 253). */
  rebootListenMs: number;
}

export const defaultHaTiming: Readonly<HaTiming> = {
  tickIntervalMs: 25,
  heartbeatIntervalMs: 100,
  heartbeatMissCountMax: 5,
  // The mailbox-only decision is the conservative one (2 s): a loaded host has shown every
  // mailbox path of a live partner silent for ~2.5 s at once, while a power cut is caught
  // fast by the partner-power sense line (ha/core/power-sense.ts). docs/timing-budget.md.
  mailboxWriteIntervalMs: 250,
  mailboxPollIntervalMs: 250,
  mailboxMissCountMax: 8,
  mailboxCorruptCountMax: 3,
  // More than the detection skew between the blades (one mailbox poll plus a tick: 275 ms).
  tieBreakDelayMs: 300,
  // checkTiming: the grace must cover one mailbox write and one poll (250 + 250).
  takeoverGraceMs: 500,
  resetPulseMs: 50,
  takeoverCountMax: 3,
  takeoverWindowMs: 10 * 60_000,
  givebackDelayMinMs: 30_000,
  rebootListenMs: 1000,
};

/** Time without a fresh message after which a path of this kind is declared down. */
export function pathTimeoutMs(t: HaTiming, kind: PathKind): number {
  return kind === 'mailbox' ? t.mailboxWriteIntervalMs * t.mailboxMissCountMax : t.heartbeatIntervalMs * t.heartbeatMissCountMax;
}

/**
 * Worst-case time from the partner's death to this blade declaring it failed, when the
 * paths of `kinds` were working until then. A path is only seen to go quiet after its last
 * message arrives: for a mailbox that can be one poll after the partner's last write.
 * Declaring failure needs every path quiet, so the slowest path sets the time.
 */
export function detectionBoundMs(t: HaTiming, kinds: readonly PathKind[], flakyMailbox = false): number {
  let worst = 0;
  for (const k of kinds) {
    // A flaky mailbox disk (reads that fail their checksum now and then) can hide the
    // partner's last record for up to `mailboxCorruptCountMax - 1` further polls before the
    // path is marked bad: the path then goes quiet that much later.
    const lag = k === 'mailbox' ? t.mailboxPollIntervalMs * (flakyMailbox ? t.mailboxCorruptCountMax : 1) : 0;
    worst = Math.max(worst, lag + pathTimeoutMs(t, k));
  }
  return worst + t.tickIntervalMs;
}

/**
 * Worst-case time from the partner's death to this blade serving the partner's disks,
 * given the time the disk commands (fence, reset, log replay) take: `ioBoundMs`.
 * `flakyMailbox`: some mailbox disk returned corrupt reads around the time of death.
 */
export function takeoverBoundMs(t: HaTiming, kinds: readonly PathKind[], bladeIndex: 0 | 1, ioBoundMs: number, flakyMailbox = false): number {
  return detectionBoundMs(t, kinds, flakyMailbox) + bladeIndex * t.tieBreakDelayMs + t.takeoverGraceMs + t.resetPulseMs + 2 * t.tickIntervalMs + ioBoundMs;
}

/** Validates a timing set (the machine refuses inconsistent limits at construction). */
export function checkTiming(t: HaTiming): string | undefined {
  for (const [k, v] of Object.entries(t)) if (!(typeof v === 'number' && Number.isFinite(v) && v >= 0)) return `${k} must be a finite non-negative number`;
  if (t.heartbeatMissCountMax < 2 || t.mailboxMissCountMax < 2) return 'a path needs at least 2 missed intervals before it is declared down';
  if (t.tickIntervalMs <= 0 || t.heartbeatIntervalMs <= 0 || t.mailboxWriteIntervalMs <= 0) return 'intervals must be positive';
  // The partner must be able to see the TAKEOVER announcement on a mailbox and stop
  // before it is fenced: at least one write and one poll must fit into the grace time.
  if (t.takeoverGraceMs < t.mailboxWriteIntervalMs + t.mailboxPollIntervalMs) return 'takeoverGraceMs must cover one mailbox write and one poll';
  return undefined;
}
