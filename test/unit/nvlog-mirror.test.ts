// The mirroring state machines (NV-1..NV-3, HA-8): the origin's pipelined window, cumulative
// acknowledgements, degradation and resynchronisation; the receiver's ordering checks.
import { describe, expect, it } from 'vitest';
import { EntryType, encodeEntry } from '../../firmware/ts/nvlog/core/entry.ts';
import { MirrorOrigin, MirrorReceiver, type MirrorItem, type MirrorMessage } from '../../firmware/ts/nvlog/core/mirror.ts';

const limits = { mirrorInFlightMax: 4, mirrorAckTimeoutMs: 100, mirrorResyncRetryMs: 500 };

function item(seq: number, origin: 0 | 1 = 0): MirrorItem {
  const bytes = encodeEntry({ type: EntryType.change, origin, seq, bootGeneration: 1 }, new Uint8Array(16));
  return { seq, position: (seq - 1) * bytes.length, bytes };
}

function entries(out: MirrorMessage[]): number[] {
  return out.flatMap((m) => (m.kind === 'entry' ? [new DataView(m.bytes.buffer, m.bytes.byteOffset).getUint32(8, true)] : []));
}

function synced(): MirrorOrigin {
  const o = new MirrorOrigin(0, limits);
  o.partnerUp(0, []);
  const out = o.takeOutbox();
  expect(out).toEqual([{ kind: 'reset', origin: 0, epoch: 1, fromSeq: 1 }]);
  o.onMessage({ kind: 'ack', origin: 0, epoch: 1, seq: 0 }, 1, () => []);
  expect(o.state).toBe('synced');
  o.takeStateChanges();
  return o;
}

describe('mirror origin', () => {
  it('NV-1 sends each entry with a window of in-flight entries, acknowledged cumulatively', () => {
    const o = synced();
    for (let s = 1; s <= 10; s++) o.append(item(s), 2);
    expect(entries(o.takeOutbox())).toEqual([1, 2, 3, 4]);
    expect(o.doneSeq).toBe(0);
    o.onMessage({ kind: 'ack', origin: 0, epoch: 1, seq: 3 }, 3, () => []);
    expect(o.doneSeq).toBe(3);
    expect(entries(o.takeOutbox())).toEqual([5, 6, 7]);
    o.onMessage({ kind: 'ack', origin: 0, epoch: 1, seq: 10 }, 4, () => []);
    expect(entries(o.takeOutbox())).toEqual([8, 9, 10]);
    expect(o.inFlightHighWater).toBe(4);
  });

  it('NV-2 a partner ack does not count beyond what was appended', () => {
    const o = synced();
    o.append(item(1), 2);
    o.onMessage({ kind: 'ack', origin: 0, epoch: 1, seq: 5 }, 3, () => []);
    expect(o.doneSeq).toBe(1);
  });

  it('HA-8 starts degraded: entries complete on the local copy alone until the partner is up', () => {
    const o = new MirrorOrigin(1, limits);
    expect(o.state).toBe('degraded');
    o.append(item(1, 1), 0);
    expect(o.doneSeq).toBe(1);
    expect(o.takeOutbox()).toEqual([]);
  });

  it('HA-8 an ack timeout degrades the mirror, waives the waiting entries and reports it', () => {
    const o = synced();
    o.append(item(1), 10);
    o.append(item(2), 10);
    o.tick(50, () => []);
    expect(o.state).toBe('synced');
    o.tick(111, () => []);
    expect(o.state).toBe('degraded');
    expect(o.doneSeq).toBe(2);
    expect(o.takeStateChanges()).toEqual([{ state: 'degraded', reason: 'mirror acknowledgement timed out' }]);
    // A late ack of the abandoned stream changes nothing.
    o.onMessage({ kind: 'ack', origin: 0, epoch: 1, seq: 2 }, 120, () => []);
    expect(o.state).toBe('degraded');
  });

  it('HA-8 when the partner returns the unreleased entries are resynchronised, then synced again', () => {
    const o = new MirrorOrigin(0, limits);
    for (let s = 1; s <= 3; s++) o.append(item(s), 0);
    const live = [item(2), item(3)];
    o.onMessage({ kind: 'hello', from: 1, bootGeneration: 2, halfBytes: 8192 }, 5, () => live);
    expect(o.state).toBe('resyncing');
    const out = o.takeOutbox();
    expect(out[0]).toEqual({ kind: 'reset', origin: 0, epoch: 1, fromSeq: 2 });
    expect(entries(out)).toEqual([2, 3]);
    // A new append during resync waits for the partner.
    o.append(item(4), 6);
    expect(o.doneSeq).toBe(3);
    o.onMessage({ kind: 'ack', origin: 0, epoch: 1, seq: 3 }, 7, () => live);
    expect(o.state).toBe('synced');
    expect(o.takeStateChanges().map((c) => c.state)).toEqual(['resyncing', 'synced']);
    o.onMessage({ kind: 'ack', origin: 0, epoch: 1, seq: 4 }, 8, () => live);
    expect(o.doneSeq).toBe(4);
  });

  it('retries a resynchronisation while degraded with the partner reachable', () => {
    const o = synced();
    o.append(item(1), 0);
    o.tick(200, () => []);
    expect(o.state).toBe('degraded');
    o.tick(400, () => [item(1)]);
    expect(o.state).toBe('degraded');
    o.tick(701, () => [item(1)]);
    expect(o.state).toBe('resyncing');
  });

  it('a partner that went away degrades at once and is not retried until it greets again', () => {
    const o = synced();
    o.append(item(1), 0);
    o.partnerDown();
    expect(o.state).toBe('degraded');
    expect(o.doneSeq).toBe(1);
    o.tick(10_000, () => []);
    expect(o.state).toBe('degraded');
  });
});

describe('mirror receiver', () => {
  it('NV-3 stores entries in order at their position and acknowledges after persisting', () => {
    const r = new MirrorReceiver(0, 1 << 16);
    expect(r.onMessage({ kind: 'reset', origin: 0, epoch: 1, fromSeq: 5 })).toEqual([{ kind: 'wipe' }, { kind: 'ack-after-persist', msg: { kind: 'ack', origin: 0, epoch: 1, seq: 0 } }]);
    const a = r.onMessage({ kind: 'entry', origin: 0, epoch: 1, ...item(5) });
    expect(a.map((x) => x.kind)).toEqual(['write', 'ack-after-persist']);
    const b = r.onMessage({ kind: 'entry', origin: 0, epoch: 1, ...item(6) });
    expect(b[1]).toEqual({ kind: 'ack-after-persist', msg: { kind: 'ack', origin: 0, epoch: 1, seq: 6 } });
  });

  it('a gap or corrupt bytes stop the stream and ask for a resynchronisation', () => {
    const r = new MirrorReceiver(0, 1 << 16);
    r.onMessage({ kind: 'reset', origin: 0, epoch: 1, fromSeq: 1 });
    r.onMessage({ kind: 'entry', origin: 0, epoch: 1, ...item(1) });
    const gap = r.onMessage({ kind: 'entry', origin: 0, epoch: 1, ...item(3) });
    expect(gap).toEqual([{ kind: 'send', msg: { kind: 'resync-request', origin: 0, reason: 'expected entry 2, got 3' } }]);
    expect(r.onMessage({ kind: 'entry', origin: 0, epoch: 1, ...item(2) })).toEqual([]);
    r.onMessage({ kind: 'reset', origin: 0, epoch: 2, fromSeq: 1 });
    const bad = item(1);
    bad.bytes[40] = (bad.bytes[40] as number) ^ 1;
    const c = r.onMessage({ kind: 'entry', origin: 0, epoch: 2, ...bad });
    expect(c[0]?.kind === 'send' && c[0].msg.kind).toBe('resync-request');
  });

  it('a stream that does not start where the reset said is a gap, not a silent hole', () => {
    const r = new MirrorReceiver(0, 1 << 16);
    r.onMessage({ kind: 'reset', origin: 0, epoch: 1, fromSeq: 4 });
    const a = r.onMessage({ kind: 'entry', origin: 0, epoch: 1, ...item(5) });
    expect(a[0]?.kind === 'send' && a[0].msg.kind).toBe('resync-request');
  });

  it('ignores entries of an old epoch and entries outside the region', () => {
    const r = new MirrorReceiver(1, 4096);
    r.onMessage({ kind: 'reset', origin: 1, epoch: 3, fromSeq: 1 });
    expect(r.onMessage({ kind: 'entry', origin: 1, epoch: 2, ...item(1, 1) })).toEqual([]);
    const far = r.onMessage({ kind: 'entry', origin: 1, epoch: 3, position: 8192, bytes: item(1, 1).bytes, seq: 1 } as MirrorMessage);
    expect(far[0]?.kind).toBe('send');
  });
});
