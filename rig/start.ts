// `npm start`: brings up the default blade pair on the process rig (two blades, each with
// three data disks, a parity disk and a spare, one export each), waits until both serve,
// prints their NFS addresses and a copy-paste example, and tears everything down on Ctrl-C.
import path from 'node:path';
import { startRigService } from './service.ts';
import { mgmtRequest } from '../firmware/ts/blade/mgmt.ts';
import { defaultRigDir } from './paths.ts';

interface BladeView {
  blade: string;
  state: string;
  exports: Array<{ path: string; url: string }>;
}

const serveTimeoutMs = 60_000;

async function waitServing(dir: string, blade: 'a' | 'b', deadline: number): Promise<BladeView> {
  const sock = path.join(dir, blade, 'run', 'blade.sock');
  for (;;) {
    try {
      const s = (await mgmtRequest(sock, 'status', {}, 2000)) as BladeView;
      if (s.exports.length > 0) return s;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`blade ${blade} did not start serving; see ${path.join(dir, blade, 'blade.log')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main(): Promise<void> {
  const dir = defaultRigDir();
  const t0 = Date.now();
  console.log(`twinblade: bringing up the blade pair on the process rig in ${dir} ...`);
  const portBase = process.env.TWINBLADE_RIG_PORT_BASE ? Number(process.env.TWINBLADE_RIG_PORT_BASE) : undefined;
  // Namespaces (real addresses, address takeover, gratuitous ARP) when root; else loopback.
  const network = process.env.TWINBLADE_RIG_NET === 'loopback' || process.getuid?.() !== 0 ? 'loopback' : 'netns';
  const netSlot = process.env.TWINBLADE_RIG_NET_SLOT ? Number(process.env.TWINBLADE_RIG_NET_SLOT) : 0;
  const running = await startRigService({ dir, network, netSlot, ...(portBase ? { portBase } : {}) });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    console.log('\ntwinblade: stopping the blades and the rig ...');
    void running.stop().then(() => {
      console.log('twinblade: everything stopped.');
      process.exit(0);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const deadline = Date.now() + serveTimeoutMs;
    const views = await Promise.all([waitServing(dir, 'a', deadline), waitServing(dir, 'b', deadline)]);
    console.log(`twinblade: both blades serve (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    for (const v of views) for (const e of v.exports) console.log(`  blade ${v.blade}: ${e.url}`);
    const first = views[0]?.exports[0];
    if (first) {
      const u = new URL(first.url);
      const base = `nfs://${u.host}${u.pathname}`;
      console.log('\nTry (Debian package libnfs-utils):');
      console.log(`  nfs-ls '${first.url}'`);
      console.log(`  nfs-cp /etc/hostname '${base}/hello.txt${u.search}'`);
      console.log(`  nfs-cat '${base}/hello.txt${u.search}'`);
    }
    console.log('\nRig control (another terminal): npm run rig -- status | fault power-cut a | heal power-cut a | fault link cut | ...');
    console.log('Blade status: npm run blade -- status --socket .rig/a/run/blade.sock');
    console.log('Press Ctrl-C to stop.');
  } catch (e) {
    console.error(`twinblade: ${(e as Error).message}`);
    await running.stop();
    process.exit(1);
  }
}

await main();
