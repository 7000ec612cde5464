// Issue #7: a change log whose partner cannot be reached runs degraded at once (NV-2, HA-8).
// Two logs mirror over the real link endpoints (serial + network paths) under the simulation
// kernel's virtual time; when every path goes down (a partition, or the partner's power cut)
// appends complete on the local copy without waiting for an ack and without periodic resync
// stalls, and when a path comes back (or the partner reboots) both logs resynchronise.
// Latencies are measured in simulated time, never on the wall clock.
import { describe, expect, it } from 'vitest';
import { Simulation, type SimDomain } from '../../firmware/ts/sim/kernel.ts';
import { SimNetwork } from '../../firmware/ts/sim/network.ts';
import { MultipathEndpoint } from '../../firmware/ts/link/multipath.ts';
import { SimPathTransport } from '../../firmware/ts/link/sim/sim-transport.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';
import { LinkMirrorTransport } from '../../firmware/ts/nvlog/link-transport.ts';
import { NvLog } from '../../firmware/ts/nvlog/nvlog.ts';
import { EntryType } from '../../firmware/ts/nvlog/core/entry.ts';
import type { MirrorState } from '../../firmware/ts/nvlog/core/mirror.ts';
import { TearingNvram } from '../../firmware/ts/nvlog/sim/tearing-nvram.ts';
import type { BladeId } from '../../firmware/ts/nvlog/core/layout.ts';

const mac = hmacSha256Mac(new Uint8Array(32).fill(0x17));
/** pair.ts's ack timeout: the stall every resync retry into a dead link used to cost. */
const mirrorAckTimeoutMs = 5000;
const mirrorResyncRetryMs = 1000;
/** The log's mirror timer period (NvLog.attachTransport): "one tick". */
const logTickMs = mirrorAckTimeoutMs / 4;
/** Simulated NVRAM persist time. */
const persistMs = 0.05;

interface Blade {
  id: BladeId;
  domain: SimDomain;
  endpoint: MultipathEndpoint;
  log: NvLog;
  nvram: TearingNvram;
  /** Mirror state changes with their simulated time. */
  states: { atMs: number; state: MirrorState }[];
  /** When the endpoint last reported the partner unreachable. */
  unreachableAtMs: number | undefined;
}

interface World {
  sim: Simulation;
  serial: SimNetwork;
  net: SimNetwork;
  boot(id: BladeId, generation: number): Promise<Blade>;
}

function world(seed: number): World {
  const sim = new Simulation({ seed, buggify: false });
  const env = { timers: sim.timers, prng: sim.fork(), clock: sim.clock };
  const serial = new SimNetwork(env, { name: 'serial', defaultProfile: { fifo: true, latency: { minMs: 0.1, maxMs: 0.3 } } });
  const net = new SimNetwork(env, { name: 'net1', defaultProfile: { latency: { minMs: 0.05, maxMs: 1 } } });
  return {
    sim,
    serial,
    net,
    async boot(id, generation) {
      const name = id === 0 ? 'a' : 'b';
      const peer = id === 0 ? 'b' : 'a';
      const domain = sim.domain(`${name}${generation}`);
      const endpoint = new MultipathEndpoint({
        localGeneration: generation,
        role: name,
        mac,
        transports: [new SimPathTransport('serial', 'stream', serial.endpoint(name), peer), new SimPathTransport('net1', 'datagram', net.endpoint(name), peer)],
        clock: sim.clock,
        timers: domain.timers,
      });
      const nvram = new TearingNvram(8192 + 4 * 1024 * 1024, sim.fork(), (_l, fn) => void domain.timers.after(persistMs, fn));
      // Opening persists the header: the simulation runs while it does.
      const opened = await sim.run(() => NvLog.open(nvram, { bladeId: id, clock: sim.clock, timers: domain.timers, cpSeq: 0, limits: { mirrorAckTimeoutMs, mirrorResyncRetryMs } }));
      const b: Blade = { id, domain, endpoint, log: opened.log, nvram, states: [], unreachableAtMs: undefined };
      b.log.onMirrorState((s) => b.states.push({ atMs: sim.nowMs, state: s.state }));
      endpoint.on('pathDown', () => {
        if (!endpoint.peerReachable) b.unreachableAtMs ??= sim.nowMs;
      });
      new LinkMirrorTransport(endpoint).bind(b.log);
      return b;
    },
  };
}

const key = (blade: BladeId, i: number): Uint8Array => new TextEncoder().encode(`client-${blade}-${i}`);

/** Appends one change and resolves with its latency in simulated time. */
async function append(w: World, b: Blade, i: number): Promise<number> {
  const t0 = w.sim.nowMs;
  await b.log.appendChange(key(b.id, i), new Uint8Array(256).fill(i & 0xff));
  return w.sim.nowMs - t0;
}

/** Appends on each blade every `everyMs` for `forMs` of simulated time; returns the latencies. */
async function load(w: World, blades: readonly Blade[], forMs: number, everyMs: number, from: number): Promise<number[][]> {
  const lat: number[][] = blades.map(() => []);
  const pending: Promise<void>[] = [];
  const end = w.sim.nowMs + forMs;
  let i = from;
  while (w.sim.nowMs < end) {
    blades.forEach((b, k) => pending.push(append(w, b, i).then((ms) => void (lat[k] as number[]).push(ms))));
    i++;
    await w.sim.runUntil(w.sim.nowMs + everyMs);
  }
  let settled = false;
  void Promise.all(pending).then(() => (settled = true));
  await w.sim.runUntil(() => settled);
  return lat;
}

function changeSeqs(b: Blade): number[] {
  return b.log
    .recoverPartnerMirror()
    .records.filter((r) => r.type === EntryType.change)
    .map((r) => r.seq);
}

async function bringUp(w: World): Promise<[Blade, Blade]> {
  const a = await w.boot(0, 11);
  const b = await w.boot(1, 21);
  await w.sim.runUntil(() => a.log.mirrorState === 'synced' && b.log.mirrorState === 'synced');
  return [a, b];
}

async function shutdown(...blades: Blade[]): Promise<void> {
  for (const b of blades) {
    b.log.close();
    await b.endpoint.close();
  }
}

describe('a change log whose partner cannot be reached', () => {
  it('NV-2 HA-8 partition: both logs degrade the moment the link says unreachable, then acknowledge locally without any stall; after the heal both resynchronise', async () => {
    const w = world(5);
    const [a, b] = await bringUp(w);
    // Mirrored: every append waits for the partner's ack.
    const before = await load(w, [a, b], 200, 10, 0);
    expect(before.flat().every((ms) => ms > persistMs)).toBe(true);

    // Every path cut, while changes are in flight.
    const cutAtMs = w.sim.nowMs;
    w.serial.cut('a', 'b');
    w.net.cut('a', 'b');
    const inFlight = [append(w, a, 1000), append(w, b, 1000)];
    await w.sim.runUntil(() => a.log.mirrorState === 'degraded' && b.log.mirrorState === 'degraded');
    for (const x of [a, b]) {
      // Degraded at the instant the link reported the partner unreachable, not at the ack timeout.
      expect(x.unreachableAtMs).toBeDefined();
      expect(x.states.at(-1)?.atMs).toBe(x.unreachableAtMs);
      expect((x.unreachableAtMs as number) - cutAtMs).toBeLessThan(mirrorAckTimeoutMs / 2);
    }
    // The changes caught by the cut complete within one tick of degrading.
    let caught: number[] = [];
    void Promise.all(inFlight).then((v) => (caught = v));
    await w.sim.runUntil(w.sim.nowMs + logTickMs);
    expect(caught.length).toBe(2);
    for (const ms of caught) expect(cutAtMs + ms - Math.max(a.unreachableAtMs as number, b.unreachableAtMs as number)).toBeLessThanOrEqual(logTickMs);

    // 20 s of partition under load: every append completes on the local persist alone — no
    // resync retried into the dead link, so no 5 s stall every second as before.
    const stateCount = [a.states.length, b.states.length];
    const during = await load(w, [a, b], 20_000, 20, 2000);
    for (const lat of during) {
      expect(lat.length).toBeGreaterThan(900);
      expect(Math.max(...lat)).toBeLessThanOrEqual(2 * persistMs + 0.001);
    }
    expect([a.states.length, b.states.length]).toEqual(stateCount);
    expect(a.log.mirrorState).toBe('degraded');

    // The heal: a path of the same session comes back; both logs greet and resynchronise.
    w.serial.restore('a', 'b');
    w.net.restore('a', 'b');
    await w.sim.runUntil(() => a.log.mirrorState === 'synced' && b.log.mirrorState === 'synced');
    // Each blade's mirror holds every change the partner acknowledged while partitioned.
    expect(changeSeqs(b)).toContain(a.log.lastChangeSeq);
    expect(changeSeqs(a)).toContain(b.log.lastChangeSeq);
    // And changes wait for the partner's ack again.
    const after = await load(w, [a, b], 100, 10, 5000);
    expect(after.flat().every((ms) => ms > persistMs)).toBe(true);
    await shutdown(a, b);
  });

  it('NV-2 NV-3 the partner loses power: the survivor degrades at once and keeps acknowledging; the rebooted partner is resynchronised', async () => {
    const w = world(9);
    const [a, b] = await bringUp(w);
    await load(w, [a, b], 100, 10, 0);
    // Power cut of b: its timers die and it is off both networks.
    const cutAtMs = w.sim.nowMs;
    b.domain.kill();
    b.log.close();
    await b.endpoint.close();
    w.serial.setUp('b', false);
    w.net.setUp('b', false);
    const caught = append(w, a, 500);
    await w.sim.runUntil(() => a.log.mirrorState === 'degraded');
    expect(a.states.at(-1)?.atMs).toBe(a.unreachableAtMs);
    let caughtMs: number | undefined;
    void caught.then((ms) => (caughtMs = ms));
    await w.sim.runUntil(w.sim.nowMs + logTickMs);
    expect(caughtMs).toBeDefined();
    expect(cutAtMs + (caughtMs as number)).toBeLessThan(cutAtMs + mirrorAckTimeoutMs);
    const [alone] = await load(w, [a], 10_000, 20, 1000);
    expect(Math.max(...(alone as number[]))).toBeLessThanOrEqual(2 * persistMs + 0.001);
    expect(a.states.map((s) => s.state).filter((s) => s === 'resyncing')).toHaveLength(1); // the boot resync only

    // b reboots (its NVRAM kept) with the next link generation: a peer restart on a's side.
    w.serial.setUp('b', true);
    w.net.setUp('b', true);
    b.nvram.powerCut('keep');
    const b2 = await w.boot(1, 22);
    await w.sim.runUntil(() => a.log.mirrorState === 'synced' && b2.log.mirrorState === 'synced');
    expect(changeSeqs(b2)).toContain(a.log.lastChangeSeq);
    await shutdown(a, b2);
  });

  it('NV-3 one path down of two changes nothing: the session stays reachable and the mirror synced', async () => {
    const w = world(3);
    const [a, b] = await bringUp(w);
    w.serial.cut('a', 'b');
    const lat = await load(w, [a, b], 3000, 10, 0);
    expect(a.endpoint.peerReachable).toBe(true);
    expect(a.states.at(-1)?.state).toBe('synced');
    expect(b.states.at(-1)?.state).toBe('synced');
    expect(lat.flat().every((ms) => ms > persistMs)).toBe(true);
    await shutdown(a, b);
  });

  it('NV-3 a flapping link: each recovery resynchronises once, nothing acknowledged alone is missing after the last', async () => {
    const w = world(13);
    const [a, b] = await bringUp(w);
    const cycles = 5;
    for (let c = 0; c < cycles; c++) {
      w.serial.cut('a', 'b');
      w.net.cut('a', 'b');
      await load(w, [a, b], 2000, 25, c * 1000);
      w.serial.restore('a', 'b');
      w.net.restore('a', 'b');
      await load(w, [a, b], 2000, 25, c * 1000 + 500);
    }
    await w.sim.runUntil(() => a.log.mirrorState === 'synced' && b.log.mirrorState === 'synced');
    for (const x of [a, b]) {
      const resyncs = x.states.filter((s) => s.state === 'resyncing').length;
      // The boot's, then exactly one per recovery: a greeting per side, and the
      // partner-listening restart adds none when the greetings cross.
      expect(resyncs).toBe(cycles + 1);
    }
    expect(changeSeqs(b)).toContain(a.log.lastChangeSeq);
    expect(changeSeqs(a)).toContain(b.log.lastChangeSeq);
    await shutdown(a, b);
  });
});
