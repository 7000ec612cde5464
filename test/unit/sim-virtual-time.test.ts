// Property tests of virtual time against a plain model: whatever mix of after / cancel /
// refresh / advance a caller makes, callbacks fire exactly when and in the order the model says.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { VirtualTime, EventQueue } from '../../firmware/ts/hal/clock/sim/virtual.ts';
import type { TimerHandle } from '../../firmware/ts/core/clock.ts';

type Op =
  | { kind: 'after'; delay: number }
  | { kind: 'cancel'; which: number }
  | { kind: 'refresh'; which: number }
  | { kind: 'advance'; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('after' as const), delay: fc.integer({ min: 0, max: 50 }) }),
  fc.record({ kind: fc.constant('cancel' as const), which: fc.nat(30) }),
  fc.record({ kind: fc.constant('refresh' as const), which: fc.nat(30) }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 40 }) }),
);

describe('VirtualTime (property)', () => {
  it('fires each timer at its due time, in (due time, arming order) order, respecting cancel and refresh', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const vt = new VirtualTime();
        const handles: TimerHandle[] = [];
        const fired: string[] = [];
        // Model: per timer, its due time (or undefined) and an arming sequence for tie order.
        const model: { delay: number; due: number | undefined; armSeq: number }[] = [];
        const expected: string[] = [];
        let now = 0;
        let armSeq = 0;
        const runModelUntil = (target: number): void => {
          while (true) {
            let best = -1;
            for (let i = 0; i < model.length; i++) {
              const m = model[i] as (typeof model)[number];
              if (m.due === undefined || m.due > target) continue;
              const b = model[best];
              if (b === undefined || (m.due as number) < (b.due as number) || (m.due === b.due && m.armSeq < b.armSeq)) best = i;
            }
            if (best < 0) break;
            const m = model[best] as (typeof model)[number];
            now = m.due as number;
            expected.push(`${best}@${now}`);
            m.due = undefined;
          }
          now = target;
        };
        for (const o of ops) {
          if (o.kind === 'after') {
            const id = handles.length;
            handles.push(vt.timers.after(o.delay, () => fired.push(`${id}@${vt.clock.nowMs()}`)));
            model.push({ delay: o.delay, due: now + o.delay, armSeq: armSeq++ });
          } else if (o.kind === 'cancel' || o.kind === 'refresh') {
            const h = handles[o.which];
            const m = model[o.which];
            if (h === undefined || m === undefined) continue;
            if (o.kind === 'cancel') {
              h.cancel();
              m.due = undefined;
            } else {
              h.refresh();
              m.due = now + m.delay;
              m.armSeq = armSeq++;
            }
          } else {
            vt.advanceBy(o.ms);
            runModelUntil(now + o.ms);
          }
        }
        expect(fired).toEqual(expected);
        expect(vt.clock.nowMs()).toBe(now);
      }),
      { numRuns: 300 },
    );
  });

  it('EventQueue pops in (time, tie, seq) order and skips cancelled events', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.integer({ min: 0, max: 20 }), tie: fc.integer({ min: 0, max: 3 }), cancel: fc.boolean() }), { maxLength: 80 }),
        (items) => {
          const q = new EventQueue();
          const evs = items.map((it, i) => ({ ...it, i, ev: q.push(it.at, it.tie, () => undefined) }));
          for (const e of evs) if (e.cancel) q.cancel(e.ev);
          const live = evs.filter((e) => !e.cancel);
          expect(q.size).toBe(live.length);
          const want = [...live].sort((a, b) => a.at - b.at || a.tie - b.tie || a.i - b.i).map((e) => e.i);
          const got: number[] = [];
          for (let ev = q.pop(); ev !== undefined; ev = q.pop()) got.push(evs.findIndex((e) => e.ev === ev));
          expect(got).toEqual(want);
          expect(q.size).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
