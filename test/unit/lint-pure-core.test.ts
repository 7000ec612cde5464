// The pure-core lint rule (eslint.config.js): in core/ folders, real time, timers, I/O and
// real randomness are errors whose message names the injected replacement; elsewhere they are allowed.
import { describe, expect, it } from 'vitest';
import { ESLint } from 'eslint';
import { resolve } from 'node:path';

const repo = resolve(import.meta.dirname, '../..');
const eslint = new ESLint({ cwd: repo });
const restrictionRules = new Set(['no-restricted-globals', 'no-restricted-imports', 'no-restricted-properties']);

const cases: { what: string; code: string; replacement: RegExp }[] = [
  { what: 'Date.now()', code: 'export const t = Date.now();\n', replacement: /injected Clock \(clock\.nowMs\(\)/ },
  { what: 'new Date()', code: 'export const d = new Date();\n', replacement: /injected Clock/ },
  { what: "import 'node:fs'", code: "import { readFileSync } from 'node:fs';\nexport const f = readFileSync;\n", replacement: /injected port \(Clock, Timers, Prng, a driver interface\)/ },
  { what: "import 'fs' (bare builtin)", code: "import { readFileSync } from 'fs';\nexport const f = readFileSync;\n", replacement: /injected port/ },
  { what: 'setTimeout', code: 'export const h = setTimeout(() => undefined, 1);\n', replacement: /injected Timers/ },
  { what: 'Math.random()', code: 'export const r = Math.random();\n', replacement: /injected seeded Prng \(core\/prng\.ts\)/ },
  { what: 'process.hrtime()', code: 'export const h = process.hrtime();\n', replacement: /injected Clock/ },
  { what: 'Buffer', code: 'export const b = Buffer.alloc(4);\n', replacement: /Uint8Array\/DataView/ },
];

const corePaths = ['firmware/ts/core/lint-probe.ts', 'firmware/ts/ha/core/lint-probe.ts', 'firmware/ts/nvlog/core/deep/lint-probe.ts'];
const otherPaths = ['firmware/ts/hal/clock/lint-probe.ts', 'firmware/ts/ha/lint-probe.ts', 'tools/lint-probe.ts'];

async function restrictionMessages(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: resolve(repo, filePath) });
  return (result?.messages ?? []).filter((m) => m.severity === 2 && m.ruleId !== null && restrictionRules.has(m.ruleId)).map((m) => m.message);
}

describe('pure-core lint rule', () => {
  for (const c of cases) {
    it(`${c.what} is an error in core/ folders, naming the injected replacement`, async () => {
      for (const p of corePaths) {
        const messages = await restrictionMessages(c.code, p);
        expect(messages.length, `${c.what} in ${p}`).toBeGreaterThan(0);
        expect(messages.some((m) => c.replacement.test(m)), `${p}: ${messages.join(' | ')}`).toBe(true);
      }
    });
    it(`${c.what} is allowed outside core/ folders`, async () => {
      for (const p of otherPaths) expect(await restrictionMessages(c.code, p), p).toEqual([]);
    });
  }

  it('clean pure code in core/ passes', async () => {
    const code = "import type { Clock } from './clock.ts';\nexport function age(clock: Clock, since: number): number {\n  return clock.nowMs() - since;\n}\n";
    const [result] = await eslint.lintText(code, { filePath: resolve(repo, 'firmware/ts/core/lint-probe.ts') });
    expect(result?.messages).toEqual([]);
  });
});
