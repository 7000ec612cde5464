#!/usr/bin/env node
// The `blade` command as installed (package.json "bin"): runs firmware/ts/cli/blade.ts in a
// node started with the blade's libuv thread pool size (UV_THREADPOOL_SIZE) and the tsx loader.
//
// Why a second process: every disk read, write and flush of the native block driver is a job
// on libuv's pool, and node sizes that pool once, before any module of ours runs, so setting
// the variable from inside would be too late. 16 threads measured against node's default 4 on
// the loaded CI host: 64 KiB reads 292-330 vs 118-169 MiB/s (docs/nfs.md). An operator's own
// UV_THREADPOOL_SIZE is kept.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

/** libuv threads for the blade when the environment does not say (node's default is 4). */
const bladeThreadPoolSize = 16;

const cli = fileURLToPath(new URL('../firmware/ts/cli/blade.ts', import.meta.url));
const tsx = import.meta.resolve('tsx');
const env = { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? String(bladeThreadPoolSize) };
const child = spawn(process.execPath, [...process.execArgv, '--import', tsx, cli, ...process.argv.slice(2)], { stdio: 'inherit', env });

// The launcher only passes signals on (SIGTERM stops the blade cleanly) and exits as it did.
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => child.kill(sig));
}
child.on('error', (e) => {
  console.error(`blade: cannot start node: ${e.message}`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  // A child killed by a signal exits the shell way (128 + the signal's number).
  process.exit(signal !== null ? 128 + (constants.signals[signal] ?? 0) : (code ?? 1));
});
