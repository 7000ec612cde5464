// The partner-power sense line (hardware-assisted takeover): the HA machine's rules in the
// two-blade world (fast takeover of a powered-off partner within its own bound, damping and
// HA-8 blockers still apply, a lying line alerts once and is ignored, no line = as before),
// the line watcher over the GPIO HAL, and the rig's wiring of the relay to the partner's line.
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PairWorld, simLatency } from '../../firmware/ts/ha/sim/pair-world.ts';
import { HaCode, HaMachine, type HaAction } from '../../firmware/ts/ha/core/machine.ts';
import { HaPhase, StateIndicator, StatusFlag, type StatusMessage } from '../../firmware/ts/ha/core/status.ts';
import { defaultHaTiming } from '../../firmware/ts/ha/core/timing.ts';
import { pathTimeoutMs, takeoverBoundMs } from '../../firmware/ts/ha/core/timing.ts';
import { powerLossDetectionBoundMs, powerLossTakeoverBoundMs, powerSenseSlackMs } from '../../firmware/ts/ha/core/power-sense.ts';
import { PartnerPowerWatch } from '../../firmware/ts/board/partner-power.ts';
import { SimGpioChip } from '../../firmware/ts/hal/gpio/sim/sim-gpio.ts';
import { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';
import type { GpioLine, GpioValue } from '../../firmware/ts/hal/gpio/gpio.ts';
import { Rig } from '../../rig/rig.ts';
import { applyFault } from '../../rig/faults.ts';
import { rigGpioLines } from '../../rig/hw/wiring.ts';
import { RigControlClient } from '../../firmware/ts/hal/rigctl/client.ts';
import { openRigGpio } from '../../firmware/ts/hal/gpio/rig/rig-gpio.ts';

interface Run {
  world: PairWorld;
  lines: string[];
}

function world(seed: number, opts: { powerSense: boolean; timing?: ConstructorParameters<typeof PairWorld>[0]['timing'] }): Run {
  const lines: string[] = [];
  const w = new PairWorld({ seed, powerSense: opts.powerSense, ...(opts.timing ? { timing: opts.timing } : {}), trace: (l) => lines.push(l) });
  w.powerOn(0);
  w.powerOn(1);
  w.run(1000);
  return { world: w, lines };
}

/** Virtual ms from `fromMs` until blade a serves set 1 (b's), or undefined. */
function servedAfter(r: Run, fromMs: number, runMs: number): number | undefined {
  const start = r.lines.length;
  r.world.run(runMs);
  for (const l of r.lines.slice(start)) {
    const m = /^\s*([\d.]+) a: serve set 1$/.exec(l);
    if (m) return Number(m[1]) * 1000 - fromMs;
  }
  return undefined;
}

const alerts = (r: Run, code: string): string[] => r.lines.filter((l) => l.includes(`alert ${code}:`));

describe('partner-power sense in the HA machine', () => {
  const ioBound = simLatency.fenceMaxMs + simLatency.replayMaxMs + simLatency.diskMaxMs + simLatency.serialMaxMs;

  it('HA-5 HA-6 a power cut the line reports is taken over within the power-loss bound, well before the mailbox-only decision', () => {
    const fast: number[] = [];
    const slow: number[] = [];
    for (let seed = 1; seed <= 8; seed++) {
      const withLine = world(seed, { powerSense: true });
      withLine.world.powerOff(1);
      const f = servedAfter(withLine, 1000, 4000);
      const without = world(seed, { powerSense: false });
      without.world.powerOff(1);
      const s = servedAfter(without, 1000, 4000);
      expect(f).toBeDefined();
      expect(s).toBeDefined();
      fast.push(f as number);
      slow.push(s as number);
      expect(alerts(withLine, HaCode.partnerPowerLost)).toHaveLength(1);
      // The line replaces waiting for the mailboxes; it never replaces the fence.
      expect(withLine.lines.some((l) => / a: preempt set 1 ok$/.test(l))).toBe(true);
      expect(withLine.world.violations).toEqual([]);
      expect(without.world.violations).toEqual([]);
    }
    const t = withTiming();
    for (const f of fast) expect(f).toBeLessThanOrEqual(powerLossTakeoverBoundMs(t, ioBound));
    for (const s of slow) expect(s).toBeLessThanOrEqual(takeoverBoundMs(t, ['interconnect', 'network', 'mailbox'], 0, ioBound));
    // Side by side, seed for seed: the mailbox timeout is what the line saves.
    for (let k = 0; k < fast.length; k++) expect((slow[k] as number) - (fast[k] as number)).toBeGreaterThan(pathTimeoutMs(t, 'mailbox') - pathTimeoutMs(t, 'interconnect') - 2 * t.mailboxPollIntervalMs);
  });

  it('HA-5 without the line nothing changes: no partner-power state, the same trace as a world without sense lines', () => {
    const a = world(7, { powerSense: false });
    a.world.powerOff(1);
    a.world.run(5000);
    expect(a.world.machine(0)?.status().partnerPower).toBe('unknown');
    expect(a.lines.some((l) => l.includes('partner power'))).toBe(false);
    expect(alerts(a, HaCode.partnerDown)).toHaveLength(1);
  });

  it('HA-5 a line stuck at lost while the partner runs is faulty: one alert, not one per tick, and no takeover', () => {
    const r = world(11, { powerSense: true });
    r.world.setSenseWire(0, 'lost');
    r.world.run(10_000);
    expect(alerts(r, HaCode.powerSenseFaulty)).toHaveLength(1);
    expect(alerts(r, HaCode.takeoverStarted)).toEqual([]);
    const s = r.world.machine(0)?.status();
    expect(s?.partnerPower).toBe('lost');
    expect(s?.partnerPowerSenseFaulty).toBe(true);
    // A faulty line is ignored: a real power cut now waits for the mailboxes, and still works.
    r.world.powerOff(1);
    const after = servedAfter(r, 11_000, 4000);
    expect(after).toBeGreaterThan(pathTimeoutMs(withTiming(), 'mailbox'));
    expect(alerts(r, HaCode.partnerPowerLost)).toEqual([]);
    expect(r.world.violations).toEqual([]);
  });

  it('HA-6 damping still applies to the fast path', () => {
    const r = world(13, { powerSense: true, timing: { takeoverCountMax: 1, givebackDelayMinMs: 2000 } });
    r.world.powerOff(1);
    expect(servedAfter(r, 1000, 3000)).toBeDefined();
    r.world.powerOn(1);
    r.world.run(6000);
    expect(r.world.machine(0)?.status().phase).toBe('NORMAL');
    r.world.powerOff(1);
    r.world.run(4000);
    expect(alerts(r, HaCode.takeoverDamped)).toHaveLength(1);
    expect(r.world.machine(0)?.status().servingSets).toBe(1);
    expect(r.world.violations).toEqual([]);
  });

  it('HA-8 a blocker (mirror out of sync) stops the fast path too', () => {
    const r = world(17, { powerSense: true });
    r.world.setMirror(0, false);
    r.world.powerOff(1);
    r.world.run(4000);
    expect(alerts(r, HaCode.takeoverBlocked).some((l) => l.includes('partner power lost'))).toBe(true);
    expect(alerts(r, HaCode.takeoverStarted)).toEqual([]);
  });

  it('HA-5 the bounds: detection is the heartbeat timeout plus a tick; a message sent before the cut is not life', () => {
    const t = withTiming();
    expect(powerLossDetectionBoundMs(t)).toBe(pathTimeoutMs(t, 'interconnect') + t.tickIntervalMs);
    expect(powerLossTakeoverBoundMs(t, 0)).toBeLessThan(takeoverBoundMs(t, ['interconnect', 'network', 'mailbox'], 0, 0));
    expect(powerSenseSlackMs(t, 'mailbox')).toBeGreaterThanOrEqual(2 * t.mailboxPollIntervalMs);
    expect(powerSenseSlackMs(t, 'interconnect')).toBe(t.heartbeatIntervalMs);
  });
});

/** Blade a's machine by hand: NORMAL, with a serial path and one mailbox path to blade b. */
function handMachine(): { m: HaMachine; alerts: () => string[]; msg: (sequence: number) => StatusMessage } {
  const m = new HaMachine(
    { systemId: 42, bladeIndex: 0, firmwareVersion: 0x10000, paths: [{ id: 'serial', kind: 'interconnect' }, { id: 'mbox2', kind: 'mailbox' }], timing: defaultHaTiming, autoGiveback: false, mirrorSyncedAtBoot: true, bootId: 7 },
    { generation: 3, phase: HaPhase.normal, claimedSets: 1, operatorDisabled: false },
    0,
  );
  const actions: HaAction[] = [];
  const drain = (): void => {
    while (m.hasReady()) actions.push(...m.ready().actions);
  };
  const msg = (sequence: number): StatusMessage => ({
    protocolVersion: 1, systemId: 42, bladeIndex: 1, indicator: StateIndicator.normal, phase: HaPhase.normal, flags: StatusFlag.mirrorSynced, reasons: 0,
    generation: 1, sequence, peerGeneration: 0, peerSequence: 0, firmwareVersion: 0x10000, claimedSets: 2, bootId: 8,
  });
  drain();
  const reserve = actions.find((a) => a.type === 'fence' && a.op === 'reserve');
  if (reserve?.type !== 'fence') throw new Error('no reserve');
  m.step({ type: 'fence-result', op: 'reserve', set: 0, token: reserve.token, ok: true }, 5);
  m.step({ type: 'status', path: 'serial', message: msg(1) }, 10);
  m.step({ type: 'replay-done', set: 0, ok: true }, 20);
  drain();
  expect(m.status().phase).toBe('NORMAL');
  const alerts = (): string[] => {
    drain();
    return actions.flatMap((a) => (a.type === 'alert' ? [a.code] : []));
  };
  return { m, alerts, msg };
}

describe('partner-power sense: what counts as the partner running', () => {
  it('HA-5 records written before the cut and read late (a loaded host) are not life; a third fresh mailbox record is', () => {
    const { m, alerts, msg } = handMachine();
    let seq = 1;
    // The partner runs: a heartbeat every 100 ms on serial, its mailbox read every 250 ms.
    let mailboxRecord = msg(1);
    for (let t = 25; t <= 1000; t += 25) {
      if (t % 100 === 0) m.step({ type: 'status', path: 'serial', message: msg(++seq) }, t);
      if (t % 250 === 0) m.step({ type: 'status', path: 'mbox2', message: mailboxRecord }, t);
      if (t % 250 === 0) mailboxRecord = msg(++seq);
      m.tick(t);
    }
    // Power lost at 1000; two records the partner wrote before it (newer than anything serial
    // brought) reach us late, well after the slack: not life.
    m.step({ type: 'partner-power', good: false }, 1000);
    const late = [msg(seq + 1), msg(seq + 2)];
    let t = 1000;
    const readAt = (rec: StatusMessage): void => {
      for (let k = t + 25; k < t + 250; k += 25) m.tick(k);
      t += 250;
      m.step({ type: 'status', path: 'mbox2', message: rec }, t);
    };
    for (const rec of [mailboxRecord, mailboxRecord, late[0], late[0], late[1], late[1]]) readAt(rec as StatusMessage);
    expect(alerts()).not.toContain(HaCode.powerSenseFaulty);
    expect(alerts()).toContain(HaCode.partnerPowerLost);
    expect(m.status().partnerPowerSenseFaulty).toBe(false);
    // A third fresh record after the cut: the partner is writing; the line lied.
    readAt(msg(seq + 3));
    expect(alerts()).toContain(HaCode.powerSenseFaulty);
    expect(m.status().partnerPowerSenseFaulty).toBe(true);
  });

  it('HA-5 one fresh message on a link after the slack is life: the line is faulty, and says so once', () => {
    const { m, alerts, msg } = handMachine();
    m.step({ type: 'partner-power', good: false }, 100);
    let seq = 1;
    for (let t = 125; t <= 3000; t += 25) {
      if (t % 100 === 0) m.step({ type: 'status', path: 'serial', message: msg(++seq) }, t);
      m.tick(t);
    }
    expect(alerts().filter((c) => c === HaCode.powerSenseFaulty)).toHaveLength(1);
    expect(alerts()).not.toContain(HaCode.takeoverStarted);
    // Good again, then lost again: a new judgement (and a new alert once it lies again).
    m.step({ type: 'partner-power', good: true }, 3000);
    expect(m.status().partnerPowerSenseFaulty).toBe(false);
    m.step({ type: 'partner-power', good: false }, 3010);
    for (let t = 3025; t <= 4000; t += 25) {
      if (t % 100 === 0) m.step({ type: 'status', path: 'serial', message: msg(++seq) }, t);
      m.tick(t);
    }
    expect(alerts().filter((c) => c === HaCode.powerSenseFaulty)).toHaveLength(2);
  });
});

function withTiming(): PairWorld['timing'] {
  return new PairWorld({ seed: 1 }).timing;
}

describe('PartnerPowerWatch', () => {
  it('reports the first reading and every edge, each change once', async () => {
    const vt = new VirtualTime();
    const chip = new SimGpioChip({ timers: vt.timers });
    chip.drive(5, 1);
    const line = chip.open(5, { direction: 'in', name: 'partnerPower' });
    const seen: boolean[] = [];
    const w = new PartnerPowerWatch({ line, timers: vt.timers, onChange: (g) => seen.push(g) });
    await w.start();
    expect(seen).toEqual([true]);
    chip.drive(5, 0);
    vt.advanceBy(1);
    expect(seen).toEqual([true, false]);
    expect(w.good).toBe(false);
    vt.advanceBy(1000);
    chip.drive(5, 1);
    vt.advanceBy(1);
    expect(seen).toEqual([true, false, true]);
    w.stop();
    chip.drive(5, 0);
    vt.advanceBy(1000);
    expect(seen).toEqual([true, false, true]);
  });

  it('the backstop poll catches a change whose edge was lost', async () => {
    const vt = new VirtualTime();
    let level: GpioValue = 1;
    // A line whose driver drops every edge.
    const line: GpioLine = {
      name: 'deaf',
      direction: 'in',
      read: () => Promise.resolve(level),
      write: () => Promise.reject(new Error('input')),
      watch: () => () => undefined,
      close: () => Promise.resolve(),
    };
    const seen: boolean[] = [];
    const w = new PartnerPowerWatch({ line, timers: vt.timers, onChange: (g) => seen.push(g), pollIntervalMs: 50 });
    await w.start();
    level = 0;
    vt.advanceBy(49);
    await Promise.resolve();
    expect(seen).toEqual([true]);
    vt.advanceBy(1);
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([true, false]);
    w.stop();
  });
});

describe('rig: the power relay drives the partner-power line', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  it('HA-5 a power cut reads as lost on the partner at once, restore as good; a broken wire sticks, heal mends it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-sense-'));
    cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
    const rig = new Rig({ dir, dataDisksPerBlade: 1, diskBytes: 1 << 20, nvramBytes: 64 * 1024, bladeCommand: () => [process.execPath, '-e', 'setInterval(() => {}, 1000)'] });
    await rig.up();
    cleanup.push(() => rig.down());
    const client = new RigControlClient({ socketPath: rig.controlSocketPath, blade: 'b' });
    await client.connect();
    cleanup.push(() => client.close());
    const line = await openRigGpio(client, { line: rigGpioLines.partnerPower, direction: 'in', name: 'partnerPower' });
    const edges: number[] = [];
    line.watch('both', (v) => edges.push(v));
    await client.request('ping');
    expect(await line.read()).toBe(1);

    await applyFault(rig, 'power-cut', ['a'], false);
    // At once: the relay's action drives the line before the fault command returns.
    expect(rig.status().gpio?.b.partnerPower).toBe(0);
    expect(await line.read()).toBe(0);
    await applyFault(rig, 'power-cut', ['a'], true);
    expect(await line.read()).toBe(1);

    // HA-6: the survivor's reset pulse after a power cut leaves the partner off (and its line lost).
    await applyFault(rig, 'power-cut', ['a'], false);
    const reset = await openRigGpio(client, { line: rigGpioLines.partnerReset, direction: 'out', activeLow: true, name: 'partnerReset' });
    await reset.write(1);
    await reset.write(0);
    await rig.hardware().settled();
    expect(rig.blade('a').power).toBe('off');
    expect(await line.read()).toBe(0);
    await applyFault(rig, 'power-cut', ['a'], true);
    expect(await line.read()).toBe(1);

    expect(await applyFault(rig, 'sense-wire', ['b', 'lost'], false)).toMatch(/stuck at lost/);
    expect(await line.read()).toBe(0);
    await applyFault(rig, 'sense-wire', ['b', 'good'], false);
    await applyFault(rig, 'power-cut', ['a'], false);
    expect(await line.read()).toBe(1);
    await applyFault(rig, 'sense-wire', ['b'], true);
    expect(await line.read()).toBe(0);
    await applyFault(rig, 'power-cut', ['a'], true);
    expect(await line.read()).toBe(1);
    // Blade a's own line follows b's power and was never touched.
    expect(rig.status().gpio?.a.partnerPower).toBe(1);
    await expect(applyFault(rig, 'sense-wire', ['b', 'maybe'], false)).rejects.toMatchObject({ code: 'ERR_RIG_FAULT_USAGE' });
    const deadline = Date.now() + 5000;
    while (edges.length < 8 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(edges).toEqual([0, 1, 0, 1, 0, 1, 0, 1]);
  });
});
