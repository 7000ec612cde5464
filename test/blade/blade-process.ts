// Test helper: runs `blade run --config FILE` as a real process and waits for the line in
// which it names its NFS URL (shared by the daemon and interop suites).
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const bladeCli = path.resolve('firmware/ts/cli/blade.ts');

export interface BladeProcess {
  child: ChildProcess;
  /** The libnfs URL the blade printed. */
  url: string;
  stderr: () => string;
}

export async function startBladeProcess(config: string, startTimeoutMs = 30_000): Promise<BladeProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', bladeCli, 'run', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.setEncoding('utf8');
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`blade did not start:\n${err}`)), startTimeoutMs);
    child.stderr?.on('data', (c: string) => {
      err += c;
      const m = /serving \S+ at (nfs:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(t);
        resolve(m[1] as string);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`blade exited with ${code}:\n${err}`));
    });
  });
  return { child, url, stderr: () => err };
}

/** Sends `signal` and resolves with the exit code once the process is gone. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const gone = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill(signal);
  return gone;
}
