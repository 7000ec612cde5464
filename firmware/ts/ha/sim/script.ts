// The scenario script language of test/ha/testdata (etcd/raft's datadriven style): a file
// of blocks, each a command line, a `----` line, and the output that command produced (the
// world's trace plus the command's own report), ended by a blank line.
import { PairWorld, bladeNames, type BladeIndex, type LinkKind } from './pair-world.ts';
import type { OperatorCommand } from '../core/machine.ts';
import type { HaTiming } from '../core/timing.ts';

export interface ScriptBlock {
  /** Comment lines before the command (kept when rewriting). */
  comments: string[];
  command: string;
  expected: string[];
}

export function parseScript(text: string): ScriptBlock[] {
  const lines = text.split('\n');
  const blocks: ScriptBlock[] = [];
  let comments: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    if (line.trim() === '') {
      i++;
      continue;
    }
    if (line.startsWith('#')) {
      comments.push(line);
      i++;
      continue;
    }
    const command = line.trim();
    i++;
    const expected: string[] = [];
    if (lines[i] === '----') {
      i++;
      while (i < lines.length && (lines[i] as string) !== '') expected.push(lines[i++] as string);
    }
    blocks.push({ comments, command, expected });
    comments = [];
  }
  return blocks;
}

export function formatScript(blocks: readonly ScriptBlock[], outputs: readonly string[][]): string {
  const parts: string[] = [];
  blocks.forEach((b, k) => {
    const out = outputs[k] ?? [];
    parts.push([...b.comments, b.command, '----', ...(out.length > 0 ? out : ['ok'])].join('\n'));
  });
  return parts.join('\n\n') + '\n';
}

function blade(word: string | undefined): BladeIndex {
  const i = bladeNames.indexOf(word as 'a');
  if (i < 0) throw new Error(`expected a blade name (a or b), got ${word ?? 'nothing'}`);
  return i as BladeIndex;
}

/** Runs a script and returns each command's output lines. */
export function runScript(blocks: readonly ScriptBlock[]): string[][] {
  let world: PairWorld | undefined;
  let out: string[] = [];
  const need = (): PairWorld => {
    if (world === undefined) world = new PairWorld({ seed: 1, trace: (l) => out.push(l) });
    return world;
  };
  const outputs: string[][] = [];
  for (const b of blocks) {
    out = [];
    const [verb, ...args] = b.command.split(/\s+/);
    switch (verb) {
      case 'world': {
        if (world !== undefined) throw new Error('world: must be the first command');
        const opts: Record<string, string> = {};
        for (const a of args) {
          const [k, v] = a.split('=');
          if (k !== undefined && v !== undefined) opts[k] = v;
        }
        const timing: Partial<HaTiming> = {};
        if (opts['giveback-delay'] !== undefined) timing.givebackDelayMinMs = Number(opts['giveback-delay']);
        if (opts['takeover-max'] !== undefined) timing.takeoverCountMax = Number(opts['takeover-max']);
        // Pinned limits (a scenario written for other timing than the defaults).
        if (opts['mailbox-ms'] !== undefined) timing.mailboxWriteIntervalMs = timing.mailboxPollIntervalMs = Number(opts['mailbox-ms']);
        if (opts['grace-ms'] !== undefined) timing.takeoverGraceMs = Number(opts['grace-ms']);
        if (opts['tiebreak-ms'] !== undefined) timing.tieBreakDelayMs = Number(opts['tiebreak-ms']);
        world = new PairWorld({
          seed: Number(opts['seed'] ?? 1),
          timing,
          autoGiveback: opts['auto-giveback'] !== 'off',
          powerSense: opts['power-sense'] === 'on',
          trace: (l) => out.push(l),
        });
        // A broken partner-reset wire: only the fence stops a taken-over blade that still runs.
        world.resetLineBroken = opts['reset-line'] === 'broken';
        break;
      }
      case 'boot':
        for (const a of args) need().powerOn(blade(a));
        break;
      case 'power-off':
        for (const a of args) need().powerOff(blade(a));
        break;
      case 'hang':
        for (const a of args) need().hang(blade(a), true);
        break;
      case 'resume':
        for (const a of args) need().hang(blade(a), false);
        break;
      case 'sense-wire': {
        // sense-wire a lost|good|mended: the partner-power line blade a reads.
        const how = args[1];
        if (how !== 'lost' && how !== 'good' && how !== 'mended') throw new Error('sense-wire: expected lost, good or mended');
        need().setSenseWire(blade(args[0]), how === 'mended' ? undefined : how);
        break;
      }
      case 'run':
        need().run(Number(args[0]));
        break;
      case 'cut':
      case 'heal': {
        const on = verb === 'cut';
        const what = args[0];
        const from = args[1] === undefined ? 'both' : blade(args[1]);
        const kinds: string[] = what === 'all-but-mailbox' ? ['serial', 'net'] : what === 'all' ? ['serial', 'net', 'mailbox'] : [what ?? ''];
        for (const k of kinds) {
          if (k === 'serial' || k === 'net') need().cutLink(k as LinkKind, from, on);
          else if (k === 'mailbox') need().cutMailboxReads(from, on);
          else throw new Error(`cut: unknown path ${k}`);
        }
        break;
      }
      case 'corrupt-mailbox':
        need().corruptMailbox(Number(args[0]), true);
        break;
      case 'repair-mailbox':
        need().corruptMailbox(Number(args[0]), false);
        break;
      case 'lose-nvram':
        need().loseNvram(blade(args[0]));
        break;
      case 'mirror':
        need().setMirror(blade(args[0]), args[1] === 'synced');
        break;
      case 'firmware':
        need().setFirmware(blade(args[0]), Number(args[1]));
        break;
      case 'operator': {
        const i = blade(args[0]);
        const cmd = args[1];
        if (cmd === 'status') {
          const s = need().machine(i)?.status();
          out.push(s === undefined ? `${args[0]}: not running` : `${args[0]}: ${JSON.stringify({ phase: s.phase, step: s.step, indicator: s.indicator, blockers: s.blockers, partner: s.partner, rejected: s.rejected })}`);
        } else {
          const r = need().operator(i, cmd as OperatorCommand);
          out.push(r.ok ? `${args[0]}: ${cmd}: ok` : `${args[0]}: ${cmd}: refused ${r.code}: ${r.message}`);
        }
        break;
      }
      case 'status':
        out.push(...need().statusLines());
        break;
      case 'check': {
        const w = need();
        out.push(w.violations.length === 0 ? 'no violations' : `VIOLATIONS:\n${w.violations.join('\n')}`);
        break;
      }
      default:
        throw new Error(`unknown scenario command: ${b.command}`);
    }
    outputs.push(out);
  }
  return outputs;
}
