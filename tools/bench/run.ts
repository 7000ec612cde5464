// The benchmark runner: `npm run bench -- NAME [--json FILE] [bench args...]`. Discovers
// tools/bench/benches/*.ts, runs one, prints a table (metric, value, unit) and its notes, and
// with --json writes `{ bench, date, host, figures, rows, notes }` for CI to keep.
import { readdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Bench, BenchReport } from './bench.ts';

const benchesDir = resolve(fileURLToPath(new URL('.', import.meta.url)), 'benches');

export async function discoverBenches(dir = benchesDir): Promise<Bench[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).sort();
  const out: Bench[] = [];
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(dir, f)).href)) as { bench?: Bench };
    if (mod.bench === undefined || typeof mod.bench.run !== 'function') throw new Error(`bench: ${f} does not export \`bench\``);
    out.push(mod.bench);
  }
  return out;
}

/** Formats a value with a precision that suits its size (benchmarks vary over decades). */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0 || a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

export function formatTable(report: BenchReport): string[] {
  const rows = report.rows.map((r) => [r.metric, formatValue(r.value), r.unit]);
  const head = ['metric', 'value', 'unit'];
  const w = [0, 1, 2].map((i) => Math.max(head[i]?.length ?? 0, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]): string => `${(cells[0] ?? '').padEnd(w[0] ?? 0)}  ${(cells[1] ?? '').padStart(w[1] ?? 0)}  ${cells[2] ?? ''}`.trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line), ...(report.notes ?? []).map((n) => `note: ${n}`)];
}

function usage(names: string[]): string {
  return `usage: npm run bench -- NAME [--json FILE] [bench args...]\navailable benches: ${names.join(', ') || '(none)'}`;
}

export async function main(argv: readonly string[], out: (line: string) => void): Promise<number> {
  const rest: string[] = [];
  let jsonFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--json') {
      jsonFile = argv[++i];
      if (jsonFile === undefined) {
        out('bench: --json needs a file name');
        return 2;
      }
    } else if (a.startsWith('--json=')) jsonFile = a.slice('--json='.length);
    else rest.push(a);
  }
  const benches = await discoverBenches();
  const names = benches.map((b) => b.name);
  const [name, ...benchArgs] = rest;
  if (name === undefined || name === '--help' || name === '-h') {
    out(usage(names));
    for (const b of benches) out(`  ${b.name.padEnd(12)} ${b.description}`);
    return name === undefined ? 2 : 0;
  }
  const bench = benches.find((b) => b.name === name);
  if (bench === undefined) {
    out(`bench: unknown benchmark ${JSON.stringify(name)}`);
    out(usage(names));
    return 2;
  }
  const report = await bench.run(benchArgs);
  out(`bench ${bench.name}: ${bench.description}`);
  for (const l of formatTable(report)) out(l);
  if (jsonFile !== undefined) {
    const cpuList = cpus();
    const doc = {
      bench: bench.name,
      date: new Date().toISOString(),
      host: { cpus: cpuList.length, cpuModel: cpuList[0]?.model ?? 'unknown', arch: process.arch, node: process.version },
      figures: report.figures,
      rows: report.rows,
      notes: report.notes ?? [],
    };
    await writeFile(jsonFile, `${JSON.stringify(doc, null, 2)}\n`);
    out(`wrote ${jsonFile}`);
  }
  return 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const code = await main(process.argv.slice(2), (line) => process.stdout.write(`${line}\n`));
  process.stdout.write('', () => process.exit(code));
}
