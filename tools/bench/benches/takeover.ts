// Takeover benchmark on the process rig: N power cuts of blade a under a write load; for each,
// the time from the cut to the first successful NFS reply (MNT + GETATTR of the export root)
// from the survivor at a's address; then giveback when it works, else a fresh rig per cut.
// Every write acknowledged across all cuts is read back (ackedWritesLost must be 0).
import { defaultHaTiming } from '../../../firmware/ts/ha/core/timing.ts';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { mgmtRequest } from '../../../firmware/ts/blade/mgmt.ts';
import { mountNfs, ok } from '../../nfs-client/index.ts';
import { PairRig, WriteLoad, sleep, verifyAcked, type NfsAddress } from '../../../test/e2e/pair-rig.ts';
import type { Bench, BenchReport, BenchRow } from '../bench.ts';

const benchLimits = {
  /** A probe call that has not answered after this long counts as no reply. */
  probeCallTimeoutMs: 1000,
  /** Pause between two probes at the failed blade's address. */
  probeIntervalMs: 10,
  /** A cut whose takeover takes longer than this is reported as failed. */
  takeoverMaxMs: 60_000,
  /** Writes acknowledged before each cut (so there is something to replay). */
  ackedBeforeCut: 100,
  /** Writes acknowledged at the survivor after each takeover. */
  ackedAfterTakeover: 50,
  /** Port-base slot of the bench (the e2e test files use 0..5). */
  portSlot: 7,
} as const;

/** One MNT + GETATTR of the export root; resolves true when both answered OK. */
async function probe(target: NfsAddress): Promise<boolean> {
  try {
    const m = await mountNfs({ ...target, callTimeoutMs: benchLimits.probeCallTimeoutMs });
    try {
      ok(await m.nfs.getattr(m.root), 'GETATTR');
      return true;
    } finally {
      await m.close().catch(() => undefined);
    }
  } catch {
    return false;
  }
}

/** Milliseconds from `t0` until `probe` succeeds. */
async function timeUntilServed(target: NfsAddress, t0: number): Promise<number> {
  for (;;) {
    if (await probe(target)) return performance.now() - t0;
    if (performance.now() - t0 > benchLimits.takeoverMaxMs) throw new Error(`no reply at ${target.path} within ${benchLimits.takeoverMaxMs} ms of the cut`);
    await sleep(benchLimits.probeIntervalMs);
  }
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

const round1 = (v: number): number => Math.round(v * 10) / 10;

export const bench: Bench = {
  name: 'takeover',
  description: 'power cuts of blade a on the process rig under load: cut -> first NFS reply from b at a\'s address (p50/p99/max), giveback, acknowledged writes lost',
  async run(args): Promise<BenchReport> {
    const { values } = parseArgs({ args: [...args], options: { cuts: { type: 'string', default: '20' }, clients: { type: 'string', default: '3' } } });
    const cuts = Number(values.cuts);
    const clients = Number(values.clients);
    const takeovers: number[] = [];
    const givebacks: number[] = [];
    const notes: string[] = [];
    let lost = 0;
    let acked = 0;
    let bootRaceCycles = 0;
    let givebackWorks = true;
    let rigStarts = 0;
    let failures = 0;
    let pr: PairRig | undefined;
    // HA damping caps automatic takeovers per window (takeoverCountMax): a rig that reached the
    // cap starts over, so that every cut measures a takeover rather than the damping.
    let cutsOnRig = 0;
    try {
      for (let i = 0; i < cuts; i++) {
        if (!pr) {
          pr = await PairRig.start(benchLimits.portSlot);
          rigStarts++;
          cutsOnRig = 0;
          await pr.bringUp();
          bootRaceCycles += pr.bootRaceCycles;
        } else {
          await pr.waitMirrored(['a', 'b']);
        }
        const target = pr.address('a');
        const load = new WriteLoad({ target, clients, prefix: `tk${i}` }).start();
        await load.waitAcked(benchLimits.ackedBeforeCut);
        const t0 = performance.now();
        cutsOnRig++;
        await pr.rig.powerCut('a');
        try {
          takeovers.push(await timeUntilServed(target, t0));
        } catch (e) {
          // No takeover: keep the evidence, count it, and go on with a fresh rig.
          failures++;
          const kept = `${pr.dir}-failed`;
          await fs.mkdir(kept, { recursive: true });
          for (const b of ['a', 'b'] as const) await fs.copyFile(pr.log(b), path.join(kept, `${b}.log`)).catch(() => undefined);
          const sb = await pr.statusOrNull('b');
          await fs.writeFile(path.join(kept, 'status-b.json'), JSON.stringify(sb, null, 2));
          notes.push(`cut ${i + 1}: ${(e as Error).message}; b is ${sb?.state ?? 'unreachable'} (blockers ${JSON.stringify((sb?.ha as { blockers?: unknown } | undefined)?.blockers)}); logs and status kept in ${kept}`);
          await load.stop();
          await pr.stop();
          pr = undefined;
          continue;
        }
        await load.waitAcked(benchLimits.ackedAfterTakeover, benchLimits.takeoverMaxMs);
        const r = await load.stop();
        if (r.errors.length > 0) notes.push(`cut ${i + 1}: client errors: ${r.errors.join('; ')}`);
        acked += r.acked.length;
        const bad = await verifyAcked(target, r.acked);
        lost += bad.length;
        if (bad.length > 0) notes.push(`cut ${i + 1}: ${bad.length} acknowledged writes lost, e.g. ${bad[0]}`);

        await pr.rig.powerRestore('a');
        let gaveBack = false;
        if (givebackWorks) {
          // a comes back waiting for giveback; b hands a's set back on request.
          await pr.until('a booted and heard by b', async () => (await pr?.status('b'))?.partner.reachable === true && (await pr?.statusOrNull('a')) !== null, benchLimits.takeoverMaxMs);
          const g0 = performance.now();
          const deadline = g0 + 30_000;
          for (;;) {
            const res = await mgmtRequest(pr.socket('b'), 'giveback').then(
              () => 'ok',
              (e: unknown) => String((e as { code?: string }).code ?? (e as Error).message),
            );
            if (res === 'ok') break;
            if (performance.now() > deadline) {
              givebackWorks = false;
              notes.push(`giveback refused (${res}) for 30 s after a rebooted; restarting the rig between cuts instead`);
              break;
            }
            await sleep(250);
          }
          if (givebackWorks) {
            await pr.waitServing('a', benchLimits.takeoverMaxMs);
            givebacks.push(performance.now() - g0);
            gaveBack = true;
          }
        }
        if (!gaveBack || cutsOnRig >= defaultHaTiming.takeoverCountMax) {
          await pr.stop();
          pr = undefined;
        }
      }
    } finally {
      await pr?.stop();
    }
    const s = [...takeovers].sort((x, y) => x - y);
    const g = [...givebacks].sort((x, y) => x - y);
    const rows: BenchRow[] = [
      { metric: 'takeover (cut -> first reply at a\'s address) p50', value: round1(pct(s, 50)), unit: 'ms' },
      { metric: 'takeover p99', value: round1(pct(s, 99)), unit: 'ms' },
      { metric: 'takeover max', value: round1(s[s.length - 1] ?? NaN), unit: 'ms' },
      { metric: 'acknowledged writes checked', value: acked, unit: 'writes' },
      { metric: 'acknowledged writes lost', value: lost, unit: 'writes' },
    ];
    const figures: BenchReport['figures'] = {
      cuts: takeovers.length,
      takeoverMsP50: round1(pct(s, 50)),
      takeoverMsP99: round1(pct(s, 99)),
      takeoverMsMax: round1(s[s.length - 1] ?? NaN),
      ackedWritesChecked: acked,
      ackedWritesLost: lost,
      takeoverFailures: failures,
      rigStarts,
      bootRaceCycles,
    };
    if (g.length > 0) {
      figures.givebackMs = round1(pct(g, 50));
      figures.givebackMsMax = round1(g[g.length - 1] as number);
      rows.push({ metric: 'giveback (request -> a serving /vola) p50', value: figures.givebackMs, unit: 'ms' });
    } else {
      notes.push('givebackMs not measured: giveback did not work, so every cut ran on a fresh rig');
    }
    if (bootRaceCycles > 0) notes.push(`${bootRaceCycles} power cycles of the pair before a cut to get past the mirror boot race (docs/e2e.md)`);
    notes.push(`${clients} clients writing 4 KiB FILE_SYNC to /vola during each cut; takeover probe = MNT + GETATTR at a's ports every ${benchLimits.probeIntervalMs} ms`);
    return { rows, figures, notes };
  },
};
