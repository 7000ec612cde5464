// Log recovery as explicit decisions (NV-6): the per-entry decision table used by the
// backward-safe forward scan of each log half, the NVRAM header decision, the merge of a
// blade's own log with the partner's mirror of it, and the replay plan that picks exactly the
// entries after a consistency point (NV-5). Pure: bytes in, decisions out.
import { assert } from '../../core/assert.ts';
import {
  ENTRY_ALIGN,
  ENTRY_HEADER_BYTES,
  EntryType,
  checkEntryBody,
  checkEntryHeader,
  decodeReleasePayload,
  encodeEntry,
  encodeStatePayload,
  paddedEntryBytes,
  type StatePayload,
  type LogRecord,
} from './entry.ts';
import { decodeHeaderCopy, layoutsEqual, type BladeId, type HeaderCopy, type NvramHeader, type NvramLayout } from './layout.ts';
import { NvlogErrorCode } from './limits.ts';

// ---- the per-entry decision table -------------------------------------------------------

export type HeaderState = 'empty' | 'valid' | 'torn' | 'version' | 'foreign';
export type BodyState = 'valid' | 'torn' | 'none';
/** How the sequence number relates to the previous accepted entry of the same half. */
export type SeqState = 'first' | 'next' | 'stale' | 'older-boot' | 'gap' | 'none';
export type EndReason = 'empty' | 'stale' | 'stale-boot' | 'gap' | 'torn-body' | 'torn-header' | 'foreign-version' | 'foreign-origin' | 'half-end';

export interface DecisionRow {
  id: string;
  header: HeaderState;
  body: BodyState | 'any';
  seq: SeqState | 'any';
  action: 'accept' | 'end';
  end?: EndReason;
  /** `error` rows mean data that this firmware never writes: reported, never silently used. */
  severity: 'ok' | 'info' | 'error';
  why: string;
}

/**
 * The recovery decisions for the bytes at one position of a log half, in evaluation order
 * (the first matching row applies). Header, then body, then sequence relation.
 */
export const entryDecisionTable: readonly DecisionRow[] = [
  { id: 'R1', header: 'empty', body: 'any', seq: 'any', action: 'end', end: 'empty', severity: 'ok', why: 'zeroes: the half was never written this far' },
  { id: 'R2', header: 'torn', body: 'any', seq: 'any', action: 'end', end: 'torn-header', severity: 'info', why: 'bad magic or header checksum: a write cut short, or leftover bytes of an older lap' },
  { id: 'R3', header: 'version', body: 'any', seq: 'any', action: 'end', end: 'foreign-version', severity: 'error', why: 'an intact header of an unknown format version: reported, not interpreted' },
  { id: 'R4', header: 'foreign', body: 'any', seq: 'any', action: 'end', end: 'foreign-origin', severity: 'error', why: 'an intact header written by the other blade in this region' },
  { id: 'R5', header: 'valid', body: 'torn', seq: 'any', action: 'end', end: 'torn-body', severity: 'info', why: 'the payload does not match its checksum: the last write was torn and was never acknowledged' },
  { id: 'R6', header: 'valid', body: 'valid', seq: 'first', action: 'accept', severity: 'ok', why: 'the first entry of the half starts a run' },
  { id: 'R7', header: 'valid', body: 'valid', seq: 'next', action: 'accept', severity: 'ok', why: 'the next sequence number of the same or a later boot' },
  { id: 'R8', header: 'valid', body: 'valid', seq: 'stale', action: 'end', end: 'stale', severity: 'ok', why: 'a lower sequence number: left from the previous use of this half' },
  { id: 'R9', header: 'valid', body: 'valid', seq: 'older-boot', action: 'end', end: 'stale-boot', severity: 'info', why: 'the next number but from an earlier boot: left beyond a torn tail that a later boot rewrote' },
  { id: 'R10', header: 'valid', body: 'valid', seq: 'gap', action: 'end', end: 'gap', severity: 'error', why: 'a sequence gap inside a half: never written by this firmware, entries after it are reported' },
];

/** The first row of the table matching the classification. */
export function decide(header: HeaderState, body: BodyState, seq: SeqState): DecisionRow {
  for (const row of entryDecisionTable) {
    if (row.header !== header) continue;
    if (row.body !== 'any' && row.body !== body) continue;
    if (row.seq !== 'any' && row.seq !== seq) continue;
    return row;
  }
  assert(false, `no recovery decision for ${header}/${body}/${seq}`);
}

// ---- scanning a half ------------------------------------------------------------------

export interface HalfScan {
  half: 0 | 1;
  records: LogRecord[];
  /** The row that ended the scan and where. */
  endRow: DecisionRow;
  endPosition: number;
  /** Intact entries found after the break with a higher sequence number (never acknowledged). */
  beyondBreak: number;
  /**
   * The highest boot generation of any intact entry of this origin in the half, used or not:
   * the next boot must be above it, or a leftover entry could pass for a new one.
   */
  maxBootSeen: number;
}

/**
 * Scans one half of a log region forwards from its start, applying the decision table at each
 * entry. `region` is the whole region (both halves); positions are region-relative.
 */
export function scanHalf(region: Uint8Array, halfBytes: number, half: 0 | 1, origin: BladeId): HalfScan {
  const base = half * halfBytes;
  const end = base + halfBytes;
  const records: LogRecord[] = [];
  let pos = base;
  let row: DecisionRow | undefined;
  while (row === undefined) {
    if (end - pos < ENTRY_HEADER_BYTES) {
      row = { id: 'R0', header: 'empty', body: 'none', seq: 'none', action: 'end', end: 'half-end', severity: 'ok', why: 'the half is full' };
      break;
    }
    const hc = checkEntryHeader(region, pos, end - pos);
    let header: HeaderState;
    let body: BodyState = 'none';
    let seq: SeqState = 'none';
    if (hc.kind === 'valid') {
      const h = hc.header;
      if (h.origin !== origin) header = 'foreign';
      else {
        header = 'valid';
        body = checkEntryBody(region, pos, h) ? 'valid' : 'torn';
        const prev = records[records.length - 1];
        if (prev === undefined) seq = 'first';
        else if (h.seq <= prev.seq) seq = 'stale';
        else if (h.seq > prev.seq + 1) seq = 'gap';
        else if (h.bootGeneration < prev.bootGeneration) seq = 'older-boot';
        else seq = 'next';
      }
      const r = decide(header, body, seq);
      if (r.action === 'accept') {
        const len = paddedEntryBytes(h.payloadBytes);
        const bytes = region.slice(pos, pos + len);
        records.push({ ...h, payload: bytes.subarray(ENTRY_HEADER_BYTES, ENTRY_HEADER_BYTES + h.payloadBytes), position: pos, bytes });
        pos += len;
        continue;
      }
      row = r;
    } else {
      header = hc.kind;
      row = decide(header, body, seq);
    }
  }
  const last = records[records.length - 1];
  let maxBootSeen = 0;
  for (const r of records) maxBootSeen = Math.max(maxBootSeen, r.bootGeneration);
  const beyond = row.end === 'half-end' || row.end === 'empty' ? { n: 0, maxBoot: 0 } : countBeyond(region, pos, end, origin, last);
  return { half, records, endRow: row, endPosition: pos, beyondBreak: beyond.n, maxBootSeen: Math.max(maxBootSeen, beyond.maxBoot) };
}

/** Counts intact entries after a break that would have continued the run (for the report). */
function countBeyond(region: Uint8Array, from: number, end: number, origin: BladeId, last: LogRecord | undefined): { n: number; maxBoot: number } {
  let n = 0;
  let maxBoot = 0;
  for (let p = from; p + ENTRY_HEADER_BYTES <= end; p += ENTRY_ALIGN) {
    const hc = checkEntryHeader(region, p, end - p);
    if (hc.kind !== 'valid' || hc.header.origin !== origin) continue;
    if (!checkEntryBody(region, p, hc.header)) continue;
    maxBoot = Math.max(maxBoot, hc.header.bootGeneration);
    if (last === undefined || (hc.header.seq > last.seq && hc.header.bootGeneration >= last.bootGeneration)) n++;
    p += paddedEntryBytes(hc.header.payloadBytes) - ENTRY_ALIGN;
  }
  return { n, maxBoot };
}

// ---- a whole region ---------------------------------------------------------------------

export interface RecoveredLog {
  origin: BladeId;
  /** Every accepted entry of both halves, by ascending sequence number, one per number. */
  records: LogRecord[];
  halves: [HalfScan, HalfScan];
  halfBytes: number;
  /** Entries taken from the partner's mirror by `mergeWithMirror`. */
  fromMirror: number;
  /** Sequence numbers present in both copies with different contents (the later boot won). */
  conflicts: number[];
}

/** Recovers one log region (a blade's local log, or the mirror of its partner's log). */
export function recoverRegion(region: Uint8Array, halfBytes: number, origin: BladeId): RecoveredLog {
  assert(region.length === 2 * halfBytes, 'region is two halves');
  const h0 = scanHalf(region, halfBytes, 0, origin);
  const h1 = scanHalf(region, halfBytes, 1, origin);
  const bySeq = new Map<number, LogRecord>();
  const conflicts: number[] = [];
  for (const r of [...h0.records, ...h1.records]) pickInto(bySeq, r, conflicts);
  return { origin, records: sortedRecords(bySeq), halves: [h0, h1], halfBytes, fromMirror: 0, conflicts };
}

function pickInto(bySeq: Map<number, LogRecord>, r: LogRecord, conflicts: number[]): boolean {
  const have = bySeq.get(r.seq);
  if (have === undefined) {
    bySeq.set(r.seq, r);
    return true;
  }
  if (have.bootGeneration === r.bootGeneration && have.payloadCrc === r.payloadCrc && have.type === r.type) return false;
  conflicts.push(r.seq);
  // The later boot truncated the history that the earlier entry belonged to.
  if (r.bootGeneration > have.bootGeneration) {
    bySeq.set(r.seq, r);
    return true;
  }
  return false;
}

function sortedRecords(bySeq: Map<number, LogRecord>): LogRecord[] {
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

/**
 * Own-reboot recovery with the partner's copy (NV-5, and a blade whose NVRAM was lost with a
 * failed battery): the union of both copies by sequence number; where they disagree the entry
 * of the later boot wins. Positions are identical in both copies, so a mirror entry can be
 * written back into the local log where it came from.
 */
export function mergeWithMirror(local: RecoveredLog, mirror: RecoveredLog): RecoveredLog {
  assert(local.origin === mirror.origin, 'merging copies of the same origin');
  const bySeq = new Map<number, LogRecord>();
  const conflicts = [...local.conflicts];
  for (const r of local.records) bySeq.set(r.seq, r);
  for (const r of mirror.records) pickInto(bySeq, r, conflicts);
  const records = newestLapOnly(sortedRecords(bySeq), local.halfBytes);
  const localSet = new Set(local.records);
  const fromMirror = records.filter((r) => !localSet.has(r)).length;
  return { origin: local.origin, records, halves: local.halves, halfBytes: local.halfBytes, fromMirror, conflicts };
}

/**
 * Keeps, in each half, only the run of the newest lap: the last record written and the records
 * before it back to the start of the half, each ending where the next begins. The two copies
 * can hold different laps of a half (a mirror left behind while degraded); an older lap's
 * entries occupy positions the newer lap has overwritten, so they are not part of the log
 * any more, even if intact in one copy.
 */
function newestLapOnly(records: readonly LogRecord[], halfBytes: number): LogRecord[] {
  const keep = new Set<LogRecord>();
  for (const half of [0, 1]) {
    // The last record written into the half: the newest boot's highest sequence number.
    const inHalf = records.filter((r) => Math.floor(r.position / halfBytes) === half).sort((a, b) => b.bootGeneration - a.bootGeneration || b.seq - a.seq);
    let next: LogRecord | undefined;
    for (const r of inHalf) {
      if (next !== undefined && (r.seq !== next.seq - 1 || r.bootGeneration > next.bootGeneration || r.position + r.bytes.length !== next.position)) continue;
      keep.add(r);
      next = r;
      if (r.position === half * halfBytes) break;
    }
  }
  return records.filter((r) => keep.has(r));
}

/** Splits records into maximal runs: consecutive numbers with non-decreasing boot generation. */
export function segments(records: readonly LogRecord[]): LogRecord[][] {
  const out: LogRecord[][] = [];
  let cur: LogRecord[] = [];
  for (const r of records) {
    const prev = cur[cur.length - 1];
    if (prev !== undefined && (r.seq !== prev.seq + 1 || r.bootGeneration < prev.bootGeneration)) {
      out.push(cur);
      cur = [];
    }
    cur.push(r);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

// ---- the replay plan --------------------------------------------------------------------

/**
 * The log's release point as its release entries record it: every entry numbered up to it is
 * contained in a committed consistency point of the file system it changed (or was never
 * acknowledged), so its absence is not a loss. 0 when no release entry is found. A corrupt
 * release payload (its CRC matched, so this firmware never wrote it) counts as none.
 */
export function releasedSeqOf(log: RecoveredLog): number {
  let r = 0;
  for (const rec of log.records) {
    if (rec.type !== EntryType.release) continue;
    try {
      r = Math.max(r, Math.min(decodeReleasePayload(rec.payload).releasedSeq, rec.seq - 1));
    } catch {
      // Not counted: recovery then refuses a gap it cannot explain rather than guess.
    }
  }
  return r;
}

export type ReplayPlan =
  | {
      ok: true;
      /** The live run: the entries the log still holds for this consistency point. */
      live: LogRecord[];
      /** Change entries after the replay base, in order: what replay offers the applier. */
      toApply: LogRecord[];
      /** Intact entries after the base that are not contiguous with it: never acknowledged. */
      discarded: LogRecord[];
      /** The highest sequence number seen anywhere (the next append must exceed it or reuse below it with a newer boot). */
      lastSeq: number;
      /** The log's release point (`releasedSeqOf`). */
      releasedSeq: number;
      /** Where continuity is checked from: max(cpSeq, releasedSeq). */
      baseSeq: number;
    }
  | { ok: false; code: typeof NvlogErrorCode.replayGap; expectedSeq: number; foundSeq: number; detail: string };

/**
 * Chooses exactly the entries after the consistency point that named `cpSeq` as the last
 * sequence number it contains (NV-4, NV-5). One function for a blade's own log after reboot
 * and for the partner's mirror after takeover.
 *
 * A blade that served its partner's set logged changes for two file systems, and its CPs
 * release entries once every file system holding them committed them: entries after one file
 * system's `cpSeq` may be gone because they were the other one's and were released. So
 * continuity is checked from the log's release point when it is past `cpSeq`; the applier
 * still skips, per file system, what that file system's CP holds.
 */
export function planReplay(log: RecoveredLog, cpSeq: number): ReplayPlan {
  const releasedSeq = releasedSeqOf(log);
  const base = Math.max(cpSeq, releasedSeq);
  const segs = segments(log.records);
  const lastSeq = log.records.length === 0 ? 0 : (log.records[log.records.length - 1] as LogRecord).seq;
  let live: LogRecord[] | undefined = segs.find((s) => (s[0] as LogRecord).seq <= base + 1 && (s[s.length - 1] as LogRecord).seq >= base + 1);
  if (live === undefined) live = segs.find((s) => (s[s.length - 1] as LogRecord).seq === base);
  const after = (r: LogRecord): boolean => r.seq > base;
  if (live === undefined) {
    const later = log.records.filter(after);
    const first = later[0];
    if (first !== undefined && !tornBeforeHalf(log, first, base)) {
      // Nothing ends at or spans the consistency point, yet later entries exist: some
      // entries between the CP and them are gone, and no torn write explains it. Never
      // guess; report.
      return { ok: false, code: NvlogErrorCode.replayGap, expectedSeq: base + 1, foundSeq: first.seq, detail: `entries ${base + 1}..${first.seq - 1} are missing after the consistency point (cp ${cpSeq}, released through ${releasedSeq})` };
    }
    return { ok: true, live: [], toApply: [], discarded: later, lastSeq, releasedSeq, baseSeq: base };
  }
  const liveSet = new Set(live);
  return {
    ok: true,
    live,
    toApply: live.filter((r) => after(r) && r.type === EntryType.change),
    discarded: log.records.filter((r) => after(r) && !liveSet.has(r)),
    lastSeq,
    releasedSeq,
    baseSeq: base,
  };
}

/**
 * Whether the entries missing between `base` and `first` (the first entry found after it) can
 * be writes torn by a power cut, so that `first` and everything after it were never
 * acknowledged. The scan of a half accepts a contiguous run from the half's start, so `first`
 * opens its half and the missing entries were written into the other half, where no entry
 * numbered after `base` survived. Durable entries always form a prefix (an entry's persist
 * covers every earlier one not yet durable), but a write not yet persisted may survive a cut
 * whole or not at all, whatever came before it: the first entry of a new half can outlive
 * the still unpersisted tail of the old one. That is a tear when the other half's scan ended
 * at a break a torn write leaves (zeroes, a torn header or body, an older lap's entry); a
 * half that is full and intact, or ends at data this firmware never writes, is no tear.
 */
function tornBeforeHalf(log: RecoveredLog, first: LogRecord, base: number): boolean {
  const half = Math.floor(first.position / log.halfBytes);
  if (first.position !== half * log.halfBytes) return false;
  const other = log.halves[half === 0 ? 1 : 0];
  const tearEnds: ReadonlyArray<EndReason | undefined> = ['empty', 'torn-header', 'torn-body', 'stale', 'stale-boot'];
  if (!tearEnds.includes(other.endRow.end)) return false;
  return log.records.every((r) => Math.floor(r.position / log.halfBytes) === half || r.seq <= base);
}

// ---- continuing a partner's log after takeover -----------------------------------------

/**
 * State entries that continue a recovered log in place, for a blade that took its partner
 * over: the replies (outcomes) of the partner's changes it replayed, which the partner's own
 * log does not have. Written into the survivor's mirror of the partner's log, they reach the
 * partner with the copy it fetches when it boots after the giveback, so that a retransmission
 * arriving there is answered rather than run again (SM-2). Numbered after the log's last entry,
 * placed right after it in its half, with a boot generation one above it: where the partner's
 * own NVRAM still holds entries of those numbers (written after its mirror stopped, never
 * acknowledged), the merge prefers these. Stops where the half is full (returns what fits).
 */
export function continueLog(log: RecoveredLog, states: readonly StatePayload[]): Array<{ position: number; bytes: Uint8Array; seq: number }> {
  const last = log.records[log.records.length - 1];
  if (last === undefined) return [];
  const half = Math.floor(last.position / log.halfBytes);
  const end = (half + 1) * log.halfBytes;
  let pos = last.position + last.bytes.length;
  let seq = last.seq;
  const out: Array<{ position: number; bytes: Uint8Array; seq: number }> = [];
  for (const st of states) {
    const bytes = encodeEntry({ type: EntryType.state, origin: log.origin, seq: seq + 1, bootGeneration: last.bootGeneration + 1 }, encodeStatePayload(st));
    if (pos + bytes.length > end) break;
    seq++;
    out.push({ position: pos, bytes, seq });
    pos += bytes.length;
  }
  return out;
}

// ---- the NVRAM header -------------------------------------------------------------------

export type HeaderDecision =
  | { kind: 'use'; header: NvramHeader; copy: 0 | 1; otherCopy: HeaderCopy['kind'] }
  | { kind: 'fresh' }
  | { kind: 'error'; code: string; detail: string };

/**
 * Which NVRAM header to trust. Two copies are written alternately, so a torn header write
 * always leaves the previous copy intact. Both empty: a new NVRAM to format. No usable copy,
 * a foreign blade id or a layout that does not fit this memory: an error the caller reports
 * (the local log is then not used; the partner's mirror is the source).
 */
export function decideHeader(copyA: Uint8Array, copyB: Uint8Array, bladeId: BladeId, layout: NvramLayout): HeaderDecision {
  const a = decodeHeaderCopy(copyA);
  const b = decodeHeaderCopy(copyB);
  const valid: Array<{ h: NvramHeader; copy: 0 | 1; other: HeaderCopy }> = [];
  if (a.kind === 'valid') valid.push({ h: a.header, copy: 0, other: b });
  if (b.kind === 'valid') valid.push({ h: b.header, copy: 1, other: a });
  if (valid.length === 0) {
    if (a.kind === 'empty' && b.kind === 'empty') return { kind: 'fresh' };
    const v = a.kind === 'version' ? a : b.kind === 'version' ? b : undefined;
    if (v !== undefined) return { kind: 'error', code: NvlogErrorCode.headerVersion, detail: `NVRAM header format version ${v.version} is unknown` };
    return { kind: 'error', code: NvlogErrorCode.headerCorrupt, detail: `both NVRAM header copies are unusable (${describe(a)}; ${describe(b)})` };
  }
  valid.sort((x, y) => y.h.writeCounter - x.h.writeCounter);
  const best = valid[0] as { h: NvramHeader; copy: 0 | 1; other: HeaderCopy };
  if (best.h.bladeId !== bladeId) return { kind: 'error', code: NvlogErrorCode.bladeId, detail: `NVRAM belongs to blade ${best.h.bladeId}, this is blade ${bladeId}` };
  if (!layoutsEqual(best.h.layout, layout)) return { kind: 'error', code: NvlogErrorCode.layout, detail: `NVRAM header layout (half ${best.h.layout.halfBytes} B of ${best.h.layout.nvramBytes} B) does not match this NVRAM (half ${layout.halfBytes} B of ${layout.nvramBytes} B)` };
  return { kind: 'use', header: best.h, copy: best.copy, otherCopy: best.other.kind };
}

function describe(c: HeaderCopy): string {
  if (c.kind === 'torn') return c.detail;
  if (c.kind === 'version') return `version ${c.version}`;
  return c.kind;
}
