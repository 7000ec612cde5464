// The simulation runner: `npm run sim -- --seeds N [--seed S] [--base B] [--area NAME] [--verbose]`.
// Discovers the areas in firmware/ts/sim/areas/, runs each seed of each, prints every failure
// with the command that reproduces it, and ends with `sim: N passed, F failed`.
import { parseArgs } from 'node:util';
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

  const failedSeeds = new Set<number>();
  const dirFlag = values['areas-dir'] === undefined ? '' : ` --areas-dir ${values['areas-dir']}`;
  for (const area of selected) {
    let areaFailed = 0;
    for (const seed of seeds) {
      const lines: string[] = [];
      const log = (line: string): void => {
        if (values.verbose) out(`[${area.name} ${seed}] ${line}`);
        else lines.push(line);
      };
      let outcome: SimOutcome;
      try {
        outcome = await area.runSeed(seed, log);
      } catch (e) {
        outcome = { ok: false, reason: `threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}` };
      }
      if (!outcome.ok) {
        areaFailed++;
        failedSeeds.add(seed);
        out(`FAIL ${area.name} seed=${seed}: ${oneLine(outcome.reason)}`);
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
