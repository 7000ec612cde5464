// The NvLog driver over an NVRAM: bad input at recovery (corrupted headers, wrong version,
// wrong blade id, garbage regions), write-through on a bad battery (NV-7), the power-fail
// seal (ST-5), the HA state area, a full log (SM-3 back-pressure), and the power monitor.
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../firmware/ts/core/crc32c.ts';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { Timers } from '../../firmware/ts/core/clock.ts';
import { SimGpioChip } from '../../firmware/ts/hal/gpio/sim/sim-gpio.ts';
import { Max17048Gauge } from '../../firmware/ts/hal/i2c/gauges.ts';
import { SimMax17048 } from '../../firmware/ts/hal/i2c/sim/devices.ts';
import { SimI2cBus } from '../../firmware/ts/hal/i2c/sim/sim-i2c-bus.ts';
import { SimNvram } from '../../firmware/ts/hal/nvram/sim/sim-nvram.ts';
import type { Nvram } from '../../firmware/ts/hal/nvram/nvram.ts';
import { decodeChangePayload } from '../../firmware/ts/nvlog/core/entry.ts';
import { HEADER_COPY_BYTES, computeLayout, encodeHeader } from '../../firmware/ts/nvlog/core/layout.ts';
import type { MirrorMessage } from '../../firmware/ts/nvlog/core/mirror.ts';
import { NvLog, lastNonZeroEnd, type NvLogOptions } from '../../firmware/ts/nvlog/nvlog.ts';
import { PowerMonitor, type PowerAlert } from '../../firmware/ts/nvlog/power.ts';
import { StepScheduler } from '../../firmware/ts/nvlog/sim/scheduler.ts';
import { TearingNvram } from '../../firmware/ts/nvlog/sim/tearing-nvram.ts';

const size = 8192 + 4 * 16384;
const clock = { nowMs: () => 0, wallNs: () => 0n };
const timers: Timers = { after: () => ({ cancel: () => undefined, refresh: () => undefined }), sleep: () => Promise.resolve() };

function memNvram(seed = 1): TearingNvram {
  return new TearingNvram(size, new Prng(seed), (_l, fn) => queueMicrotask(fn));
}

function open(nvram: Nvram, over: Partial<NvLogOptions> = {}) {
  return NvLog.open(nvram, { bladeId: 0, clock, timers, cpSeq: 0, ...over });
}

async function appendN(log: NvLog, n: number, bytes = 40): Promise<number[]> {
  const seqs: number[] = [];
  for (let i = 0; i < n; i++) seqs.push((await log.appendChange(new Uint8Array([i]), new Uint8Array(bytes).fill(i))).seq);
  return seqs;
}

describe('lastNonZeroEnd (the zero scan before clearing the tail at boot)', () => {
  it('finds the end of the last non-zero byte in a range, chunk boundaries included', () => {
    const naive = (b: Uint8Array, from: number, to: number): number => {
      while (to > from && b[to - 1] === 0) to--;
      return to;
    };
    const prng = new Prng(7);
    const b = new Uint8Array(300 * 1024);
    expect(lastNonZeroEnd(b, 0, b.length)).toBe(0);
    expect(lastNonZeroEnd(b, 100, 100)).toBe(100);
    for (const at of [0, 1, 65535, 65536, 65537, 131071, 200_000, b.length - 1]) {
      b.fill(0);
      b[at] = 1 + prng.int(255);
      for (const [from, to] of [[0, b.length], [at, b.length], [at + 1, b.length], [0, at + 1], [Math.max(0, at - 70_000), Math.min(b.length, at + 70_000)]] as const) {
        expect(lastNonZeroEnd(b, from, to)).toBe(naive(b, from, to));
      }
    }
  });
});

describe('NvLog open and recovery', () => {
  it('NV-5 formats a fresh NVRAM, then recovers its entries after a reboot with a new boot generation', async () => {
    const nv = memNvram();
    const a = await open(nv);
    expect(a.report.header.kind).toBe('fresh');
    expect(a.report.bootGeneration).toBe(1);
    expect(await appendN(a.log, 3)).toEqual([1, 2, 3]);
    a.log.close();
    nv.powerCut('tear');
    const b = await open(nv, { cpSeq: 1 });
    expect(b.report.bootGeneration).toBe(2);
    expect(b.plan.toApply.map((r) => r.seq)).toEqual([2, 3]);
    expect(b.report.problems).toEqual(['NVRAM header copy 1 is empty; copy 0 used']);
    expect((await b.log.appendChange(new Uint8Array([9]), new Uint8Array(1))).seq).toBe(4);
  });

  it('NV-6 garbage everywhere: reported clearly, nothing invented, the log starts afresh', async () => {
    const nv = memNvram();
    nv.poke(0, new Prng(5).bytes(size));
    const a = await open(nv);
    expect(a.report.header).toMatchObject({ kind: 'error', code: 'ERR_NVLOG_HEADER_CORRUPT' });
    expect(a.report.problems[0]).toMatch(/ERR_NVLOG_HEADER_CORRUPT: both NVRAM header copies are unusable/);
    expect(a.plan.toApply).toEqual([]);
    expect(await appendN(a.log, 2)).toEqual([1, 2]);
    a.log.close();
    const b = await open(nv);
    expect(b.report.header.kind).toBe('use');
    expect(b.plan.toApply.map((r) => r.seq)).toEqual([1, 2]);
  });

  it('NV-6 both header copies corrupted: the valid entries are still recovered, never silently dropped', async () => {
    const nv = memNvram();
    const a = await open(nv);
    await appendN(a.log, 4);
    a.log.close();
    nv.poke(0, new Uint8Array(2 * HEADER_COPY_BYTES).fill(0xa5));
    const b = await open(nv);
    expect(b.report.header).toMatchObject({ kind: 'error', code: 'ERR_NVLOG_HEADER_CORRUPT' });
    expect(b.plan.toApply.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(decodeChangePayload((b.plan.toApply[2] as { payload: Uint8Array }).payload).descriptor).toEqual(new Uint8Array(40).fill(2));
    // The new boot generation is above every entry's, so old entries can never pass for new.
    expect(b.report.bootGeneration).toBeGreaterThan(1);
  });

  it('NV-6 one header copy torn: the other one is used and the tear is reported', async () => {
    const nv = memNvram();
    const a = await open(nv);
    await a.log.setBattery('good');
    a.log.close();
    nv.poke(HEADER_COPY_BYTES + 7, new Uint8Array([0xff]));
    const b = await open(nv);
    expect(b.report.header).toMatchObject({ kind: 'use', copy: 0, otherCopy: 'torn' });
  });

  it('NV-6 an NVRAM written by an unknown format version is refused, not reinterpreted', async () => {
    const nv = memNvram();
    const l = computeLayout(size);
    const h = encodeHeader({ bladeId: 0, bootGeneration: 3, writeCounter: 1, battery: 'good', sealed: false, sealedSeq: 0, layout: l });
    new DataView(h.buffer).setUint16(4, 7, true);
    new DataView(h.buffer).setUint32(124, crc32c(h.subarray(0, 124)), true);
    nv.poke(0, h);
    await expect(open(nv)).rejects.toSatisfy((e: unknown) => isTwinbladeError(e, 'ERR_NVLOG_HEADER_VERSION'));
    const forced = await open(nv, { reformat: true });
    expect(forced.report.problems[0]).toMatch(/ERR_NVLOG_HEADER_VERSION/);
  });

  it("NV-6 the partner's NVRAM (wrong blade id) is refused", async () => {
    const nv = memNvram();
    (await open(nv, { bladeId: 1 })).log.close();
    await expect(open(nv, { bladeId: 0 })).rejects.toSatisfy((e: unknown) => isTwinbladeError(e, 'ERR_NVLOG_BLADE_ID'));
  });

  it('NV-6 an NVRAM of another size than its header says is refused', async () => {
    const big = new TearingNvram(2 * size, new Prng(1), (_l, fn) => queueMicrotask(fn));
    (await open(big)).log.close();
    const l = computeLayout(2 * size);
    const small = memNvram();
    small.poke(0, encodeHeader({ bladeId: 0, bootGeneration: 1, writeCounter: 1, battery: 'good', sealed: false, sealedSeq: 0, layout: l }));
    await expect(open(small)).rejects.toSatisfy((e: unknown) => isTwinbladeError(e, 'ERR_NVLOG_LAYOUT'));
  });

  it('NV-6 a corrupted entry in the middle ends the log there and the intact ones after it are reported', async () => {
    const nv = memNvram();
    const a = await open(nv);
    await appendN(a.log, 5);
    a.log.close();
    const l = computeLayout(size);
    // Entry 3 starts after two 80-byte entries (32 header + 2 key len + 1 key + 40 data, padded).
    nv.poke(l.localOffset + 2 * 80 + 40, new Uint8Array([0xee]));
    const b = await open(nv);
    expect(b.plan.toApply.map((r) => r.seq)).toEqual([1, 2]);
    expect(b.report.halves[0]).toMatchObject({ endRow: 'R5', beyondBreak: 2 });
    expect(b.report.problems.some((p) => /2 intact entries after a torn-body/.test(p))).toBe(true);
  });

  it('NV-5 after giveback past entries this copy lacks, new entries start a new run (no gap written into a half)', async () => {
    const nv = memNvram();
    const a = await open(nv);
    await appendN(a.log, 4);
    a.log.close();
    // The partner replayed 1..8 from its mirror (5..8 never became durable here) and wrote CP 8.
    const b = await open(nv, { cpSeq: 8, mode: 'after-giveback' });
    expect(b.plan.toApply).toEqual([]);
    expect(b.log.sm.get(new Uint8Array([2]))?.state).toBe('applied');
    // New entries follow a release entry through 8: nothing before it is replayed again.
    const s1 = (await b.log.appendChange(new Uint8Array([9]), new Uint8Array(16))).seq;
    const s2 = (await b.log.appendChange(new Uint8Array([10]), new Uint8Array(16))).seq;
    expect(s1).toBeGreaterThan(8);
    expect(s2).toBe(s1 + 1);
    b.log.close();
    const c = await open(nv, { cpSeq: 8 });
    expect(c.plan.toApply.map((r) => r.seq)).toEqual([s1, s2]);
    expect(c.report.problems.filter((p) => /R10|gap/.test(p))).toEqual([]);
  });

  it('recovers on the HAL simulated NVRAM driver too (power cut tears the last unpersisted write)', async () => {
    const nv = new SimNvram({ sizeBytes: size, prng: new Prng(3) });
    const a = await open(nv);
    await appendN(a.log, 3);
    const pending = a.log.appendChange(new Uint8Array([7]), new Uint8Array(100));
    a.log.close();
    nv.powerCut();
    void pending;
    const b = await open(nv.reopen());
    const seqs = b.plan.toApply.map((r) => r.seq);
    expect(seqs.slice(0, 3)).toEqual([1, 2, 3]);
    expect(seqs.length).toBeLessThanOrEqual(4);
  });
});

describe('NV-7 battery, write-through and the power-fail seal', () => {
  it('NV-7 a low or failed battery switches to write-through, reported with every append and as an event', async () => {
    const { log } = await open(memNvram());
    const events: boolean[] = [];
    log.onWriteThrough((w) => events.push(w));
    expect((await log.appendChange(new Uint8Array([1]), new Uint8Array(4))).writeThrough).toBe(false);
    await log.setBattery('low');
    expect((await log.appendChange(new Uint8Array([2]), new Uint8Array(4))).writeThrough).toBe(true);
    await log.setBattery('failed');
    await log.setBattery('good');
    expect(log.writeThrough).toBe(false);
    expect(events).toEqual([true, false]);
  });

  it('NV-7 the battery state is kept in the header across a reboot', async () => {
    const nv = memNvram();
    const a = await open(nv);
    await a.log.setBattery('failed');
    a.log.close();
    const b = await open(nv);
    expect(b.log.battery).toBe('failed');
    expect(b.log.writeThrough).toBe(true);
  });

  it('ST-5 a power failure stops new changes, persists those in flight and seals the log', async () => {
    const sched = new StepScheduler();
    const prng = new Prng(9);
    const nv = new TearingNvram(size, prng, (label, fn) => sched.at(1, label, fn));
    const opening = open(nv, { clock: sched, timers: sched });
    await sched.runUntil(5);
    const { log } = await opening;
    const inFlight = [1, 2, 3].map((i) => log.appendChange(new Uint8Array([i]), new Uint8Array(64)));
    const sealed: number[] = [];
    log.onSealed((s) => sealed.push(s));
    const sealing = log.powerFail();
    await expect(log.appendChange(new Uint8Array([4]), new Uint8Array(1))).rejects.toSatisfy((e: unknown) => isTwinbladeError(e, 'ERR_NVLOG_POWER_FAIL'));
    await sched.runUntil(20);
    await sealing;
    await Promise.all(inFlight);
    expect(sealed).toEqual([3]);
    log.close();
    nv.powerCut('tear');
    const reopening = open(nv, { clock: sched, timers: sched });
    await sched.runUntil(40);
    const b = await reopening;
    expect(b.report).toMatchObject({ sealed: true, sealedSeq: 3, sealMismatch: false });
    expect(b.plan.toApply.map((r) => r.seq)).toEqual([1, 2, 3]);
  });
});

describe('HA-8 degradation is announced before the local copy alone answers', () => {
  it('HA-8 appends wait for announceDegraded at boot and after the partner goes away', async () => {
    const gates: Array<() => void> = [];
    const reasons: string[] = [];
    const announceDegraded = (reason: string): Promise<void> => {
      reasons.push(reason);
      return new Promise<void>((resolve) => gates.push(resolve));
    };
    const { log } = await open(memNvram(), { announceDegraded });
    const sent: MirrorMessage[] = [];
    log.attachTransport({ send: (m) => sent.push(m) });
    let done = 0;
    const first = log.appendChange(new Uint8Array([1]), new Uint8Array(8)).then(() => done++);
    await new Promise((r) => setTimeout(r, 5));
    expect(done).toBe(0);
    gates.shift()?.();
    await first;
    // The partner greets, the mirror resynchronises, then the partner vanishes mid-append.
    log.onPeerMessage({ kind: 'hello', from: 1, bootGeneration: 1, halfBytes: log.layout.halfBytes });
    const reset = sent.find((m) => m.kind === 'reset');
    expect(reset).toBeDefined();
    const epoch = reset?.kind === 'reset' ? reset.epoch : 0;
    log.onPeerMessage({ kind: 'ack', origin: 0, epoch, seq: 1 });
    expect(log.mirrorState).toBe('synced');
    const second = log.appendChange(new Uint8Array([2]), new Uint8Array(8)).then(() => done++);
    await new Promise((r) => setTimeout(r, 5));
    expect(done).toBe(1);
    log.peerDisconnected();
    expect(log.mirrorState).toBe('degraded');
    await new Promise((r) => setTimeout(r, 5));
    expect(done).toBe(1);
    gates.shift()?.();
    await second;
    expect(done).toBe(2);
    expect(reasons).toEqual(['boot: the partner has not resynchronised this log yet', 'partner unreachable']);
  });
});

describe('HA state area and log depth', () => {
  it('stores the HA state durably; a torn newer slot falls back to the previous value', async () => {
    const nv = memNvram();
    const { log } = await open(nv);
    expect(log.readHaState()).toBeUndefined();
    await log.writeHaState(new Uint8Array([1, 1]));
    await log.writeHaState(new Uint8Array([2, 2]));
    expect(log.readHaState()).toEqual(new Uint8Array([2, 2]));
    const l = computeLayout(size);
    // Counter 2 went to slot 0; tear it.
    nv.poke(l.stateAreaOffset + 24, new Uint8Array([0x77]));
    const { log: again } = await open(nv);
    expect(again.readHaState()).toEqual(new Uint8Array([1, 1]));
  });

  it('SM-3 a full log refuses appends (busy) until a consistency point releases a half; high-water marks are exported', async () => {
    const { log } = await open(memNvram());
    let full = 0;
    log.onFull(() => full++);
    let n = 0;
    let err: unknown;
    try {
      for (;;) {
        await log.appendChange(new Uint8Array([n & 0xff, n >> 8]), new Uint8Array(1000));
        n++;
      }
    } catch (e) {
      err = e;
    }
    expect(isTwinbladeError(err, 'ERR_NVLOG_FULL') && (err as { kind: string }).kind).toBe('busy');
    expect(full).toBe(1);
    const m = log.metrics();
    expect(m.logBytesHighWater).toBeGreaterThan(28_000);
    expect(m.halfSwitches).toBe(1);
    log.beginCp();
    expect(log.release(n)).toBeGreaterThan(0);
    await log.appendChange(new Uint8Array([0xff, 0xff]), new Uint8Array(1000));
    expect(log.metrics().fullRejections).toBe(1);
  });
});

describe('NV-7 power monitor (I2C gauge and power-fail GPIO)', () => {
  async function rig(soc: number) {
    const sched = new StepScheduler();
    const bus = new SimI2cBus();
    const chip = new SimMax17048({ stateOfChargePercent: soc });
    bus.attach(0x36, chip);
    const gpio = new SimGpioChip({ timers: sched });
    const line = gpio.open(4, { direction: 'in' });
    const nv = new TearingNvram(size, new Prng(2), (l, fn) => sched.at(0.1, l, fn));
    const opening = open(nv, { clock: sched, timers: sched });
    await sched.runUntil(1);
    const { log } = await opening;
    const alerts: PowerAlert[] = [];
    const mon = new PowerMonitor({ log, timers: sched, gauge: new Max17048Gauge(bus), powerFailLine: line, onAlert: (a) => alerts.push(a) });
    const starting = mon.start();
    await sched.runUntil(2);
    await starting;
    return { sched, bus, chip, gpio, log, mon, alerts };
  }

  it('NV-7 a good battery keeps the log acknowledging before commit', async () => {
    const r = await rig(80);
    expect(r.log.battery).toBe('good');
    expect(r.log.writeThrough).toBe(false);
    r.mon.stop();
  });

  it('NV-7 a low battery read over I2C turns on write-through with an alert', async () => {
    const r = await rig(10);
    expect(r.log.battery).toBe('low');
    expect(r.log.writeThrough).toBe(true);
    expect(r.alerts.map((a) => a.code)).toContain('ALERT_NVRAM_BATTERY_LOW');
    r.mon.stop();
  });

  it('NV-7 an unreadable gauge counts as a failed battery after repeated failures', async () => {
    const r = await rig(80);
    r.bus.detach(0x36);
    const poll = async () => {
      const p = r.mon.poll();
      await r.sched.runUntil(r.sched.nowMs() + 1);
      await p;
    };
    await poll();
    await poll();
    expect(r.log.battery).toBe('good');
    await poll();
    expect(r.log.battery).toBe('failed');
    expect(r.alerts.at(-1)?.code).toBe('ALERT_NVRAM_BATTERY_FAILED');
    expect(r.alerts.at(-1)?.writeThrough).toBe(true);
    r.mon.stop();
  });

  it('ST-5 a power-fail edge on the GPIO input seals the log', async () => {
    const r = await rig(80);
    expect(r.alerts.map((a) => a.code)).toEqual(['ALERT_NVRAM_BATTERY_GOOD']);
    r.alerts.length = 0;
    r.gpio.drive(4, 1);
    await r.sched.runUntil(10);
    expect(r.alerts.map((a) => a.code)).toEqual(['ALERT_POWER_FAIL', 'ALERT_NVRAM_SEALED']);
    await expect(r.log.appendChange(new Uint8Array([1]), new Uint8Array(1))).rejects.toSatisfy((e: unknown) => isTwinbladeError(e, 'ERR_NVLOG_POWER_FAIL'));
    r.mon.stop();
  });
});
