// The log's durable release point and the giveback handover (issue #7, found by the `pair`
// simulation): recovery continues from the release point when a file system's CP lags it,
// a hole it does not explain is still refused, after a giveback no sequence number is reused,
// and the outcomes a survivor replayed reach the partner's state-machine log.
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { Timers } from '../../firmware/ts/core/clock.ts';
import { EntryType, decodeReleasePayload, decodeStatePayload, encodeReleasePayload } from '../../firmware/ts/nvlog/core/entry.ts';
import { computeLayout } from '../../firmware/ts/nvlog/core/layout.ts';
import { continueLog, planReplay, recoverRegion, releasedSeqOf } from '../../firmware/ts/nvlog/core/recovery.ts';
import { NvLog, type NvLogOptions } from '../../firmware/ts/nvlog/nvlog.ts';
import { TearingNvram } from '../../firmware/ts/nvlog/sim/tearing-nvram.ts';
import type { Nvram } from '../../firmware/ts/hal/nvram/nvram.ts';

const size = 8192 + 4 * 16384;
const layout = computeLayout(size);
const clock = { nowMs: () => 0, wallNs: () => 0n };
const timers: Timers = { after: () => ({ cancel: () => undefined, refresh: () => undefined }), sleep: () => Promise.resolve() };

function memNvram(seed = 1): TearingNvram {
  return new TearingNvram(size, new Prng(seed), (_l, fn) => queueMicrotask(fn));
}

function open(nvram: Nvram, over: Partial<NvLogOptions> = {}) {
  return NvLog.open(nvram, { bladeId: 0, clock, timers, cpSeq: 0, ...over });
}

async function append(log: NvLog, tag: number, bytes = 900): Promise<number> {
  return (await log.appendChange(new Uint8Array([tag]), new Uint8Array(bytes).fill(tag))).seq;
}

/**
 * A log whose first half was released and reused: changes 1..n fill half 0, a CP releases
 * them all (as if they were all another file system's), and later changes wrap into half 0.
 */
async function logWithReusedHalf(nv: TearingNvram): Promise<{ released: number; last: number }> {
  const { log } = await open(nv);
  let last = 0;
  while (log.metrics().halfSwitches === 0) last = await append(log, last + 1);
  // The entry that switched lives in half 1; everything in half 0 is in some CP.
  log.beginCp();
  expect(log.release(last - 1)).toBeGreaterThan(0);
  const released = log.releasedSeq;
  expect(released).toBeGreaterThan(0);
  // Fill half 1, then wrap into the released half 0 (a sequence gap between the halves' runs).
  const switches = log.metrics().halfSwitches;
  while (log.metrics().halfSwitches === switches) last = await append(log, (last + 1) & 0xff);
  last = await append(log, 7);
  log.close();
  return { released, last };
}

describe('the log release point (NV-5, NV-6)', () => {
  it('NV-5 a blade whose own file system CP lags the release point recovers (entries released for the other set)', async () => {
    const nv = memNvram();
    const { released, last } = await logWithReusedHalf(nv);
    // This set's CP holds only entry 2: entries 3..released were the partner's set's.
    const b = await open(nv, { cpSeq: 2 });
    expect(b.plan.releasedSeq).toBe(released);
    expect(b.plan.baseSeq).toBe(released);
    const applied = b.plan.toApply.map((r) => r.seq);
    expect(applied.every((s) => s > released)).toBe(true);
    expect(applied.at(-1)).toBe(last);
    // The same decision over the region alone (what a partner's takeover replays from its mirror).
    const region = nv.read(layout.localOffset, 2 * layout.halfBytes);
    const rec = recoverRegion(region, layout.halfBytes, 0);
    expect(releasedSeqOf(rec)).toBe(released);
    const plan = planReplay(rec, 2);
    expect(plan.ok).toBe(true);
    b.log.close();
  });

  it('NV-6 a hole the release point does not explain is still refused (ERR_NVLOG_REPLAY_GAP)', async () => {
    const nv = memNvram();
    await logWithReusedHalf(nv);
    const region = nv.read(layout.localOffset, 2 * layout.halfBytes);
    const rec = recoverRegion(region, layout.halfBytes, 0);
    // Without its release entries the log is a gap after the CP: refused, never guessed.
    const without = { ...rec, records: rec.records.filter((r) => r.type !== EntryType.release) };
    const plan = planReplay(without, 2);
    expect(plan.ok).toBe(false);
    if (!plan.ok) expect(plan.code).toBe('ERR_NVLOG_REPLAY_GAP');
  });

  it('NV-6 the release payload is strict: 8 bytes, a safe integer', () => {
    expect(decodeReleasePayload(encodeReleasePayload({ releasedSeq: 41 }))).toEqual({ releasedSeq: 41 });
    expect(() => decodeReleasePayload(new Uint8Array(7))).toThrow(expect.objectContaining({ code: 'ERR_NVLOG_ENTRY_CORRUPT' }));
    expect(() => decodeReleasePayload(new Uint8Array(8).fill(0xff))).toThrow(expect.objectContaining({ code: 'ERR_NVLOG_ENTRY_CORRUPT' }));
  });

  it('NV-5 after a giveback new entries are numbered after every entry found, and later recoveries skip those', async () => {
    const nv = memNvram();
    const a = await open(nv);
    for (let i = 1; i <= 6; i++) await append(a.log, i, 40);
    a.log.close();
    // The partner's CP of our set holds entry 4; entries 5 and 6 were another set's (or never
    // acknowledged): their numbers may be in some file system, so they are never reused.
    const b = await open(nv, { cpSeq: 4, mode: 'after-giveback' });
    const s = await append(b.log, 9, 40);
    expect(s).toBeGreaterThan(6);
    b.log.close();
    const c = await open(nv, { cpSeq: 4 });
    expect(c.plan.toApply.map((r) => r.seq)).toEqual([s]);
    expect(c.plan.releasedSeq).toBeGreaterThanOrEqual(6);
    c.log.close();
  });

  it('NV-5 a blade whose NVRAM was lost never counts boot generations from 1 again (bootGenerationFloor)', async () => {
    const nv = memNvram();
    const a = await open(nv, { bootGenerationFloor: 9 });
    expect(a.log.bootGeneration).toBe(9);
    a.log.close();
    const b = await open(nv, { bootGenerationFloor: 3 });
    expect(b.log.bootGeneration).toBe(10);
    b.log.close();
  });
});

describe('outcomes across a takeover and giveback (SM-2)', () => {
  it('SM-2 the outcomes a survivor replayed, written into its mirror, answer retransmissions at the partner after the giveback', async () => {
    // The partner (blade 0) logged two changes, mirrored, then failed before recording outcomes.
    const nv = memNvram();
    const a = await open(nv);
    const k1 = new Uint8Array([1]);
    const k2 = new Uint8Array([2]);
    const s1 = (await a.log.appendChange(k1, new Uint8Array(40))).seq;
    const s2 = (await a.log.appendChange(k2, new Uint8Array(40))).seq;
    a.log.close();
    // The survivor's mirror holds the same bytes; its replay produced two outcomes.
    const mirror = nv.read(layout.localOffset, 2 * layout.halfBytes);
    const rec = recoverRegion(mirror, layout.halfBytes, 0);
    const items = continueLog(rec, [
      { key: k1, changeSeq: s1, reply: new Uint8Array([2, 11]) },
      { key: k2, changeSeq: s2, reply: new Uint8Array([2, 22]) },
    ]);
    expect(items.map((i) => i.seq)).toEqual([s2 + 1, s2 + 2]);
    for (const it of items) mirror.set(it.bytes, it.position);
    const continued = recoverRegion(mirror, layout.halfBytes, 0);
    expect(continued.records.map((r) => r.seq)).toEqual([s1, s2, s2 + 1, s2 + 2]);
    expect(decodeStatePayload((continued.records[2] as { payload: Uint8Array }).payload).reply).toEqual(new Uint8Array([2, 11]));
    // After the giveback (the survivor's CP holds both changes) the partner fetches that copy.
    const b = await open(nv, { cpSeq: s2, mode: 'after-giveback', partnerCopy: mirror });
    expect(b.log.sm.get(k1)).toMatchObject({ state: 'replied', reply: new Uint8Array([2, 11]) });
    expect(b.log.sm.get(k2)).toMatchObject({ state: 'replied', reply: new Uint8Array([2, 22]) });
    expect((await b.log.appendChange(new Uint8Array([3]), new Uint8Array(8))).seq).toBeGreaterThan(s2 + 2);
    b.log.close();
  });

  it('SM-2 without that copy the partner does not know the requests (what the pair simulation caught: EXIST on a retransmitted create)', async () => {
    const nv = memNvram();
    const a = await open(nv);
    const k1 = new Uint8Array([1]);
    const s1 = (await a.log.appendChange(k1, new Uint8Array(40))).seq;
    a.log.close();
    const b = await open(nv, { cpSeq: s1, mode: 'after-giveback' });
    // Applied (inside the CP) but with no reply to answer with.
    expect(b.log.sm.get(k1)?.state).toBe('applied');
    expect(b.log.sm.get(k1)?.reply).toBeUndefined();
    b.log.close();
  });
});
