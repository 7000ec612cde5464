// The link on a slow, noisy UART: the HAL's simulated serial line at 115200 baud (10 bits a
// byte, a 16 KiB driver queue with back-pressure) under virtual time, with bit flips and lost
// chunks. Mirroring-sized messages still arrive exactly once in order, the path stays up
// while data flows, and spurious retransmits stay rare.
import { describe, expect, it } from 'vitest';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { createSimSerialPair } from '../../firmware/ts/hal/serial/sim/sim-serial-port.ts';
import { MultipathEndpoint } from '../../firmware/ts/link/multipath.ts';
import { StreamPathTransport } from '../../firmware/ts/link/stream-path.ts';
import { uartPathLimits } from '../../firmware/ts/link/endpoint.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';
import { FrameErrorCode } from '../../firmware/ts/link/core/frame.ts';

const mac = hmacSha256Mac(new Uint8Array(32).fill(0x33));

describe('link on a simulated 115200-baud UART', () => {
  it.each([5, 6, 7])('carries 4 KiB messages in order over a noisy line with uartPathLimits, without path flaps (seed %i)', async (seed) => {
    const sim = new Simulation({ seed, buggify: false });
    const { a: portA, b: portB, link } = createSimSerialPair({ timers: sim.timers, prng: sim.fork(), baudRate: 115_200, faults: { corruptRate: 0.002, lossRate: 0.001 } });
    await Promise.all([portA.open(), portB.open()]);
    const mk = (role: 'a' | 'b', gen: number, port: typeof portA): MultipathEndpoint =>
      new MultipathEndpoint({ localGeneration: gen, role, mac, transports: [new StreamPathTransport('uart', port)], pathLimits: [uartPathLimits], clock: sim.clock, timers: sim.timers });
    const a = mk('a', 1, portA);
    const b = mk('b', 2, portB);
    const got: number[] = [];
    b.on('message', (_ch, p) => got.push(new DataView(p.buffer, p.byteOffset).getUint32(0)));
    const downs: number[] = [];
    a.on('pathDown', () => downs.push(sim.nowMs));
    b.on('pathDown', () => downs.push(sim.nowMs));
    await sim.runUntil(() => a.peerReachable && b.peerReachable);
    const count = 40;
    for (let i = 0; i < count; i++) {
      const m = new Uint8Array(4096);
      new DataView(m.buffer).setUint32(0, i);
      a.sendReliable(1, m);
    }
    const start = sim.nowMs;
    await sim.runUntil(() => got.length === count);
    const seconds = (sim.nowMs - start) / 1000;
    expect(got).toEqual([...Array(count).keys()]);
    // 40 frames of 4152 bytes at 11 520 bytes/s take 14.4 s of line time at least.
    expect(seconds).toBeGreaterThan(14);
    const st = a.stats().paths[0];
    const damaged = link.stats.chunksCorrupted + link.stats.chunksLost;
    expect(damaged).toBeGreaterThan(0);
    const rejects = b.stats().paths[0]?.rejects ?? {};
    expect(rejects[FrameErrorCode.mac] ?? 0).toBe(0);
    // Resends are for damaged frames, not for frames that were only slow to cross the line.
    expect(st?.channel.retransmits ?? 0).toBeLessThanOrEqual(2 * damaged + 4);
    expect(downs).toEqual([]);
    await a.close();
    await b.close();
  });
});
