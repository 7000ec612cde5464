// The HA state machine of one blade (seed 003 figure 2; SPEC HA-1..HA-11, ST-4) as a pure
// core in the style of etcd/raft: no I/O, no clock, no timers. The driver feeds it events
// (`step`), the passage of time (`tick`) and operator commands, and carries out what
// `ready()` returns: state to persist, status messages to send, mailbox writes, fence
// commands, the partner-reset pulse, serving and replaying disk sets, and alerts.
// An optional partner-power sense line (hardware-assisted takeover) lets a powered-off
// partner be taken over without waiting for the conservative mailbox timeout.
import { assert } from '../../core/assert.ts';
import { InvalidArgumentError } from '../../core/errors.ts';
import { StatusStream, compareGenSeq, type GenSeq } from './merge.ts';
import {
  DisableReason,
  HaPhase,
  StateIndicator,
  StatusFlag,
  indicatorName,
  phaseName,
  reasonNames,
  statusProtocolVersion,
  statusSequenceMax,
  type StatusMessage,
} from './status.ts';
import { checkTiming, pathTimeoutMs, type HaTiming, type PathKind } from './timing.ts';
import { powerSenseSlackMs } from './power-sense.ts';

export type SetIndex = 0 | 1;

export interface HaPathConfig {
  /** Stable path name, e.g. "serial", "net0", "mbox2". */
  id: string;
  kind: PathKind;
}

export interface HaConfig {
  /** The pair's id; messages carrying another id are rejected (a mis-cabled pair). */
  systemId: number;
  bladeIndex: 0 | 1;
  /** Firmware version; the high 16 bits are the compatibility level that must match the partner's (HA-8). */
  firmwareVersion: number;
  paths: readonly HaPathConfig[];
  timing: HaTiming;
  /** Give back automatically once the recovered partner asks for its disks (after `givebackDelayMinMs`). */
  autoGiveback: boolean;
  /** Whether the NVRAM mirror counts as synced until the mirroring layer says otherwise. */
  mirrorSyncedAtBoot: boolean;
  /**
   * Give back only to a partner that reports a synced mirror (default true). A composition
   * whose giveback first commits everything it did to the partner's disks (a consistency
   * point before the release) leaves nothing that only a mirror holds, and sets this false:
   * a rebooting partner cannot sync its mirror before it has its disks back.
   */
  givebackNeedsPartnerMirror?: boolean;
  /**
   * A random u32 drawn at every power-on (the incarnation id carried in every message).
   * `HaDriver` draws one when it is not given; without one (0) a partner that lost its
   * NVRAM cannot be told from stale records of its previous life.
   */
  bootId?: number;
}

/**
 * What the machine keeps in the blade's persistent memory (HA-4). `phase` and
 * `claimedSets` are the last *stable* state (NORMAL or TAKEOVER and the reservations held):
 * a rebooting blade reads them in step 253 to learn what it was doing before.
 */
export interface PersistedHaState {
  generation: number;
  phase: HaPhase;
  claimedSets: number;
  operatorDisabled: boolean;
}

export type FenceOp = 'register' | 'reserve' | 'preempt' | 'release';

/** Stable codes of alerts and refused operator commands. */
export const HaCode = {
  pathDown: 'HA_PATH_DOWN',
  pathUp: 'HA_PATH_UP',
  mailboxBad: 'HA_MAILBOX_BAD',
  /** Every path but the mailbox disks is down: the partner is alive; no takeover; mirroring needs a path. */
  partnerOnMailboxOnly: 'HA_PARTNER_ON_MAILBOX_ONLY',
  /** The partner is heard but does not hear us (a one-way path failure). */
  partnerDeaf: 'HA_PARTNER_DEAF',
  /** The partner's generation went backwards: it lost its persistent memory. */
  partnerGenerationBack: 'HA_PARTNER_GENERATION_BACK',
  partnerDown: 'HA_PARTNER_DOWN',
  takeoverBlocked: 'HA_TAKEOVER_BLOCKED',
  takeoverStarted: 'HA_TAKEOVER_STARTED',
  takeoverAborted: 'HA_TAKEOVER_ABORTED',
  takeoverDone: 'HA_TAKEOVER_DONE',
  takeoverDamped: 'HA_TAKEOVER_DAMPED',
  beingTakenOver: 'HA_BEING_TAKEN_OVER',
  fenced: 'HA_FENCED',
  awaitGiveback: 'HA_AWAIT_GIVEBACK',
  givebackDone: 'HA_GIVEBACK_DONE',
  givebackFailed: 'HA_GIVEBACK_FAILED',
  versionMismatch: 'HA_VERSION_MISMATCH',
  foreignSystem: 'HA_FOREIGN_SYSTEM',
  fenceFailed: 'HA_FENCE_FAILED',
  replayFailed: 'HA_REPLAY_FAILED',
  rebootDone: 'HA_REBOOT_DONE',
  /** The sense line reports the partner's power lost and every interconnect and network path is silent: failed now. */
  partnerPowerLost: 'HA_PARTNER_POWER_LOST',
  /** The sense line reports the partner's power lost while a path shows it running: the line is ignored. */
  powerSenseFaulty: 'HA_POWER_SENSE_FAULTY',
  // Operator command refusals.
  refusedState: 'ERR_HA_WRONG_STATE',
  refusedDisabled: 'ERR_HA_TAKEOVER_DISABLED',
  refusedPartnerNotReady: 'ERR_HA_PARTNER_NOT_READY',
  refusedPartnerUnreachable: 'ERR_HA_PARTNER_UNREACHABLE',
} as const;

export type HaAction =
  /** Send `message` on every interconnect and network path (unreliable; repeated each heartbeat). */
  | { type: 'send'; message: StatusMessage }
  /** Write `message` into this blade's slot on the mailbox disks of `sets` (those it holds), first one then the next. */
  | { type: 'write-mailbox'; message: StatusMessage; sets: number }
  /** Apply a fence command to every disk of `set`; answer with a `fence-result` event. */
  | { type: 'fence'; op: FenceOp; set: SetIndex; token: number }
  /** Pulse the partner's reset line for `durationMs`; answer with `reset-done`. */
  | { type: 'pulse-reset'; durationMs: number }
  /** Start or stop serving a disk set (file systems, client addresses). Stopping means no further writes to it. */
  | { type: 'serve'; set: SetIndex; on: boolean }
  /** Replay the change log that covers `set` (own log, or the partner's mirrored copy, HA-7); answer with `replay-done`. */
  | { type: 'replay'; set: SetIndex }
  | { type: 'alert'; code: string; message: string };

/**
 * The output of one round. Ordering rule (like raft's Ready): make `persist` durable
 * **before** carrying out any action, because the messages may announce a generation or a
 * takeover that must survive a crash; then carry the actions out in order.
 */
export interface HaReady {
  persist: PersistedHaState | undefined;
  actions: HaAction[];
}

export type HaEvent =
  /** A decoded status message from the partner arrived on `path`. */
  | { type: 'status'; path: string; message: StatusMessage }
  /** Bytes on `path` were rejected by a decoder; `code` is the decoder's error code. */
  | { type: 'rejected'; path: string; code: string }
  /** The link layer reports a path up or down (down makes it silent at once). */
  | { type: 'path'; path: string; up: boolean }
  /** The outcome of the `fence` action with the same `token`. */
  | { type: 'fence-result'; op: FenceOp; set: SetIndex; token: number; ok: boolean; code?: string }
  /** A write of ours to a disk of `set` was refused with a reservation conflict. */
  | { type: 'write-fenced'; set: SetIndex }
  | { type: 'reset-done' }
  | { type: 'replay-done'; set: SetIndex; ok: boolean }
  /** The NVRAM mirroring layer's state (HA-8: a sync error disables takeover). */
  | { type: 'mirror'; synced: boolean }
  /**
   * The partner-power sense line (the partner's power-good rail or its BMC's signal), when
   * the board has one: reported at start and on every change. Never reported: no line.
   */
  | { type: 'partner-power'; good: boolean };

export type OperatorCommand = 'takeover' | 'giveback' | 'disable' | 'enable';

export type OperatorResult = { ok: true } | { ok: false; code: string; message: string };

type Step =
  // REBOOTING (steps 251-258)
  | 'probe' // 251/252: reserving our own set tells whether the partner holds it
  | 'await-giveback' // 252: the partner holds our disks
  | 'listen' // 253: learning the partner's state
  | 'seize' // 254/255
  | 'replay' // 256
  // NORMAL
  | 'steady'
  | 'tiebreak' // waiting our tie-break delay before an automatic takeover
  | 'announce' // 213: TAKEOVER announced, partner gets time to stop writing
  | 'fencing'
  | 'resetting'
  | 'replaying'
  // TAKEOVER
  | 'giveback-release'
  // STOPPED
  | 'stopped';

interface PathState {
  readonly id: string;
  readonly kind: PathKind;
  lastAdvanceMs: number | undefined;
  /** Last time a record decoded on this path, fresh or stale (mailboxes: the disk is readable). */
  lastReadOkMs: number | undefined;
  linkDown: boolean;
  corruptCount: number;
  /** Consecutive good decodes (a bad path needs `mailboxCorruptCountMax` of them to recover). */
  goodCount: number;
  /** Since when consecutive, closely spaced good reads have shown the same record (undefined: no such streak). */
  staleSinceMs: number | undefined;
  bad: boolean;
  /** Last reported up/down (for alerts on transitions). */
  reportedUp: boolean;
  /** Fresh records since the sense line said lost, newer than a message sent before a cut could be. */
  advancesAfterLoss: number;
  /** Records decoded (fresh or not) since the sense line said lost (partnerVouchesForMirror). */
  readsAfterLoss: number;
}

export interface HaPathReport {
  id: string;
  kind: PathKind;
  up: boolean;
  bad: boolean;
}

export interface HaStatusReport {
  bladeIndex: 0 | 1;
  phase: string;
  step: string;
  indicator: string;
  generation: number;
  sequence: number;
  claimedSets: number;
  servingSets: number;
  /** Why an automatic takeover is not allowed right now (empty: allowed). */
  blockers: string[];
  partner: {
    heard: boolean;
    alive: boolean;
    /** The partner's messages echo a recent message of ours (HA-4): it hears us. */
    hearsUs: boolean;
    phase: string | undefined;
    indicator: string | undefined;
    generation: number;
    sequence: number;
  };
  paths: HaPathReport[];
  takeoversInWindow: number;
  /** What the partner-power sense line says (`unknown`: no line, or not reported yet). */
  partnerPower: 'good' | 'lost' | 'unknown';
  /** The line reported the power lost while a path showed the partner running: ignored until it reads good again. */
  partnerPowerSenseFaulty: boolean;
  rejected: Record<string, number>;
  messages: { newCount: number; oldCount: number };
}

const bit = (s: SetIndex): number => 1 << s;

/** How many of our own send times are remembered to date the partner's echoes (HA-4). */
const sentTimesMax = 256;

/** Increasing messages below the newest stamp needed before a partner counts as restarted lower. */
const backwardsCountMin = 3;

/** A gap between two inputs longer than this means we stalled (ticks are due every `tickIntervalMs`). */
const ownStallMs = (t: HaTiming): number => 2 * t.heartbeatIntervalMs;

/** Fresh mailbox records after the sense line said lost that prove the partner runs (see `partnerRanAfterPowerLoss`). */
const mailboxAdvancesAfterLossMin = 3;

/** How many retired partner incarnations are remembered. */
const retiredBootIdsMax = 8;

export class HaMachine {
  private readonly cfg: HaConfig;
  private readonly t: HaTiming;
  private readonly own: SetIndex;
  private readonly other: SetIndex;
  private nowMs: number;

  private phase: HaPhase = HaPhase.rebooting;
  private step_: Step = 'probe';
  private generation: number;
  private sequence = 0;
  private claimed: number;
  private serving = 0;
  private operatorDisabled: boolean;
  private mirrorSynced: boolean;
  /** Our log's mirror reached `synced` at least once in this run (a `mirror` event said so). */
  private mirrorSyncedOnce = false;
  /** The last stable phase and reservations, as persisted (step 253 reads them). */
  private stablePhase: HaPhase;
  private stableClaimed: number;
  private bootClaimed: number;

  private readonly stream = new StatusStream();
  private partner: StatusMessage | undefined;
  /** Time the newest partner message arrived (undefined: none since boot). */
  private partnerHeardMs: number | undefined;
  private readonly paths = new Map<string, PathState>();
  private bootMs: number;

  private nextSendMs: number;
  private nextMailboxMs: number;
  private stepDeadlineMs = 0;
  private takeoverPlanned = false;
  private takeoverSinceMs = 0;
  private takeoverTimesMs: number[] = [];
  private pendingReplays = 0;
  private replayFailed = false;
  private seizeSets = 0;
  private pendingFences = 0;
  private probeRetryMs: number | undefined;
  /** Earliest time a blade waiting for giveback may try its own disks again. */
  private reprobeAtMs = 0;
  /** Earliest time an automatic giveback may be tried again after one failed. */
  private givebackRetryAtMs = 0;
  private fenceToken = 0;
  /** Fence commands of this boot still waiting for their result. */
  private readonly outstandingFences = new Set<number>();
  private partnerDownAlerted = false;
  private onlyMailboxSinceMs: number | undefined;
  private onlyMailboxAlerted = false;
  private versionAlerted = false;
  /** Send times of our recent messages, to date the partner's echo of them (HA-4). */
  private readonly sentTimes: { generation: number; sequence: number; atMs: number }[] = [];
  /** When we sent the newest message of ours that the partner says it received. */
  private partnerHeardUsMs: number | undefined;
  private deafAlerted = false;
  /** Increasing messages below the newest stamp (a partner that lost its count?). */
  private readonly backwards = new Map<string, { last: GenSeq; sinceMs: number; count: number }>();
  /** Incarnations of the partner that lost their count: their records are stale forever. */
  private readonly retiredBootIds: number[] = [];
  /** Since when some path has been up without interruption. */
  private partnerAliveSinceMs: number | undefined;
  /** When we last resumed from a stall of our own (see `advanceClock`). */
  private resumedMs: number | undefined;
  /** The partner-power sense line: undefined = no line (or not reported yet). */
  private partnerPowerGood: boolean | undefined;
  /** When the line last went from good (or unknown) to lost. */
  private powerLostSinceMs: number | undefined;
  /** The line said lost while a path showed the partner running: ignored until it reads good. */
  private powerSenseFaulty = false;
  /** The automatic takeover under way was started by the sense line. */
  private takeoverByPower = false;

  private dirty = true;
  private broadcastNow = true;
  private actions: HaAction[] = [];
  private readonly rejected: Record<string, number> = {};

  constructor(config: HaConfig, persisted: PersistedHaState | undefined, nowMs: number) {
    const why = checkTiming(config.timing);
    if (why !== undefined) throw new InvalidArgumentError('ERR_HA_CONFIG', `HA timing: ${why}`);
    if (config.bladeIndex !== 0 && config.bladeIndex !== 1) throw new InvalidArgumentError('ERR_HA_CONFIG', 'bladeIndex must be 0 or 1');
    if (config.paths.length === 0) throw new InvalidArgumentError('ERR_HA_CONFIG', 'at least one path is needed');
    const bootId = config.bootId ?? 0;
    if (!Number.isInteger(bootId) || bootId < 0 || bootId > 0xffff_ffff) throw new InvalidArgumentError('ERR_HA_CONFIG', 'bootId must be a u32');
    this.cfg = config;
    this.t = config.timing;
    this.own = config.bladeIndex;
    this.other = config.bladeIndex === 0 ? 1 : 0;
    this.nowMs = nowMs;
    this.bootMs = nowMs;
    for (const p of config.paths) {
      if (this.paths.has(p.id)) throw new InvalidArgumentError('ERR_HA_CONFIG', `duplicate path ${p.id}`);
      this.paths.set(p.id, { id: p.id, kind: p.kind, lastAdvanceMs: undefined, lastReadOkMs: undefined, linkDown: false, corruptCount: 0, goodCount: 0, staleSinceMs: undefined, bad: false, reportedUp: false, advancesAfterLoss: 0, readsAfterLoss: 0 });
    }
    // Step 251: a new instantiation, so a new generation (HA-2), persisted before any message carries it.
    this.generation = (persisted?.generation ?? 0) + 1;
    if (this.generation > statusSequenceMax) this.generation = 1;
    this.stablePhase = persisted?.phase ?? HaPhase.normal;
    this.stableClaimed = persisted?.claimedSets ?? bit(this.own);
    this.bootClaimed = this.stableClaimed;
    this.claimed = 0;
    this.operatorDisabled = persisted?.operatorDisabled ?? false;
    this.mirrorSynced = config.mirrorSyncedAtBoot;
    this.nextSendMs = nowMs;
    this.nextMailboxMs = nowMs;
    this.enterProbe();
    // The first REBOOTING report (HA-11) goes out with the first Ready.
    this.evaluate();
  }

  // ---------------------------------------------------------------------------------------
  // Driver interface

  /** Feeds one event that happened at `nowMs`. */
  step(event: HaEvent, nowMs: number): void {
    this.advanceClock(nowMs);
    switch (event.type) {
      case 'status':
        this.onStatus(event.path, event.message);
        break;
      case 'rejected':
        this.onRejected(event.path, event.code);
        break;
      case 'path': {
        const p = this.pathOf(event.path);
        p.linkDown = !event.up;
        break;
      }
      case 'fence-result':
        if (!this.outstandingFences.delete(event.token)) this.onStaleFenceResult(event.op, event.set, event.ok);
        else this.onFenceResult(event.op, event.set, event.ok, event.code);
        break;
      case 'write-fenced':
        this.onWriteFenced(event.set);
        break;
      case 'reset-done':
        if (this.step_ === 'resetting') this.startReplaying();
        break;
      case 'replay-done':
        this.onReplayDone(event.set, event.ok);
        break;
      case 'mirror':
        if (event.synced) this.mirrorSyncedOnce = true;
        if (this.mirrorSynced !== event.synced) {
          this.mirrorSynced = event.synced;
          this.broadcastNow = true;
        }
        break;
      case 'partner-power':
        this.onPartnerPower(event.good);
        break;
    }
    this.evaluate();
  }

  /** Advances time; call at least every `timing.tickIntervalMs`. */
  tick(nowMs: number): void {
    this.advanceClock(nowMs);
    this.evaluate();
  }

  /** Runs an operator command (HA-8, HA-9); a refusal says why with a stable code. */
  operator(command: OperatorCommand, nowMs: number): OperatorResult {
    this.advanceClock(nowMs);
    const r = this.runOperator(command);
    this.evaluate();
    return r;
  }

  hasReady(): boolean {
    return this.dirty || this.actions.length > 0;
  }

  /** Takes the pending output; see `HaReady` for the ordering rule. */
  ready(): HaReady {
    const persist = this.dirty ? this.persistedState() : undefined;
    this.dirty = false;
    const actions = this.actions;
    this.actions = [];
    return { persist, actions };
  }

  status(): HaStatusReport {
    const p = this.partner;
    return {
      bladeIndex: this.own,
      phase: phaseName(this.phase),
      step: this.step_,
      indicator: indicatorName(this.indicator()),
      generation: this.generation,
      sequence: this.sequence,
      claimedSets: this.claimed,
      servingSets: this.serving,
      blockers: reasonNames(this.blockers(false)),
      partner: {
        heard: p !== undefined,
        hearsUs: !this.partnerDeaf(),
        alive: this.partnerAlive(),
        phase: p && phaseName(p.phase),
        indicator: p && indicatorName(p.indicator),
        generation: p?.generation ?? 0,
        sequence: p?.sequence ?? 0,
      },
      paths: [...this.paths.values()].map((s) => ({ id: s.id, kind: s.kind, up: this.pathUp(s), bad: s.bad })),
      takeoversInWindow: this.takeoversInWindow(),
      partnerPower: this.partnerPowerGood === undefined ? 'unknown' : this.partnerPowerGood ? 'good' : 'lost',
      partnerPowerSenseFaulty: this.powerSenseFaulty,
      rejected: { ...this.rejected },
      messages: this.stream.counts(),
    };
  }

  // ---------------------------------------------------------------------------------------
  // Inputs

  private advanceClock(nowMs: number): void {
    assert(Number.isFinite(nowMs), 'HaMachine: time must be finite');
    // Our own stall (an event loop that did not run us, a hung blade resuming): every path
    // looks silent only because we did not listen. Decide nothing about the partner until
    // the paths have had a chance to be heard again (the partner may be taking us over).
    if (nowMs - this.nowMs > ownStallMs(this.t)) this.resumedMs = nowMs;
    if (nowMs > this.nowMs) this.nowMs = nowMs;
  }

  /** We stalled and have not listened for a heartbeat timeout since. */
  private justResumed(): boolean {
    return this.resumedMs !== undefined && this.nowMs - this.resumedMs < pathTimeoutMs(this.t, 'interconnect');
  }

  private pathOf(id: string): PathState {
    const p = this.paths.get(id);
    if (p === undefined) throw new InvalidArgumentError('ERR_HA_UNKNOWN_PATH', `unknown HA path ${id}`);
    return p;
  }

  private countRejected(code: string): void {
    this.rejected[code] = (this.rejected[code] ?? 0) + 1;
  }

  private onRejected(pathId: string, code: string): void {
    const p = this.pathOf(pathId);
    this.countRejected(code);
    // A never-written slot is silence, not corruption (a fresh disk before the partner's first write).
    if (code === 'ERR_MAILBOX_EMPTY') return;
    p.corruptCount++;
    p.goodCount = 0;
    p.staleSinceMs = undefined;
    if (p.kind === 'mailbox' && !p.bad && p.corruptCount >= this.t.mailboxCorruptCountMax) {
      p.bad = true;
      this.alert(HaCode.mailboxBad, `mailbox path ${p.id}: ${p.corruptCount} undecodable records in a row (last ${code}); path marked bad`);
    }
  }

  private onStatus(pathId: string, m: StatusMessage): void {
    const p = this.pathOf(pathId);
    if (m.systemId !== this.cfg.systemId) {
      this.countRejected(HaCode.foreignSystem);
      return;
    }
    if (m.bladeIndex !== this.other) {
      // Our own message (a looped-back path, or our own slot read by mistake): not the partner.
      this.countRejected('HA_OWN_MESSAGE');
      return;
    }
    p.corruptCount = 0;
    p.goodCount++;
    // A disk heartbeat proves life by changing between two reads in a row. A record read
    // after a gap (reads failing, a fresh boot) may have been written long ago, even if it
    // is newer than anything the stream has seen: it earns no credit until the next read.
    const watched = p.kind !== 'mailbox' || (p.lastReadOkMs !== undefined && this.nowMs - p.lastReadOkMs <= 2 * this.t.mailboxPollIntervalMs + this.t.tickIntervalMs);
    p.lastReadOkMs = this.nowMs;
    if (this.retiredBootIds.includes(m.bootId)) {
      // A record from a previous life of a partner that has since lost its count.
      this.countRejected('HA_STALE_INCARNATION');
      return;
    }
    if (this.partnerCountedBackwards(m, p)) {
      if (this.partner !== undefined) {
        this.retiredBootIds.push(this.partner.bootId);
        if (this.retiredBootIds.length > retiredBootIdsMax) this.retiredBootIds.shift();
      }
      // The partner lost its persistent memory (a failed NVRAM battery) and counts from
      // generation 1 again: every message would look old forever and the partner dead.
      const known = this.stream.latest();
      this.alert(HaCode.partnerGenerationBack, `partner counts from ${m.generation}/${m.sequence} again, below the ${known?.generation ?? 0}/${known?.sequence ?? 0} we knew: it lost its persistent memory; following the new count`);
      this.stream.reset();
      this.backwards.clear();
      for (const q of this.paths.values()) q.staleSinceMs = undefined;
    }
    const { isNew, pathAdvanced, witnessMs } = this.stream.offer(pathId, m, this.nowMs);
    // A path marked bad proves nothing about the partner until it has recovered. A record
    // that is new for its path but old for the stream (a mailbox read after a gap) only
    // proves the partner was alive when the stream first saw that far.
    if (pathAdvanced && watched && !p.bad && witnessMs > (p.lastAdvanceMs ?? -Infinity)) p.lastAdvanceMs = witnessMs;
    const lostMs = this.powerLostSinceMs;
    if (lostMs !== undefined && p.kind === 'mailbox') p.readsAfterLoss++;
    if (pathAdvanced && watched && !p.bad && lostMs !== undefined && witnessMs > lostMs + powerSenseSlackMs(this.t, p.kind)) p.advancesAfterLoss++;
    // Evidence that the partner stopped writing: the same record, read again and again
    // without a gap. Any change, gap or bad read starts the streak over.
    if (pathAdvanced || !watched) p.staleSinceMs = this.nowMs;
    // Hysteresis: one lucky read of a flaky disk must not make it a trusted path again.
    if (p.bad && p.goodCount >= this.t.mailboxCorruptCountMax) {
      p.bad = false;
      this.alert(HaCode.pathUp, `mailbox path ${p.id} decodes again`);
    }
    if (!isNew) return;
    const previous = this.partner;
    this.partner = m;
    this.partnerHeardMs = this.nowMs;
    this.partnerDownAlerted = false;
    // HA-4: the partner's echo of our stamp says how far it has followed us.
    if (m.peerGeneration === this.generation) {
      const sent = this.sentTimes.find((x) => x.generation === m.peerGeneration && x.sequence === m.peerSequence);
      if (sent !== undefined && sent.atMs > (this.partnerHeardUsMs ?? -Infinity)) this.partnerHeardUsMs = sent.atMs;
    }
    if (this.versionMismatch() && !this.versionAlerted) {
      this.versionAlerted = true;
      this.alert(HaCode.versionMismatch, `partner speaks protocol ${m.protocolVersion} firmware ${hex(m.firmwareVersion)}, we ${statusProtocolVersion}/${hex(this.cfg.firmwareVersion)}: takeover disabled`);
    }
    if (previous === undefined || previous.indicator !== m.indicator || previous.phase !== m.phase) this.broadcastNow = true;
    // The partner (re)joined NORMAL: renew our registration on its disks, which its own
    // recovery may have preempted, so that a later takeover can preempt them (SCSI-3 PR).
    if (m.phase === HaPhase.normal && previous?.phase !== HaPhase.normal && (this.claimed & bit(this.other)) === 0) {
      this.fence('register', this.other);
    }
    this.onPartnerProgress(m);
  }

  /** Reactions to a new message from the partner, by our own step. */
  private onPartnerProgress(m: StatusMessage): void {
    if (this.partnerTakingUs(m) && this.shouldYieldTo()) {
      // Claim 14 of seed 003: on the partner's TAKEOVER we stop writing the shared disks.
      this.alert(HaCode.beingTakenOver, `partner announced TAKEOVER (generation ${m.generation}); stopping`);
      this.stop();
      return;
    }
    switch (this.step_) {
      case 'tiebreak':
        if (this.partnerAlive()) {
          this.alert(HaCode.takeoverAborted, 'partner heard again during the tie-break delay; no takeover');
          this.step_ = 'steady';
        }
        break;
      case 'announce':
        // An automatic takeover is only for a partner that is gone. Fresh life from a partner
        // that has not stopped means it is alive: abort. A STOPPED one complied with us. (A
        // new but old record, read from a disk after a gap, is not life: partnerAlive.)
        // A takeover started by the sense line is for a partner without power: a record it
        // wrote before the cut (a mailbox path still up) is not life; running after it is.
        if (!this.takeoverPlanned && m.phase !== HaPhase.stopped && (this.takeoverByPower && this.partnerPowerLost() ? this.partnerRanAfterPowerLoss() : this.partnerAlive())) {
          this.abortTakeover('partner alive again before it was fenced');
        }
        break;
      case 'await-giveback':
        // The partner says it holds nothing of ours: it gave our disks back (or never had
        // them, or holds a stale reservation it does not know of). Try again (step 252),
        // at most once per retry interval.
        if (this.partnerDisclaims(m) && this.nowMs >= this.reprobeAtMs) {
          this.reprobeAtMs = this.nowMs + this.t.takeoverGraceMs;
          this.enterProbe();
        }
        break;
      case 'listen':
        this.decideAfterListen();
        break;
      default:
        break;
    }
  }

  /**
   * Messages of another incarnation (boot id) than the newest keep arriving on an ordered
   * path, below the newest stamp but themselves increasing, while the newest has gone
   * silent: a partner that lost its count (or a newest that was a stale record of a dead
   * incarnation, read from a disk). Stale copies do not increase, and mailboxes are not
   * trusted for this at all.
   */
  private partnerCountedBackwards(m: StatusMessage, p: PathState): boolean {
    // Mailboxes are slow and show stale records by nature; an ordered message path never
    // goes backwards on its own unless the sender's count did.
    if (p.kind === 'mailbox') return false;
    const latest = this.stream.latest();
    if (latest === undefined || compareGenSeq(m, latest) >= 0) {
      this.backwards.clear();
      return false;
    }
    // Only another incarnation of the partner can count below what we know.
    if (this.partner === undefined || m.bootId === this.partner.bootId) return false;
    const c = this.backwards.get(p.id);
    if (c === undefined || compareGenSeq(m, c.last) < 0 || (this.partnerHeardMs ?? -Infinity) > c.sinceMs) {
      this.backwards.set(p.id, { last: { generation: m.generation, sequence: m.sequence }, sinceMs: this.nowMs, count: 1 });
      return false;
    }
    if (compareGenSeq(m, c.last) > 0) {
      c.last = { generation: m.generation, sequence: m.sequence };
      c.count++;
    }
    // A reordering path delays a copy by milliseconds; two heartbeats of silence from the
    // newest count while the lower one keeps advancing on the same path is no reordering.
    return c.count >= backwardsCountMin && this.nowMs - (this.partnerHeardMs ?? -Infinity) >= 2 * this.t.heartbeatIntervalMs;
  }

  /** The partner neither holds nor is taking our disks. */
  private partnerDisclaims(m: StatusMessage): boolean {
    return m.indicator !== StateIndicator.takeover && (m.claimedSets & bit(this.own)) === 0;
  }

  private partnerTakingUs(m: StatusMessage): boolean {
    return m.indicator === StateIndicator.takeover && ((m.claimedSets & bit(this.own)) !== 0 || (m.flags & StatusFlag.takeoverInProgress) !== 0);
  }

  /** Whether a partner's TAKEOVER announcement wins over what we are doing. */
  private shouldYieldTo(): boolean {
    // Nothing to stop: not writing anything and not about to (the reserve of step 252 will
    // find out whether the partner holds our disks).
    if (this.phase === HaPhase.stopped || this.step_ === 'probe' || this.step_ === 'await-giveback') return false;
    // Once we hold the partner's disks we were the winner of any race: the fence decided.
    if (this.phase === HaPhase.takeover) return false;
    if (this.step_ === 'fencing' || this.step_ === 'resetting' || this.step_ === 'replaying') return false;
    // Both announcing at once: the lower blade index wins the tie-break.
    if (this.step_ === 'announce') return this.own === 1;
    return true;
  }

  private onFenceResult(op: FenceOp, set: SetIndex, ok: boolean, code: string | undefined): void {
    if (op === 'register') return;
    if (ok && op !== 'release' && set === this.other && !this.wantsPartnerSet()) {
      // We got the partner's disks after we stopped wanting them (a giveback overtook the
      // command): hand them straight back rather than hold what we do not serve.
      this.fence('release', this.other);
      return;
    }
    if (ok) {
      if (op === 'release') this.claimed &= ~bit(set);
      else this.claimed |= bit(set);
      this.dirty = true;
    }
    switch (this.step_) {
      case 'probe':
        if (op !== 'reserve' || set !== this.own) return;
        if (ok) {
          this.step_ = 'listen';
          this.stepDeadlineMs = this.nowMs + this.t.rebootListenMs;
          this.broadcastNow = true;
          if (this.partnerHeardMs !== undefined) this.decideAfterListen();
        } else if (code === 'ERR_FENCE_CONFLICT' && this.partner !== undefined && this.partnerAlive() && this.partnerDisclaims(this.partner)) {
          // The live partner says it holds nothing of ours, yet the reservation is its: a
          // stale one (a crash between giveback steps, a command that completed after its
          // restart). It writes only what it claims, so nobody writes these disks: take them.
          this.startSeize(bit(this.own), true);
        } else if (code === 'ERR_FENCE_CONFLICT') {
          this.step_ = 'await-giveback';
          this.broadcastNow = true;
          this.alert(HaCode.awaitGiveback, 'our disks are held by the partner (it took over): waiting for giveback (step 252)');
        } else {
          this.alert(HaCode.fenceFailed, `reserving our disks failed (${code ?? 'unknown'}); retrying`);
          this.probeRetryMs = this.nowMs + this.t.takeoverGraceMs;
        }
        return;
      case 'seize':
        if (op !== 'preempt') return;
        this.pendingFences--;
        if (!ok) {
          this.alert(HaCode.fenceFailed, `seizing set ${set} failed (${code ?? 'unknown'})`);
          this.seizeSets &= ~bit(set);
          if (set === this.own) {
            this.stop();
            return;
          }
        }
        if (this.pendingFences === 0) this.startRecoveryReplay();
        return;
      case 'fencing':
        if (op !== 'preempt' || set !== this.other) return;
        if (ok) {
          this.step_ = 'resetting';
          this.stepDeadlineMs = this.nowMs + this.t.resetPulseMs + this.t.tickIntervalMs;
          this.actions.push({ type: 'pulse-reset', durationMs: this.t.resetPulseMs });
        } else if (code === 'ERR_FENCE_NOT_REGISTERED' || code === 'ERR_FENCE_CONFLICT') {
          // The partner preempted us first: it won the race; we are the one taken over.
          this.alert(HaCode.fenced, `preempting the partner's disks failed (${code}): the partner holds them`);
          this.stop();
        } else {
          this.abortTakeover(`fencing the partner's disks failed (${code ?? 'unknown'})`);
        }
        return;
      case 'giveback-release':
        if (op !== 'release' || set !== this.other) return;
        if (ok) {
          this.phase = HaPhase.normal;
          this.step_ = 'steady';
          this.markStable();
          this.broadcastNow = true;
          this.alert(HaCode.givebackDone, "partner's disks released; announcing NORMAL");
        } else {
          // Some disks of the set may be released already: take them back before serving.
          this.alert(HaCode.givebackFailed, `releasing the partner's disks failed (${code ?? 'unknown'}); serving them again`);
          this.step_ = 'steady';
          this.givebackRetryAtMs = this.nowMs + this.t.takeoverGraceMs;
          this.fence('reserve', this.other);
          this.serve(this.other, true);
        }
        return;
      default:
        return;
    }
  }

  private fence(op: FenceOp, set: SetIndex): void {
    const token = ++this.fenceToken;
    this.outstandingFences.add(token);
    this.actions.push({ type: 'fence', op, set, token });
  }

  /**
   * The result of a command issued before our last restart: whatever step wanted it is
   * gone. A reservation of the partner's disks that it took anyway must not linger, or the
   * partner would wait for a giveback we do not know we owe.
   */
  private onStaleFenceResult(op: FenceOp, set: SetIndex, ok: boolean): void {
    if (!ok || (op !== 'reserve' && op !== 'preempt')) return;
    if (set === this.other && (this.claimed & bit(this.other)) === 0) this.fence('release', this.other);
    // Our own disks turned out to be ours after all: a waiting blade can stop waiting.
    if (set === this.own && this.step_ === 'await-giveback') this.enterProbe();
  }

  private onWriteFenced(set: SetIndex): void {
    if ((this.serving & bit(set)) === 0 && (this.claimed & bit(set)) === 0) return;
    if (this.phase === HaPhase.stopped) return;
    this.alert(HaCode.fenced, `a write to set ${set} was refused: the partner holds its reservation`);
    this.claimed &= ~bit(set);
    this.stop();
  }

  private onReplayDone(set: SetIndex, ok: boolean): void {
    if (!ok) {
      this.replayFailed = true;
      this.alert(HaCode.replayFailed, `replaying the log of set ${set} failed`);
    }
    if (this.step_ === 'replaying') {
      if (!ok) {
        // Serving a set whose acknowledged changes could not be replayed would lose them.
        this.abortTakeover('log replay failed');
        return;
      }
      this.phase = HaPhase.takeover;
      this.step_ = 'steady';
      this.takeoverSinceMs = this.nowMs;
      this.serve(this.other, true);
      this.markStable();
      this.broadcastNow = true;
      this.alert(HaCode.takeoverDone, "serving the partner's disks");
      return;
    }
    if (this.step_ === 'replay') {
      this.pendingReplays--;
      if (this.pendingReplays > 0) return;
      if (this.replayFailed) {
        this.stop();
        return;
      }
      // Step 257/258: the state we were in decides where we go.
      const both = (this.seizeSets & bit(this.other)) !== 0;
      this.phase = both ? HaPhase.takeover : HaPhase.normal;
      this.step_ = 'steady';
      if (both) this.takeoverSinceMs = this.nowMs;
      this.serve(this.own, true);
      if (both) this.serve(this.other, true);
      this.markStable();
      this.broadcastNow = true;
      this.alert(HaCode.rebootDone, `recovered into ${phaseName(this.phase)} (generation ${this.generation})`);
    }
  }

  private runOperator(command: OperatorCommand): OperatorResult {
    switch (command) {
      case 'disable':
        this.operatorDisabled = true;
        this.dirty = true;
        this.broadcastNow = true;
        if (this.step_ === 'tiebreak' || (this.step_ === 'announce' && !this.takeoverPlanned)) this.abortTakeover('takeover disabled by the operator');
        return { ok: true };
      case 'enable':
        this.operatorDisabled = false;
        this.takeoverTimesMs = [];
        this.dirty = true;
        this.broadcastNow = true;
        return { ok: true };
      case 'takeover': {
        if (this.phase !== HaPhase.normal || this.step_ !== 'steady') return refuse(HaCode.refusedState, `takeover needs NORMAL, blade is ${phaseName(this.phase)}/${this.step_}`);
        const b = this.blockers(true);
        if (b !== 0) return refuse(HaCode.refusedDisabled, `takeover is disabled: ${reasonNames(b).join(', ')}`);
        this.startAnnounce(true);
        return { ok: true };
      }
      case 'giveback': {
        if (this.phase !== HaPhase.takeover || this.step_ !== 'steady') return refuse(HaCode.refusedState, `giveback needs TAKEOVER, blade is ${phaseName(this.phase)}/${this.step_}`);
        if (!this.partnerAlive()) return refuse(HaCode.refusedPartnerUnreachable, 'the partner is not reachable on any path');
        if (!this.partnerReadyForGiveback()) return refuse(HaCode.refusedPartnerNotReady, 'the partner has not reported that it recovered and waits for its disks');
        this.startGiveback();
        return { ok: true };
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Time-driven evaluation

  private evaluate(): void {
    this.checkPaths();
    this.checkPowerSense();
    switch (this.step_) {
      case 'probe':
        if (this.probeRetryMs !== undefined && this.nowMs >= this.probeRetryMs) {
          this.probeRetryMs = undefined;
          this.fence('reserve', this.own);
        }
        break;
      case 'await-giveback':
        // The partner that holds our disks died before giving them back: seize both sets
        // (step 255). Silence alone is not enough here — after a partition on every path the
        // partner is alive and this would start a seizure ping-pong (HA-11) — so we also need
        // its mailbox records to be readable and stale: it is no longer writing them.
        if (this.partnerSilentSinceBoot() && this.mailboxShowsPartnerStopped() && this.blockers(false) === 0) {
          this.takeoverTimesMs.push(this.nowMs);
          this.alert(HaCode.takeoverStarted, 'automatic seizure of both disk sets: the partner that holds ours stopped writing its mailboxes (step 255)');
          this.startSeize(bit(this.own) | bit(this.other), true);
        }
        break;
      case 'listen':
        if (this.nowMs >= this.stepDeadlineMs) this.decideAfterListen();
        break;
      case 'steady':
        if (this.phase === HaPhase.normal) this.considerTakeover();
        else if (this.phase === HaPhase.takeover) this.considerGiveback();
        break;
      case 'tiebreak':
        // A stall of our own during the delay (a hung blade resuming) leaves every path
        // silent only because we did not listen: start over once we have (considerTakeover).
        if (this.partnerAlive() || this.justResumed()) {
          this.step_ = 'steady';
        } else if (this.nowMs >= this.stepDeadlineMs || this.partnerPowerLost()) {
          // The sense line may report the power lost during the delay: no reason to wait on.
          if (this.blockers(false) !== 0) this.step_ = 'steady';
          else this.startAnnounce(false, this.partnerPowerLost());
        }
        break;
      case 'announce':
        if (this.nowMs >= this.stepDeadlineMs) {
          this.step_ = 'fencing';
          this.fence('preempt', this.other);
        }
        break;
      case 'resetting':
        // The reset pulse is fire-and-forget on some boards: do not wait beyond its length.
        if (this.nowMs >= this.stepDeadlineMs) this.startReplaying();
        break;
      default:
        break;
    }
    this.heartbeat();
  }

  private checkPaths(): void {
    let anyUp = false;
    let nonMailboxUp = false;
    for (const p of this.paths.values()) {
      const up = this.pathUp(p);
      if (up !== p.reportedUp) {
        p.reportedUp = up;
        // A path that never carried anything since boot is not news.
        if (p.lastAdvanceMs !== undefined) this.alert(up ? HaCode.pathUp : HaCode.pathDown, `path ${p.id} (${p.kind}) ${up ? 'up' : 'down'}`);
      }
      if (up) {
        anyUp = true;
        if (p.kind !== 'mailbox') nonMailboxUp = true;
      }
    }
    // Only the mailboxes show the partner alive. Right after a power loss the faster paths
    // time out first, so wait one mailbox timeout before believing it is more than that.
    // A partner we hear but that does not hear us (a one-way failure) will soon think we
    // died and try to take over: tell the operator before it happens.
    if (!anyUp) this.partnerAliveSinceMs = undefined;
    else if (this.partnerAliveSinceMs === undefined) this.partnerAliveSinceMs = this.nowMs;
    const deaf = anyUp && this.partnerDeaf();
    if (deaf && !this.deafAlerted) this.alert(HaCode.partnerDeaf, 'the partner is alive but has not received our status for a path timeout: a one-way path failure');
    this.deafAlerted = deaf;
    const onlyMailbox = anyUp && !nonMailboxUp && this.hasKind('interconnect');
    if (!onlyMailbox) {
      this.onlyMailboxSinceMs = undefined;
      this.onlyMailboxAlerted = false;
    } else if (this.onlyMailboxSinceMs === undefined) {
      this.onlyMailboxSinceMs = this.nowMs;
    } else if (!this.onlyMailboxAlerted && this.nowMs - this.onlyMailboxSinceMs >= pathTimeoutMs(this.t, 'mailbox')) {
      this.onlyMailboxAlerted = true;
      this.alert(HaCode.partnerOnMailboxOnly, 'interconnect and network are down but the partner still writes its mailboxes: it is alive; no takeover; NVRAM mirroring has no path');
    }
  }

  private onPartnerPower(good: boolean): void {
    if (this.partnerPowerGood === good) return;
    this.partnerPowerGood = good;
    // A new reading starts a new judgement of the line: a stuck line that was caught lying
    // does not toggle, and one that reads good again has told the truth at least once more.
    this.powerSenseFaulty = false;
    this.powerLostSinceMs = good ? undefined : this.nowMs;
    for (const p of this.paths.values()) {
      p.advancesAfterLoss = 0;
      p.readsAfterLoss = 0;
    }
  }

  /** The partner ran after the line reported its power lost: some path advanced later than a message sent before a cut could. */
  private partnerRanAfterPowerLoss(): boolean {
    if (this.powerLostSinceMs === undefined) return false;
    // A link delivers promptly: one fresh message is life. A mailbox may still show records
    // written just before the cut to a read that a loaded host delayed (one, or two when a
    // read was under way across the cut): life is a third.
    for (const p of this.paths.values()) if (p.advancesAfterLoss >= (p.kind === 'mailbox' ? mailboxAdvancesAfterLossMin : 1)) return true;
    return false;
  }

  /** A line that says lost while the partner runs is faulty: ignored for decisions, one alert. */
  private checkPowerSense(): void {
    if (this.partnerPowerGood !== false || this.powerSenseFaulty || !this.partnerRanAfterPowerLoss()) return;
    this.powerSenseFaulty = true;
    this.alert(HaCode.powerSenseFaulty, 'the partner-power sense line reports the power lost but the partner is still running: the line is faulty and ignored until it reads good again');
  }

  /**
   * The sense line reports the partner's power lost, the line is not known to lie, and every
   * interconnect and network path is silent (for a heartbeat timeout since our boot at least).
   * Mailboxes are not waited for: a partner without power cannot write them.
   */
  private partnerPowerLost(): boolean {
    if (this.partnerPowerGood !== false || this.powerSenseFaulty || this.justResumed()) return false;
    if (this.nowMs - this.bootMs < pathTimeoutMs(this.t, 'interconnect')) return false;
    for (const p of this.paths.values()) if (p.kind !== 'mailbox' && this.pathUp(p)) return false;
    return true;
  }

  private hasKind(kind: PathKind): boolean {
    for (const p of this.paths.values()) if (p.kind === kind) return true;
    return false;
  }

  private pathUp(p: PathState): boolean {
    if (p.bad || p.linkDown || p.lastAdvanceMs === undefined) return false;
    return this.nowMs - p.lastAdvanceMs < pathTimeoutMs(this.t, p.kind);
  }

  /**
   * The partner has been alive for two of the slowest path timeouts without echoing any
   * message we sent in that time. (Two: right after its death or restart the slowest path
   * still shows it alive for up to one timeout while its echoes have already stopped.)
   */
  private partnerDeaf(): boolean {
    if (this.partnerAliveSinceMs === undefined) return false;
    let longest = 0;
    for (const p of this.paths.values()) longest = Math.max(longest, pathTimeoutMs(this.t, p.kind));
    const since = Math.max(this.partnerHeardUsMs ?? -Infinity, this.partnerAliveSinceMs, this.bootMs);
    return this.nowMs - since > 2 * longest;
  }

  /** The partner is alive iff some path delivered a fresh message within its timeout (HA-5). */
  private partnerAlive(): boolean {
    for (const p of this.paths.values()) if (this.pathUp(p)) return true;
    return false;
  }

  /** Silent on every path, and for at least the slowest path's timeout since we booted. */
  private partnerSilentSinceBoot(): boolean {
    if (this.partnerAlive() || this.justResumed()) return false;
    let longest = 0;
    for (const p of this.paths.values()) longest = Math.max(longest, pathTimeoutMs(this.t, p.kind));
    return this.nowMs - this.bootMs >= longest;
  }

  /** Some mailbox path has read the same partner record, without a gap, for a mailbox timeout. */
  private mailboxShowsPartnerStopped(): boolean {
    const fresh = 2 * this.t.mailboxPollIntervalMs + this.t.tickIntervalMs;
    for (const p of this.paths.values()) {
      if (p.kind !== 'mailbox' || p.bad || p.lastReadOkMs === undefined || p.staleSinceMs === undefined || this.nowMs - p.lastReadOkMs > fresh) continue;
      if (this.nowMs - p.staleSinceMs >= pathTimeoutMs(this.t, 'mailbox')) return true;
    }
    return false;
  }

  private versionMismatch(): boolean {
    const p = this.partner;
    if (p === undefined) return false;
    return p.protocolVersion !== statusProtocolVersion || p.firmwareVersion >>> 16 !== this.cfg.firmwareVersion >>> 16;
  }

  private takeoversInWindow(): number {
    const from = this.nowMs - this.t.takeoverWindowMs;
    this.takeoverTimesMs = this.takeoverTimesMs.filter((x) => x > from);
    return this.takeoverTimesMs.length;
  }

  /** DisableReason bits that forbid a takeover now (HA-8 plus damping). */
  private blockers(operatorInitiated: boolean): number {
    let r = 0;
    if (this.operatorDisabled) r |= DisableReason.operator;
    if (!this.mirrorSynced && (operatorInitiated || !this.partnerVouchesForMirror())) r |= DisableReason.mirror;
    if (this.versionMismatch()) r |= DisableReason.version;
    const p = this.partner;
    if (p !== undefined) {
      if (p.indicator === StateIndicator.disable) r |= DisableReason.partnerDisable;
      if (p.indicator === StateIndicator.noTakeover) r |= DisableReason.partnerNoTakeover;
    }
    if (!operatorInitiated && this.takeoversInWindow() >= this.t.takeoverCountMax) r |= DisableReason.damped;
    return r;
  }

  /**
   * A takeover replays our copy of the partner's log; the partner says whether that copy is
   * complete (its status flag mirrorSynced; otherwise NO-TAKEOVER, blocker partnerNoTakeover).
   * Our own log's mirror is the other direction, and it degrades the moment the partner dies
   * (the link drops), so for an automatic takeover of a silent partner it does not block once
   * the partner's last word vouches for our copy — provided our log has synchronised with a
   * partner in this run: before that (a blade booting next to a dead partner, its NVRAM
   * perhaps lost) our copy may be from another life, and our own mirror error still counts.
   * The partner's last word must be its last: after a link cut it speaks through its mailboxes
   * only, and it writes NO-TAKEOVER there before answering a client alone (announceDegraded),
   * so a decision on the sense line (faster than a mailbox timeout) first reads the mailboxes
   * again — two reads on a path the partner writes, the second begun after the line said lost.
   */
  private partnerVouchesForMirror(): boolean {
    const p = this.partner;
    if (!this.mirrorSyncedOnce || p === undefined || (p.flags & StatusFlag.mirrorSynced) === 0 || p.indicator === StateIndicator.noTakeover) return false;
    if (this.powerLostSinceMs === undefined || !this.hasKind('mailbox')) return true;
    for (const q of this.paths.values()) if (q.kind === 'mailbox' && q.lastAdvanceMs !== undefined && q.readsAfterLoss >= 2) return true;
    return false;
  }

  private considerTakeover(): void {
    if ((this.claimed & bit(this.other)) !== 0) return;
    const powerLost = this.partnerPowerLost();
    if (!powerLost && !this.partnerSilentSinceBoot()) return;
    const why = powerLost ? 'partner power lost and silent on every interconnect and network path' : 'partner silent on every path';
    const b = this.blockers(false);
    if (b !== 0) {
      if (!this.partnerDownAlerted) {
        this.partnerDownAlerted = true;
        this.alert(b & DisableReason.damped ? HaCode.takeoverDamped : HaCode.takeoverBlocked, `${why} but takeover is disabled: ${reasonNames(b).join(', ')}`);
      }
      return;
    }
    if (!this.partnerDownAlerted) {
      this.partnerDownAlerted = true;
      this.alert(powerLost ? HaCode.partnerPowerLost : HaCode.partnerDown, powerLost ? `${why}: failed, without waiting for the mailbox timeout` : why);
    }
    if (powerLost) {
      // No tie-break: only one blade can see its partner's power lost. The fence that
      // follows the announcement is what keeps even a lying line safe (HA-6).
      this.startAnnounce(false, true);
      return;
    }
    // Tie-break: blade 1 waits longer, so after a loss on every path at the same instant
    // blade 0's announcement (and its fence) come first; reservations arbitrate the rest.
    this.step_ = 'tiebreak';
    this.stepDeadlineMs = this.nowMs + this.own * this.t.tieBreakDelayMs;
    if (this.nowMs >= this.stepDeadlineMs) this.startAnnounce(false);
  }

  private startAnnounce(planned: boolean, byPower = false): void {
    this.step_ = 'announce';
    this.takeoverPlanned = planned;
    this.takeoverByPower = byPower;
    this.stepDeadlineMs = this.nowMs + this.t.takeoverGraceMs;
    this.takeoverTimesMs.push(this.nowMs);
    this.broadcastNow = true;
    this.alert(HaCode.takeoverStarted, `${planned ? 'operator' : 'automatic'} takeover${byPower ? ' (partner power lost)' : ''}: announcing TAKEOVER on every path`);
  }

  private abortTakeover(why: string): void {
    this.alert(HaCode.takeoverAborted, why);
    this.step_ = 'steady';
    this.takeoverPlanned = false;
    this.takeoverByPower = false;
    this.broadcastNow = true;
  }

  private startReplaying(): void {
    this.step_ = 'replaying';
    this.actions.push({ type: 'replay', set: this.other });
  }

  private partnerReadyForGiveback(): boolean {
    const p = this.partner;
    // A partner whose mirror is not in sync may lack changes we made to its disks while we
    // served them: giving back would lose them.
    const mirrorOk = this.cfg.givebackNeedsPartnerMirror === false || (p !== undefined && (p.flags & StatusFlag.mirrorSynced) !== 0);
    return p !== undefined && p.phase === HaPhase.rebooting && (p.flags & StatusFlag.awaitingGiveback) !== 0 && mirrorOk;
  }

  /** Whether the current step holds, or is acquiring, the partner's set. */
  private wantsPartnerSet(): boolean {
    if (this.phase === HaPhase.takeover && this.step_ !== 'giveback-release') return true;
    if (this.step_ === 'fencing' || this.step_ === 'resetting' || this.step_ === 'replaying') return true;
    return (this.step_ === 'seize' || this.step_ === 'replay') && (this.seizeSets & bit(this.other)) !== 0;
  }

  private considerGiveback(): void {
    if (!this.cfg.autoGiveback || (this.claimed & bit(this.other)) === 0) return;
    if (this.nowMs < this.givebackRetryAtMs) return;
    if (this.nowMs - this.takeoverSinceMs < this.t.givebackDelayMinMs) return;
    const p = this.partner;
    if (!this.partnerAlive() || !this.partnerReadyForGiveback() || p === undefined) return;
    // The partner fetches our copy of its log over the interconnect or network when it boots
    // after the giveback: it holds the outcomes of the changes our replay applied (and what a
    // failed battery lost), which answer its clients' retransmissions (SM-2). With only the
    // mailboxes up we keep serving its set (pair sim seed 10900).
    if (!this.linkPathUp()) return;
    if (this.versionMismatch()) return;
    this.startGiveback();
  }

  /** Some interconnect or network path is up (not only the mailboxes). */
  private linkPathUp(): boolean {
    for (const p of this.paths.values()) if (p.kind !== 'mailbox' && this.pathUp(p)) return true;
    return false;
  }

  /** Step 222: stop serving the partner's disks, release them, then announce NORMAL. */
  private startGiveback(): void {
    this.serve(this.other, false);
    this.step_ = 'giveback-release';
    this.fence('release', this.other);
  }

  private enterProbe(): void {
    this.phase = HaPhase.rebooting;
    this.step_ = 'probe';
    this.broadcastNow = true;
    // Register our key on every shared disk (a preempt needs it; a partner's preempt removed
    // it), then step 252: reserving our own set tells whether the partner holds it.
    this.fence('register', this.own);
    this.fence('register', this.other);
    this.fence('reserve', this.own);
  }

  /** Step 253: what was the partner doing, and what were we doing before the interruption? */
  private decideAfterListen(): void {
    const heard = this.partnerHeardMs !== undefined && this.partnerAlive();
    const hadPartnerSet = (this.bootClaimed & bit(this.other)) !== 0 && this.stablePhase === HaPhase.takeover;
    const p = this.partner;
    if (heard && p !== undefined && this.partnerTakingUs(p)) {
      // The partner is part-way through taking us over: stay passive and wait for giveback.
      this.step_ = 'await-giveback';
      this.broadcastNow = true;
      this.alert(HaCode.awaitGiveback, 'the partner is taking over our disks: waiting for giveback (step 252)');
      return;
    }
    if (heard && p !== undefined) {
      const partnerServing = p.phase === HaPhase.normal || p.phase === HaPhase.takeover;
      this.startSeize(hadPartnerSet && !partnerServing ? bit(this.own) | bit(this.other) : bit(this.own), false);
      return;
    }
    if (this.nowMs < this.stepDeadlineMs) return;
    // Silent partner: resume a takeover we held before (255); otherwise take only our own
    // disks (254) and let NORMAL's failure detection decide about the partner's.
    this.startSeize(hadPartnerSet ? bit(this.own) | bit(this.other) : bit(this.own), false);
  }

  private startSeize(sets: number, ownNeedsPreempt: boolean): void {
    this.phase = HaPhase.rebooting;
    this.step_ = 'seize';
    this.seizeSets = sets;
    this.pendingFences = 0;
    if ((sets & bit(this.other)) !== 0) {
      this.pendingFences++;
      this.fence('preempt', this.other);
    }
    if (ownNeedsPreempt) {
      this.pendingFences++;
      this.fence('preempt', this.own);
    }
    if (this.pendingFences === 0) this.startRecoveryReplay();
    this.broadcastNow = true;
  }

  /** Step 256: replay what the change memory holds for every set we seized. */
  private startRecoveryReplay(): void {
    this.step_ = 'replay';
    this.replayFailed = false;
    this.pendingReplays = 0;
    for (const s of [this.own, this.other] as const) {
      if ((this.seizeSets & bit(s)) !== 0 && (this.claimed & bit(s)) !== 0) {
        this.pendingReplays++;
        this.actions.push({ type: 'replay', set: s });
      }
    }
    this.seizeSets &= this.claimed;
    if (this.pendingReplays === 0) this.stop();
  }

  /** STOPPED: serve nothing, write nothing; then the automatic REBOOT-OPERATION (231). */
  private stop(): void {
    for (const s of [0, 1] as const) if ((this.serving & bit(s)) !== 0) this.serve(s, false);
    // Let go of the partner's disks if we held them (a no-op if it preempted us). Our own
    // reservation stays: step 252 re-reserves it, and a release racing that reserve could
    // drop the fresh one.
    if ((this.claimed & bit(this.other)) !== 0) this.fence('release', this.other);
    // We gave everything up: a crash from here on must not resume an old takeover.
    this.stablePhase = HaPhase.normal;
    this.stableClaimed = this.claimed & bit(this.own);
    this.phase = HaPhase.stopped;
    this.step_ = 'stopped';
    this.takeoverPlanned = false;
    this.takeoverByPower = false;
    this.claimed = 0;
    this.dirty = true;
    // Publish STOPPED once so a partner part-way through its takeover sees us comply.
    this.actions.push({ type: 'send', message: this.nextMessage() });
    this.reboot();
  }

  /** REBOOT-OPERATION 231: a new generation and the recovery steps from 251. */
  private reboot(): void {
    this.outstandingFences.clear();
    this.bootMs = this.nowMs;
    this.bootClaimed = this.stableClaimed;
    this.generation++;
    if (this.generation > statusSequenceMax) this.generation = 1;
    this.sequence = 0;
    this.dirty = true;
    this.enterProbe();
  }

  private serve(set: SetIndex, on: boolean): void {
    if (on) this.serving |= bit(set);
    else this.serving &= ~bit(set);
    this.actions.push({ type: 'serve', set, on });
  }

  private markStable(): void {
    this.stablePhase = this.phase;
    this.stableClaimed = this.claimed;
    this.dirty = true;
  }

  private alert(code: string, message: string): void {
    this.actions.push({ type: 'alert', code, message });
  }

  // ---------------------------------------------------------------------------------------
  // Output

  private indicator(): StateIndicator {
    if (this.phase === HaPhase.takeover || this.step_ === 'announce' || this.step_ === 'fencing' || this.step_ === 'resetting' || this.step_ === 'replaying') {
      return StateIndicator.takeover;
    }
    // Step 255 seizes the partner's disks too: say so, as a takeover would.
    if ((this.step_ === 'seize' || this.step_ === 'replay') && (this.seizeSets & bit(this.other)) !== 0) return StateIndicator.takeover;
    if (this.operatorDisabled || this.versionMismatch()) return StateIndicator.disable;
    if (!this.mirrorSynced) return StateIndicator.noTakeover;
    return StateIndicator.normal;
  }

  private ownReasons(): number {
    let r = 0;
    if (this.operatorDisabled) r |= DisableReason.operator;
    if (!this.mirrorSynced) r |= DisableReason.mirror;
    if (this.versionMismatch()) r |= DisableReason.version;
    return r;
  }

  private flags(): number {
    let f = 0;
    if (this.mirrorSynced) f |= StatusFlag.mirrorSynced;
    if (this.step_ === 'await-giveback') f |= StatusFlag.awaitingGiveback;
    if (this.indicator() === StateIndicator.takeover && this.phase !== HaPhase.takeover) f |= StatusFlag.takeoverInProgress;
    return f;
  }

  private nextMessage(): StatusMessage {
    if (this.sequence >= statusSequenceMax) {
      // Sequence space exhausted: continue in a new generation (persisted before it is sent).
      this.generation++;
      this.sequence = 0;
      this.dirty = true;
    }
    this.sequence++;
    this.sentTimes.push({ generation: this.generation, sequence: this.sequence, atMs: this.nowMs });
    if (this.sentTimes.length > sentTimesMax) this.sentTimes.shift();
    const peer = this.stream.latest();
    return {
      protocolVersion: statusProtocolVersion,
      systemId: this.cfg.systemId,
      bladeIndex: this.own,
      indicator: this.indicator(),
      phase: this.phase,
      flags: this.flags(),
      reasons: this.ownReasons(),
      generation: this.generation,
      sequence: this.sequence,
      peerGeneration: peer?.generation ?? 0,
      peerSequence: peer?.sequence ?? 0,
      firmwareVersion: this.cfg.firmwareVersion,
      claimedSets: this.claimed,
      bootId: this.cfg.bootId ?? 0,
    };
  }

  private heartbeat(): void {
    if (this.phase === HaPhase.stopped) return;
    const sendDue = this.broadcastNow || this.nowMs >= this.nextSendMs;
    const mailboxDue = this.broadcastNow || this.nowMs >= this.nextMailboxMs;
    if (sendDue) {
      this.actions.push({ type: 'send', message: this.nextMessage() });
      this.nextSendMs = this.nowMs + this.t.heartbeatIntervalMs;
    }
    if (mailboxDue) {
      // HA-4: our state goes to our mailbox disks as well as to persistent memory.
      if (this.claimed !== 0) this.actions.push({ type: 'write-mailbox', message: this.nextMessage(), sets: this.claimed });
      this.nextMailboxMs = this.nowMs + this.t.mailboxWriteIntervalMs;
    }
    this.broadcastNow = false;
  }

  private persistedState(): PersistedHaState {
    return { generation: this.generation, phase: this.stablePhase, claimedSets: this.stableClaimed, operatorDisabled: this.operatorDisabled };
  }
}

function refuse(code: string, message: string): OperatorResult {
  return { ok: false, code, message };
}

function hex(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}
