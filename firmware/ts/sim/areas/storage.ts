// The storage simulation area: RAID over simulated disks with the copy-on-write file system
// on top, driven by random changes checked against the reference model, with CPs (on demand,
// on the timer and on dirty data), power cuts that tear unflushed writes, and one disk
// failure with a rebuild onto the spare. After every cut: reassemble, mount the last CP,
// replay the log after its recorded sequence, fsck clean, contents equal to the model.
import type { SimArea, SimOutcome } from '../area.ts';
import { Simulation } from '../kernel.ts';
import { SimBlockDevice } from '../../hal/block/sim/sim-block-device.ts';
import { MemFs } from '../../fsapi/memfs.ts';
import { createVolume, openVolume, type RaidVolume } from '../../storage/raid/index.ts';
import { CowFs, mkfs } from '../../storage/fs/cowfs.ts';
import { fsck } from '../../storage/fs/fsck.ts';
import { ModelHarness } from '../../storage/fs/workload.ts';

/** Named limits of the workload. */
export const storageSimLimits = {
  memberCount: 4,
  diskSizeBytes: 8 * 1024 * 1024,
  stripeUnitBytes: 16 * 1024,
  bootCountMax: 4,
  /** Power is cut this long after a boot's recovery, at most (virtual ms). */
  uptimeMaxMs: 300,
  /** Changes the last (clean) boot makes before shutting down. */
  finalStepCount: 40,
  diskFailureProbability: 0.4,
  cpIntervalMs: 200,
  dirtyBytesMax: 256 * 1024,
} as const;

const fsid = 0x5eedn;

export async function runStorageSeed(seed: number, log: (line: string) => void): Promise<SimOutcome> {
  const L = storageSimLimits;
  const sim = new Simulation({ seed, virtualTimeMaxMs: 3_600_000, buggify: false });
  const prng = sim.fork();
  const disk = (name: string): SimBlockDevice =>
    new SimBlockDevice({
      timers: sim.timers,
      prng: sim.fork(),
      name,
      sizeBytes: L.diskSizeBytes,
      sectorSize: 512,
      latency: { readMs: 0.05, writeMs: 0.1, flushMs: 0.5, jitterMs: 0.2 },
    });
  const disks = Array.from({ length: L.memberCount }, (_, i) => disk(`d${i}`));
  const spare = disk('spare');
  const model = new MemFs({ fsid });
  let harness: ModelHarness | undefined;
  let diskFailed = false;
  const boots = prng.range(2, L.bootCountMax);
  try {
    for (let boot = 1; boot <= boots; boot++) {
      const domain = sim.domain(`boot${boot}`);
      const handles = [...disks, spare].map((d) => d.attach({ timers: domain.timers }));
      const raidOpts = { pairId: 'sim-pair', volumeId: 'vol0', clock: sim.clock, timers: domain.timers, prng: prng.fork() };
      let volume: RaidVolume;
      if (boot === 1) {
        volume = await sim.run(() =>
          createVolume(handles.slice(0, L.memberCount), { ...raidOpts, spares: handles.slice(L.memberCount), stripeUnitBytes: L.stripeUnitBytes }),
        );
        await sim.run(() => mkfs(volume, { fsid }));
      } else {
        volume = await sim.run(() => openVolume(handles, raidOpts));
      }
      const problems = await sim.run(() => fsck(volume));
      if (problems.length > 0) return { ok: false, reason: `boot ${boot}: fsck after recovery: ${problems.map((p) => `${p.code} ${p.message}`).join('; ')}` };
      const fs = await sim.run(() =>
        CowFs.mount(volume, { timers: domain.timers, cpIntervalMs: L.cpIntervalMs, dirtyBytesMax: L.dirtyBytesMax, cachePagesMax: 256 }),
      );
      const h = harness ?? new ModelHarness(fs, model, prng.fork(), { writeOffsetMax: 512 * 1024, sparseWriteChance: 0.005 });
      harness = h;
      if (boot > 1) {
        const replayed = await sim.run(() => h.replay(fs));
        const diff = await sim.run(() => h.compare());
        log(`t=${sim.nowMs.toFixed(3)} boot ${boot}: mounted CP ${fs.cpNumber} (volume ${volume.status().state}), replayed ${replayed} changes`);
        if (diff !== undefined) return { ok: false, reason: `boot ${boot}: after replay: ${diff}` };
      }
      fs.startCpTimer();
      const last = boot === boots;
      let stepsLeft = last ? L.finalStepCount : Number.MAX_SAFE_INTEGER;
      let done = false;
      sim.spawn(`workload${boot}`, async () => {
        try {
          while (stepsLeft-- > 0) {
            await h.step();
            if (prng.chance(0.05)) await fs.takeCp();
            await domain.timers.sleep(prng.range(0, 4));
          }
          done = true;
        } catch (e) {
          // A power cut strands the blade's work: its I/O never completes or rejects.
          if (!domain.alive) return;
          throw e;
        }
      });
      if (!diskFailed && prng.chance(L.diskFailureProbability)) {
        // One disk at a time: the spare takes its place through a rebuild.
        diskFailed = true;
        const victim = prng.pick(disks);
        const atMs = prng.range(1, L.uptimeMaxMs);
        sim.timers.after(atMs, () => {
          victim.fail();
          log(`t=${sim.nowMs.toFixed(3)} boot ${boot}: disk ${victim.name} failed`);
        });
      }
      if (last) {
        await sim.runUntil(() => done);
        const cp = await sim.run(() => fs.takeCp());
        const diff = await sim.run(() => h.compare());
        if (diff !== undefined) return { ok: false, reason: `final: ${diff}` };
        await sim.run(() => fs.close());
        const finalProblems = await sim.run(() => fsck(volume));
        if (finalProblems.length > 0) return { ok: false, reason: `final fsck: ${finalProblems.map((p) => `${p.code} ${p.message}`).join('; ')}` };
        log(`t=${sim.nowMs.toFixed(3)} boot ${boot}: clean shutdown at CP ${cp.cpNumber}, ${h.stepCount} changes in all`);
        await sim.run(() => volume.close());
      } else {
        await sim.runUntil(sim.nowMs + prng.range(1, L.uptimeMaxMs));
        domain.kill();
        // A powered-off blade issues no more I/O: its code may still run promise
        // continuations (an in-flight write rejected by the cut), so its disk handles are
        // closed here; anything it tries later is refused instead of landing on the disks
        // at some later cut.
        for (const h of handles) void h.close();
        let kept = 0;
        let dropped = 0;
        let torn = 0;
        for (const d of [...disks, spare]) {
          const r = d.powerCut();
          kept += r.kept;
          dropped += r.dropped;
          torn += r.torn;
        }
        log(`t=${sim.nowMs.toFixed(3)} boot ${boot}: power cut at CP ${fs.cpNumber} after ${h.stepCount} changes; unflushed writes kept ${kept} dropped ${dropped} torn ${torn}`);
      }
    }
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  }
}

export const area: SimArea = {
  name: 'storage',
  description: 'RAID + copy-on-write file system: random changes vs the model, CPs, power cuts, a disk failure and rebuild; fsck and replay after every cut',
  runSeed: runStorageSeed,
};
