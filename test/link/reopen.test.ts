// A serial path whose device goes away and comes back (a USB serial adapter unplugged and
// plugged in again): the transport reopens it with bounded backoff and the link carries on,
// exactly once and in order, under virtual time.
import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import type { Timers } from '../../firmware/ts/core/clock.ts';
import { MultipathEndpoint } from '../../firmware/ts/link/multipath.ts';
import { ReopeningStreamPathTransport, StreamPathTransport } from '../../firmware/ts/link/stream-path.ts';
import type { ByteStream } from '../../firmware/ts/link/stream-path.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';
import type { SerialEvents } from '../../firmware/ts/hal/serial/serial-port.ts';

const mac = hmacSha256Mac(new Uint8Array(32).fill(0x77));

/** A null-modem cable whose B end can be unplugged; each plug-in is a new one-shot port. */
class Cable {
  ends: [CableEnd | undefined, CableEnd | undefined] = [undefined, undefined];
  constructor(readonly timers: Timers) {}
  plug(side: 0 | 1): CableEnd {
    const e = new CableEnd(this, side);
    this.ends[side] = e;
    return e;
  }
  unplug(side: 0 | 1): void {
    const e = this.ends[side];
    this.ends[side] = undefined;
    e?.hangUp();
  }
}

class CableEnd implements ByteStream {
  private readonly ee = new EventEmitter();
  isOpen = true;
  constructor(
    private readonly cable: Cable,
    private readonly side: 0 | 1,
  ) {}
  write(data: Uint8Array): boolean {
    const copy = data.slice();
    this.cable.timers.after(0.2, () => {
      const peer = this.cable.ends[this.side === 0 ? 1 : 0];
      if (this.isOpen && peer?.isOpen) peer.ee.emit('data', copy);
    });
    return true;
  }
  // ByteStream's on/off return the port itself; the cable end is that port.
  on<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): ReturnType<ByteStream['on']> {
    this.ee.on(event, listener as (...args: unknown[]) => void);
    return this as never;
  }
  off<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): ReturnType<ByteStream['off']> {
    this.ee.off(event, listener as (...args: unknown[]) => void);
    return this as never;
  }
  hangUp(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.ee.emit('close');
  }
  async close(): Promise<void> {
    this.hangUp();
  }
}

describe('serial path that reopens its device', () => {
  it('reopens after the device goes away and comes back; messages arrive exactly once in order', async () => {
    const sim = new Simulation({ seed: 3, buggify: false });
    const cable = new Cable(sim.timers);
    let plugged = true;
    const endA = cable.plug(0);
    const reopening = new ReopeningStreamPathTransport({
      name: 'serial',
      timers: sim.timers,
      open: async () => {
        if (!plugged) throw new Error('ENOENT: /dev/ttyUSB0');
        return cable.plug(1);
      },
    });
    const a = new MultipathEndpoint({ localGeneration: 1, role: 'a', mac, transports: [new StreamPathTransport('serial', endA)], clock: sim.clock, timers: sim.timers });
    const b = new MultipathEndpoint({ localGeneration: 2, role: 'b', mac, transports: [reopening], clock: sim.clock, timers: sim.timers });
    const got: number[] = [];
    b.on('message', (_ch, p) => got.push(p[0] as number));
    await sim.runUntil(() => a.peerReachable && b.peerReachable);
    for (let i = 0; i < 10; i++) a.sendReliable(1, new Uint8Array([i]));
    await sim.runUntil(() => got.length === 10);
    plugged = false;
    cable.unplug(1);
    for (let i = 10; i < 20; i++) a.sendReliable(1, new Uint8Array([i]));
    await sim.runUntil(() => !a.peerReachable);
    await sim.runUntil(sim.nowMs + 3000);
    expect(reopening.openFailures).toBeGreaterThan(2);
    // Bounded backoff: failures stay well below one per 100 ms.
    expect(reopening.openFailures).toBeLessThan(15);
    plugged = true;
    await sim.runUntil(() => got.length === 20);
    expect(got).toEqual([...Array(20).keys()]);
    expect(reopening.opens).toBe(2);
    expect(a.peerGeneration).toBe(2);
    await a.close();
    await b.close();
  });
});
