// The `pair` simulation area: seeds pass and replay byte for byte, and its checkers catch
// planted recovery mistakes (a blade ignoring its log; replay after a giveback as pair.ts does).
import { describe, expect, it } from 'vitest';
import { runPairSeed } from '../../firmware/ts/sim/areas/pair.ts';

async function run(seed: number, planted: Parameters<typeof runPairSeed>[2] = {}): Promise<{ ok: boolean; reason: string; lines: string[] }> {
  const lines: string[] = [];
  const r = await runPairSeed(seed, (l) => lines.push(l), planted);
  return { ok: r.ok, reason: r.ok ? '' : r.reason, lines };
}

describe('pair simulation area', { timeout: 60_000 }, () => {
  it('passes a range of seeds with power cuts, takeovers, givebacks, battery, link and disk faults', async () => {
    const summaries: string[] = [];
    for (let seed = 1; seed <= 12; seed++) {
      const r = await run(seed);
      expect(r.reason).toBe('');
      summaries.push(r.lines.at(-1) ?? '');
    }
    // The seeds really exercise the recovery paths the checkers are about.
    const all = summaries.join('\n');
    expect(all).toMatch(/takeovers [1-9]/);
    expect(all).toMatch(/givebacks [1-9]/);
    expect(all).toMatch(/replayed [1-9]/);
    expect(all).toMatch(/retransmits [1-9]/);
  });

  it('gives byte-identical output for one seed run twice', async () => {
    const a = await run(17);
    const b = await run(17);
    expect(a.ok).toBe(true);
    expect(b.lines).toEqual(a.lines);
  });

  it('catches a blade that ignores its change log after a power cut (answered changes lost)', async () => {
    const results = [];
    for (let seed = 1; seed <= 12; seed++) results.push(await run(seed, { skipOwnReplay: true }));
    const failed = results.filter((r) => !r.ok);
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.map((r) => r.reason).join('\n')).toMatch(/lost or this one ran twice|differs from the answered changes|not settled/);
  });

  it('catches replay of the own log after a giveback (seed 17: the dropped entries are applied, their numbers reused)', async () => {
    const r = await run(17, { replayAfterGiveback: true });
    expect(r.ok).toBe(false);
  });
});
