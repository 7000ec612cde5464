// The mirror boot race (NV-3, HA-8): a blade whose change log starts listening after the
// partner's greeting went out must still get its own log mirrored. The partner's reset (its
// answer to our greeting) restarts our resync when nothing else did — once per greeting.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { Timers } from '../../firmware/ts/core/clock.ts';
import { MirrorOrigin, type MirrorItem, type MirrorMessage } from '../../firmware/ts/nvlog/core/mirror.ts';
import type { BladeId } from '../../firmware/ts/nvlog/core/layout.ts';
import { NvLog } from '../../firmware/ts/nvlog/nvlog.ts';
import { TearingNvram } from '../../firmware/ts/nvlog/sim/tearing-nvram.ts';

const limits = { mirrorInFlightMax: 4, mirrorAckTimeoutMs: 1000, mirrorResyncRetryMs: 1000 };
const none = (): readonly MirrorItem[] => [];

describe('MirrorOrigin.partnerListening', () => {
  it('NV-3 restarts a resync the partner missed, once per greeting', () => {
    const o = new MirrorOrigin(0, limits);
    o.greeted();
    // The partner's greeting never reached us; its reset (answering ours) says it listens.
    o.partnerListening(1, none);
    const first = o.takeOutbox();
    expect(first.map((m) => m.kind)).toEqual(['reset']);
    expect(o.state).toBe('resyncing');
    // A second reset of the partner's (a retry of its stream) does not restart ours again.
    o.partnerListening(2, none);
    expect(o.takeOutbox()).toEqual([]);
    // A new greeting (new session) arms it again.
    o.greeted();
    o.partnerListening(3, none);
    expect(o.takeOutbox().map((m) => m.kind)).toEqual(['reset']);
  });

  it('NV-3 no extra resync when the partner greeted us after our greeting (the usual order)', () => {
    const o = new MirrorOrigin(0, limits);
    o.greeted();
    o.onMessage({ kind: 'hello', from: 1, bootGeneration: 1, halfBytes: 8192 }, 1, none);
    expect(o.takeOutbox().map((m) => m.kind)).toEqual(['reset']);
    o.partnerListening(2, none);
    expect(o.takeOutbox()).toEqual([]);
  });
});

describe('MirrorOrigin.partnerListening, any order of events', () => {
  it('NV-3 restarts at most once per greeting, and a restart it makes is a reset the partner will get', () => {
    const event = fc.constantFrom('greet', 'listening', 'hello', 'down', 'tick');
    fc.assert(
      fc.property(fc.array(event, { maxLength: 40 }), (events) => {
        const o = new MirrorOrigin(0, limits);
        let greetings = 0;
        let restartsByListening = 0;
        let now = 0;
        for (const e of events) {
          now += 10;
          if (e === 'greet') {
            o.greeted();
            greetings++;
          } else if (e === 'listening') {
            o.takeOutbox();
            o.partnerListening(now, none);
            const out = o.takeOutbox();
            restartsByListening += out.filter((m) => m.kind === 'reset').length;
            // A restart always resynchronises (it never leaves the mirror degraded).
            if (out.length > 0) expect(o.state).toBe('resyncing');
          } else if (e === 'hello') {
            o.onMessage({ kind: 'hello', from: 1, bootGeneration: 1, halfBytes: 8192 }, now, none);
          } else if (e === 'down') {
            o.partnerDown();
          } else {
            o.tick(now, none);
          }
        }
        // One restart before any greeting (a log that never greeted may have been missed too).
        expect(restartsByListening).toBeLessThanOrEqual(greetings + 1);
      }),
      { numRuns: 300 },
    );
  });
});

/** Two logs on an ordered in-memory channel; a message to a blade whose log does not listen is lost. */
class Wire {
  readonly logs: Partial<Record<BladeId, NvLog>> = {};
  readonly sent: Record<BladeId, MirrorMessage[]> = { 0: [], 1: [] };
  private queue: Promise<void> = Promise.resolve();

  transport(from: BladeId): { send(m: MirrorMessage): void } {
    const to: BladeId = from === 0 ? 1 : 0;
    return {
      send: (m) => {
        this.sent[from].push(m);
        this.queue = this.queue.then(() => this.logs[to]?.onPeerMessage(m));
      },
    };
  }

  async settle(): Promise<void> {
    for (let i = 0; i < 50; i++) {
      await this.queue;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

async function openLog(blade: BladeId, seed: number): Promise<NvLog> {
  const nv = new TearingNvram(8192 + 4 * 16384, new Prng(seed), (_l, fn) => queueMicrotask(fn));
  const timers: Timers = { after: () => ({ cancel: () => undefined, refresh: () => undefined }), sleep: () => Promise.resolve() };
  const opened = await NvLog.open(nv, { bladeId: blade, clock: { nowMs: () => 0, wallNs: () => 0n }, timers, cpSeq: 0 });
  return opened.log;
}

describe('late-binding change log', () => {
  it('NV-3 HA-8 the late blade\'s log is mirrored although the partner\'s greeting went out before it listened', async () => {
    const wire = new Wire();
    const a = await openLog(0, 1);
    const b = await openLog(1, 2);
    // a's log is bound and greets as the link session comes up; b is still opening its disks.
    wire.logs[0] = a;
    a.attachTransport(wire.transport(0));
    a.peerConnected();
    await wire.settle();
    expect(wire.sent[0].map((m) => m.kind)).toEqual(['hello']);
    // b's log binds later and greets; a answers with a reset of its stream, which tells b
    // that a listens: b restarts its own resync, which a's greeting (lost) never started.
    wire.logs[1] = b;
    b.attachTransport(wire.transport(1));
    b.peerConnected();
    await wire.settle();
    expect(a.mirrorState).toBe('synced');
    expect(b.mirrorState).toBe('synced');
    // One reset per direction: the answer does not bounce back and forth.
    expect(wire.sent[0].filter((m) => m.kind === 'reset')).toHaveLength(1);
    expect(wire.sent[1].filter((m) => m.kind === 'reset')).toHaveLength(1);
    // And both mirrors carry new entries.
    await a.appendChange(new Uint8Array([1]), new Uint8Array(16));
    await b.appendChange(new Uint8Array([2]), new Uint8Array(16));
    await wire.settle();
    expect(a.metrics().mirrorDoneSeq).toBe(1);
    expect(b.metrics().mirrorDoneSeq).toBe(1);
    a.close();
    b.close();
  });

  it('NV-3 both greet at once (the usual case): one resync per direction', async () => {
    const wire = new Wire();
    const a = await openLog(0, 3);
    const b = await openLog(1, 4);
    wire.logs[0] = a;
    wire.logs[1] = b;
    a.attachTransport(wire.transport(0));
    b.attachTransport(wire.transport(1));
    a.peerConnected();
    b.peerConnected();
    await wire.settle();
    expect(a.mirrorState).toBe('synced');
    expect(b.mirrorState).toBe('synced');
    expect(wire.sent[0].filter((m) => m.kind === 'reset')).toHaveLength(1);
    expect(wire.sent[1].filter((m) => m.kind === 'reset')).toHaveLength(1);
    a.close();
    b.close();
  });
});
