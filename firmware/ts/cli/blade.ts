// The `blade` command.
//
//   blade init DIR                      a working single-blade setup in DIR (config, sparse
//                                       disk images, NVRAM file, one export)
//   blade run --config FILE             run a blade from its board descriptor (foreground;
//                                       JSON logs on stdout; SIGTERM stops it cleanly)
//   blade status [--json]               own and partner state, paths, NVRAM, mirror, disks, CP
//   blade cp                            take a consistency point now
//   blade takeover | giveback           operator takeover / giveback
//   blade takeover disable|enable       forbid / allow takeover of the partner
//
// The management commands find the blade through --socket, or --config (its runDir).
import { parseArgs } from 'node:util';
import path from 'node:path';
import { pino } from 'pino';
import { loadBoard } from '../board/board.ts';
import { Blade } from '../blade/daemon.ts';
import { PairBlade } from '../blade/pair.ts';
import { openFence } from '../blade/fence.ts';
import { openBoardDevices } from '../blade/board-devices.ts';
import { initSingleBlade } from '../blade/init.ts';
import { mgmtRequest } from '../blade/mgmt.ts';
import { isTwinbladeError } from '../core/errors.ts';
import { tuneDaemonMalloc } from '../native/index.ts';

function usage(): never {
  console.error('usage: blade init DIR | blade run --config FILE | blade status [--json] | blade cp | blade takeover [disable|enable] | blade giveback   (management commands take --config FILE or --socket PATH)');
  process.exit(2);
}

async function socketFor(values: { config?: string | undefined; socket?: string | undefined }): Promise<string> {
  if (values.socket) return values.socket;
  if (values.config) {
    const board = await loadBoard(values.config);
    if (!board.service) throw new Error(`${values.config} has no service section (no control socket)`);
    return path.join(board.service.runDir, 'blade.sock');
  }
  throw new Error('say which blade: --config FILE or --socket PATH');
}

interface StatusView {
  blade: string;
  pairId: string;
  state: string;
  partner: { state: string; reachable: boolean; power?: string; powerSenseFaulty?: boolean };
  bootGeneration: number;
  mirror: string;
  nvlog: { lastSeq: number; logBytesUsed: number; logBytesHighWater: number; writeThrough: boolean };
  disks: { state: string; disks: Array<{ name: string; role: string; state: string }>; rebuildProgress?: number };
  cp: { number: number; ageMs: number };
  exports: Array<{ path: string; url: string; owner: string }>;
  paths?: Array<{ name: string; up: boolean }>;
}

function formatStatus(s: StatusView): string {
  const lines = [
    `blade ${s.blade} (pair ${s.pairId}): ${s.state}, boot generation ${s.bootGeneration}`,
    `  partner: ${s.partner.state}${s.partner.reachable ? '' : ' (unreachable)'}${s.partner.power === undefined || s.partner.power === 'unknown' ? '' : `, power ${s.partner.power}${s.partner.powerSenseFaulty ? ' (sense line FAULTY, ignored)' : ''}`}`,
  ];
  for (const p of s.paths ?? []) lines.push(`  path ${p.name}: ${p.up ? 'up' : 'DOWN'}`);
  lines.push(`  mirror: ${s.mirror}${s.nvlog.writeThrough ? ', WRITE-THROUGH (battery)' : ''}`);
  lines.push(`  nvram log: last seq ${s.nvlog.lastSeq}, ${s.nvlog.logBytesUsed} bytes in use (high water ${s.nvlog.logBytesHighWater})`);
  lines.push(`  volume: ${s.disks.state}${s.disks.rebuildProgress !== undefined ? ` (rebuild ${(s.disks.rebuildProgress * 100).toFixed(1)}%)` : ''}`);
  for (const d of s.disks.disks) lines.push(`    ${d.name}: ${d.role} ${d.state}`);
  lines.push(`  consistency point ${s.cp.number}, ${(s.cp.ageMs / 1000).toFixed(1)} s ago`);
  for (const e of s.exports) lines.push(`  export ${e.path} (blade ${e.owner}): ${e.url}`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    options: { config: { type: 'string' }, socket: { type: 'string' }, json: { type: 'boolean', default: false } },
    allowPositionals: true,
  });
  const [cmd, ...rest] = positionals;
  switch (cmd) {
    case 'init': {
      if (!rest[0]) usage();
      const config = await initSingleBlade(rest[0]);
      console.log(`created ${config}\nstart it with: npm run blade -- run --config ${config}`);
      return;
    }
    case 'run': {
      if (!values.config) usage();
      tuneDaemonMalloc();
      const board = await loadBoard(values.config);
      const logger = pino({ level: board.service?.logLevel ?? 'info', base: { blade: board.identity.blade } });
      // A board with a partner's disk set runs as half of a pair; without one, standalone.
      let blade: Blade | PairBlade;
      if (board.disks.partner.length > 0) {
        const devices = await openBoardDevices(board);
        blade = await PairBlade.start({ board, logger, fence: await openFence(board, devices.rig), devices });
      } else {
        blade = await Blade.start({ board, logger });
      }
      if (blade instanceof PairBlade) {
        // A pair blade serves once the HA machine has recovered its set; say so when it does.
        const announced = new Set<string>();
        const t = setInterval(() => {
          for (const e of blade.exports()) {
            if (announced.has(e.url)) continue;
            announced.add(e.url);
            process.stderr.write(`blade ${board.identity.blade} serving ${e.path} at ${e.url}\n`);
          }
        }, 100);
        t.unref();
      }
      for (const e of blade.exports()) process.stderr.write(`blade ${board.identity.blade} serving ${e.path} at ${e.url}\n`);
      let stopping = false;
      const stop = (): void => {
        if (stopping) return;
        stopping = true;
        blade.stop().then(
          () => process.exit(0),
          (e: unknown) => {
            logger.error({ err: e }, 'stop failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
      if (process.env.TWINBLADE_EXIT_WITH_PARENT === '1') {
        // Started by a rig: when the rig goes away, so does this emulated board's power.
        process.stdin.on('error', () => undefined);
        process.stdin.on('close', () => process.exit(1));
        process.stdin.resume();
      }
      return;
    }
    case 'status': {
      const s = (await mgmtRequest(await socketFor(values), 'status')) as StatusView;
      console.log(values.json ? JSON.stringify(s, null, 2) : formatStatus(s));
      return;
    }
    case 'cp':
      console.log(JSON.stringify(await mgmtRequest(await socketFor(values), 'cp', {}, 60_000)));
      return;
    case 'takeover': {
      const sub = rest[0];
      const op = sub === 'disable' ? 'takeover.disable' : sub === 'enable' ? 'takeover.enable' : sub === undefined ? 'takeover' : usage();
      console.log(JSON.stringify(await mgmtRequest(await socketFor(values), op, {}, 60_000)));
      return;
    }
    case 'giveback':
      console.log(JSON.stringify(await mgmtRequest(await socketFor(values), 'giveback', {}, 60_000)));
      return;
    default:
      usage();
  }
}

main().catch((e: unknown) => {
  const code = isTwinbladeError(e) ? e.code : (e as { code?: string }).code;
  console.error(`blade: ${(e as Error).message}${code ? ` (${code})` : ''}`);
  process.exit(1);
});
