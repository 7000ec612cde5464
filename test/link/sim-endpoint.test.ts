// The real MultipathEndpoint driver under the simulation kernel's virtual time and simulated
// networks: fail-over from the serial cable to a lossy network and back, and a blade crash and
// reboot, all deterministic from one seed.
import { describe, expect, it } from 'vitest';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import type { SimDomain } from '../../firmware/ts/sim/kernel.ts';
import { SimNetwork } from '../../firmware/ts/sim/network.ts';
import type { BuggifyOptions } from '../../firmware/ts/sim/buggify.ts';
import { MultipathEndpoint } from '../../firmware/ts/link/multipath.ts';
import { SimPathTransport } from '../../firmware/ts/link/sim/sim-transport.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';
import { LinkChannel, LinkDatagramType } from '../../firmware/ts/link/endpoint.ts';

const mac = hmacSha256Mac(new Uint8Array(32).fill(0x42));

interface World {
  sim: Simulation;
  serial: SimNetwork;
  net: SimNetwork;
  blade(name: 'a' | 'b', generation: number, domain: SimDomain): MultipathEndpoint;
}

function world(seed: number, buggify: BuggifyOptions | false = false): World {
  const sim = new Simulation({ seed, buggify });
  const env = { timers: sim.timers, prng: sim.fork(), clock: sim.clock };
  const serial = new SimNetwork(env, { name: 'serial', defaultProfile: { fifo: true, latency: { minMs: 0.1, maxMs: 0.3 } } });
  const net = new SimNetwork(env, {
    name: 'net1',
    defaultProfile: { lossProbability: 0.05, duplicateProbability: 0.05, reorderProbability: 0.1, latency: { minMs: 0.05, maxMs: 1 } },
  });
  return {
    sim,
    serial,
    net,
    blade(name, generation, domain) {
      const peer = name === 'a' ? 'b' : 'a';
      return new MultipathEndpoint({
        localGeneration: generation,
        role: name,
        mac,
        transports: [new SimPathTransport('serial', 'stream', serial.endpoint(name), peer), new SimPathTransport('net1', 'datagram', net.endpoint(name), peer)],
        clock: sim.clock,
        timers: domain.timers,
      });
    },
  };
}

function id(p: Uint8Array): number {
  return new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0);
}
function msg(i: number): Uint8Array {
  const b = new Uint8Array(200);
  new DataView(b.buffer).setUint32(0, i);
  return b;
}

describe('link endpoint under the simulation kernel', () => {
  it('CF-4 mirror traffic fails over from a cut serial cable to a lossy network and back, exactly once in order (seeds 1..3)', async () => {
    for (const seed of [1, 2, 3]) {
      const w = world(seed);
      const a = w.blade('a', 11, w.sim.domain('a'));
      const b = w.blade('b', 21, w.sim.domain('b'));
      const got: number[] = [];
      b.on('message', (ch, p) => {
        if (ch === LinkChannel.mirror) got.push(id(p));
      });
      const active: number[] = [];
      a.on('activePath', (p) => active.push(p));
      const status: number[] = [];
      b.on('datagram', (type, _p, path) => {
        if (type === LinkDatagramType.haStatus) status.push(path);
      });
      await w.sim.runUntil(() => a.activePath === 0 && b.activePath === 0);
      let n = 0;
      const pump = async (count: number, everyMs: number): Promise<void> => {
        for (let i = 0; i < count; i++) {
          a.sendReliable(LinkChannel.mirror, msg(n++));
          await w.sim.runUntil(w.sim.nowMs + everyMs);
        }
      };
      await pump(100, 2);
      w.serial.cut('a', 'b');
      await pump(300, 2);
      expect(a.activePath, `seed ${seed}`).toBe(1);
      // HA sends its status periodically; a copy may be lost on the lossy network.
      for (let i = 0; i < 5; i++) {
        a.sendAll(LinkDatagramType.haStatus, new Uint8Array([i]));
        await w.sim.runUntil(w.sim.nowMs + 5);
      }
      w.serial.restore('a', 'b');
      await pump(100, 2);
      await w.sim.runUntil(() => got.length === n);
      expect(got, `seed ${seed}`).toEqual([...Array(n).keys()]);
      expect(active.slice(-2), `seed ${seed}`).toEqual([1, 0]);
      // The status went out while the serial cable was cut: it arrived on the network only.
      expect(status.length, `seed ${seed}`).toBeGreaterThan(0);
      expect(status.every((p) => p === 1), `seed ${seed}`).toBe(true);
      expect(b.stats().reliableDelivered).toBe(n);
      await a.close();
      await b.close();
    }
  });

  it('CF-4 exactly once in order with every link buggify site active (spurious resends, delayed acks, needless path switches)', async () => {
    for (const seed of [11, 12]) {
      const w = world(seed, { activationProbability: 1 });
      const a = w.blade('a', 11, w.sim.domain('a'));
      const b = w.blade('b', 21, w.sim.domain('b'));
      const got: number[] = [];
      b.on('message', (_ch, p) => got.push(id(p)));
      const switches: number[] = [];
      a.on('activePath', (p) => switches.push(p));
      await w.sim.runUntil(() => a.peerReachable && b.peerReachable);
      for (let i = 0; i < 400; i++) {
        a.sendReliable(LinkChannel.mirror, msg(i));
        await w.sim.runUntil(w.sim.nowMs + 1);
      }
      await w.sim.runUntil(() => got.length === 400);
      expect(got, `seed ${seed}`).toEqual([...Array(400).keys()]);
      expect(switches.length, `seed ${seed}`).toBeGreaterThan(2);
      const fired = w.sim.buggifyReport().filter((r) => r.site.startsWith('link.') && r.fired > 0).map((r) => r.site);
      expect(fired.sort(), `seed ${seed}`).toEqual(['link.delay-ack', 'link.early-retransmit', 'link.switch-path']);
      expect(b.stats().reliableDuplicates + (b.stats().paths[0]?.channel.duplicates ?? 0)).toBeGreaterThan(0);
      await a.close();
      await b.close();
    }
  });

  it('a blade crash is seen as every path going down; its reboot as a peer restart, after which traffic flows again', async () => {
    const w = world(7);
    const a = w.blade('a', 11, w.sim.domain('a'));
    let domainB = w.sim.domain('b1');
    let b = w.blade('b', 21, domainB);
    const downs: string[] = [];
    a.on('pathDown', (_p, name) => downs.push(name));
    const restarts: { previousGeneration: number; peerGeneration: number; undelivered: number }[] = [];
    a.on('peerRestart', (r) => restarts.push({ previousGeneration: r.previousGeneration, peerGeneration: r.peerGeneration, undelivered: r.undelivered.length }));
    await w.sim.runUntil(() => [0, 1].every((i) => a.isPathUp(i) && b.isPathUp(i)));
    // Power cut: B's timers die and it is off both networks.
    domainB.kill();
    await b.close();
    w.serial.setUp('b', false);
    w.net.setUp('b', false);
    for (let i = 0; i < 5; i++) a.sendReliable(LinkChannel.haControl, msg(i));
    await w.sim.runUntil(() => !a.peerReachable);
    expect(downs.sort()).toEqual(['net1', 'serial']);
    await w.sim.runUntil(w.sim.nowMs + 2000);
    // Reboot with the next generation.
    w.serial.setUp('b', true);
    w.net.setUp('b', true);
    domainB = w.sim.domain('b2');
    b = w.blade('b', 22, domainB);
    const got: number[] = [];
    b.on('message', (_ch, p) => got.push(id(p)));
    await w.sim.runUntil(() => restarts.length === 1);
    expect(restarts[0]).toEqual({ previousGeneration: 21, peerGeneration: 22, undelivered: 5 });
    for (let i = 100; i < 110; i++) a.sendReliable(LinkChannel.haControl, msg(i));
    await w.sim.runUntil(() => got.length === 10);
    expect(got).toEqual([...Array(10).keys()].map((i) => i + 100));
    expect(a.peerGeneration).toBe(22);
    await a.close();
    await b.close();
  });
});
