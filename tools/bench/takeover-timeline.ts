// The takeover timeline from a survivor's structured log (pino JSON lines): the milestones
// the HA machine, the HA driver and the pair blade log during a takeover, and the phases
// between them. The takeover benchmark reports them; docs/timing-budget.md explains them.

/**
 * The takeover phases, in order, each ending at a milestone in the survivor's log (pino JSON:
 * HA alerts, `ha timeline` lines from the HA driver, the pair blade's own lines). When a
 * milestone is missing (the takeover did not get that far), it and every later phase are
 * left out.
 */
export const takeoverPhases = ['detect', 'tieBreak', 'grace', 'fence', 'reset', 'open', 'replay', 'serve', 'firstReply'] as const;
export type TakeoverPhase = (typeof takeoverPhases)[number];

interface LogLine {
  time: number;
  msg?: string;
  alert?: string;
  ha?: string;
  op?: string;
  on?: boolean;
  set?: number;
}

/**
 * Milestones of the first takeover after `cutMs` (wall clock) in a survivor's log, and the
 * phases between them: cut -> partner failed (detect: silent on every path, or power lost
 * and silent on the message paths) -> takeover announced
 * (tieBreak) -> preempt starts (grace) -> preempt done (fence) -> replay starts (reset pulse) ->
 * partner set opened: disks, RAID, file system (open) -> replay done (replay) -> serving:
 * addresses claimed, NFS listening (serve) -> the client's first reply (firstReply).
 */
export function takeoverTimeline(logText: string, cutMs: number, firstReplyMs: number): Partial<Record<TakeoverPhase, number>> {
  const lines: LogLine[] = [];
  for (const l of logText.split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      const j = JSON.parse(l) as LogLine;
      if (typeof j.time === 'number' && j.time >= cutMs) lines.push(j);
    } catch {
      // Not a log record (the daemon's own stdout lines).
    }
  }
  const at = (pred: (j: LogLine) => boolean, after: number | undefined): number | undefined => (after === undefined ? undefined : lines.find((j) => j.time >= after && pred(j))?.time);
  // Silent on every path (HA-5), or — with a partner-power sense line — power lost and silent
  // on every interconnect and network path (no mailbox wait, no tie-break).
  const down = at((j) => j.alert === 'HA_PARTNER_DOWN' || j.alert === 'HA_PARTNER_POWER_LOST', cutMs);
  const announced = at((j) => j.alert === 'HA_TAKEOVER_STARTED', down);
  const fenceStart = at((j) => j.ha === 'fence-start' && j.op === 'preempt', announced);
  const fenceDone = at((j) => j.ha === 'fence-done' && j.op === 'preempt', fenceStart);
  const replayStart = at((j) => j.ha === 'replay-start', fenceDone);
  const opened = at((j) => j.msg === 'partner set opened (disks, RAID, file system)', replayStart);
  const replayDone = at((j) => j.ha === 'replay-done', opened);
  const served = at((j) => j.ha === 'serve-done' && j.on === true, replayDone);
  const marks: Array<[TakeoverPhase, number | undefined]> = [
    ['detect', down],
    ['tieBreak', announced],
    ['grace', fenceStart],
    ['fence', fenceDone],
    ['reset', replayStart],
    ['open', opened],
    ['replay', replayDone],
    ['serve', served],
    ['firstReply', served === undefined ? undefined : Math.max(served, firstReplyMs)],
  ];
  const out: Partial<Record<TakeoverPhase, number>> = {};
  let prev = cutMs;
  for (const [phase, t] of marks) {
    if (t === undefined) break;
    out[phase] = t - prev;
    prev = t;
  }
  return out;
}
