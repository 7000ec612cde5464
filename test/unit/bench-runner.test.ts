// The benchmark runner: discovery, the table, the JSON document, and unknown names (exit 2).
// It checks the shape of the output only; speeds are reported by benchmarks, never asserted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { formatTable, formatValue } from '../../tools/bench/run.ts';

const repo = resolve(import.meta.dirname, '../..');
const tsx = join(repo, 'node_modules/.bin/tsx');

function runBench(args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((done) => {
    execFile(tsx, ['tools/bench/run.ts', ...args], { cwd: repo, timeout: 110_000 }, (err, stdout) => {
      done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout });
    });
  });
}

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'twinblade-bench-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('npm run bench', { timeout: 120_000 }, () => {
  it('an unknown name lists the available benches and exits 2', async () => {
    const r = await runBench(['no-such-bench']);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('unknown benchmark "no-such-bench"');
    expect(r.stdout).toMatch(/available benches: .*\bcrc\b/);
  });

  it('runs crc, prints a table and writes the JSON document', async () => {
    const file = join(dir, 'crc.json');
    const r = await runBench(['crc', '--ms', '5', '--json', file]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[1]).toMatch(/^metric\s+value\s+unit$/);
    expect(r.stdout).toContain('portable TypeScript, 4 KiB buffers');
    const doc = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    expect(doc['bench']).toBe('crc');
    expect(Number.isNaN(Date.parse(doc['date'] as string))).toBe(false);
    expect(doc['host']).toMatchObject({ cpus: expect.any(Number), node: process.version });
    const figures = doc['figures'] as Record<string, unknown>;
    expect(figures['crcPortableMBps4k']).toEqual(expect.any(Number));
    // With the addon built, the native column is there; without it, a note says it was skipped.
    if (figures['nativeImplementation'] === 'absent') expect(doc['notes']).toEqual([expect.stringContaining('native column skipped')]);
    else expect(figures['crcNativeMBps4k']).toEqual(expect.any(Number));
  });
});

describe('bench table formatting', () => {
  it('aligns columns and appends notes', () => {
    const lines = formatTable({ rows: [{ metric: 'a', value: 1234.5, unit: 'MB/s' }, { metric: 'longer metric', value: 0.01234, unit: 'ms' }], figures: {}, notes: ['n1'] });
    expect(lines).toEqual(['metric          value  unit', '-------------  ------  ----', 'a               1,235  MB/s', 'longer metric  0.0123  ms', 'note: n1']);
  });
  it('formats values by magnitude', () => {
    expect(formatValue(12345.6)).toBe('12,346');
    expect(formatValue(123.456)).toBe('123.5');
    expect(formatValue(1.234)).toBe('1.23');
    expect(formatValue(0.001234)).toBe('0.00123');
    expect(formatValue(0)).toBe('0');
  });
});
