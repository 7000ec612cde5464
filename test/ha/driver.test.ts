// Two blades' HA runtimes (firmware/ts/ha/driver.ts) over the real link endpoint, the
// simulated disks and the recording fence, under the simulation kernel's virtual time:
// the interconnect and HA layers together, as the blade's composition root wires them.
import { describe, expect, it } from 'vitest';
import { Simulation, type SimDomain } from '../../firmware/ts/sim/kernel.ts';
import { SimNetwork } from '../../firmware/ts/sim/network.ts';
import { MultipathEndpoint } from '../../firmware/ts/link/multipath.ts';
import { SimPathTransport } from '../../firmware/ts/link/sim/sim-transport.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { BlockErrorCode, type BlockDevice } from '../../firmware/ts/hal/block/block-device.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';
import { SimFenceArray } from '../../firmware/ts/ha/fence-sim.ts';
import { HaDriver, haPathsFor } from '../../firmware/ts/ha/driver.ts';
import type { MailboxDisk } from '../../firmware/ts/ha/mailbox-io.ts';
import type { PersistedHaState } from '../../firmware/ts/ha/core/machine.ts';
import { defaultHaTiming, pathTimeoutMs, takeoverBoundMs } from '../../firmware/ts/ha/core/timing.ts';
import { powerLossTakeoverBoundMs } from '../../firmware/ts/ha/core/power-sense.ts';
import { PartnerPowerWatch } from '../../firmware/ts/board/partner-power.ts';
import { SimGpioChip } from '../../firmware/ts/hal/gpio/sim/sim-gpio.ts';

const mac = hmacSha256Mac(new Uint8Array(32).fill(0x17));
const setDisks: [number[], number[]] = [
  [0, 1],
  [2, 3],
];

/** A blade's handle on a shared disk whose writes go through the recording fence (the loop controller's job). */
class FencedDisk implements BlockDevice {
  constructor(
    private readonly inner: SimBlockDevice,
    private readonly fence: SimFenceArray,
    private readonly disk: number,
    private readonly blade: 0 | 1,
  ) {}
  get name(): string {
    return this.inner.name;
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get sectorSize(): number {
    return this.inner.sectorSize;
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(offset, length);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    if (!this.fence.write(this.disk, this.blade)) return Promise.reject(new TwinbladeError(BlockErrorCode.fenced, 'fenced', `disk ${this.disk}: reservation conflict`));
    return this.inner.write(offset, data);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

interface Blade {
  domain: SimDomain;
  link: MultipathEndpoint;
  ha: HaDriver;
  serving: Set<number>;
  alerts: string[];
}

function world(seed: number) {
  const sim = new Simulation({ seed, buggify: false });
  const env = { timers: sim.timers, prng: sim.fork(), clock: sim.clock };
  const serial = new SimNetwork(env, { name: 'serial', defaultProfile: { fifo: true, latency: { minMs: 0.5, maxMs: 2 } } });
  const net = new SimNetwork(env, { name: 'net0', defaultProfile: { lossProbability: 0.01, latency: { minMs: 0.1, maxMs: 1 } } });
  const fence = new SimFenceArray(4, () => sim.clock.nowMs());
  const disks = [0, 1, 2, 3].map((i) => new SimBlockDevice({ timers: sim.timers, prng: sim.fork(), sizeBytes: 2 * 1024 * 1024, name: `disk${i}` }));
  const nvram: [PersistedHaState | undefined, PersistedHaState | undefined] = [undefined, undefined];
  let incarnation = 0;

  const boot = (i: 0 | 1): Blade => {
    const name = i === 0 ? 'a' : 'b';
    const peer = i === 0 ? 'b' : 'a';
    const domain = sim.domain(`${name}${++incarnation}`);
    serial.setUp(name, true);
    net.setUp(name, true);
    const link = new MultipathEndpoint({
      localGeneration: incarnation,
      role: name,
      mac,
      transports: [new SimPathTransport('serial', 'stream', serial.endpoint(name), peer), new SimPathTransport('net0', 'datagram', net.endpoint(name), peer)],
      clock: sim.clock,
      timers: domain.timers,
    });
    const mailboxDisks: MailboxDisk[] = disks.map((d, k) => ({ index: k, set: k < 2 ? 0 : 1, device: new FencedDisk(d.attach({ timers: domain.timers }), fence, k, i) }));
    const blade: Blade = { domain, link, ha: undefined as unknown as HaDriver, serving: new Set(), alerts: [] };
    blade.ha = new HaDriver({
      config: { systemId: 5, bladeIndex: i, firmwareVersion: 0x10000, paths: haPathsFor(link, mailboxDisks), timing: defaultHaTiming, autoGiveback: true, mirrorSyncedAtBoot: true, bootId: 1000 + incarnation },
      persisted: nvram[i],
      clock: sim.clock,
      timers: domain.timers,
      link,
      mailboxDisks,
      fence: fence.forBlade(i),
      setDisks,
      persist: (s) => {
        nvram[i] = s;
      },
      serve: (set, on) => {
        if (on) blade.serving.add(set);
        else blade.serving.delete(set);
      },
      replay: () => domain.timers.sleep(20).then(() => true),
      alert: (code) => blade.alerts.push(code),
    });
    blade.ha.start();
    return blade;
  };

  const powerCut = async (b: Blade, name: 'a' | 'b'): Promise<void> => {
    b.ha.stop();
    b.domain.kill();
    serial.setUp(name, false);
    net.setUp(name, false);
    await b.link.close();
  };
  return { sim, serial, net, fence, boot, powerCut };
}

describe('HA runtime over the link layer', () => {
  it('HA-1 HA-10 both blades come up NORMAL over the real link endpoint and mailboxes', async () => {
    const w = world(1);
    const a = w.boot(0);
    const b = w.boot(1);
    await w.sim.runUntil(() => a.ha.status().phase === 'NORMAL' && b.ha.status().phase === 'NORMAL' && a.ha.status().paths.every((p) => p.up || p.id === 'mbox0' || p.id === 'mbox1'));
    await w.sim.runUntil(w.sim.clock.nowMs() + 2000);
    expect([...a.serving]).toEqual([0]);
    expect([...b.serving]).toEqual([1]);
    const s = a.ha.status();
    expect(s.paths.filter((p) => p.up).map((p) => p.id)).toEqual(['serial', 'net0', 'mbox2', 'mbox3']);
    expect(a.ha.stats.statusReceived).toBeGreaterThan(20);
    await Promise.all([a.link.close(), b.link.close()]);
    a.ha.stop();
    b.ha.stop();
  });

  it('HA-5 HA-6 HA-9 a power cut is taken over within the bound, and given back after the reboot', async () => {
    const w = world(2);
    const a = w.boot(0);
    let b = w.boot(1);
    await w.sim.runUntil(() => a.ha.status().phase === 'NORMAL' && b.ha.status().phase === 'NORMAL');
    await w.sim.runUntil(w.sim.clock.nowMs() + 1000);
    const cutAt = w.sim.clock.nowMs();
    await w.powerCut(b, 'b');
    await w.sim.runUntil(() => a.serving.has(1) || w.sim.clock.nowMs() > cutAt + 5000);
    const took = w.sim.clock.nowMs() - cutAt;
    expect(a.ha.status().phase).toBe('TAKEOVER');
    // Disk commands here: fence + a 20 ms replay + link and disk latencies.
    expect(took).toBeLessThanOrEqual(takeoverBoundMs(defaultHaTiming, ['interconnect', 'network', 'mailbox'], 0, 100));
    expect(a.alerts).toContain('HA_TAKEOVER_DONE');
    // b reboots, finds its disks held, waits; a gives back after the damping delay.
    b = w.boot(1);
    await w.sim.runUntil(() => b.ha.status().step === 'await-giveback');
    await w.sim.runUntil(() => (b.ha.status().phase === 'NORMAL' && a.ha.status().phase === 'NORMAL') || w.sim.clock.nowMs() > cutAt + 60_000);
    expect([...a.serving]).toEqual([0]);
    expect([...b.serving]).toEqual([1]);
    expect(w.fence.violations).toEqual([]);
    await Promise.all([a.link.close(), b.link.close()]);
    a.ha.stop();
    b.ha.stop();
  });

  it('HA-5 HA-6 the partner-power line, watched through the GPIO HAL, lets the driver take a powered-off partner over at the heartbeat timeout', async () => {
    const w = world(4);
    const a = w.boot(0);
    const b = w.boot(1);
    // Blade a's partner-power input, as the pair blade wires it: PartnerPowerWatch -> setPartnerPower.
    const chip = new SimGpioChip({ timers: w.sim.timers });
    chip.drive(5, 1);
    const watch = new PartnerPowerWatch({ line: chip.open(5, { direction: 'in', name: 'partnerPower' }), timers: a.domain.timers, onChange: (good) => a.ha.setPartnerPower(good) });
    await watch.start();
    await w.sim.runUntil(() => a.ha.status().phase === 'NORMAL' && b.ha.status().phase === 'NORMAL');
    await w.sim.runUntil(w.sim.clock.nowMs() + 1000);
    expect(a.ha.status().partnerPower).toBe('good');
    const cutAt = w.sim.clock.nowMs();
    await w.powerCut(b, 'b');
    chip.drive(5, 0);
    await w.sim.runUntil(() => a.serving.has(1) || w.sim.clock.nowMs() > cutAt + 5000);
    const took = w.sim.clock.nowMs() - cutAt;
    expect(a.ha.status().phase).toBe('TAKEOVER');
    expect(a.ha.status().partnerPower).toBe('lost');
    expect(a.alerts).toContain('HA_PARTNER_POWER_LOST');
    expect(a.alerts).not.toContain('HA_PARTNER_DOWN');
    expect(took).toBeLessThanOrEqual(powerLossTakeoverBoundMs(defaultHaTiming, 100));
    expect(took).toBeLessThan(pathTimeoutMs(defaultHaTiming, 'mailbox'));
    expect(w.fence.violations).toEqual([]);
    watch.stop();
    await a.link.close();
    a.ha.stop();
  });

  it('HA-1 a cut serial cable is no failure: status flows on the network and mailboxes', async () => {
    const w = world(3);
    const a = w.boot(0);
    const b = w.boot(1);
    await w.sim.runUntil(() => a.ha.status().phase === 'NORMAL' && b.ha.status().phase === 'NORMAL');
    w.serial.cut('a', 'b');
    await w.sim.runUntil(w.sim.clock.nowMs() + 5000);
    expect(a.ha.status().phase).toBe('NORMAL');
    expect(b.ha.status().phase).toBe('NORMAL');
    expect(a.ha.status().partner.alive).toBe(true);
    expect(a.alerts).not.toContain('HA_TAKEOVER_STARTED');
    expect(a.ha.status().paths.find((p) => p.id === 'serial')?.up).toBe(false);
    await Promise.all([a.link.close(), b.link.close()]);
    a.ha.stop();
    b.ha.stop();
  });
});
