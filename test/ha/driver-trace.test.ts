// The HA driver's takeover timeline (HaDriverOptions.trace): the slow actions of a takeover —
// preempt, reset pulse, replay, serve — each traced at start and end with its duration, in
// the order the takeover runs them. The pair blade logs these lines and the takeover
// benchmark splits its figure by them (docs/timing-budget.md).
import { describe, expect, it } from 'vitest';
import { Simulation } from '../../firmware/ts/sim/kernel.ts';
import { SimNetwork } from '../../firmware/ts/sim/network.ts';
import { MultipathEndpoint } from '../../firmware/ts/link/multipath.ts';
import { SimPathTransport } from '../../firmware/ts/link/sim/sim-transport.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { SimFenceArray } from '../../firmware/ts/ha/fence-sim.ts';
import { HaDriver, haPathsFor, type HaTraceEvent } from '../../firmware/ts/ha/driver.ts';
import type { MailboxDisk } from '../../firmware/ts/ha/mailbox-io.ts';
import { defaultHaTiming, takeoverBoundMs } from '../../firmware/ts/ha/core/timing.ts';

interface Traced {
  atMs: number;
  event: HaTraceEvent;
  fields: Record<string, number | string | boolean>;
}

describe('HA driver timeline', () => {
  it('HA-6 HA-7 traces preempt, reset, replay and serve of a takeover in order, with durations', async () => {
    const sim = new Simulation({ seed: 3, buggify: false });
    const env = { timers: sim.timers, prng: sim.fork(), clock: sim.clock };
    const serial = new SimNetwork(env, { name: 'serial', defaultProfile: { fifo: true, latency: { minMs: 0.5, maxMs: 2 } } });
    const fence = new SimFenceArray(4, () => sim.clock.nowMs());
    const disks = [0, 1, 2, 3].map((i) => new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes: 2 * 1024 * 1024, name: `disk${i}` }));
    const mac = hmacSha256Mac(new Uint8Array(32).fill(0x21));
    const traces: Traced[] = [];
    const blades = ([0, 1] as const).map((i) => {
      const name = i === 0 ? 'a' : 'b';
      const domain = sim.domain(name);
      serial.setUp(name, true);
      const link = new MultipathEndpoint({
        localGeneration: 1,
        role: name,
        mac,
        transports: [new SimPathTransport('serial', 'stream', serial.endpoint(name), i === 0 ? 'b' : 'a')],
        clock: sim.clock,
        timers: domain.timers,
      });
      const mailboxDisks: MailboxDisk[] = disks.map((d, k) => ({ index: k, set: k < 2 ? 0 : 1, device: d.attach({ timers: domain.timers }) }));
      const ha = new HaDriver({
        config: { systemId: 5, bladeIndex: i, firmwareVersion: 0x10000, paths: haPathsFor(link, mailboxDisks), timing: defaultHaTiming, autoGiveback: false, mirrorSyncedAtBoot: true, bootId: 10 + i },
        persisted: undefined,
        clock: sim.clock,
        timers: domain.timers,
        link,
        mailboxDisks,
        fence: fence.forBlade(i),
        setDisks: [
          [0, 1],
          [2, 3],
        ],
        persist: () => undefined,
        serve: () => domain.timers.sleep(5),
        replay: () => domain.timers.sleep(20).then(() => true),
        // Blade a's timeline; a trace hook that throws must not disturb the machine.
        trace: (event, fields) => {
          if (i === 0) traces.push({ atMs: sim.clock.nowMs(), event, fields });
          if (i === 0 && event === 'serve-start') throw new Error('a broken log sink');
        },
      });
      ha.start();
      return { name, domain, link, ha };
    });
    const [a, b] = blades as [(typeof blades)[0], (typeof blades)[0]];
    await sim.runUntil(() => a.ha.status().phase === 'NORMAL' && b.ha.status().phase === 'NORMAL');
    await sim.runUntil(sim.clock.nowMs() + 1500);
    traces.splice(0);
    const cutAt = sim.clock.nowMs();
    b.ha.stop();
    b.domain.kill();
    serial.setUp('b', false);
    await b.link.close();
    await sim.runUntil(() => traces.some((t) => t.event === 'serve-done') || sim.clock.nowMs() > cutAt + 5000);
    const seq = traces.map((t) => `${t.event}${t.fields.op === undefined ? '' : `:${String(t.fields.op)}`}`);
    expect(seq).toEqual(['fence-start:preempt', 'fence-done:preempt', 'reset-start', 'reset-done', 'replay-start', 'replay-done', 'serve-start', 'serve-done']);
    const get = (e: HaTraceEvent): Traced => traces.find((t) => t.event === e) as Traced;
    expect(get('fence-done').fields.ok).toBe(true);
    expect(get('reset-start').fields.pulseMs).toBe(defaultHaTiming.resetPulseMs);
    expect(get('replay-done').fields).toMatchObject({ set: 1, ok: true });
    expect(get('replay-done').fields.ms).toBeGreaterThanOrEqual(20);
    expect(get('serve-done').fields).toMatchObject({ set: 1, on: true, ok: true });
    // The preempt starts after detection, tie-break (blade a: none) and grace, within the bound.
    expect(get('fence-start').atMs - cutAt).toBeGreaterThanOrEqual(defaultHaTiming.takeoverGraceMs);
    expect(get('serve-done').atMs - cutAt).toBeLessThanOrEqual(takeoverBoundMs(defaultHaTiming, ['interconnect', 'mailbox'], 0, 100));
    expect(a.ha.status().phase).toBe('TAKEOVER');
    a.ha.stop();
    await a.link.close();
  });
});
