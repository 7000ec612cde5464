// The reliable channel under a simulated lossy, duplicating, reordering, corrupting pipe,
// driven deterministically by one seed; plus the session handshake, liveness, back-pressure,
// bounded backoff and the authentication and replay defences.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LinkSim, numberOf, payloadOf, testMac } from '../link/harness.ts';
import type { PipeProfile, Side } from '../link/harness.ts';
import { ReliableChannel, LinkRejectCode, defaultChannelLimits } from '../../firmware/ts/link/core/reliable.ts';
import type { ChannelEvent } from '../../firmware/ts/link/core/reliable.ts';
import { FrameErrorCode, FrameFlag, FrameType, decodeFrame, encodeFrame } from '../../firmware/ts/link/core/frame.ts';
import type { Frame } from '../../firmware/ts/link/core/frame.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';

const lossyDatagrams: PipeProfile = { latencyMs: 2, jitterMs: 6, loss: 0.2, duplicate: 0.1, corrupt: 0, garbage: 0 };
const noisySerial: PipeProfile = { latencyMs: 1, jitterMs: 2, loss: 0.03, duplicate: 0, corrupt: 0.05, garbage: 0.05 };

function sendMany(sim: LinkSim, side: Side, from: number, count: number, size = 8, channel = 1): void {
  for (let i = from; i < from + count; i++) side.link.sendReliable(channel, payloadOf(i, size));
  sim.flush(side);
}

function numbers(side: Side): number[] {
  return side.messages.map((m) => numberOf(m.payload));
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

function rejects(side: Side, path = 0): Record<string, number> {
  return side.link.stats().paths[path]?.rejects ?? {};
}

describe('link reliable channel', () => {
  it('establishes a session, then both directions deliver exactly once in order', () => {
    const sim = new LinkSim({ seed: 1, paths: [{ kind: 'stream' }] });
    expect(sim.runUntil(() => sim.a.link.peerReachable && sim.b.link.peerReachable, 1000)).toBe(true);
    expect(sim.a.link.peerGeneration).toBe(3);
    expect(sim.b.link.peerGeneration).toBe(7);
    sendMany(sim, sim.a, 1, 100);
    sendMany(sim, sim.b, 1000, 50);
    expect(sim.runUntil(() => sim.b.messages.length === 100 && sim.a.messages.length === 50, 5000)).toBe(true);
    expect(numbers(sim.b)).toEqual(range(1, 100));
    expect(numbers(sim.a)).toEqual(range(1000, 50));
  });

  it('messages sent before the handshake wait and then flow', () => {
    const sim = new LinkSim({ seed: 2, paths: [{ kind: 'datagram' }] });
    sendMany(sim, sim.a, 1, 10);
    expect(sim.runUntil(() => sim.b.messages.length === 10, 2000)).toBe(true);
    expect(numbers(sim.b)).toEqual(range(1, 10));
  });

  it('delivers exactly once in order over a datagram path with loss, duplication and reordering (property over seeds)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
        const sim = new LinkSim({ seed, paths: [{ kind: 'datagram', profile: lossyDatagrams }] });
        sendMany(sim, sim.a, 1, 150, 1 + (seed % 300));
        sendMany(sim, sim.b, 5000, 40);
        const ok = sim.runUntil(() => sim.b.messages.length >= 150 && sim.a.messages.length >= 40, 60_000);
        expect(ok, `seed ${seed}`).toBe(true);
        expect(numbers(sim.b), `seed ${seed}`).toEqual(range(1, 150));
        expect(numbers(sim.a), `seed ${seed}`).toEqual(range(5000, 40));
        const st = sim.a.link.stats().paths[0];
        expect(st?.channel.retransmits).toBeGreaterThan(0);
      }),
      { numRuns: 12 },
    );
  });

  it('delivers exactly once in order over a noisy serial line (lost bytes, flipped bits, garbage), counting what it refused', () => {
    let refusedTotal = 0;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
        const sim = new LinkSim({ seed, paths: [{ kind: 'stream', profile: noisySerial }] });
        sendMany(sim, sim.a, 1, 120, 1 + (seed % 2000));
        const ok = sim.runUntil(() => sim.b.messages.length >= 120, 60_000);
        expect(ok, `seed ${seed}`).toBe(true);
        expect(numbers(sim.b), `seed ${seed}`).toEqual(range(1, 120));
        const r = rejects(sim.b);
        const frameRejects = [FrameErrorCode.magic, FrameErrorCode.headerCrc, FrameErrorCode.bodyCrc].reduce((n, c) => n + (r[c] ?? 0), 0);
        refusedTotal += frameRejects;
        // Noise never turns into a forged-looking frame: CRCs catch it before the MAC.
        expect(r[FrameErrorCode.mac] ?? 0).toBe(0);
      }),
      { numRuns: 8 },
    );
    expect(refusedTotal).toBeGreaterThan(0);
  });

  it('never has more than windowFramesMax data frames unacknowledged, and still delivers everything under loss', () => {
    const sim = new LinkSim({ seed: 3, paths: [{ kind: 'datagram', profile: { ...lossyDatagrams, loss: 0.3 }, limits: { windowFramesMax: 8 } }] });
    sendMany(sim, sim.a, 1, 60);
    // Track the highest data seq put on the wire against the cumulative ack the sender has seen.
    const pipeAB = sim.a.out[0];
    const pipeBA = sim.b.out[0];
    let maxAhead = 0;
    let highestAck = 0;
    let seenAB = 0;
    let seenBA = 0;
    sim.runUntil(() => {
      for (; seenBA < (pipeBA?.sent.length ?? 0); seenBA++) {
        const r = decodeFrame(pipeBA?.sent[seenBA] as Uint8Array, testMac);
        if (r.ok && r.frame.type !== FrameType.hello) highestAck = Math.max(highestAck, r.frame.ack);
      }
      for (; seenAB < (pipeAB?.sent.length ?? 0); seenAB++) {
        const r = decodeFrame(pipeAB?.sent[seenAB] as Uint8Array, testMac);
        if (r.ok && r.frame.type === FrameType.data) maxAhead = Math.max(maxAhead, r.frame.seq - highestAck);
      }
      return sim.b.messages.length === 60;
    }, 60_000, 1);
    expect(numbers(sim.b)).toEqual(range(1, 60));
    // Acks sent but not yet seen by A only make this bound looser, never tighter.
    expect(maxAhead).toBeLessThanOrEqual(8);
    expect(maxAhead).toBeGreaterThan(1);
    // Directly on the state machine: with no acks at all the channel stops at the window.
    const ch = new ReliableChannel({ localGeneration: 1, role: 'a', mac: testMac, limits: { windowFramesMax: 8 } });
    const peer = new ReliableChannel({ localGeneration: 2, role: 'b', mac: testMac });
    handshake(ch, peer);
    for (let i = 0; i < 20; i++) ch.send(1, payloadOf(i));
    const frames = ch.ready().frames.map((f) => decodeFrame(f, testMac)).filter((r) => r.ok && r.frame.type === FrameType.data);
    expect(frames.length).toBe(8);
    expect(ch.pendingMessages).toBe(20);
  });

  it('back-pressure: send() returns false at the high-water mark and a drain event follows', () => {
    const ch = new ReliableChannel({ localGeneration: 1, role: 'a', mac: testMac, limits: { windowFramesMax: 4, sendQueueHighWaterMessages: 10, sendQueueMessagesMax: 14 } });
    const peer = new ReliableChannel({ localGeneration: 2, role: 'b', mac: testMac });
    handshake(ch, peer);
    const results: boolean[] = [];
    for (let i = 0; i < 14; i++) results.push(ch.send(1, payloadOf(i)));
    // 4 go into the window only at ready(); until then all 14 are queued.
    expect(results.slice(0, 9)).toEqual(Array(9).fill(true));
    expect(results.slice(9)).toEqual(Array(5).fill(false));
    expect(ch.writable).toBe(false);
    let err: unknown;
    try {
      for (let i = 0; i < 5; i++) ch.send(1, payloadOf(99));
    } catch (e) {
      err = e;
    }
    expect(isTwinbladeError(err, 'ERR_LINK_QUEUE_FULL')).toBe(true);
    let now = 10;
    let drained = false;
    for (let round = 0; round < 20 && !drained; round++) {
      const r = ch.ready();
      drained = r.events.some((e) => e.type === 'drain');
      for (const f of r.frames) {
        const d = decodeFrame(f, testMac);
        if (d.ok) peer.receive(d.frame, now);
      }
      for (const f of peer.ready().frames) {
        const d = decodeFrame(f, testMac);
        if (d.ok) ch.receive(d.frame, now);
      }
      now += 1;
    }
    expect(drained).toBe(true);
    expect(ch.writable).toBe(true);
  });

  it('HA-5 liveness: a path is up while frames arrive, keepalives hold it up when idle, down after livenessTimeoutMs of silence', () => {
    const sim = new LinkSim({ seed: 4, paths: [{ kind: 'stream' }] });
    expect(sim.runUntil(() => sim.a.link.isPathUp(0), 1000)).toBe(true);
    sim.run(3000);
    expect(sim.a.link.isPathUp(0)).toBe(true);
    expect(sim.a.events.filter((e) => e.type === 'pathDown')).toEqual([]);
    (sim.b.out[0] as { cut: boolean }).cut = true;
    const cutAt = sim.now;
    expect(sim.runUntil(() => !sim.a.link.isPathUp(0), 2000, 1)).toBe(true);
    const downAfter = sim.now - cutAt;
    expect(downAfter).toBeGreaterThanOrEqual(defaultChannelLimits.livenessTimeoutMs - 5);
    expect(downAfter).toBeLessThanOrEqual(defaultChannelLimits.livenessTimeoutMs + 20);
    (sim.b.out[0] as { cut: boolean }).cut = false;
    expect(sim.runUntil(() => sim.a.link.isPathUp(0), 1000)).toBe(true);
    expect(sim.a.events.filter((e) => e.type === 'pathUp').length).toBe(2);
  });

  it('retransmits with bounded exponential backoff while the peer is unreachable, then recovers', () => {
    const sim = new LinkSim({ seed: 5, paths: [{ kind: 'datagram' }] });
    expect(sim.runUntil(() => sim.a.link.peerReachable, 1000)).toBe(true);
    (sim.a.out[0] as { cut: boolean }).cut = true;
    sendMany(sim, sim.a, 1, 1);
    const sendTimes: number[] = [];
    const pipe = sim.a.out[0];
    let seen = pipe?.sent.length ?? 0;
    for (let t = 0; t < 20_000; t += 5) {
      sim.run(5);
      for (; seen < (pipe?.sent.length ?? 0); seen++) {
        const r = decodeFrame(pipe?.sent[seen] as Uint8Array, testMac);
        if (r.ok && r.frame.type === FrameType.data) sendTimes.push(sim.now);
      }
    }
    const gaps = sendTimes.slice(1).map((t, i) => t - (sendTimes[i] as number));
    expect(gaps.length).toBeGreaterThan(5);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i] as number).toBeGreaterThanOrEqual((gaps[i - 1] as number) - 10);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(defaultChannelLimits.retransmitTimeoutMsMax + 10);
    expect(gaps.at(-1)).toBeGreaterThanOrEqual(defaultChannelLimits.retransmitTimeoutMsMax - 10);
    (sim.a.out[0] as { cut: boolean }).cut = false;
    expect(sim.runUntil(() => sim.b.messages.length === 1, 5000)).toBe(true);
  });

  it('probes a dead path with one frame per timeout instead of resending the whole window', () => {
    const sim = new LinkSim({ seed: 13, paths: [{ kind: 'datagram' }] });
    expect(sim.runUntil(() => sim.a.link.peerReachable, 1000)).toBe(true);
    for (const s of [sim.a, sim.b]) (s.out[0] as { cut: boolean }).cut = true;
    sendMany(sim, sim.a, 1, 20);
    expect(sim.runUntil(() => !sim.a.link.isPathUp(0), 2000)).toBe(true);
    const pipe = sim.a.out[0];
    const before = pipe?.sent.length ?? 0;
    sim.run(10_000);
    const dataAfterDown = (pipe?.sent.slice(before) ?? []).filter((f) => {
      const r = decodeFrame(f, testMac);
      return r.ok && r.frame.type === FrameType.data;
    }).length;
    // Timeouts back off to 2 s: about 5-7 probes in 10 s, one frame each.
    expect(dataAfterDown).toBeGreaterThan(2);
    expect(dataAfterDown).toBeLessThanOrEqual(10);
    for (const s of [sim.a, sim.b]) (s.out[0] as { cut: boolean }).cut = false;
    expect(sim.runUntil(() => sim.b.messages.length === 20, 10_000)).toBe(true);
    expect(numbers(sim.b)).toEqual(range(1, 20));
  });

  it('a peer restart (new generation) resets sequence state, reports undelivered messages, and the link carries on', () => {
    const sim = new LinkSim({ seed: 6, paths: [{ kind: 'stream' }] });
    sendMany(sim, sim.a, 1, 20);
    expect(sim.runUntil(() => sim.b.messages.length === 20, 2000)).toBe(true);
    // B crashes; A keeps sending into the void.
    sim.b.down = true;
    sendMany(sim, sim.a, 21, 5);
    sim.run(1000);
    sim.restart(sim.b);
    sim.b.messages.length = 0;
    expect(sim.runUntil(() => sim.a.events.some((e) => e.type === 'peerRestart'), 3000)).toBe(true);
    const restart = sim.a.events.find((e) => e.type === 'peerRestart');
    expect(restart).toMatchObject({ previousGeneration: 3, peerGeneration: 4 });
    if (restart?.type === 'peerRestart') expect(restart.undelivered.map((m) => numberOf(m.payload))).toEqual(range(21, 5));
    sendMany(sim, sim.a, 100, 10);
    expect(sim.runUntil(() => sim.b.messages.length === 10, 3000)).toBe(true);
    expect(numbers(sim.b)).toEqual(range(100, 10));
  });

  it('our own restart is seen by the peer as a new session, not wedged on old sequence numbers', () => {
    const sim = new LinkSim({ seed: 7, paths: [{ kind: 'datagram' }] });
    sendMany(sim, sim.a, 1, 30);
    expect(sim.runUntil(() => sim.b.messages.length === 30, 2000)).toBe(true);
    sim.restart(sim.a);
    sendMany(sim, sim.a, 500, 5);
    expect(sim.runUntil(() => sim.b.messages.length === 35, 3000)).toBe(true);
    expect(numbers(sim.b).slice(30)).toEqual(range(500, 5));
    expect(sim.b.events.some((e) => e.type === 'peerRestart')).toBe(true);
  });

  it('a frame signed with the wrong key is counted (ERR_FRAME_MAC) and dropped', () => {
    const sim = new LinkSim({ seed: 8, paths: [{ kind: 'stream' }, { kind: 'datagram' }] });
    expect(sim.runUntil(() => sim.b.link.peerReachable, 1000)).toBe(true);
    const stranger = hmacSha256Mac(new Uint8Array(32).fill(0xee));
    const forged = encodeFrame({ type: FrameType.datagram, flags: 0, channel: 1, srcGeneration: 7, dstGeneration: 3, seq: 999, ack: 0, payload: new Uint8Array([0xde, 0xad]) }, stranger);
    sim.a.out[0]?.inject(forged);
    sim.a.out[1]?.inject(forged);
    sim.run(50);
    expect(rejects(sim.b, 0)[FrameErrorCode.mac]).toBe(1);
    expect(rejects(sim.b, 1)[FrameErrorCode.mac]).toBe(1);
    expect(sim.b.datagrams).toEqual([]);
  });

  it('a replayed frame is dropped: an old datagram in-session, and old-session frames after a restart', () => {
    const sim = new LinkSim({ seed: 9, paths: [{ kind: 'datagram' }] });
    expect(sim.runUntil(() => sim.b.link.peerReachable && sim.a.link.peerReachable, 1000)).toBe(true);
    sim.a.link.sendAll(1, new Uint8Array([1]));
    sim.flush(sim.a);
    sendMany(sim, sim.a, 1, 3);
    sim.run(100);
    expect(sim.b.datagrams.length).toBe(1);
    expect(numbers(sim.b)).toEqual([1, 2, 3]);
    const recorded = [...(sim.a.out[0]?.sent ?? [])];
    for (const f of recorded) sim.a.out[0]?.inject(f);
    sim.run(100);
    expect(sim.b.datagrams.length).toBe(1);
    expect(numbers(sim.b)).toEqual([1, 2, 3]);
    expect(rejects(sim.b)[LinkRejectCode.replay]).toBe(1);
    // After B restarts, A's recorded frames name B's old generation: all refused as stale.
    sim.restart(sim.b);
    sim.b.messages.length = 0;
    sim.b.datagrams.length = 0;
    expect(sim.runUntil(() => sim.b.link.peerReachable, 2000)).toBe(true);
    const before = rejects(sim.b)[LinkRejectCode.staleSession] ?? 0;
    for (const f of recorded) sim.a.out[0]?.inject(f);
    sim.run(100);
    expect(sim.b.messages).toEqual([]);
    expect(sim.b.datagrams).toEqual([]);
    expect((rejects(sim.b)[LinkRejectCode.staleSession] ?? 0) - before).toBeGreaterThan(0);
    expect(sim.b.link.peerGeneration).toBe(7);
  });

  it('a replayed HELLO of an older peer generation cannot roll the session back', () => {
    const sim = new LinkSim({ seed: 10, paths: [{ kind: 'datagram' }] });
    expect(sim.runUntil(() => sim.b.link.peerReachable, 1000)).toBe(true);
    const oldHellos = (sim.a.out[0]?.sent ?? []).filter((f) => {
      const r = decodeFrame(f, testMac);
      return r.ok && r.frame.type === FrameType.hello;
    });
    expect(oldHellos.length).toBeGreaterThan(0);
    sim.restart(sim.a);
    expect(sim.runUntil(() => sim.b.link.peerGeneration === 8 && sim.b.link.peerReachable, 2000)).toBe(true);
    for (const f of oldHellos) sim.a.out[0]?.inject(f);
    sim.run(200);
    expect(sim.b.link.peerGeneration).toBe(8);
    expect(rejects(sim.b)[LinkRejectCode.staleSession]).toBeGreaterThan(0);
  });

  it('a frame reflected back at its sender is refused (ERR_LINK_REFLECTED)', () => {
    const sim = new LinkSim({ seed: 11, paths: [{ kind: 'datagram' }], generations: { a: 5, b: 5 } });
    expect(sim.runUntil(() => sim.a.link.peerReachable, 1000)).toBe(true);
    const before = sim.a.messages.length;
    sendMany(sim, sim.a, 1, 2);
    // Echo A's own frames back to A (same generations on both blades make this plausible).
    for (const f of sim.a.out[0]?.sent ?? []) sim.b.out[0]?.inject(f);
    sim.run(100);
    expect(sim.a.messages.length).toBe(before);
    expect(rejects(sim.a)[LinkRejectCode.reflected]).toBeGreaterThan(0);
  });

  it('splits messages longer than fragmentBytesMax into fragments and joins them, exactly once in order under loss (property over seeds)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
        const sim = new LinkSim({ seed, paths: [{ kind: 'datagram', profile: lossyDatagrams, limits: { fragmentBytesMax: 100, windowFramesMax: 16 } }] });
        const rng = sim.rng.fork();
        const sent: Uint8Array[] = [];
        for (let i = 0; i < 40; i++) {
          const m = rng.bytes(rng.int(1000));
          sent.push(m);
          sim.a.link.sendReliable(1 + (i % 3), m);
        }
        sim.flush(sim.a);
        expect(sim.runUntil(() => sim.b.messages.length >= 40, 60_000), `seed ${seed}`).toBe(true);
        expect(sim.b.messages.map((m) => m.payload), `seed ${seed}`).toEqual(sent);
        expect(sim.b.messages.map((m) => m.channel)).toEqual(sent.map((_, i) => 1 + (i % 3)));
        expect(sim.b.link.stats().paths[0]?.channel.messagesDelivered).toBe(40);
      }),
      { numRuns: 6 },
    );
  });

  it('a peer restart in the middle of a fragmented message reports that message once', () => {
    const ch = new ReliableChannel({ localGeneration: 1, role: 'a', mac: testMac, limits: { fragmentBytesMax: 10, windowFramesMax: 2 } });
    const peer = new ReliableChannel({ localGeneration: 2, role: 'b', mac: testMac });
    handshake(ch, peer);
    ch.send(1, new Uint8Array(35), 77);
    ch.send(1, new Uint8Array(5), 78);
    const first = ch.ready().frames.map((f) => decodeFrame(f, testMac)).filter((r) => r.ok && r.frame.type === FrameType.data);
    expect(first.length).toBe(2);
    const reborn = new ReliableChannel({ localGeneration: 3, role: 'b', mac: testMac });
    const events = handshake(ch, reborn);
    const restart = events.find((e) => e.type === 'peerRestart');
    expect(restart?.type === 'peerRestart' ? restart.undelivered.map((m) => m.tag) : []).toEqual([77, 78]);
  });

  it('refuses fragments that change channel mid-message (ERR_LINK_FRAGMENT) and carries on', () => {
    const rx = new ReliableChannel({ localGeneration: 2, role: 'b', mac: testMac });
    const tx = new ReliableChannel({ localGeneration: 1, role: 'a', mac: testMac });
    handshake(tx, rx);
    const data = (seq: number, channel: number, more: boolean, byte: number): Frame => ({
      type: FrameType.data, flags: more ? FrameFlag.more : 0, channel, srcGeneration: 1, dstGeneration: 2, seq, ack: 0, payload: new Uint8Array([byte]),
    });
    rx.receive(data(1, 1, true, 1), 5);
    rx.receive(data(2, 2, false, 2), 5);
    rx.receive(data(3, 3, true, 3), 5);
    rx.receive(data(4, 3, false, 4), 5);
    const r = rx.ready();
    expect(r.messages).toEqual([{ channel: 2, payload: new Uint8Array([2]) }, { channel: 3, payload: new Uint8Array([3, 4]) }]);
    expect(rx.stats.rejects[LinkRejectCode.fragment]).toBe(1);
  });

  it('rejects bad arguments synchronously', () => {
    expect(() => new ReliableChannel({ localGeneration: 0, role: 'a', mac: testMac })).toThrow(/localGeneration/);
    const ch = new ReliableChannel({ localGeneration: 1, role: 'a', mac: testMac });
    expect(() => ch.send(256, new Uint8Array(1))).toThrow(/channel/);
    expect(() => ch.sendDatagram(-1, new Uint8Array(1))).toThrow(/channel/);
    expect(ch.sendDatagram(1, new Uint8Array(1))).toBe(false);
  });

  it('sequence numbers wrap past 2^32 without wedging (delivery across the wrap under loss)', () => {
    const sim = new LinkSim({ seed: 12, paths: [{ kind: 'datagram', profile: lossyDatagrams }] });
    expect(sim.runUntil(() => sim.a.link.peerReachable && sim.b.link.peerReachable, 1000)).toBe(true);
    // White box: move both ends of the established session 16 frames short of the wrap (going
    // through 2^32 messages honestly would take hours).
    type Seqs = { nextSeq: number; expectedSeq: number };
    const chan = (side: Side): Seqs => (side.link as unknown as { paths: { channel: Seqs }[] }).paths[0]?.channel as Seqs;
    chan(sim.a).nextSeq = 0xfffffff0;
    chan(sim.b).expectedSeq = 0xfffffff0;
    sendMany(sim, sim.a, 1, 60);
    expect(sim.runUntil(() => sim.b.messages.length === 60, 30_000)).toBe(true);
    expect(numbers(sim.b)).toEqual(range(1, 60));
    expect(chan(sim.a).nextSeq).toBe(60 - 16);
  });
});

/** Exchanges frames until both sides are established; returns the events x reported meanwhile. */
function handshake(x: ReliableChannel, y: ReliableChannel): ChannelEvent[] {
  const events: ChannelEvent[] = [];
  for (let i = 0; i < 4; i++) {
    for (const [from, to] of [[x, y], [y, x]] as const) {
      const r = from.ready();
      if (from === x) events.push(...r.events);
      for (const f of r.frames) {
        const r = decodeFrame(f, testMac);
        if (r.ok) to.receive(r.frame, 1);
      }
    }
  }
  expect(x.established && y.established).toBe(true);
  return events;
}
