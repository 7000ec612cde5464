// The `rig` command: brings the process rig up (in the foreground), and talks to a running
// rig through its management socket for status, faults, heals and shutdown.
//
//   rig up [--dir D]            create the hardware, power both blades on, stay in the foreground
//   rig status [--json]         blades, loops, reservations, fence violations, serial link
//   rig fault KIND ARGS...      inject a fault (power-cut a, link cut, loop-fail a, disk-fail a0,
//                               battery-fail a, mux-bypass a0 b, sense-wire a lost;
//                               netns rig: port a ic, partition)
//   rig heal KIND ARGS...       heal it
//   rig down                    stop the blades and the rig
import { parseArgs } from 'node:util';
import path from 'node:path';
import { mgmtRequest } from '../firmware/ts/blade/mgmt.ts';
import { runRigForeground } from './service.ts';

import { defaultRigDir } from './paths.ts';

function usage(): never {
  console.error('usage: rig up [--dir D] | rig status [--json] | rig fault KIND ARGS... | rig heal KIND ARGS... | rig down');
  process.exit(2);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    options: { dir: { type: 'string' }, json: { type: 'boolean', default: false } },
    allowPositionals: true,
    strict: true,
  });
  const dir = values.dir ? path.resolve(values.dir) : defaultRigDir();
  const sock = path.join(dir, 'rig.sock');
  const [cmd, ...rest] = positionals;
  try {
    switch (cmd) {
      case 'up':
        await runRigForeground({ dir });
        return;
      case 'status': {
        const s = await mgmtRequest(sock, 'status');
        if (values.json) console.log(JSON.stringify(s, null, 2));
        else console.log(formatStatus(s as RigStatusView));
        return;
      }
      case 'fault':
      case 'heal': {
        const [kind, ...args] = rest;
        if (!kind) usage();
        console.log(await mgmtRequest(sock, cmd, { kind, args }, 30_000));
        return;
      }
      case 'down':
        console.log(await mgmtRequest(sock, 'down', {}, 30_000));
        return;
      default:
        usage();
    }
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      console.error(`rig: no running rig at ${dir} (start one with: npm start, or rig up)`);
    } else {
      console.error(`rig: ${(e as Error).message}${code ? ` (${code})` : ''}`);
    }
    process.exit(1);
  }
}

interface RigStatusView {
  dir: string;
  blades: Array<{ id: string; power: string; pid: number | null; boots: number }>;
  loop: { ports: { a: number; b: number }; disks: Array<{ name: string; holder: string | null; failed: boolean; mux: Record<string, string> }>; violations: unknown[] };
  serial: { faults: Record<string, unknown> };
  batteries: Record<string, string>;
  network?: { mode: string; id?: string; bladesIsolated?: boolean };
  gpio?: Record<string, Record<string, number>> | null;
}

function formatStatus(s: RigStatusView): string {
  const lines = [`rig at ${s.dir}`];
  for (const b of s.blades) lines.push(`  blade ${b.id}: power ${b.power}${b.pid ? ` (pid ${b.pid})` : ''}, boots ${b.boots}, battery ${s.batteries[b.id] ?? '?'}`);
  lines.push(`  loops: a on port ${s.loop.ports.a}, b on port ${s.loop.ports.b}`);
  for (const d of s.loop.disks) {
    lines.push(`  disk ${d.name}: holder ${d.holder ?? '-'}${d.failed ? ', FAILED' : ''}, mux a=${d.mux.a} b=${d.mux.b}`);
  }
  lines.push(`  serial link: ${JSON.stringify(s.serial.faults)}`);
  if (s.gpio) lines.push(`  partner-power sense: a reads ${s.gpio['a']?.['partnerPower'] === 1 ? 'good' : 'lost'}, b reads ${s.gpio['b']?.['partnerPower'] === 1 ? 'good' : 'lost'}`);
  if (s.network?.mode === 'netns') lines.push(`  network: namespaces ${s.network.id ?? '?'}-*, blades ${s.network.bladesIsolated ? 'PARTITIONED' : 'connected'}`);
  lines.push(`  fence violations: ${s.loop.violations.length}`);
  return lines.join('\n');
}

await main();
