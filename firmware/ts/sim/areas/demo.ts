// The demo simulation area: a write-ahead log on a simulated disk with flushes and power
// cuts, some announced by a power-fail GPIO edge; the checker proves that every record
// acknowledged durable survives every cut, and that a warned blade saves everything it wrote.
import type { SimArea, SimOutcome } from '../area.ts';
import { bytesEqual, toHex } from '../../core/bytes.ts';
import { Simulation, SimulationError } from '../kernel.ts';
import { FaultBudget } from '../fault-budget.ts';
import { SimBlockDevice } from '../../hal/block/sim/sim-block-device.ts';
import { SimGpioChip } from '../../hal/gpio/sim/sim-gpio.ts';
import { DemoWal, recoverWal, type WalOptions, type WalRecovery } from '../demo/wal.ts';

/** Named limits of the workload. */
export const demoLimits = {
  diskSizeBytes: 256 * 1024,
  bootCountMax: 4,
  appendsInFlightMax: 4,
  bodyBytesMax: 1500,
  /** Power is cut this long after a boot, at most. */
  uptimeMaxMs: 120,
  /** Chance that a cut is announced by the power-fail input (a supply with hold-up time). */
  powerFailWarningProbability: 0.5,
  /** Hold-up time between the power-fail edge and the cut: enough to drain and flush. */
  holdUpMinMs: 12,
  holdUpMaxMs: 30,
} as const;

export interface DemoOptions extends WalOptions {
  /** Override the number of boots (each but the last ends in a power cut). */
  boots?: number;
}

/** Runs one seed of the demo workload; exported so tests can run it with a planted bug. */
export async function runDemoSeed(seed: number, log: (line: string) => void, options: DemoOptions = {}): Promise<SimOutcome> {
  const sim = new Simulation({ seed, virtualTimeMaxMs: 60_000 });
  const prng = sim.fork();
  const disk = new SimBlockDevice({
    timers: sim.timers,
    prng: sim.fork(),
    name: 'demo-disk',
    sizeBytes: demoLimits.diskSizeBytes,
    sectorSize: 512,
    latency: { readMs: 0.05, writeMs: 0.2, flushMs: 1, jitterMs: 2 },
  });
  // The design survives one power cut at a time; the budget keeps the workload honest about that.
  const budget = new FaultBudget({ concurrentMax: { 'power-cut': 1 } });
  // The power-fail input: active low, like a supervisor chip's open-drain PFO output.
  const gpio = new SimGpioChip({ timers: sim.timers }, 'demo-gpio', 4);
  const powerFailPin = 0;
  gpio.drive(powerFailPin, 1);
  const boots = options.boots ?? 1 + prng.range(1, demoLimits.bootCountMax - 1);
  /** Every body ever written for a sequence number (any boot). */
  const issued = new Map<number, Uint8Array[]>();
  /** The body of each acknowledged-durable record. */
  const acked = new Map<number, Uint8Array>();
  let ackedMax = 0;

  const check = (rec: WalRecovery, when: string): string | undefined => {
    if (rec.records.length < ackedMax) {
      return `${when}: recovered ${rec.records.length} records but ${ackedMax} were acknowledged durable (lost seq ${rec.records.length + 1})`;
    }
    for (const r of rec.records) {
      const a = acked.get(r.seq);
      if (a !== undefined && !bytesEqual(a, r.body)) return `${when}: seq ${r.seq} recovered with different content than acknowledged`;
      if (!(issued.get(r.seq) ?? []).some((b) => bytesEqual(b, r.body))) return `${when}: seq ${r.seq} recovered content that was never written (${toHex(r.body.subarray(0, 8))}...)`;
    }
    return undefined;
  };

  try {
    for (let boot = 1; boot <= boots; boot++) {
      const domain = sim.domain(`boot${boot}`);
      const rec = await sim.run(() => recoverWal(disk));
      const problem = check(rec, `boot ${boot} recovery`);
      if (problem !== undefined) return { ok: false, reason: problem };
      // What was recovered is what the log now holds: later boots must keep it all.
      for (const r of rec.records) if (!acked.has(r.seq)) acked.set(r.seq, r.body);
      ackedMax = rec.records.length;
      log(`t=${sim.nowMs.toFixed(3)} boot ${boot}: recovered ${rec.records.length} records`);

      const wal = new DemoWal(disk, domain.timers, boot, rec, options);
      let writerDone = false;
      let issuedMax = rec.records.length;
      const last = boot === boots;
      // On the power-fail edge the writer stops taking work, drains and flushes (ST-5 style).
      let stopping = false;
      const powerFail = gpio.open(powerFailPin, { direction: 'in', activeLow: true, name: 'power-fail' });
      powerFail.watch('rising', () => {
        stopping = true;
      });
      sim.spawn(`writer${boot}`, async () => {
        try {
          await writer();
        } catch (e) {
          // Operations in flight at a power cut reject: the blade they belonged to is gone.
          if (!domain.alive) return;
          throw e;
        }
      });
      async function writer(): Promise<void> {
        const inFlight = new Set<Promise<number>>();
        const appendsMax = last ? prng.range(5, 20) : prng.range(10, 80);
        for (let i = 0; i < appendsMax && !stopping; i++) {
          const body = prng.bytes(1 + prng.int(demoLimits.bodyBytesMax));
          if (!wal.fits(body.length)) break;
          const p = wal.append(body);
          // The sequence number is known synchronously from issue order.
          const seq = rec.records.length + i + 1;
          issuedMax = seq;
          issued.set(seq, [...(issued.get(seq) ?? []), body]);
          inFlight.add(p);
          const settled = (): void => void inFlight.delete(p);
          p.then(settled, settled);
          if (inFlight.size >= demoLimits.appendsInFlightMax) await Promise.race(inFlight);
          if (prng.chance(0.25)) {
            await commitAndRecord(wal, issued, acked, (n) => (ackedMax = Math.max(ackedMax, n)));
          }
          await domain.timers.sleep(prng.range(0, 3));
        }
        await Promise.all(inFlight);
        await commitAndRecord(wal, issued, acked, (n) => (ackedMax = Math.max(ackedMax, n)));
        writerDone = true;
      }

      if (last) {
        await sim.runUntil(() => writerDone);
        await powerFail.close();
        log(`t=${sim.nowMs.toFixed(3)} boot ${boot}: clean shutdown, durable ${wal.durableSeq}`);
      } else {
        const cutAt = Math.min(sim.nowMs + prng.range(1, demoLimits.uptimeMaxMs), sim.virtualTimeMaxMs);
        const grant = budget.tryGrant('power-cut', 'blade');
        if (grant === undefined) return { ok: false, reason: 'fault budget refused a power cut while none was active' };
        const holdUpMs = prng.chance(demoLimits.powerFailWarningProbability) ? prng.range(demoLimits.holdUpMinMs, demoLimits.holdUpMaxMs) : 0;
        if (holdUpMs > 0 && cutAt - holdUpMs > sim.nowMs) {
          await sim.runUntil(cutAt - holdUpMs);
          gpio.drive(powerFailPin, 0);
          log(`t=${sim.nowMs.toFixed(3)} boot ${boot}: power-fail warning, ${holdUpMs} ms hold-up`);
        }
        await sim.runUntil(cutAt);
        if (stopping && writerDone && wal.durableSeq < issuedMax) {
          return { ok: false, reason: `boot ${boot}: saved after the power-fail warning but only ${wal.durableSeq} of ${issuedMax} records are durable` };
        }
        if (stopping && !writerDone) return { ok: false, reason: `boot ${boot}: the power-fail save did not finish within the ${holdUpMs} ms hold-up` };
        domain.kill();
        const cut = disk.powerCut();
        await powerFail.close();
        gpio.drive(powerFailPin, 1);
        log(`t=${sim.nowMs.toFixed(3)} boot ${boot}: power cut, acked ${ackedMax}, unflushed writes kept ${cut.kept} dropped ${cut.dropped} torn ${cut.torn}`);
        grant.release();
      }
    }
    const final = await sim.run(() => recoverWal(disk));
    const problem = check(final, 'final recovery');
    if (problem !== undefined) return { ok: false, reason: problem };
    const fired = sim.buggifyReport().filter((s) => s.fired > 0).map((s) => `${s.site}x${s.fired}`);
    log(`t=${sim.nowMs.toFixed(3)} done: ${final.records.length} records, ${sim.steps} steps${fired.length > 0 ? `, buggify ${fired.join(' ')}` : ''}`);
    return { ok: true };
  } catch (e) {
    if (e instanceof SimulationError) return { ok: false, reason: `${e.code}: ${e.message}` };
    throw e;
  }
}

async function commitAndRecord(wal: DemoWal, issued: Map<number, Uint8Array[]>, acked: Map<number, Uint8Array>, onAcked: (n: number) => void): Promise<void> {
  const before = wal.durableSeq;
  const now = await wal.commit();
  for (let s = before + 1; s <= now; s++) {
    const bodies = issued.get(s);
    const body = bodies?.[bodies.length - 1];
    if (body !== undefined) acked.set(s, body);
  }
  onAcked(now);
}

export const area: SimArea = {
  name: 'demo',
  description: 'write-ahead log on a simulated disk with power cuts: every flushed record survives',
  runSeed: (seed, log) => runDemoSeed(seed, log),
};
