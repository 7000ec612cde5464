// The HA state machine as a pure core (SPEC HA-2..HA-11): driven by hand, event by event,
// to pin down orderings the scenario scripts only show end to end.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HaMachine, HaCode, type HaAction, type HaConfig, type HaReady } from '../../firmware/ts/ha/core/machine.ts';
import { decodeStatus, HaPhase, StateIndicator, StatusFlag, statusSequenceMax, type StatusMessage } from '../../firmware/ts/ha/core/status.ts';
import { defaultHaTiming, detectionBoundMs, pathTimeoutMs } from '../../firmware/ts/ha/core/timing.ts';
import { StatusStream, compareGenSeq } from '../../firmware/ts/ha/core/merge.ts';

const systemId = 42;
const fw = 0x0001_0000;

/**
 * The limits these hand-driven sequences were written for: 100 ms mailboxes, a 300 ms grace
 * and a 200 ms tie-break (the defaults moved to a conservative 250 ms x 8 mailbox decision
 * once the partner-power sense line took over fast detection of a power cut;
 * docs/timing-budget.md).
 */
const timing = { ...defaultHaTiming, mailboxWriteIntervalMs: 100, mailboxPollIntervalMs: 100, takeoverGraceMs: 300, tieBreakDelayMs: 200 };

function config(bladeIndex: 0 | 1, over: Partial<HaConfig> = {}): HaConfig {
  return {
    systemId,
    bladeIndex,
    firmwareVersion: fw,
    paths: [
      { id: 'serial', kind: 'interconnect' },
      { id: 'net0', kind: 'network' },
      { id: 'mbox2', kind: 'mailbox' },
    ],
    timing,
    autoGiveback: false,
    mirrorSyncedAtBoot: true,
    bootId: 100 + bladeIndex,
    ...over,
  };
}

function partnerMsg(from: 0 | 1, over: Partial<StatusMessage> = {}): StatusMessage {
  return {
    protocolVersion: 1,
    systemId,
    bladeIndex: from,
    indicator: StateIndicator.normal,
    phase: HaPhase.normal,
    flags: StatusFlag.mirrorSynced,
    reasons: 0,
    generation: 1,
    sequence: 1,
    peerGeneration: 0,
    peerSequence: 0,
    firmwareVersion: fw,
    claimedSets: 1 << from,
    bootId: 100 + from,
    ...over,
  };
}

/** Collects everything the machine wants done, checking the Ready ordering rule on the way. */
class Driver {
  readonly actions: HaAction[] = [];
  readonly readies: HaReady[] = [];
  persisted: { generation: number } | undefined;
  constructor(readonly m: HaMachine) {
    this.drain();
  }
  drain(): HaAction[] {
    const got: HaAction[] = [];
    while (this.m.hasReady()) {
      const r = this.m.ready();
      this.readies.push(r);
      if (r.persist !== undefined) this.persisted = r.persist;
      for (const a of r.actions) {
        // Persist before send: no message may carry a generation that is not yet durable.
        if (a.type === 'send' || a.type === 'write-mailbox') expect(a.message.generation).toBeLessThanOrEqual(this.persisted?.generation ?? 0);
        got.push(a);
      }
    }
    this.actions.push(...got);
    return got;
  }
  /** Answers the latest `fence` action for (op, set) with its token. */
  fence(op: string, set: 0 | 1, ok: boolean, nowMs: number, code?: string): void {
    this.drain();
    const a = this.actions.findLast((x) => x.type === 'fence' && x.op === op && x.set === set);
    if (a?.type !== 'fence') throw new Error(`no ${op} of set ${set} was asked for`);
    this.m.step({ type: 'fence-result', op: a.op, set, token: a.token, ok, ...(code === undefined ? {} : { code }) }, nowMs);
  }
  sends(): StatusMessage[] {
    return this.actions.flatMap((a) => (a.type === 'send' ? [a.message] : []));
  }
  alerts(): string[] {
    return this.actions.flatMap((a) => (a.type === 'alert' ? [a.code] : []));
  }
}

/** Boots blade `i` and walks it through steps 251-258 into NORMAL with a live partner. */
function bootToNormal(i: 0 | 1 = 0): { m: HaMachine; d: Driver; t: number; seq: number } {
  const m = new HaMachine(config(i), { generation: 3, phase: HaPhase.normal, claimedSets: 1 << i, operatorDisabled: false }, 0);
  const d = new Driver(m);
  const other = (1 - i) as 0 | 1;
  d.fence('reserve', i, true, 5);
  m.step({ type: 'status', path: 'serial', message: partnerMsg(other, { sequence: 1 }) }, 10);
  d.drain();
  const replay = d.actions.filter((a) => a.type === 'replay');
  expect(replay).toEqual([{ type: 'replay', set: i }]);
  m.step({ type: 'replay-done', set: i, ok: true }, 20);
  d.drain();
  expect(m.status().phase).toBe('NORMAL');
  return { m, d, t: 20, seq: 1 };
}

/**
 * Ticks every `tickIntervalMs` from `from` until `done()` holds (as a driver's timer would: a
 * single jump over seconds looks to the machine like a stall of its own, after which it
 * decides nothing for a heartbeat timeout). Returns the time it held.
 */
function tickUntil(m: HaMachine, d: Driver, from: number, done: () => boolean, limitMs = 10_000): number {
  for (let t = from + timing.tickIntervalMs; t <= from + limitMs; t += timing.tickIntervalMs) {
    m.tick(t);
    d.drain();
    if (done()) return t;
  }
  throw new Error('tickUntil: never happened');
}

describe('HA machine', () => {
  it('HA-2 HA-4 a boot takes the next generation and persists it before the first message', () => {
    const m = new HaMachine(config(0), { generation: 4, phase: HaPhase.normal, claimedSets: 1, operatorDisabled: false }, 0);
    const r = m.ready();
    expect(r.persist?.generation).toBe(5);
    const send = r.actions.find((a) => a.type === 'send');
    expect(send?.type === 'send' && send.message.generation).toBe(5);
    expect(send?.type === 'send' && send.message.phase).toBe(HaPhase.rebooting);
    // Step 252 starts by reserving our own set.
    expect(r.actions).toContainEqual(expect.objectContaining({ type: 'fence', op: 'reserve', set: 0 }));
  });

  it('HA-10 recovers into NORMAL, replaying its own log before serving (steps 253-258)', () => {
    const { d } = bootToNormal(0);
    const order = d.actions.filter((a) => a.type === 'replay' || a.type === 'serve').map((a) => a.type);
    expect(order).toEqual(['replay', 'serve']);
  });

  it('HA-10 step 252: finding its disks held it waits for giveback and reports so (HA-11)', () => {
    const m = new HaMachine(config(1), undefined, 0);
    const d = new Driver(m);
    d.fence('reserve', 1, false, 5, 'ERR_FENCE_CONFLICT');
    m.tick(200);
    d.drain();
    expect(d.alerts()).toContain(HaCode.awaitGiveback);
    const last = d.sends().at(-1);
    expect(last?.phase).toBe(HaPhase.rebooting);
    expect((last?.flags ?? 0) & StatusFlag.awaitingGiveback).not.toBe(0);
    expect(m.status().servingSets).toBe(0);
  });

  it('HA-3 ignores old and duplicate messages from slower paths', () => {
    const { m } = bootToNormal(0);
    m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: 10, phase: HaPhase.normal }) }, 30);
    m.step({ type: 'status', path: 'mbox2', message: partnerMsg(1, { sequence: 7, phase: HaPhase.rebooting }) }, 31);
    m.step({ type: 'status', path: 'net0', message: partnerMsg(1, { sequence: 10, phase: HaPhase.stopped }) }, 32);
    expect(m.status().partner.phase).toBe('NORMAL');
    expect(m.status().partner.sequence).toBe(10);
    expect(m.status().messages.oldCount).toBe(2);
  });

  it('HA-5 declares the partner failed only when every path has been quiet for its timeout', () => {
    const { m, d } = bootToNormal(0);
    const last = 100;
    m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: 5 }) }, last);
    // A disk heartbeat counts once it is seen to change between two reads in a row.
    m.step({ type: 'status', path: 'mbox2', message: partnerMsg(1, { sequence: 3 }) }, last - timing.mailboxPollIntervalMs);
    m.step({ type: 'status', path: 'mbox2', message: partnerMsg(1, { sequence: 6 }) }, last);
    const mailboxTimeout = pathTimeoutMs(timing, 'mailbox');
    for (let t = last; t < last + mailboxTimeout; t += 25) m.tick(t);
    d.drain();
    expect(d.alerts()).not.toContain(HaCode.takeoverStarted);
    expect(m.status().paths.find((p) => p.id === 'serial')?.up).toBe(false);
    expect(m.status().partner.alive).toBe(true);
    m.tick(last + mailboxTimeout);
    d.drain();
    expect(d.alerts()).toContain(HaCode.partnerDown);
    expect(d.alerts()).toContain(HaCode.takeoverStarted);
    expect(d.sends().at(-1)?.indicator).toBe(StateIndicator.takeover);
  });

  it('HA-6 ST-4 takes over in order: announce, grace, preempt, reset, replay the partner log (HA-7), serve', () => {
    const { m, d } = bootToNormal(0);
    const announcedAt = tickUntil(m, d, 100, () => d.alerts().includes(HaCode.takeoverStarted));
    expect(d.actions.some((a) => a.type === 'fence' && a.op === 'preempt')).toBe(false);
    m.tick(announcedAt + timing.takeoverGraceMs - 1);
    expect(d.drain().some((a) => a.type === 'fence' && a.op === 'preempt')).toBe(false);
    m.tick(announcedAt + timing.takeoverGraceMs);
    expect(d.drain()).toContainEqual(expect.objectContaining({ type: 'fence', op: 'preempt', set: 1 }));
    d.fence('preempt', 1, true, announcedAt + 500);
    expect(d.drain()).toContainEqual({ type: 'pulse-reset', durationMs: timing.resetPulseMs });
    m.step({ type: 'reset-done' }, announcedAt + 560);
    expect(d.drain()).toContainEqual({ type: 'replay', set: 1 });
    expect(m.status().servingSets).toBe(1);
    m.step({ type: 'replay-done', set: 1, ok: true }, announcedAt + 600);
    expect(d.drain()).toContainEqual({ type: 'serve', set: 1, on: true });
    expect(m.status().phase).toBe('TAKEOVER');
    expect(m.status().claimedSets).toBe(3);
  });

  it('HA-6 aborts an automatic takeover when the partner is heard again before the fence', () => {
    const { m, d } = bootToNormal(0);
    const announcedAt = tickUntil(m, d, 100, () => d.alerts().includes(HaCode.takeoverStarted));
    m.step({ type: 'status', path: 'net0', message: partnerMsg(1, { sequence: 50 }) }, announcedAt + 100);
    m.tick(announcedAt + timing.takeoverGraceMs + 10);
    const out = d.drain();
    expect(d.alerts()).toContain(HaCode.takeoverAborted);
    expect(out.some((a) => a.type === 'fence' && a.op === 'preempt')).toBe(false);
  });

  it('HA-6 tie-break: blade 1 waits longer than blade 0 before announcing a takeover', () => {
    const a = bootToNormal(0);
    const b = bootToNormal(1);
    const when = (x: { m: HaMachine; d: Driver }): number => {
      for (let t = 100; t < 5000; t += 5) {
        x.m.tick(t);
        x.d.drain();
        if (x.d.alerts().includes(HaCode.takeoverStarted)) return t;
      }
      return Infinity;
    };
    expect(when(b) - when(a)).toBeGreaterThanOrEqual(timing.tieBreakDelayMs - 5);
  });

  it('HA-6 a blade that stalls during its tie-break delay listens again before announcing (ha sim seed 3430)', () => {
    // Seed 3430: a partition, then blade b hung 13 ms before its tie-break delay ended; when it
    // resumed the partition had healed, but its first tick announced a takeover of a partner
    // it had not yet had a chance to hear.
    const { m, d } = bootToNormal(1);
    const downAt = tickUntil(m, d, 20, () => d.alerts().includes(HaCode.partnerDown));
    expect(d.alerts()).not.toContain(HaCode.takeoverStarted);
    const resumeAt = downAt + timing.tieBreakDelayMs + 1000;
    m.tick(resumeAt);
    d.drain();
    expect(d.alerts()).not.toContain(HaCode.takeoverStarted);
    // Still silent after listening for a heartbeat timeout: now it takes over.
    const startedAt = tickUntil(m, d, resumeAt, () => d.alerts().includes(HaCode.takeoverStarted));
    expect(startedAt - resumeAt).toBeGreaterThanOrEqual(pathTimeoutMs(timing, 'interconnect'));
  });

  it('claim 14: the partner announcing TAKEOVER makes a NORMAL blade stop writing at once', () => {
    const { m, d } = bootToNormal(1);
    m.step({ type: 'status', path: 'mbox2', message: partnerMsg(0, { sequence: 9, indicator: StateIndicator.takeover, flags: StatusFlag.takeoverInProgress }) }, 50);
    const out = d.drain();
    expect(out).toContainEqual({ type: 'serve', set: 1, on: false });
    expect(d.sends().some((s) => s.phase === HaPhase.stopped)).toBe(true);
    expect(m.status().servingSets).toBe(0);
  });

  it('HA-8 takeover is disabled by DISABLE, NO-TAKEOVER, the operator, a mirror error and a version mismatch', () => {
    const cases: { name: string; act: (m: HaMachine) => void; blocker: string }[] = [
      { name: 'partner DISABLE', act: (m) => m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: 30, indicator: StateIndicator.disable }) }, 40), blocker: 'partnerDisable' },
      { name: 'partner NO-TAKEOVER', act: (m) => m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: 30, indicator: StateIndicator.noTakeover }) }, 40), blocker: 'partnerNoTakeover' },
      { name: 'operator', act: (m) => expect(m.operator('disable', 40)).toEqual({ ok: true }), blocker: 'operator' },
      { name: 'mirror', act: (m) => m.step({ type: 'mirror', synced: false }, 40), blocker: 'mirror' },
      { name: 'firmware', act: (m) => m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: 30, firmwareVersion: 0x0002_0000 }) }, 40), blocker: 'version' },
      { name: 'protocol', act: (m) => m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: 30, protocolVersion: 2 }) }, 40), blocker: 'version' },
    ];
    for (const c of cases) {
      const { m, d } = bootToNormal(0);
      c.act(m);
      expect(m.status().blockers, c.name).toContain(c.blocker);
      for (let t = 50; t < 4000; t += 25) m.tick(t);
      d.drain();
      expect(d.alerts(), c.name).not.toContain(HaCode.takeoverStarted);
      expect(d.alerts(), c.name).toContain(HaCode.takeoverBlocked);
      const r = m.operator('takeover', 4000);
      expect(r.ok, c.name).toBe(false);
    }
  });

  it('HA-8 a blade announces why: DISABLE for operator/version, NO-TAKEOVER for a mirror error', () => {
    const a = bootToNormal(0);
    a.m.operator('disable', 30);
    a.d.drain();
    expect(a.d.sends().at(-1)?.indicator).toBe(StateIndicator.disable);
    const b = bootToNormal(0);
    b.m.step({ type: 'mirror', synced: false }, 30);
    b.d.drain();
    expect(b.d.sends().at(-1)?.indicator).toBe(StateIndicator.noTakeover);
  });

  it('HA-9 refuses a giveback the partner is not ready for, then gives back in order', () => {
    const { m, d } = bootToNormal(0);
    expect(m.operator('giveback', 30)).toMatchObject({ ok: false, code: HaCode.refusedState });
    // Planned takeover of the live partner.
    expect(m.operator('takeover', 40)).toEqual({ ok: true });
    m.tick(40 + timing.takeoverGraceMs);
    d.fence('preempt', 1, true, 500);
    m.step({ type: 'reset-done' }, 560);
    m.step({ type: 'replay-done', set: 1, ok: true }, 600);
    d.drain();
    expect(m.status().phase).toBe('TAKEOVER');
    m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { generation: 2, sequence: 1, phase: HaPhase.rebooting, claimedSets: 0 }) }, 700);
    expect(m.operator('giveback', 700)).toMatchObject({ ok: false, code: HaCode.refusedPartnerNotReady });
    m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { generation: 2, sequence: 2, phase: HaPhase.rebooting, claimedSets: 0, flags: StatusFlag.awaitingGiveback | StatusFlag.mirrorSynced }) }, 710);
    expect(m.operator('giveback', 720)).toEqual({ ok: true });
    const out = d.drain();
    const iServeOff = out.findIndex((a) => a.type === 'serve' && a.set === 1 && !a.on);
    const iRelease = out.findIndex((a) => a.type === 'fence' && a.op === 'release' && a.set === 1);
    expect(iServeOff).toBeGreaterThanOrEqual(0);
    expect(iRelease).toBeGreaterThan(iServeOff);
    d.fence('release', 1, true, 730);
    d.drain();
    expect(m.status().phase).toBe('NORMAL');
    expect(d.sends().at(-1)?.claimedSets).toBe(1);
    expect(m.operator('giveback', 4000)).toMatchObject({ ok: false });
  });

  it('HA-9 SM-2 gives back automatically only with the interconnect or network up (pair sim seed 10900)', () => {
    // Seed 10900: a giveback over the mailboxes alone, during a link cut, let the partner
    // boot without our copy of its log (which holds the outcomes of what we replayed for it,
    // and here what its failed battery lost): a retransmitted MKDIR ran again (EXIST).
    const t0 = { ...timing, givebackDelayMinMs: 500 };
    const m = new HaMachine(config(0, { autoGiveback: true, timing: t0 }), { generation: 3, phase: HaPhase.normal, claimedSets: 1, operatorDisabled: false }, 0);
    const d = new Driver(m);
    d.fence('reserve', 0, true, 5);
    m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: 1 }) }, 10);
    d.drain();
    m.step({ type: 'replay-done', set: 0, ok: true }, 20);
    expect(m.operator('takeover', 40)).toEqual({ ok: true });
    m.tick(40 + t0.takeoverGraceMs);
    d.fence('preempt', 1, true, 500);
    m.step({ type: 'reset-done' }, 560);
    m.step({ type: 'replay-done', set: 1, ok: true }, 600);
    d.drain();
    expect(m.status().phase).toBe('TAKEOVER');
    const ready = (sequence: number): StatusMessage => partnerMsg(1, { generation: 2, sequence, phase: HaPhase.rebooting, claimedSets: 0, flags: StatusFlag.awaitingGiveback | StatusFlag.mirrorSynced });
    const servedOff = (): boolean => d.actions.some((a) => a.type === 'serve' && a.set === 1 && !a.on);
    let seq = 1;
    for (let t = 700; t <= 3000; t += t0.mailboxWriteIntervalMs) {
      m.step({ type: 'status', path: 'mbox2', message: ready(seq++) }, t);
      m.tick(t);
      d.drain();
    }
    expect(m.status().phase).toBe('TAKEOVER');
    expect(servedOff()).toBe(false);
    m.step({ type: 'status', path: 'serial', message: ready(seq++) }, 3010);
    m.tick(3025);
    d.drain();
    expect(servedOff()).toBe(true);
  });

  it('HA-11 damping: no more than takeoverCountMax automatic takeovers within the window', () => {
    const { m, d } = bootToNormal(0);
    const timing = defaultHaTiming;
    let t = 100;
    const started = (): number => d.alerts().filter((c) => c === HaCode.takeoverStarted).length;
    for (let k = 0; k < timing.takeoverCountMax; k++) {
      t = tickUntil(m, d, t, () => started() === k + 1);
      m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: 100 + k }) }, t + 10);
      t += 10;
      m.tick(t);
    }
    d.drain();
    expect(started()).toBe(timing.takeoverCountMax);
    t = tickUntil(m, d, t, () => d.alerts().includes(HaCode.takeoverDamped));
    expect(m.status().blockers).toContain('damped');
    expect(d.alerts()).toContain(HaCode.takeoverDamped);
    // The operator can clear it.
    m.operator('enable', t + 3100);
    expect(m.status().blockers).not.toContain('damped');
  });

  it('a fence result from before a restart is stale: a reservation of the partner set it obtained is released', () => {
    const { m, d } = bootToNormal(1);
    // The partner announces a takeover of us; we stop and restart (new generation).
    m.tick(100);
    d.drain();
    const before = d.actions.filter((a) => a.type === 'fence').length;
    const oldPreempt = { type: 'fence-result' as const, op: 'preempt' as const, set: 0 as const, token: 999_999, ok: true };
    m.step({ type: 'status', path: 'serial', message: partnerMsg(0, { sequence: 9, indicator: StateIndicator.takeover, flags: StatusFlag.takeoverInProgress }) }, 110);
    d.drain();
    expect(m.status().phase).toBe('REBOOTING');
    m.step(oldPreempt, 120);
    const after = d.drain();
    expect(after).toContainEqual(expect.objectContaining({ type: 'fence', op: 'release', set: 0 }));
    expect(m.status().claimedSets & 1).toBe(0);
    expect(d.actions.filter((a) => a.type === 'fence').length).toBeGreaterThan(before);
  });

  it('HA-9 a reservation of the partner set that arrives after a giveback is handed back', () => {
    const { m, d } = bootToNormal(0);
    expect(m.operator('takeover', 40)).toEqual({ ok: true });
    m.tick(40 + timing.takeoverGraceMs);
    d.fence('preempt', 1, true, 500);
    m.step({ type: 'reset-done' }, 560);
    m.step({ type: 'replay-done', set: 1, ok: true }, 600);
    m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { generation: 2, sequence: 2, phase: HaPhase.rebooting, claimedSets: 0, flags: StatusFlag.awaitingGiveback | StatusFlag.mirrorSynced }) }, 700);
    expect(m.operator('giveback', 710)).toEqual({ ok: true });
    d.fence('release', 1, false, 720, 'ERR_FENCE_IO');
    // The failed giveback re-reserves the set; the operator gives back again at once.
    const reserve = d.drain().find((a) => a.type === 'fence' && a.op === 'reserve' && a.set === 1);
    expect(reserve).toBeDefined();
    expect(m.operator('giveback', 730)).toEqual({ ok: true });
    d.fence('release', 1, true, 740);
    expect(m.status().phase).toBe('NORMAL');
    // Now the re-reserve completes, late: it must not leave us holding the partner's disks.
    if (reserve?.type !== 'fence') throw new Error('unreachable');
    m.step({ type: 'fence-result', op: 'reserve', set: 1, token: reserve.token, ok: true }, 750);
    expect(d.drain()).toContainEqual(expect.objectContaining({ type: 'fence', op: 'release', set: 1 }));
    expect(m.status().claimedSets).toBe(1);
  });

  it('HA-4 knows whether the partner hears us from its echo of our stamps', () => {
    const { m, d } = bootToNormal(0);
    const mine = d.sends();
    const last = mine.at(-1);
    if (last === undefined) throw new Error('no message sent');
    let t = 30;
    let seq = 10;
    // The partner keeps talking but never echoes anything of ours: a one-way failure.
    for (; t < 2000; t += 50) m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: seq++ }) }, t);
    d.drain();
    expect(m.status().partner.hearsUs).toBe(false);
    expect(d.alerts()).toContain(HaCode.partnerDeaf);
    // It echoes our latest message: it hears us.
    const now = d.sends().at(-1);
    if (now === undefined) throw new Error('no message sent');
    m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { sequence: seq++, peerGeneration: now.generation, peerSequence: now.sequence }) }, t);
    expect(m.status().partner.hearsUs).toBe(true);
  });

  it('HA-3 follows a partner whose count went backwards (lost NVRAM), but not stale copies from a slow path', () => {
    const { m, d } = bootToNormal(0);
    for (let k = 2; k <= 40; k++) m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { generation: 5, sequence: k }) }, 20 + k * 10);
    // A slow path's stale copies while the newest keeps coming: ignored.
    m.step({ type: 'status', path: 'mbox2', message: partnerMsg(1, { generation: 5, sequence: 30 }) }, 420);
    m.step({ type: 'status', path: 'mbox2', message: partnerMsg(1, { generation: 5, sequence: 35 }) }, 425);
    d.drain();
    expect(d.alerts()).not.toContain(HaCode.partnerGenerationBack);
    // The partner restarts without its NVRAM: generation 1 again, increasing.
    let t = 700;
    for (let k = 1; k <= 4; k++, t += 100) m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { generation: 1, sequence: k, phase: HaPhase.rebooting, bootId: 777 }) }, t);
    d.drain();
    expect(d.alerts()).toContain(HaCode.partnerGenerationBack);
    // A stale record of the old incarnation, with a higher stamp, no longer counts.
    m.step({ type: 'status', path: 'mbox2', message: partnerMsg(1, { generation: 5, sequence: 39 }) }, t);
    expect(m.status().rejected['HA_STALE_INCARNATION']).toBe(1);
    expect(m.status().partner.generation).toBe(1);
    expect(m.status().partner.phase).toBe('REBOOTING');
    expect(m.status().partner.alive).toBe(true);
  });

  it('rejects foreign and self messages, counting them', () => {
    const { m } = bootToNormal(0);
    m.step({ type: 'status', path: 'serial', message: partnerMsg(1, { systemId: 7, sequence: 99 }) }, 30);
    m.step({ type: 'status', path: 'serial', message: partnerMsg(0, { sequence: 99 }) }, 31);
    m.step({ type: 'rejected', path: 'serial', code: 'ERR_STATUS_BODY_CRC' }, 32);
    expect(m.status().rejected).toEqual({ [HaCode.foreignSystem]: 1, HA_OWN_MESSAGE: 1, ERR_STATUS_BODY_CRC: 1 });
    expect(m.status().partner.sequence).toBe(1);
  });

  it('every decoder rejection reaching the machine is counted by code (fuzzed bytes)', () => {
    const { m } = bootToNormal(0);
    const expected: Record<string, number> = {};
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.constantFrom('serial', 'net0', 'mbox2'), (bytes, path) => {
        try {
          m.step({ type: 'status', path, message: decodeStatus(bytes) }, 50);
        } catch (e) {
          const code = (e as { code: string }).code;
          expected[code] = (expected[code] ?? 0) + 1;
          m.step({ type: 'rejected', path, code }, 50);
        }
      }),
      { numRuns: 500 },
    );
    expect(m.status().rejected).toEqual(expected);
    expect(Object.values(expected).reduce((x, y) => x + y, 0)).toBe(500);
  });

  it('a mailbox path is marked bad after repeated undecodable records and recovers with hysteresis', () => {
    const { m, d } = bootToNormal(0);
    for (let k = 0; k < timing.mailboxCorruptCountMax; k++) m.step({ type: 'rejected', path: 'mbox2', code: 'ERR_MAILBOX_BODY_CRC' }, 30 + k);
    d.drain();
    expect(d.alerts()).toContain(HaCode.mailboxBad);
    expect(m.status().paths.find((p) => p.id === 'mbox2')?.bad).toBe(true);
    m.step({ type: 'status', path: 'mbox2', message: partnerMsg(1, { sequence: 40 }) }, 100);
    expect(m.status().paths.find((p) => p.id === 'mbox2')?.bad).toBe(true);
    for (let k = 1; k < timing.mailboxCorruptCountMax; k++) m.step({ type: 'status', path: 'mbox2', message: partnerMsg(1, { sequence: 40 + k }) }, 100 + k);
    expect(m.status().paths.find((p) => p.id === 'mbox2')?.bad).toBe(false);
    // Never-written slots are silence, not corruption.
    for (let k = 0; k < 10; k++) m.step({ type: 'rejected', path: 'mbox2', code: 'ERR_MAILBOX_EMPTY' }, 200 + k);
    expect(m.status().paths.find((p) => p.id === 'mbox2')?.bad).toBe(false);
  });

  it('runs out of sequence numbers into a new, persisted generation', () => {
    const m = new HaMachine(config(0), undefined, 0);
    // Reach the end of the sequence space quickly through the private counter.
    (m as unknown as { sequence: number }).sequence = statusSequenceMax - 1;
    const d = new Driver(m);
    m.tick(1000);
    m.tick(2000);
    d.drain();
    const gens = d.sends().map((s) => s.generation);
    expect(gens.at(-1)).toBe(2);
    expect(d.persisted?.generation).toBe(2);
  });

  it('validates its configuration', () => {
    expect(() => new HaMachine(config(0, { paths: [] }), undefined, 0)).toThrow(/path/);
    expect(() => new HaMachine(config(0, { timing: { ...defaultHaTiming, takeoverGraceMs: 10 } }), undefined, 0)).toThrow(/takeoverGraceMs/);
    expect(() => new HaMachine(config(0, { paths: [{ id: 'x', kind: 'network' }, { id: 'x', kind: 'network' }] }), undefined, 0)).toThrow(/duplicate/);
  });
});

describe('HA-3 stream merge', () => {
  it('a message is new iff its (generation, sequence) is greater than the newest seen (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ path: fc.constantFrom('serial', 'net0', 'mbox0'), generation: fc.integer({ min: 1, max: 4 }), sequence: fc.integer({ min: 0, max: 20 }) }), { maxLength: 60 }),
        (msgs) => {
          const s = new StatusStream();
          let best: { generation: number; sequence: number } | undefined;
          msgs.forEach((x, i) => {
            const r = s.offer(x.path, x, i);
            const expectNew = best === undefined || compareGenSeq(x, best) > 0;
            expect(r.isNew).toBe(expectNew);
            if (expectNew) best = x;
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('dates a late copy by when the stream first saw that far', () => {
    const s = new StatusStream();
    s.offer('serial', { generation: 1, sequence: 1 }, 100);
    s.offer('serial', { generation: 1, sequence: 5 }, 200);
    s.offer('serial', { generation: 1, sequence: 9 }, 300);
    const late = s.offer('mbox0', { generation: 1, sequence: 4 }, 5000);
    expect(late).toEqual({ isNew: false, pathAdvanced: true, witnessMs: 200 });
    expect(s.offer('mbox0', { generation: 1, sequence: 4 }, 5100).pathAdvanced).toBe(false);
    expect(s.offer('net0', { generation: 1, sequence: 0 }, 5200).witnessMs).toBe(-Infinity);
  });
});

describe('timing budget', () => {
  it('HA-5 default limits: the interconnect alone detects in about half a second, the conservative mailbox decision in under 2.5 s', () => {
    const all = detectionBoundMs(defaultHaTiming, ['interconnect', 'network', 'mailbox']);
    expect(all).toBeGreaterThan(2000);
    expect(all).toBeLessThanOrEqual(2500);
    expect(detectionBoundMs(defaultHaTiming, ['interconnect'])).toBeLessThanOrEqual(600);
  });
});
