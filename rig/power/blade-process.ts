// The emulated power relay of one blade: the blade is a child process; cutting power is a
// SIGKILL (nothing is flushed, the NVRAM file stays as battery-backed memory would), and
// restoring power starts it again with the same configuration.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';

export interface BladeProcessOptions {
  id: 'a' | 'b';
  /** The command that boots the blade (argv[0] and arguments). */
  command: string[];
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Where the blade's stdout/stderr (its JSON log) are appended. */
  logPath: string;
}

export type PowerState = 'on' | 'off';

export class BladeProcess extends EventEmitter {
  private child: ChildProcess | undefined;
  private powerState: PowerState = 'off';
  private boots = 0;
  private lastExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(readonly opts: BladeProcessOptions) {
    super();
  }

  get power(): PowerState {
    return this.powerState;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get bootCount(): number {
    return this.boots;
  }

  status(): { id: string; power: PowerState; pid: number | null; boots: number; lastExit: BladeProcess['lastExit'] | null } {
    return { id: this.opts.id, power: this.powerState, pid: this.child?.pid ?? null, boots: this.boots, lastExit: this.lastExit ?? null };
  }

  /** Power on: boot the blade. A no-op while it is on. */
  powerOn(): void {
    if (this.powerState === 'on') return;
    this.powerState = 'on';
    this.boots++;
    const log = fs.openSync(this.opts.logPath, 'a');
    const [cmd, ...args] = this.opts.command;
    const child = spawn(cmd as string, args, {
      cwd: this.opts.cwd,
      // The blade exits when this pipe closes: a rig that dies takes its blades with it
      // rather than leaving them running unsupervised.
      env: { ...process.env, ...this.opts.env, TWINBLADE_EXIT_WITH_PARENT: '1' },
      stdio: ['pipe', log, log],
      detached: false,
    });
    fs.closeSync(log);
    this.child = child;
    child.on('exit', (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      this.lastExit = { code, signal };
      // A blade that stops by itself (a crash, an assertion) stays off until the relay
      // power-cycles it, as a board would sit halted.
      this.powerState = 'off';
      this.emit('exit', { code, signal });
    });
    this.emit('power', 'on');
  }

  /** Power cut: SIGKILL, no chance to flush anything. Resolves once the process is gone. */
  async cut(): Promise<void> {
    const child = this.child;
    this.powerState = 'off';
    if (!child) return;
    this.child = undefined;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await gone;
    this.emit('power', 'off');
  }

  /** Orderly stop (SIGTERM, then SIGKILL after `graceMs`). */
  async stop(graceMs = 5000): Promise<void> {
    const child = this.child;
    this.powerState = 'off';
    if (!child) return;
    this.child = undefined;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(t);
  }
}
