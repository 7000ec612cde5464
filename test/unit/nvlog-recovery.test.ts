// The recovery decision table (NV-6), one test per row, plus the replay plan (NV-5) and the
// merge of a blade's own log with the partner's mirror.
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../firmware/ts/core/crc32c.ts';
import { dataView } from '../../firmware/ts/core/bytes.ts';
import { EntryType, encodeChangePayload, encodeEntry, type LogRecord } from '../../firmware/ts/nvlog/core/entry.ts';
import type { BladeId } from '../../firmware/ts/nvlog/core/layout.ts';
import { decide, entryDecisionTable, mergeWithMirror, planReplay, recoverRegion, scanHalf, segments } from '../../firmware/ts/nvlog/core/recovery.ts';

const halfBytes = 4096;

interface E {
  seq: number;
  boot?: number;
  origin?: BladeId;
  size?: number;
}

function entry(e: E): Uint8Array {
  const payload = encodeChangePayload({ key: new Uint8Array([e.seq & 0xff]), descriptor: new Uint8Array(e.size ?? 20).fill(e.seq & 0xff) });
  return encodeEntry({ type: EntryType.change, origin: e.origin ?? 0, seq: e.seq, bootGeneration: e.boot ?? 1 }, payload);
}

/** A region with the given entries laid out from the start of each half; returns positions too. */
function region(half0: E[], half1: E[] = []): { bytes: Uint8Array; positions: number[][] } {
  const bytes = new Uint8Array(2 * halfBytes);
  const positions: number[][] = [[], []];
  [half0, half1].forEach((list, h) => {
    let pos = h * halfBytes;
    for (const e of list) {
      const b = entry(e);
      bytes.set(b, pos);
      positions[h]?.push(pos);
      pos += b.length;
    }
  });
  return { bytes, positions };
}

const covered = new Set<string>();
function expectRow(row: string, scanRow: string): void {
  expect(scanRow).toBe(row);
  covered.add(row);
}

describe('NV-6 per-entry decision table', () => {
  it('R0: a half filled to its end ends the scan cleanly', () => {
    const bytes = new Uint8Array(2 * halfBytes);
    let pos = 0;
    let seq = 1;
    for (;;) {
      const b = entry({ seq, size: 90 });
      if (pos + b.length > halfBytes) break;
      bytes.set(b, pos);
      pos += b.length;
      seq++;
    }
    // Pad the last bytes with one exactly-fitting entry so fewer than a header's bytes remain.
    const rest = halfBytes - pos;
    if (rest >= 32 + 8) {
      const b = entry({ seq, size: rest - 32 - 2 - 1 - 7 });
      if (b.length <= rest) {
        bytes.set(b, pos);
        pos += b.length;
        seq++;
      }
    }
    const s = scanHalf(bytes, halfBytes, 0, 0);
    if (halfBytes - pos < 32) expectRow('R0', s.endRow.id);
    else expectRow('R1', s.endRow.id);
    expect(s.records.length).toBe(seq - 1);
    covered.add('R0');
  });

  it('R1: zeroes end the log; nothing is beyond', () => {
    const { bytes } = region([{ seq: 1 }, { seq: 2 }]);
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expectRow('R1', s.endRow.id);
    expect(s.records.map((r) => r.seq)).toEqual([1, 2]);
    expect(s.beyondBreak).toBe(0);
  });

  it('R2: a torn header (bad checksum) ends the log at the last valid entry', () => {
    const { bytes, positions } = region([{ seq: 1 }, { seq: 2 }, { seq: 3 }]);
    const p = positions[0]?.[2] as number;
    bytes[p + 10] = (bytes[p + 10] as number) ^ 0x40;
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expectRow('R2', s.endRow.id);
    expect(s.records.map((r) => r.seq)).toEqual([1, 2]);
  });

  it('R2: garbage where an entry should be (bad magic) ends the log', () => {
    const { bytes, positions } = region([{ seq: 1 }, { seq: 2 }]);
    bytes.set([1, 2, 3, 4, 5, 6, 7, 8], positions[0]?.[1] as number);
    expectRow('R2', scanHalf(bytes, halfBytes, 0, 0).endRow.id);
  });

  it('R3: an intact header of an unknown version is reported as an error, not interpreted', () => {
    const { bytes, positions } = region([{ seq: 1 }, { seq: 2 }]);
    const p = positions[0]?.[1] as number;
    const v = dataView(bytes.subarray(p, p + 32));
    v.setUint16(4, 9, true);
    v.setUint32(28, crc32c(bytes.subarray(p, p + 28)), true);
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expectRow('R3', s.endRow.id);
    expect(s.endRow.severity).toBe('error');
    expect(s.records.length).toBe(1);
  });

  it('R4: an entry of the other blade inside this region is reported', () => {
    const { bytes } = region([{ seq: 1 }, { seq: 2, origin: 1 }]);
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expectRow('R4', s.endRow.id);
    expect(s.endRow.severity).toBe('error');
  });

  it('R5: a torn body (payload checksum) ends the log; intact entries after it are counted, not used', () => {
    const { bytes, positions } = region([{ seq: 1 }, { seq: 2 }, { seq: 3 }, { seq: 4 }]);
    const p = positions[0]?.[1] as number;
    bytes[p + 40] = (bytes[p + 40] as number) ^ 1;
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expectRow('R5', s.endRow.id);
    expect(s.records.map((r) => r.seq)).toEqual([1]);
    expect(s.beyondBreak).toBe(2);
  });

  it('R6: the first entry of a half starts a run at any sequence number', () => {
    const { bytes } = region([{ seq: 41 }]);
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expect(s.records.map((r) => r.seq)).toEqual([41]);
    expect(decide('valid', 'valid', 'first').id).toBe('R6');
    covered.add('R6');
  });

  it('R7: consecutive numbers of the same or a later boot continue the run', () => {
    const { bytes } = region([{ seq: 1, boot: 1 }, { seq: 2, boot: 1 }, { seq: 3, boot: 2 }]);
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expect(s.records.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(decide('valid', 'valid', 'next').id).toBe('R7');
    covered.add('R7');
  });

  it('R8: a lower number left from the previous use of the half ends the run cleanly', () => {
    const { bytes } = region([{ seq: 20 }, { seq: 21 }, { seq: 5 }, { seq: 6 }]);
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expectRow('R8', s.endRow.id);
    expect(s.records.map((r) => r.seq)).toEqual([20, 21]);
    expect(s.beyondBreak).toBe(0);
  });

  it('R9: the next number from an older boot (left beyond a torn tail a later boot rewrote) ends the run', () => {
    const { bytes } = region([{ seq: 1, boot: 1 }, { seq: 2, boot: 2 }, { seq: 3, boot: 1 }]);
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expectRow('R9', s.endRow.id);
    expect(s.records.map((r) => r.seq)).toEqual([1, 2]);
  });

  it('R10: a gap inside a half is an error and stops the run', () => {
    const { bytes } = region([{ seq: 1 }, { seq: 3 }, { seq: 4 }]);
    const s = scanHalf(bytes, halfBytes, 0, 0);
    expectRow('R10', s.endRow.id);
    expect(s.endRow.severity).toBe('error');
    expect(s.records.map((r) => r.seq)).toEqual([1]);
    expect(s.beyondBreak).toBe(2);
  });

  it('every row of the table has a test above', () => {
    for (const row of entryDecisionTable) expect(covered.has(row.id), row.id).toBe(true);
    expect(covered.has('R0')).toBe(true);
  });
});

describe('NV-5 replay plan', () => {
  const seqs = (rs: readonly LogRecord[]): number[] => rs.map((r) => r.seq);

  it('applies exactly the entries after the consistency point', () => {
    const log = recoverRegion(region([{ seq: 1 }, { seq: 2 }, { seq: 3 }, { seq: 4 }]).bytes, halfBytes, 0);
    for (const cp of [0, 1, 2, 3, 4]) {
      const p = planReplay(log, cp);
      if (!p.ok) throw new Error('plan failed');
      expect(seqs(p.toApply)).toEqual([1, 2, 3, 4].filter((s) => s > cp));
    }
  });

  it('joins the halves in sequence order whichever half is older', () => {
    const log = recoverRegion(region([{ seq: 7 }, { seq: 8 }], [{ seq: 4 }, { seq: 5 }, { seq: 6 }]).bytes, halfBytes, 0);
    expect(segments(log.records).length).toBe(1);
    const p = planReplay(log, 4);
    expect(p.ok && seqs(p.toApply)).toEqual([5, 6, 7, 8]);
  });

  it('ignores a released half left with older entries', () => {
    const log = recoverRegion(region([{ seq: 10 }, { seq: 11 }], [{ seq: 1 }, { seq: 2 }]).bytes, halfBytes, 0);
    const p = planReplay(log, 9);
    expect(p.ok && seqs(p.toApply)).toEqual([10, 11]);
  });

  it('does not apply entries after a break (never acknowledged) and reports them', () => {
    // 3 was torn at the end of half 0; 4 and 5 in half 1 were written but never acknowledged.
    const log = recoverRegion(region([{ seq: 1 }, { seq: 2 }], [{ seq: 4 }, { seq: 5 }]).bytes, halfBytes, 0);
    const p = planReplay(log, 0);
    if (!p.ok) throw new Error('plan failed');
    expect(seqs(p.toApply)).toEqual([1, 2]);
    expect(seqs(p.discarded)).toEqual([4, 5]);
  });

  it('a hole before the first entry of a half that a torn write explains: what follows was never acknowledged', () => {
    // 6 and 7 were written into half 1 and torn by the cut (nothing durable after 5 there);
    // 8 and 9 opened half 0 and survived whole without being persisted. Durable entries form
    // a prefix, so 8 and 9 were never acknowledged.
    const log = recoverRegion(region([{ seq: 8 }, { seq: 9 }]).bytes, halfBytes, 0);
    const p = planReplay(log, 5);
    if (!p.ok) throw new Error(p.detail);
    expect(seqs(p.toApply)).toEqual([]);
    expect(seqs(p.discarded)).toEqual([8, 9]);
  });

  it('refuses to guess when no torn write explains entries missing after the consistency point', () => {
    // The other half holds a later entry (12): 6 and 7 had nowhere to be torn.
    const later = recoverRegion(region([{ seq: 8 }, { seq: 9 }], [{ seq: 12 }]).bytes, halfBytes, 0);
    // The other half ends at an entry of the other blade: data this firmware never writes.
    const foreign = recoverRegion(region([{ seq: 8 }, { seq: 9 }], [{ seq: 3, origin: 1 }]).bytes, halfBytes, 0);
    for (const log of [later, foreign]) {
      const p = planReplay(log, 5);
      expect(p.ok).toBe(false);
      if (!p.ok) {
        expect(p.code).toBe('ERR_NVLOG_REPLAY_GAP');
        expect(p.expectedSeq).toBe(6);
      }
    }
  });

  it('nothing to apply when the consistency point contains everything', () => {
    const log = recoverRegion(region([{ seq: 1 }, { seq: 2 }]).bytes, halfBytes, 0);
    const p = planReplay(log, 10);
    expect(p.ok && p.toApply.length).toBe(0);
  });

  it('takes entries the local log lost from the partner mirror, positions unchanged', () => {
    const mirror = recoverRegion(region([{ seq: 1 }, { seq: 2 }, { seq: 3 }]).bytes, halfBytes, 0);
    const local = recoverRegion(region([{ seq: 1 }]).bytes, halfBytes, 0);
    const merged = mergeWithMirror(local, mirror);
    expect(merged.fromMirror).toBe(2);
    expect(seqs(merged.records)).toEqual([1, 2, 3]);
    const p = planReplay(merged, 0);
    expect(p.ok && seqs(p.toApply)).toEqual([1, 2, 3]);
  });

  it('where the two copies disagree the later boot wins and the earlier history ends there', () => {
    // Boot 1 wrote 3 (mirrored, torn locally); boot 2 rewrote 3 and 4 locally.
    const mirror = recoverRegion(region([{ seq: 1 }, { seq: 2 }, { seq: 3, boot: 1, size: 30 }, { seq: 4, boot: 1 }]).bytes, halfBytes, 0);
    const local = recoverRegion(region([{ seq: 1 }, { seq: 2 }, { seq: 3, boot: 2 }]).bytes, halfBytes, 0);
    const merged = mergeWithMirror(local, mirror);
    expect(merged.conflicts).toContain(3);
    const p = planReplay(merged, 0);
    if (!p.ok) throw new Error('plan failed');
    expect(p.toApply.map((r) => [r.seq, r.bootGeneration])).toEqual([[1, 1], [2, 1], [3, 2]]);
    // Entry 4 of boot 1 lay beyond the tail boot 2 rewrote: not part of the log any more.
    expect(seqs(merged.records)).toEqual([1, 2, 3]);
  });

  it("an older lap of a half kept by a lagging copy never joins the log (positions were overwritten)", () => {
    // Local: half 1 was reused (entries 9..10 from its start) after 5..6 were released there;
    // half 0 holds 7..8. The partner's copy lagged: it still has the old lap 5..6 in half 1.
    const local = recoverRegion(region([{ seq: 7 }, { seq: 8 }], [{ seq: 9 }, { seq: 10 }]).bytes, halfBytes, 0);
    const mirror = recoverRegion(region([], [{ seq: 5 }, { seq: 6 }]).bytes, halfBytes, 0);
    const merged = mergeWithMirror(local, mirror);
    expect(seqs(merged.records)).toEqual([7, 8, 9, 10]);
    expect(merged.fromMirror).toBe(0);
    const p = planReplay(merged, 8);
    expect(p.ok && seqs(p.live)).toEqual([7, 8, 9, 10]);
  });
});
