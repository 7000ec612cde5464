// HA-8 with a log that degrades the moment the partner is unreachable (issue #7): the
// survivor's own mirror (its log to the partner) degrades as soon as the partner dies, and
// must not block the takeover of that partner; a partner whose last word was NO-TAKEOVER
// (it acknowledged changes our copy lacks, e.g. during a partition) is still refused, and so
// is any takeover by a blade whose log never synchronised in this run.
import { describe, expect, it } from 'vitest';
import { HaMachine, HaCode, type HaAction, type HaConfig } from '../../firmware/ts/ha/core/machine.ts';
import { HaPhase, StateIndicator, StatusFlag, type StatusMessage } from '../../firmware/ts/ha/core/status.ts';
import { defaultHaTiming } from '../../firmware/ts/ha/core/timing.ts';

const timing = { ...defaultHaTiming, mailboxWriteIntervalMs: 100, mailboxPollIntervalMs: 100, takeoverGraceMs: 300, tieBreakDelayMs: 200 };

function config(): HaConfig {
  return {
    systemId: 42,
    bladeIndex: 0,
    firmwareVersion: 0x0001_0000,
    paths: [
      { id: 'serial', kind: 'interconnect' },
      { id: 'mbox2', kind: 'mailbox' },
    ],
    timing,
    autoGiveback: false,
    // As pair.ts: the log says when it is synced.
    mirrorSyncedAtBoot: false,
    bootId: 100,
  };
}

function partnerMsg(sequence: number, over: Partial<StatusMessage> = {}): StatusMessage {
  return {
    protocolVersion: 1,
    systemId: 42,
    bladeIndex: 1,
    indicator: StateIndicator.normal,
    phase: HaPhase.normal,
    flags: StatusFlag.mirrorSynced,
    reasons: 0,
    generation: 1,
    sequence,
    peerGeneration: 0,
    peerSequence: 0,
    firmwareVersion: 0x0001_0000,
    claimedSets: 0b10,
    bootId: 101,
    ...over,
  };
}

/** Boots blade 0 into NORMAL next to a live partner, answering its fence and replay actions. */
function boot(): { m: HaMachine; actions: HaAction[]; drain: () => void } {
  const m = new HaMachine(config(), { generation: 3, phase: HaPhase.normal, claimedSets: 1, operatorDisabled: false }, 0);
  const actions: HaAction[] = [];
  const drain = (): void => {
    while (m.hasReady()) actions.push(...m.ready().actions);
  };
  drain();
  const reserve = actions.find((a) => a.type === 'fence' && a.op === 'reserve' && a.set === 0);
  if (reserve?.type !== 'fence') throw new Error('no reserve of our set');
  m.step({ type: 'fence-result', op: 'reserve', set: 0, token: reserve.token, ok: true }, 5);
  m.step({ type: 'status', path: 'serial', message: partnerMsg(1) }, 10);
  drain();
  m.step({ type: 'replay-done', set: 0, ok: true }, 20);
  drain();
  expect(m.status().phase).toBe('NORMAL');
  return { m, actions, drain };
}

/** The partner's last messages, then silence on every path; ticks until a decision or 10 s. */
function partnerDies(m: HaMachine, drain: () => void, actions: HaAction[], last: Partial<StatusMessage>): string[] {
  m.step({ type: 'status', path: 'serial', message: partnerMsg(5, last) }, 100);
  m.step({ type: 'status', path: 'mbox2', message: partnerMsg(4, last) }, 100 - timing.mailboxPollIntervalMs);
  m.step({ type: 'status', path: 'mbox2', message: partnerMsg(6, last) }, 100);
  // Our log's mirror to the partner degrades the moment the link drops (LinkMirrorTransport).
  m.step({ type: 'mirror', synced: false }, 110);
  for (let t = 100 + timing.tickIntervalMs; t < 10_000; t += timing.tickIntervalMs) {
    m.tick(t);
    drain();
  }
  return actions.flatMap((a) => (a.type === 'alert' ? [a.code] : []));
}

describe('HA-8: which mirror blocks a takeover of a dead partner', () => {
  it('HA-8 HA-6 our own mirror degraded by the partner\'s death does not block taking it over when its last word vouched for our copy', () => {
    const { m, actions, drain } = boot();
    m.step({ type: 'mirror', synced: true }, 30);
    const alerts = partnerDies(m, drain, actions, {});
    expect(alerts).toContain(HaCode.takeoverStarted);
    expect(alerts).not.toContain(HaCode.takeoverBlocked);
    // We still tell the world that our own log is not mirrored (the partner may not take us over).
    const sends = actions.flatMap((a) => (a.type === 'send' ? [a.message] : []));
    expect((sends.at(-1)?.flags ?? 0) & StatusFlag.mirrorSynced).toBe(0);
  });

  it('HA-8 a partner whose last word was NO-TAKEOVER (it acknowledged on its local copy alone) is not taken over', () => {
    const { m, actions, drain } = boot();
    m.step({ type: 'mirror', synced: true }, 30);
    const alerts = partnerDies(m, drain, actions, { indicator: StateIndicator.noTakeover, flags: 0 });
    expect(alerts).not.toContain(HaCode.takeoverStarted);
    expect(alerts).toContain(HaCode.takeoverBlocked);
    expect(m.status().blockers).toContain('partnerNoTakeover');
  });

  it('HA-8 a blade whose log never synchronised in this run still counts its own mirror error', () => {
    const { m, actions, drain } = boot();
    const alerts = partnerDies(m, drain, actions, {});
    expect(alerts).not.toContain(HaCode.takeoverStarted);
    expect(m.status().blockers).toContain('mirror');
  });

  it('HA-8 an operator takeover still requires our own mirror in sync', () => {
    const { m } = boot();
    m.step({ type: 'mirror', synced: true }, 30);
    m.step({ type: 'mirror', synced: false }, 40);
    const r = m.operator('takeover', 50);
    expect(r.ok).toBe(false);
  });

  it('HA-8 on the power-sense line: the partner\'s mailboxes are read twice more first, and a NO-TAKEOVER found there refuses', () => {
    for (const lastOnDisk of [{}, { indicator: StateIndicator.noTakeover, flags: 0 }] as Partial<StatusMessage>[]) {
      const { m, actions, drain } = boot();
      m.step({ type: 'mirror', synced: true }, 30);
      m.step({ type: 'status', path: 'mbox2', message: partnerMsg(4) }, 100 - timing.mailboxPollIntervalMs);
      m.step({ type: 'status', path: 'mbox2', message: partnerMsg(6) }, 100);
      m.step({ type: 'status', path: 'serial', message: partnerMsg(7) }, 100);
      // The link is cut: our log degrades; the partner announced NO-TAKEOVER on its disks (or
      // not) and lost power; its link messages stop.
      m.step({ type: 'mirror', synced: false }, 600);
      m.step({ type: 'partner-power', good: false }, 1000);
      const alerts = (): string[] => actions.flatMap((a) => (a.type === 'alert' ? [a.code] : []));
      let t = 1000;
      for (; t < 1200; t += timing.tickIntervalMs) {
        m.tick(t);
        drain();
      }
      // No fresh mailbox read yet: our copy may be stale, our own mirror error still counts.
      expect(alerts()).not.toContain(HaCode.takeoverStarted);
      m.step({ type: 'status', path: 'mbox2', message: partnerMsg(8, lastOnDisk) }, 1200);
      m.tick(1210);
      drain();
      expect(alerts()).not.toContain(HaCode.takeoverStarted);
      m.step({ type: 'status', path: 'mbox2', message: partnerMsg(8, lastOnDisk) }, 1450);
      for (t = 1460; t < 2000; t += timing.tickIntervalMs) {
        m.tick(t);
        drain();
      }
      if (lastOnDisk.indicator === StateIndicator.noTakeover) expect(alerts()).not.toContain(HaCode.takeoverStarted);
      else expect(alerts()).toContain(HaCode.takeoverStarted);
    }
  });
});
