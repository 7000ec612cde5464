// The installed `blade` launcher (bin/blade.js): runs the CLI in a node whose libuv pool is
// sized for the blade's disk jobs, keeps an operator's own size, and exits as the CLI did.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const launcher = path.resolve('bin/blade.js');
// Node flags of the launcher reach the CLI's process too: this one prints the pool size each
// process was started with (the launcher's own first, then the CLI's).
const printPool = 'data:text/javascript,console.log("pool=" + process.env.UV_THREADPOOL_SIZE)';

function run(env: NodeJS.ProcessEnv): { status: number | null; pools: string[]; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', printPool, launcher], { env, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, pools: r.stdout.split('\n').filter((l) => l.startsWith('pool=')), stderr: r.stderr };
}

describe('bin/blade.js', () => {
  it('starts the CLI with a 16-thread libuv pool and exits with its status (usage: 2)', () => {
    const env = { ...process.env };
    delete env['UV_THREADPOOL_SIZE'];
    const r = run(env);
    expect(r.pools).toEqual(['pool=undefined', 'pool=16']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('usage: blade');
  });

  it("keeps an operator's UV_THREADPOOL_SIZE", () => {
    const r = run({ ...process.env, UV_THREADPOOL_SIZE: '7' });
    expect(r.pools).toEqual(['pool=7', 'pool=7']);
    expect(r.status).toBe(2);
  });
});
