// Runs a rig in the foreground: brings the hardware up, serves the rig management socket
// (used by `rig status|fault|heal|down`), and tears everything down on SIGINT/SIGTERM or
// `rig down`, leaving no process behind.
import path from 'node:path';
import { MgmtServer } from '../firmware/ts/blade/mgmt.ts';
import { Rig, type RigOptions } from './rig.ts';
import { applyFault } from './faults.ts';

export interface RunningRig {
  rig: Rig;
  mgmt: MgmtServer;
  /** Resolves when the rig has been torn down. */
  stopped: Promise<void>;
  stop(): Promise<void>;
}

export async function startRigService(opts: RigOptions): Promise<RunningRig> {
  const rig = new Rig(opts);
  try {
    await rig.up();
  } catch (e) {
    // A rig that came up half way (namespaces made, a blade started) is torn down, not leaked.
    await rig.down().catch(() => undefined);
    throw e;
  }
  const mgmt = new MgmtServer(path.join(rig.dir, 'rig.sock'));
  let resolveStopped: () => void = () => undefined;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await mgmt.close();
      await rig.down();
      resolveStopped();
    })();
    return stopping;
  };
  mgmt.handle('status', () => rig.status());
  mgmt.handle('fault', (args) => applyFault(rig, String(args.kind), (args.args as string[] | undefined) ?? [], false));
  mgmt.handle('heal', (args) => applyFault(rig, String(args.kind), (args.args as string[] | undefined) ?? [], true));
  mgmt.handle('down', () => {
    setImmediate(() => void stop());
    return 'rig going down';
  });
  await mgmt.start();
  return { rig, mgmt, stopped, stop };
}

/** `rig up`: runs until SIGINT/SIGTERM or `rig down`. */
export async function runRigForeground(opts: RigOptions): Promise<void> {
  const running = await startRigService(opts);
  console.log(`rig up at ${running.rig.dir}; control with: npm run rig -- status | fault | heal | down`);
  const onSignal = (): void => void running.stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  await running.stopped;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}
