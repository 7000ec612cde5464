// The takeover benchmark's phase split (tools/bench/takeover-timeline.ts): milestones found in
// a survivor's pino log after the cut, in order, and nothing made up when one is missing.
import { describe, expect, it } from 'vitest';
import { takeoverTimeline } from '../../tools/bench/takeover-timeline.ts';

const line = (time: number, fields: Record<string, unknown>): string => JSON.stringify({ level: 30, time, blade: 'b', ...fields });

/** A survivor's log around a cut at t=1000: an earlier takeover, then the one measured. */
function log(): string {
  return [
    // A takeover before the cut must not be taken for this one.
    line(100, { alert: 'HA_PARTNER_DOWN', msg: 'partner silent on every path' }),
    line(150, { alert: 'HA_TAKEOVER_STARTED', msg: 'automatic takeover' }),
    'blade b serving /volb at nfs://127.0.0.1/volb',
    line(1200, { alert: 'HA_PATH_DOWN', msg: 'path serial (interconnect) down' }),
    line(1700, { alert: 'HA_PARTNER_DOWN', msg: 'partner silent on every path' }),
    line(1900, { alert: 'HA_TAKEOVER_STARTED', msg: 'automatic takeover' }),
    line(2200, { ha: 'fence-start', op: 'preempt', set: 0, msg: 'ha timeline' }),
    line(2203, { ha: 'fence-done', op: 'preempt', set: 0, ok: true, ms: 3, msg: 'ha timeline' }),
    line(2204, { ha: 'reset-start', pulseMs: 50, msg: 'ha timeline' }),
    line(2260, { ha: 'replay-start', set: 0, msg: 'ha timeline' }),
    line(2275, { set: 0, ms: 15, msg: 'partner set opened (disks, RAID, file system)' }),
    line(2400, { ha: 'replay-done', set: 0, ok: true, ms: 140, msg: 'ha timeline' }),
    line(2401, { ha: 'serve-start', set: 0, on: true, msg: 'ha timeline' }),
    line(2403, { ha: 'serve-done', set: 0, on: true, ok: true, ms: 2, msg: 'ha timeline' }),
    '{"truncated line',
  ].join('\n');
}

describe('takeover timeline', () => {
  it('splits cut -> first reply into the phases between the survivor\'s milestones', () => {
    const tl = takeoverTimeline(log(), 1000, 2450);
    expect(tl).toEqual({ detect: 700, tieBreak: 200, grace: 300, fence: 3, reset: 57, open: 15, replay: 125, serve: 3, firstReply: 47 });
    expect(Object.values(tl).reduce((a, b) => a + b, 0)).toBe(2450 - 1000);
  });

  it('HA-5 a partner-power loss is the detection milestone too (no tie-break then)', () => {
    const text = log()
      .replaceAll('"alert":"HA_PARTNER_DOWN","msg":"partner silent on every path"}', '"alert":"HA_PARTNER_POWER_LOST","msg":"partner power lost"}')
      .split('\n')
      .map((l) => l.replace('"time":1900,', '"time":1700,'))
      .join('\n');
    expect(text).not.toContain('HA_PARTNER_DOWN');
    expect(takeoverTimeline(text, 1000, 2450)).toMatchObject({ detect: 700, tieBreak: 0, grace: 500 });
  });

  it('stops at the first missing milestone (the takeover did not get that far)', () => {
    const cut = log()
      .split('\n')
      .filter((l) => !l.includes('partner set opened'))
      .join('\n');
    expect(takeoverTimeline(cut, 1000, 2450)).toEqual({ detect: 700, tieBreak: 200, grace: 300, fence: 3, reset: 57 });
    expect(takeoverTimeline('', 1000, 2000)).toEqual({});
  });
});
