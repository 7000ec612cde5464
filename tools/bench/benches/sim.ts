// Simulation kernel speed: events per second of virtual-time scheduling (each event followed
// by a full microtask settle) and seeds per second of the demo area. Tells area authors how
// much virtual work a 100-seed CI run can afford.
import { parseArgs } from 'node:util';
import { Simulation } from '../../../firmware/ts/sim/kernel.ts';
import { runDemoSeed } from '../../../firmware/ts/sim/areas/demo.ts';
import type { Bench, BenchReport } from '../bench.ts';

export const bench: Bench = {
  name: 'sim',
  description: 'simulation kernel: events/s with microtask settling, demo-area seeds/s',
  async run(args): Promise<BenchReport> {
    const { values } = parseArgs({ args: [...args], options: { events: { type: 'string', default: '200000' }, seeds: { type: 'string', default: '200' } }, strict: true });
    const eventCount = Number(values.events);
    const seedCount = Number(values.seeds);

    // 100 tasks each awaiting virtual sleeps: every event resumes an async function.
    const sim = new Simulation({ seed: 1, buggify: false });
    let fired = 0;
    for (let t = 0; t < 100; t++) {
      const prng = sim.fork();
      sim.spawn(`t${t}`, async () => {
        while (fired < eventCount) {
          await sim.timers.sleep(prng.int(10));
          fired++;
        }
      });
    }
    const start = performance.now();
    await sim.runUntil(() => fired >= eventCount);
    const eventsMs = performance.now() - start;

    const startSeeds = performance.now();
    let steps = 0;
    for (let s = 1; s <= seedCount; s++) {
      const o = await runDemoSeed(s, (l) => {
        const m = / (\d+) steps/.exec(l);
        if (m !== null) steps += Number(m[1]);
      });
      if (!o.ok) throw new Error(`sim bench: demo seed ${s} failed: ${o.reason}`);
    }
    const seedsMs = performance.now() - startSeeds;

    const eventsPerSec = sim.steps / (eventsMs / 1000);
    const seedsPerSec = seedCount / (seedsMs / 1000);
    return {
      rows: [
        { metric: 'kernel events (async resume + settle)', value: eventsPerSec, unit: 'events/s' },
        { metric: 'demo area seeds', value: seedsPerSec, unit: 'seeds/s' },
        { metric: 'demo area events', value: steps / (seedsMs / 1000), unit: 'events/s' },
      ],
      figures: { simEventsPerSec: Math.round(eventsPerSec), demoSeedsPerSec: Math.round(seedsPerSec * 10) / 10, demoStepsPerSeed: Math.round(steps / seedCount) },
      notes: [`${sim.steps} kernel events; ${seedCount} demo seeds`],
    };
  },
};
