// The simulation runner: `npm run sim -- --seeds N [--seed S] [--base B] [--area NAME] [--verbose]`.
// Discovers the areas in firmware/ts/sim/areas/, runs each seed of each, prints every failure
// with the command that reproduces it, and ends with `sim: N passed, F failed`.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readdir } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { SimArea, SimOutcome } from '../../firmware/ts/sim/area.ts';

const defaultAreasDir = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../firmware/ts/sim/areas');

const usage = `usage: npm run sim -- [--seeds N] [--seed S] [--base B] [--area NAME] [--verbose]
  --seeds N     run N seeds per area: B, B+1, ..., B+N-1 (default 1)
  --base B      first seed when --seeds is used (default 1)
  --seed S      run exactly seed S (overrides --seeds/--base)
  --area NAME   run one area (default: all areas, in name order)
  --verbose     print every area log line
  --jobs J      run seeds in J worker processes (same output, in the same order)
  --list        list the areas and exit
  --areas-dir D load areas from D instead of firmware/ts/sim/areas
A seed passes when every selected area passes it; the counts are seeds.`;

/**
 * Loads every area in `dir` (sorted by file name). An area file that fails to load, or does
 * not export a SimArea, becomes an area that fails every seed with the reason, so one broken
 * area never hides the results of the others.
 */
export async function discoverAreas(dir: string): Promise<SimArea[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).sort();
  const areas: SimArea[] = [];
  const names = new Set<string>();
  for (const f of files) {
    const fallbackName = basename(f, '.ts');
    let area: SimArea;
    try {
      const mod = (await import(pathToFileURL(join(dir, f)).href)) as { area?: SimArea };
      if (mod.area === undefined || typeof mod.area.runSeed !== 'function' || typeof mod.area.name !== 'string') {
        throw new Error('it does not export `area` (a SimArea)');
      }
      area = mod.area;
    } catch (e) {
      const reason = `cannot load area file ${f}: ${oneLine(e instanceof Error ? e.message : String(e))}`;
      area = { name: fallbackName, description: 'failed to load', runSeed: async () => ({ ok: false, reason }) };
    }
    if (names.has(area.name)) {
      const reason = `two area files export the name ${JSON.stringify(area.name)} (second: ${f})`;
      area = { name: `${area.name}@${fallbackName}`, description: 'duplicate name', runSeed: async () => ({ ok: false, reason }) };
    }
    names.add(area.name);
    areas.push(area);
  }
  return areas;
}

function parseSeed(text: string, flag: string): number {
  if (!/^-?\d+$/.test(text)) throw new Error(`sim: ${flag} must be an integer, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`sim: ${flag} out of range: ${text}`);
  return n;
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** The result of one (area, seed) run, with the area's log lines. */
interface SeedResult {
  area: string;
  seed: number;
  ok: boolean;
  reason: string;
  lines: string[];
}

async function runOne(area: SimArea, seed: number): Promise<SeedResult> {
  const lines: string[] = [];
  let outcome: SimOutcome;
  try {
    outcome = await area.runSeed(seed, (line) => lines.push(line));
  } catch (e) {
    outcome = { ok: false, reason: `threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}` };
  }
  return { area: area.name, seed, ok: outcome.ok, reason: outcome.ok ? '' : outcome.reason, lines };
}

/** Worker mode: runs the listed `area:seed` tasks and prints one JSON line per result. */
async function worker(areas: SimArea[], tasks: string, out: (line: string) => void): Promise<number> {
  const byName = new Map(areas.map((a) => [a.name, a]));
  for (const task of tasks.split(',').filter((t) => t !== '')) {
    const at = task.lastIndexOf(':');
    const area = byName.get(task.slice(0, at));
    const seed = Number(task.slice(at + 1));
    const result: SeedResult =
      area === undefined ? { area: task.slice(0, at), seed, ok: false, reason: 'worker: unknown area', lines: [] } : await runOne(area, seed);
    out(JSON.stringify(result));
  }
  return 0;
}

/**
 * Runs the tasks in `jobs` child processes of this script (interleaved so each gets a mix of
 * areas) and returns every result. A worker that dies fails its unfinished tasks.
 */
async function runParallel(tasks: { area: SimArea; seed: number }[], jobs: number, areasDir: string): Promise<Map<string, SeedResult>> {
  const results = new Map<string, SeedResult>();
  const script = fileURLToPath(import.meta.url);
  await Promise.all(
    Array.from({ length: jobs }, async (_, w) => {
      const mine = tasks.filter((_t, i) => i % jobs === w);
      if (mine.length === 0) return;
      const child = spawn(process.execPath, [...process.execArgv, script, '--worker', mine.map((t) => `${t.area.name}:${t.seed}`).join(','), '--areas-dir', areasDir], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const rl = createInterface({ input: child.stdout });
      rl.on('line', (line) => {
        try {
          const r = JSON.parse(line) as SeedResult;
          results.set(`${r.area}\u0000${r.seed}`, r);
        } catch {
          // Not a result line (an area printed to stdout): ignore it.
        }
      });
      const code = await new Promise<number | null>((done) => child.on('close', (c) => done(c)));
      for (const t of mine) {
        const k = `${t.area.name}\u0000${t.seed}`;
        if (!results.has(k)) results.set(k, { area: t.area.name, seed: t.seed, ok: false, reason: `worker process exited (code ${String(code)}) before finishing this seed`, lines: [] });
      }
    }),
  );
  return results;
}

export async function main(argv: readonly string[], out: (line: string) => void): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        seeds: { type: 'string' },
        seed: { type: 'string' },
        base: { type: 'string' },
        area: { type: 'string' },
        verbose: { type: 'boolean', default: false },
        'areas-dir': { type: 'string' },
        list: { type: 'boolean', default: false },
        jobs: { type: 'string' },
        worker: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    }));
  } catch (e) {
    out(`sim: ${(e as Error).message}`);
    out(usage);
    return 2;
  }
  if (values.help) {
    out(usage);
    return 0;
  }
  if (values.worker !== undefined) {
    return worker(await discoverAreas(values['areas-dir'] === undefined ? defaultAreasDir : resolve(values['areas-dir'])), values.worker, out);
  }
  let jobs = 1;
  if (values.jobs !== undefined) {
    if (!/^\d+$/.test(values.jobs) || Number(values.jobs) < 1) {
      out(`sim: --jobs must be a positive integer, got ${JSON.stringify(values.jobs)}`);
      return 2;
    }
    jobs = Number(values.jobs);
  }
  let seeds: number[];
  try {
    if (values.seed !== undefined) seeds = [parseSeed(values.seed, '--seed')];
    else {
      const count = values.seeds === undefined ? 1 : parseSeed(values.seeds, '--seeds');
      const base = values.base === undefined ? 1 : parseSeed(values.base, '--base');
      if (count < 1) throw new Error('sim: --seeds must be at least 1');
      seeds = Array.from({ length: count }, (_, i) => base + i);
    }
  } catch (e) {
    out((e as Error).message);
    return 2;
  }

  const areasDir = values['areas-dir'] === undefined ? defaultAreasDir : resolve(values['areas-dir']);
  const all = await discoverAreas(areasDir);
  if (values.list) {
    for (const a of all) out(`${a.name.padEnd(10)} ${a.description}`);
    return 0;
  }
  const selected = values.area === undefined ? all : all.filter((a) => a.name === values.area);
  if (selected.length === 0) {
    out(`sim: no area named ${JSON.stringify(values.area)}; available: ${all.map((a) => a.name).join(', ') || '(none)'}`);
    return 2;
  }

  const tasks = selected.flatMap((area) => seeds.map((seed) => ({ area, seed })));
  const parallel = jobs > 1 && tasks.length > 1 ? await runParallel(tasks, Math.min(jobs, tasks.length), areasDir) : undefined;

  // Results are printed in (area, seed) order whatever the number of jobs, so the output of
  // a run never depends on how it was spread over processes.
  const failedSeeds = new Set<number>();
  const dirFlag = values['areas-dir'] === undefined ? '' : ` --areas-dir ${values['areas-dir']}`;
  for (const area of selected) {
    let areaFailed = 0;
    for (const seed of seeds) {
      const r = parallel?.get(`${area.name}\u0000${seed}`) ?? (await runOne(area, seed));
      if (values.verbose) for (const line of r.lines) out(`[${area.name} ${seed}] ${line}`);
      if (!r.ok) {
        areaFailed++;
        failedSeeds.add(seed);
        out(`FAIL ${area.name} seed=${seed}: ${oneLine(r.reason)}`);
        out(`  reproduce: npm run sim -- --area ${area.name} --seed ${seed} --verbose${dirFlag}`);
      }
    }
    out(`area ${area.name}: ${seeds.length - areaFailed} passed, ${areaFailed} failed`);
  }
  out(`sim: ${seeds.length - failedSeeds.size} passed, ${failedSeeds.size} failed`);
  return failedSeeds.size > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const code = await main(process.argv.slice(2), (line) => process.stdout.write(`${line}\n`));
  // Areas may leave abandoned (never-resolving) work behind; exit once stdout has drained.
  process.stdout.write('', () => process.exit(code));
}
