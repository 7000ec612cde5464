// The multipath link: status broadcast on every path, reliable messages that fail over between
// paths and still arrive exactly once in order, peer restarts, per-path counters.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LinkSim, numberOf, payloadOf } from '../link/harness.ts';
import type { PipeProfile, Side } from '../link/harness.ts';
import { MultipathLink, reliablePayloadBytesMax } from '../../firmware/ts/link/core/multipath.ts';
import { testMac } from '../link/harness.ts';
import { FrameFlag, FrameType, encodeFrame } from '../../firmware/ts/link/core/frame.ts';

const serial: PipeProfile = { latencyMs: 1, jitterMs: 1, loss: 0.01, duplicate: 0, corrupt: 0.02, garbage: 0.02 };
const lan: PipeProfile = { latencyMs: 0.5, jitterMs: 3, loss: 0.05, duplicate: 0.05, corrupt: 0, garbage: 0 };

function numbers(side: Side): number[] {
  return side.messages.map((m) => numberOf(m.payload));
}
function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}
function activePaths(side: Side): number[] {
  return side.events.flatMap((e) => (e.type === 'activePath' ? [e.path] : []));
}

describe('link multipath', () => {
  it('HA-1 status messages go out on every path, and the receiver sees one copy per path', () => {
    const sim = new LinkSim({ seed: 21, paths: [{ kind: 'stream' }, { kind: 'datagram' }, { kind: 'datagram' }] });
    expect(sim.runUntil(() => [0, 1, 2].every((i) => sim.a.link.isPathUp(i) && sim.b.link.isPathUp(i)), 1000)).toBe(true);
    expect(sim.a.link.sendAll(1, new Uint8Array([42]))).toBe(3);
    sim.flush(sim.a);
    sim.run(50);
    expect(sim.b.datagrams.map((d) => d.path).sort()).toEqual([0, 1, 2]);
    expect(sim.b.datagrams.every((d) => d.type === 1 && d.payload[0] === 42)).toBe(true);
  });

  it('HA-1 status still arrives when all but one path is cut', () => {
    const sim = new LinkSim({ seed: 22, paths: [{ kind: 'stream' }, { kind: 'datagram' }] });
    expect(sim.runUntil(() => sim.a.link.isPathUp(0) && sim.a.link.isPathUp(1), 1000)).toBe(true);
    (sim.a.out[0] as { cut: boolean }).cut = true;
    sim.a.link.sendAll(1, new Uint8Array([1]));
    sim.flush(sim.a);
    sim.run(50);
    expect(sim.b.datagrams.map((d) => d.path)).toEqual([1]);
  });

  it('CF-4 reliable traffic fails over to the network when the serial link is cut, and back when it heals, exactly once in order', () => {
    const sim = new LinkSim({ seed: 23, paths: [{ kind: 'stream', profile: serial }, { kind: 'datagram', profile: lan }] });
    expect(sim.runUntil(() => sim.a.link.activePath === 0, 1000)).toBe(true);
    sim.a.events.length = 0;
    let n = 1;
    const pump = (count: number): void => {
      for (let i = 0; i < count; i++) sim.a.link.sendReliable(1, payloadOf(n++, 100));
      sim.flush(sim.a);
    };
    for (let t = 0; t < 20; t++) {
      pump(5);
      sim.run(10);
    }
    (sim.a.out[0] as { cut: boolean }).cut = true;
    (sim.b.out[0] as { cut: boolean }).cut = true;
    for (let t = 0; t < 150; t++) {
      pump(2);
      sim.run(10);
    }
    expect(sim.a.link.activePath).toBe(1);
    (sim.a.out[0] as { cut: boolean }).cut = false;
    (sim.b.out[0] as { cut: boolean }).cut = false;
    for (let t = 0; t < 100; t++) {
      pump(2);
      sim.run(10);
    }
    expect(sim.runUntil(() => sim.b.messages.length === n - 1, 30_000)).toBe(true);
    expect(numbers(sim.b)).toEqual(range(1, n - 1));
    expect(activePaths(sim.a)).toEqual([1, 0]);
    expect(sim.b.events.filter((e) => e.type === 'pathDown').map((e) => (e as { path: number }).path)).toEqual([0]);
  });

  it('CF-4 exactly once in order across random cuts and heals of two lossy paths (property over seeds)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
        const sim = new LinkSim({ seed, paths: [{ kind: 'stream', profile: serial }, { kind: 'datagram', profile: lan }] });
        const rng = sim.rng.fork();
        let n = 1;
        let m = 1000000;
        for (let t = 0; t < 300; t++) {
          if (sim.a.link.writable) sim.a.link.sendReliable(2, payloadOf(n++, 1 + rng.int(500)));
          if (rng.chance(0.3)) sim.b.link.sendReliable(3, payloadOf(m++, 20));
          sim.flush(sim.a);
          sim.flush(sim.b);
          if (rng.chance(0.02)) {
            const p = rng.int(2);
            const cut = !(sim.a.out[p] as { cut: boolean }).cut;
            // Keep at least one path whole most of the time; sometimes both go.
            (sim.a.out[p] as { cut: boolean }).cut = cut;
            (sim.b.out[p] as { cut: boolean }).cut = cut;
          }
          sim.run(1 + rng.int(20));
        }
        for (const s of [sim.a, sim.b]) for (const p of s.out) (p as { cut: boolean }).cut = false;
        const ok = sim.runUntil(() => sim.b.messages.length === n - 1 && sim.a.messages.length === m - 1000000, 60_000);
        expect(ok, `seed ${seed}`).toBe(true);
        expect(numbers(sim.b), `seed ${seed}`).toEqual(range(1, n - 1));
        expect(numbers(sim.a), `seed ${seed}`).toEqual(range(1000000, m - 1000000));
        expect(sim.b.messages.every((x) => x.channel === 2)).toBe(true);
      }),
      { numRuns: 10 },
    );
  });

  it('CF-4 fail-over in the middle of fragmented messages: each arrives whole, exactly once, in order', () => {
    const sim = new LinkSim({
      seed: 28,
      paths: [{ kind: 'stream', profile: serial, limits: { fragmentBytesMax: 64 } }, { kind: 'datagram', profile: lan, limits: { fragmentBytesMax: 300 } }],
    });
    expect(sim.runUntil(() => sim.a.link.activePath === 0, 2000)).toBe(true);
    const rng = sim.rng.fork();
    const sent: Uint8Array[] = [];
    for (let t = 0; t < 120; t++) {
      const m = rng.bytes(500 + rng.int(3000));
      sent.push(m);
      sim.a.link.sendReliable(1, m);
      sim.flush(sim.a);
      if (t === 40) for (const s of [sim.a, sim.b]) (s.out[0] as { cut: boolean }).cut = true;
      if (t === 90) for (const s of [sim.a, sim.b]) (s.out[0] as { cut: boolean }).cut = false;
      sim.run(10);
    }
    expect(sim.runUntil(() => sim.b.messages.length === sent.length, 60_000)).toBe(true);
    expect(sim.b.messages.map((m) => m.payload)).toEqual(sent);
  });

  it('holds reliable messages while no path is usable, then delivers them when one returns', () => {
    const sim = new LinkSim({ seed: 24, paths: [{ kind: 'stream' }, { kind: 'datagram' }] });
    expect(sim.runUntil(() => sim.a.link.activePath === 0, 1000)).toBe(true);
    for (const s of [sim.a, sim.b]) for (const p of s.out) p.cut = true;
    expect(sim.runUntil(() => sim.a.link.activePath === -1, 2000)).toBe(true);
    expect(sim.a.link.peerReachable).toBe(false);
    for (let i = 1; i <= 10; i++) sim.a.link.sendReliable(1, payloadOf(i));
    sim.flush(sim.a);
    sim.run(1000);
    expect(sim.b.messages).toEqual([]);
    for (const s of [sim.a, sim.b]) (s.out[1] as { cut: boolean }).cut = false;
    expect(sim.runUntil(() => sim.b.messages.length === 10, 5000)).toBe(true);
    expect(numbers(sim.b)).toEqual(range(1, 10));
  });

  it('a peer restart returns the unacknowledged reliable messages once and restarts numbering', () => {
    const sim = new LinkSim({ seed: 25, paths: [{ kind: 'stream' }, { kind: 'datagram' }] });
    for (let i = 1; i <= 5; i++) sim.a.link.sendReliable(1, payloadOf(i));
    sim.flush(sim.a);
    expect(sim.runUntil(() => sim.b.messages.length === 5, 2000)).toBe(true);
    sim.b.down = true;
    for (let i = 6; i <= 8; i++) sim.a.link.sendReliable(1, payloadOf(i));
    sim.flush(sim.a);
    sim.run(800);
    sim.restart(sim.b);
    sim.b.messages.length = 0;
    expect(sim.runUntil(() => sim.a.events.some((e) => e.type === 'peerRestart'), 3000)).toBe(true);
    const restarts = sim.a.events.filter((e) => e.type === 'peerRestart');
    expect(restarts.length).toBe(1);
    const r = restarts[0];
    if (r?.type === 'peerRestart') {
      expect(r.previousGeneration).toBe(3);
      expect(r.peerGeneration).toBe(4);
      expect(r.undelivered.map((m) => numberOf(m.payload))).toEqual([6, 7, 8]);
    }
    for (let i = 100; i < 110; i++) sim.a.link.sendReliable(1, payloadOf(i));
    sim.flush(sim.a);
    expect(sim.runUntil(() => sim.b.messages.length === 10 && sim.a.link.isPathUp(1), 5000)).toBe(true);
    expect(numbers(sim.b)).toEqual(range(100, 10));
  });

  it('a partner that lost its boot counter (lower generation) is refused as stale until HA tells the link to forget the old session', () => {
    const sim = new LinkSim({ seed: 30, paths: [{ kind: 'stream' }, { kind: 'datagram' }] });
    for (let i = 1; i <= 3; i++) sim.a.link.sendReliable(1, payloadOf(i));
    sim.flush(sim.a);
    expect(sim.runUntil(() => sim.b.messages.length === 3, 2000)).toBe(true);
    // B's NVRAM battery failed: it reboots with generation 1, below the 3 A knows.
    sim.restart(sim.b, 1);
    sim.b.messages.length = 0;
    sim.run(2000);
    expect(sim.a.link.peerGeneration).toBe(3);
    expect(sim.a.link.peerReachable).toBe(false);
    expect(sim.a.link.stats().paths[0]?.rejects['ERR_LINK_STALE_SESSION']).toBeGreaterThan(0);
    sim.a.link.sendReliable(1, payloadOf(50));
    // HA learns from the mailbox disks that B rebooted with generation 1.
    const undelivered = sim.a.link.forgetPeer();
    expect(undelivered.map((m) => numberOf(m.payload))).toEqual([50]);
    sim.flush(sim.a);
    expect(sim.runUntil(() => sim.a.link.peerGeneration === 1 && sim.a.link.peerReachable, 3000)).toBe(true);
    for (let i = 100; i < 105; i++) sim.a.link.sendReliable(1, payloadOf(i));
    sim.flush(sim.a);
    expect(sim.runUntil(() => sim.b.messages.length === 5, 3000)).toBe(true);
    expect(numbers(sim.b)).toEqual(range(100, 5));
  });

  it('back-pressure: sendReliable returns false at the high-water mark and drain follows', () => {
    const sim = new LinkSim({ seed: 26, paths: [{ kind: 'datagram' }] });
    const link = sim.a.link;
    expect(sim.runUntil(() => link.peerReachable, 1000)).toBe(true);
    let lastResult = true;
    let sent = 0;
    while (lastResult) {
      lastResult = link.sendReliable(1, payloadOf(sent++));
    }
    expect(sent).toBe(link.limits.reliableHighWaterMessages);
    sim.flush(sim.a);
    expect(sim.runUntil(() => sim.a.events.some((e) => e.type === 'drain'), 5000)).toBe(true);
    expect(sim.runUntil(() => sim.b.messages.length === sent, 5000)).toBe(true);
  });

  it('back-pressure by bytes: big messages reach reliableHighWaterBytes before the message count', () => {
    const sim = new LinkSim({ seed: 29, paths: [{ kind: 'datagram' }] });
    const link = sim.a.link;
    expect(sim.runUntil(() => link.peerReachable, 1000)).toBe(true);
    let n = 0;
    while (link.sendReliable(1, payloadOf(n++, 200_000))) {
      // keep sending until the byte mark says stop
    }
    expect(n).toBe(Math.ceil(link.limits.reliableHighWaterBytes / 200_000));
    expect(link.stats().reliableOutstandingBytes).toBe(n * 200_000);
    sim.flush(sim.a);
    expect(sim.runUntil(() => sim.b.messages.length === n, 60_000)).toBe(true);
    expect(link.stats().reliableOutstandingBytes).toBe(0);
    expect(link.writable).toBe(true);
  });

  it('counts per-path frames, bytes, retransmits and rejections by code', () => {
    const sim = new LinkSim({ seed: 27, paths: [{ kind: 'stream', profile: { ...serial, loss: 0.03, corrupt: 0.1, garbage: 0.1 } }, { kind: 'datagram', profile: lan }] });
    expect(sim.runUntil(() => sim.a.link.activePath === 0, 5000)).toBe(true);
    for (let i = 1; i <= 50; i++) sim.a.link.sendReliable(1, payloadOf(i, 300));
    sim.flush(sim.a);
    expect(sim.runUntil(() => sim.b.messages.length === 50, 20_000)).toBe(true);
    const st = sim.b.link.stats();
    expect(st.paths.map((p) => p.name)).toEqual(['p0', 'p1']);
    expect(st.paths[0]?.framesIn).toBeGreaterThan(0);
    expect(st.paths[0]?.bytesIn).toBeGreaterThan(0);
    expect(Object.values(st.paths[0]?.rejects ?? {}).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(sim.a.link.stats().paths[0]?.channel.retransmits).toBeGreaterThan(0);
    expect(st.reliableDelivered).toBe(50);
  });

  it('rejects bad arguments synchronously', () => {
    const link = new MultipathLink({ localGeneration: 1, role: 'a', mac: testMac, paths: [{ name: 's', kind: 'stream' }] });
    expect(() => link.sendReliable(300, new Uint8Array(1))).toThrow(/channel/);
    expect(() => link.sendReliable(1, new Uint8Array(reliablePayloadBytesMax + 1))).toThrow(/exceeds/);
    expect(() => link.receive(5, new Uint8Array(1), 0)).toThrow(/no path/);
    expect(() => new MultipathLink({ localGeneration: 1, role: 'a', mac: testMac, paths: [] })).toThrow(/at least one path/);
    expect(link.sendAll(1, new Uint8Array(1))).toBe(0);
    const withUdp = new MultipathLink({ localGeneration: 1, role: 'a', mac: testMac, paths: [{ name: 's', kind: 'stream' }, { name: 'u', kind: 'datagram' }] });
    expect(() => withUdp.sendAll(1, new Uint8Array(9000))).toThrow(/smallest fragmentBytesMax/);
  });
});

describe('link multipath under hostile input', () => {
  it('never throws on random bytes on any path, and counts what it refuses', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.uint8Array({ maxLength: 300 })), { maxLength: 30 }), (inputs) => {
        const link = new MultipathLink({ localGeneration: 3, role: 'b', mac: testMac, paths: [{ name: 's', kind: 'stream' }, { name: 'u', kind: 'datagram' }] });
        let t = 0;
        for (const [path, bytes] of inputs) {
          link.receive(path, bytes, (t += 3));
          link.tick(t);
          const r = link.ready();
          expect(r.messages).toEqual([]);
          expect(r.datagrams).toEqual([]);
        }
        const st = link.stats();
        const udpRejects = Object.values(st.paths[1]?.rejects ?? {}).reduce((a, b) => a + b, 0);
        const udpInputs = inputs.filter(([p]) => p === 1).length;
        expect(udpRejects).toBe(udpInputs);
      }),
      { numRuns: 200 },
    );
  });

  it('survives authenticated frames with arbitrary fields (a confused or buggy peer): no throw, no broken invariant', () => {
    const frameArb = fc.record({
      type: fc.constantFrom(FrameType.hello, FrameType.data, FrameType.ack, FrameType.datagram),
      flags: fc.constantFrom(0, FrameFlag.more, FrameFlag.fromB, FrameFlag.fromB | FrameFlag.more),
      channel: fc.integer({ min: 0, max: 255 }),
      srcGeneration: fc.constantFrom(0, 6, 7, 8, 0xffffffff),
      dstGeneration: fc.constantFrom(0, 2, 3, 4),
      seq: fc.oneof(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 0, max: 0xffffffff })),
      ack: fc.oneof(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 0, max: 0xffffffff })),
      payload: fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.constant(new Uint8Array([0, 0, 0, 1, 9]))),
    });
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 60 }), fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 60 }), (frames, sends) => {
        const link = new MultipathLink({ localGeneration: 3, role: 'a', mac: testMac, paths: [{ name: 's', kind: 'stream' }, { name: 'u', kind: 'datagram' }] });
        let t = 0;
        const delivered: Uint8Array[] = [];
        frames.forEach((f, i) => {
          const bytes = encodeFrame(f, testMac);
          link.receive(i % 2, bytes, (t += 7));
          for (let k = 0; k < (sends[i] ?? 0); k++) link.sendReliable(1, new Uint8Array([k]));
          if (i % 3 === 0) link.sendAll(1, new Uint8Array([i]));
          link.tick(t);
          delivered.push(...link.ready().messages.map((m) => m.payload));
        });
        expect(link.stats().reliableOutstanding).toBeLessThanOrEqual(link.limits.reliableMessagesMax);
        // A reliable message is delivered at most once per id within one peer generation.
        expect(delivered.length).toBeLessThanOrEqual(frames.length);
      }),
      { numRuns: 300 },
    );
  });
});
