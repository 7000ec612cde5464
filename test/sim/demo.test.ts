// The simulation runner end to end (as a child process, the way CI and engineers run it) and
// the demo area: same seed twice gives byte-identical output; a failure prints its seed and
// the command that reproduces it; the demo's checker catches a planted durability bug.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runDemoSeed } from '../../firmware/ts/sim/areas/demo.ts';

const repo = resolve(import.meta.dirname, '../..');
const tsx = join(repo, 'node_modules/.bin/tsx');
// Child processes load every area; on a loaded CI machine that takes seconds, not milliseconds.
const childTimeoutMs = 120_000;

function runSim(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(tsx, ['tools/sim/run.ts', ...args], { cwd: repo, timeout: childTimeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      done({ code, stdout, stderr });
    });
  });
}

let fixtureDir = '';
beforeAll(async () => {
  fixtureDir = await mkdtemp(join(tmpdir(), 'twinblade-sim-'));
  // A stand-in area that fails on every seed divisible by 3, to check the failure report.
  await writeFile(
    join(fixtureDir, 'flaky.ts'),
    `export const area = { name: 'flaky', description: 'fails on multiples of 3',
      async runSeed(seed, log) { log('seed ' + seed); return seed % 3 === 0 ? { ok: false, reason: 'checker: seed ' + seed + '\\nwas bad' } : { ok: true }; } };\n`,
  );
  await writeFile(join(fixtureDir, 'thrower.ts'), `export const area = { name: 'thrower', description: 'throws', async runSeed(seed) { if (seed === 2) throw new RangeError('kaput'); return { ok: true }; } };\n`);
});
afterAll(async () => {
  await rm(fixtureDir, { recursive: true, force: true });
});

describe('npm run sim', { timeout: childTimeoutMs }, () => {
  it('gives byte-identical output when one seed runs twice', async () => {
    const first = await runSim(['--area', 'demo', '--seed', '42', '--verbose']);
    const second = await runSim(['--area', 'demo', '--seed', '42', '--verbose']);
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(second.stdout);
    expect(first.stdout).toContain('[demo 42]');
    expect(first.stdout.trimEnd().split('\n').at(-1)).toBe('sim: 1 passed, 0 failed');
  });

  it('gives byte-identical output for one seed of every area, run twice', async () => {
    const first = await runSim(['--seed', '7', '--verbose']);
    const second = await runSim(['--seed', '7', '--verbose']);
    expect(first.stdout).toBe(second.stdout);
    expect(first.stdout.trimEnd().split('\n').at(-1)).toBe('sim: 1 passed, 0 failed');
  });

  it('passes 30 demo seeds and ends with the summary line', async () => {
    const r = await runSim(['--area', 'demo', '--seeds', '30']);
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('sim: 30 passed, 0 failed');
  });

  it('prints each failure with its seed and reproduce command, and exits 1', async () => {
    const r = await runSim(['--areas-dir', fixtureDir, '--seeds', '4', '--base', '2']);
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toContain('FAIL flaky seed=3: checker: seed 3 was bad');
    expect(lines).toContain(`  reproduce: npm run sim -- --area flaky --seed 3 --verbose --areas-dir ${fixtureDir}`);
    expect(lines).toContain('FAIL thrower seed=2: threw RangeError: kaput');
    expect(lines).toContain('area flaky: 3 passed, 1 failed');
    // Seeds 2 (thrower) and 3 (flaky) failed; 4 and 5 passed everywhere.
    expect(lines.at(-1)).toBe('sim: 2 passed, 2 failed');
  });

  it('turns an area file that cannot load into failures without hiding the other areas', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'twinblade-sim-broken-'));
    try {
      await writeFile(join(dir, 'good.ts'), `export const area = { name: 'good', description: 'passes', async runSeed() { return { ok: true }; } };\n`);
      await writeFile(join(dir, 'noexport.ts'), `export const nothing = 1;\n`);
      const r = await runSim(['--areas-dir', dir, '--seeds', '2']);
      expect(r.code).toBe(1);
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines).toContain('area good: 2 passed, 0 failed');
      expect(lines).toContain('FAIL noexport seed=1: cannot load area file noexport.ts: it does not export `area` (a SimArea)');
      expect(lines.at(-1)).toBe('sim: 0 passed, 2 failed');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('--jobs spreads seeds over worker processes without changing a byte of the output', async () => {
    const one = await runSim(['--areas-dir', fixtureDir, '--seeds', '6', '--verbose']);
    const three = await runSim(['--areas-dir', fixtureDir, '--seeds', '6', '--verbose', '--jobs', '3']);
    expect(three.code).toBe(1);
    expect(three.stdout).toBe(one.stdout);
    expect(three.stdout).toContain('[flaky 5] seed 5');
  });

  it('--jobs: a worker that dies fails the seeds it had not finished', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'twinblade-sim-dies-'));
    try {
      await writeFile(join(dir, 'dies.ts'), `export const area = { name: 'dies', description: 'exits on seed 3', async runSeed(seed) { if (seed === 3) process.exit(3); return { ok: true }; } };\n`);
      const r = await runSim(['--areas-dir', dir, '--seeds', '4', '--jobs', '2']);
      expect(r.code).toBe(1);
      const lines = r.stdout.trimEnd().split('\n');
      // Worker 0 had seeds 1 and 3; worker 1 had 2 and 4.
      expect(lines).toContain('FAIL dies seed=3: worker process exited (code 3) before finishing this seed');
      expect(lines.at(-1)).toBe('sim: 3 passed, 1 failed');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('--list names every area', async () => {
    const r = await runSim(['--list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^demo\s+write-ahead log/m);
  });

  it('rejects an unknown area with the list of areas (exit 2)', async () => {
    const r = await runSim(['--areas-dir', fixtureDir, '--area', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('available: flaky, thrower');
  });
});

describe('demo area', () => {
  it('its checker catches a WAL that acknowledges before flushing', async () => {
    let failures = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const o = await runDemoSeed(seed, () => undefined, { ackBeforeFlush: true });
      if (!o.ok) {
        failures++;
        expect(o.reason).toMatch(/acknowledged durable/);
      }
    }
    expect(failures).toBeGreaterThan(0);
  });

  it('a blade warned by the power-fail input drains and flushes before the cut (nothing left unflushed)', async () => {
    let warned = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const lines: string[] = [];
      const o = await runDemoSeed(seed, (l) => lines.push(l));
      expect(o, lines.join('\n')).toEqual({ ok: true });
      lines.forEach((l, i) => {
        if (!l.includes('power-fail warning')) return;
        warned++;
        expect(lines[i + 1]).toMatch(/power cut, acked \d+, unflushed writes kept 0 dropped 0 torn 0$/);
      });
    }
    expect(warned).toBeGreaterThan(3);
  });

  it('survives many power cuts in a row', async () => {
    for (let seed = 100; seed < 110; seed++) {
      const lines: string[] = [];
      const o = await runDemoSeed(seed, (l) => lines.push(l), { boots: 6 });
      expect(o, lines.join('\n')).toEqual({ ok: true });
      expect(lines.filter((l) => l.includes('power cut'))).toHaveLength(5);
    }
  });
});
