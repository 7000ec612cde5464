// Replay (NV-4, NV-5): apply exactly the change entries after the consistency point, in
// order, through the file system's `Applier`. One function serves a blade recovering its own
// log after a reboot and a blade replaying its partner's mirror after takeover.
import { TwinbladeError } from '../../core/errors.ts';
import { decodeChangePayload, type LogRecord } from './entry.ts';
import { NvlogErrorCode } from './limits.ts';
import { planReplay, type RecoveredLog } from './recovery.ts';
import type { StateMachineLog } from './smlog.ts';

/** One change to apply, as the file system sees it. */
export interface ReplayChange {
  origin: 0 | 1;
  seq: number;
  key: Uint8Array;
  descriptor: Uint8Array;
}

/**
 * How replay applies a change: the file system decodes the descriptor (fsapi/codec.ts) and
 * applies it. It returns the reply a retransmission of the request should get. An operating
 * error of the change (FsError) is a deterministic result, encoded in the reply, not a throw;
 * a throw aborts replay (the blade must not serve a file system it could not recover).
 */
export interface Applier {
  applyChange(change: ReplayChange): Promise<Uint8Array | undefined>;
}

export interface ReplayReport {
  cpSeq: number;
  applied: number;
  firstSeq: number | undefined;
  lastSeq: number | undefined;
  /** Intact entries after a break that were not applied (never acknowledged). */
  discarded: number;
  /** What each applied change answers (its key, sequence number and stored outcome). */
  outcomes: Array<{ key: Uint8Array; changeSeq: number; reply: Uint8Array }>;
}

export class ReplayGapError extends TwinbladeError {
  constructor(readonly expectedSeq: number, readonly foundSeq: number, detail: string) {
    super(NvlogErrorCode.replayGap, 'corrupt', `replay refused: ${detail}`);
    this.name = 'ReplayGapError';
  }
}

/**
 * Applies the entries of `log` after `cpSeq` (the last sequence number the on-disk consistency
 * point contains for this origin) and after the log's release point, restoring the
 * state-machine log on the way (SM-2).
 */
export async function replay(log: RecoveredLog, cpSeq: number, applier: Applier, sm: StateMachineLog | undefined, nowMs: number): Promise<ReplayReport> {
  const plan = planReplay(log, cpSeq);
  if (!plan.ok) throw new ReplayGapError(plan.expectedSeq, plan.foundSeq, plan.detail);
  sm?.restore(plan.live, cpSeq, nowMs, plan.releasedSeq);
  let applied = 0;
  let last: LogRecord | undefined;
  const outcomes: ReplayReport['outcomes'] = [];
  for (const rec of plan.toApply) {
    const p = decodeChangePayload(rec.payload);
    const reply = await applier.applyChange({ origin: log.origin, seq: rec.seq, key: p.key, descriptor: p.descriptor });
    if (sm !== undefined) {
      const r = sm.get(p.key);
      // A state entry already holds the original reply: keep it, apply is deterministic anyway.
      if (r === undefined || r.state !== 'replied') sm.applied(p.key, reply, nowMs);
    }
    if (reply !== undefined) outcomes.push({ key: p.key.slice(), changeSeq: rec.seq, reply });
    applied++;
    last = rec;
  }
  return { cpSeq, applied, firstSeq: plan.toApply[0]?.seq, lastSeq: last?.seq, discarded: plan.discarded.length, outcomes };
}
