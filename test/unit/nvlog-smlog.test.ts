// The state-machine log (SM-1..SM-3): request states, answers to retransmissions from the
// log, restoration after a fault, bounded depth, release and carry-forward of replies.
import { describe, expect, it } from 'vitest';
import { EntryType, encodeChangePayload, encodeEntry, encodeStatePayload, decodeEntry } from '../../firmware/ts/nvlog/core/entry.ts';
import { StateMachineLog } from '../../firmware/ts/nvlog/core/smlog.ts';

const key = (n: number): Uint8Array => new Uint8Array([n, 0, 0, 1]);

describe('state-machine log', () => {
  it('SM-1 tracks received → logged → applied → replied', () => {
    const sm = new StateMachineLog();
    expect(sm.receive(key(1))).toEqual({ kind: 'new' });
    expect(sm.get(key(1))?.state).toBe('received');
    sm.logged(key(1), 7);
    expect(sm.get(key(1))?.state).toBe('logged');
    sm.applied(key(1), new Uint8Array([42]));
    expect(sm.get(key(1))?.state).toBe('applied');
    sm.replied(key(1), 100);
    expect(sm.get(key(1))).toMatchObject({ state: 'replied', changeSeq: 7, repliedAtMs: 100 });
  });

  it('SM-2 a retransmission of an executed request is answered from the log, one still running is dropped', () => {
    const sm = new StateMachineLog();
    sm.receive(key(1));
    expect(sm.receive(key(1)).kind).toBe('in-progress');
    sm.logged(key(1), 1);
    sm.applied(key(1), new Uint8Array([9]));
    const again = sm.receive(key(1));
    expect(again.kind).toBe('done');
    expect(again.kind === 'done' && again.record.reply).toEqual(new Uint8Array([9]));
  });

  it('SM-2 restores the last valid state of every request from the log after a fault', () => {
    const rec = (seq: number, type: 1 | 2, payload: Uint8Array) => decodeEntry(encodeEntry({ type, origin: 0, seq, bootGeneration: 1 }, payload));
    const records = [
      rec(1, EntryType.change, encodeChangePayload({ key: key(1), descriptor: new Uint8Array(3) })),
      rec(2, EntryType.change, encodeChangePayload({ key: key(2), descriptor: new Uint8Array(3) })),
      rec(3, EntryType.state, encodeStatePayload({ key: key(1), changeSeq: 1, reply: new Uint8Array([5]) })),
      rec(4, EntryType.change, encodeChangePayload({ key: key(3), descriptor: new Uint8Array(3) })),
    ];
    const sm = new StateMachineLog();
    sm.restore(records, 2, 0);
    expect(sm.get(key(1))).toMatchObject({ state: 'replied', reply: new Uint8Array([5]), stateSeq: 3 });
    expect(sm.get(key(2))).toMatchObject({ state: 'applied', changeSeq: 2 });
    expect(sm.get(key(3))).toMatchObject({ state: 'logged', changeSeq: 4 });
    expect(sm.receive(key(3)).kind).toBe('in-progress');
  });

  it('SM-3 the depth is bounded: a full table refuses new requests with ERR_NVLOG_SM_FULL', () => {
    const sm = new StateMachineLog({ smRequestsMax: 3, replyRetentionMs: 10 });
    for (let i = 0; i < 3; i++) sm.receive(key(i));
    expect(() => sm.receive(key(9))).toThrow(expect.objectContaining({ code: 'ERR_NVLOG_SM_FULL', kind: 'busy' }));
    expect(sm.metrics()).toMatchObject({ requests: 3, requestsHighWater: 3 });
  });

  it('SM-3 at capacity the oldest finished request inside a consistency point gives way', () => {
    const sm = new StateMachineLog({ smRequestsMax: 2, replyRetentionMs: 1e9 });
    for (let i = 1; i <= 2; i++) {
      sm.receive(key(i));
      sm.logged(key(i), i);
      sm.applied(key(i), new Uint8Array([i]));
      sm.replied(key(i), 0);
    }
    expect(() => sm.receive(key(3))).toThrow(expect.objectContaining({ code: 'ERR_NVLOG_SM_FULL' }));
    sm.release(1, 0);
    expect(sm.receive(key(3)).kind).toBe('new');
    expect(sm.get(key(1))).toBeUndefined();
    expect(sm.get(key(2))?.state).toBe('replied');
    expect(sm.metrics().evictions).toBe(1);
  });

  it('SM-3 a full table keeps admitting a stream of finished requests, never evicting unfinished ones', () => {
    const max = 64;
    const sm = new StateMachineLog({ smRequestsMax: max, replyRetentionMs: 1e9 });
    const k = (n: number): Uint8Array => new Uint8Array([n & 0xff, (n >> 8) & 0xff, 7, 7]);
    // Two requests that never finish, among the oldest: every eviction must pass them by.
    sm.receive(k(0));
    sm.receive(k(1));
    sm.logged(k(1), 1);
    let seq = 1;
    for (let n = 2; n < 3000; n++) {
      if (n >= max) sm.release(seq - max / 2, 0);
      expect(sm.receive(k(n)).kind).toBe('new');
      sm.logged(k(n), ++seq);
      sm.applied(k(n), Uint8Array.of(1));
      sm.replied(k(n), 0);
    }
    expect(sm.get(k(0))?.state).toBe('received');
    expect(sm.get(k(1))?.state).toBe('logged');
    expect(sm.metrics()).toMatchObject({ requests: max });
    expect(sm.metrics().evictions).toBe(3000 - max);
    // The newest ones are not in a consistency point: nothing may give way for another.
    sm.release(0, 0);
    const fresh = new StateMachineLog({ smRequestsMax: 2, replyRetentionMs: 1e9 });
    fresh.receive(k(1));
    fresh.receive(k(2));
    expect(() => fresh.receive(k(3))).toThrow(expect.objectContaining({ code: 'ERR_NVLOG_SM_FULL' }));
    expect(() => fresh.receive(k(4))).toThrow(expect.objectContaining({ code: 'ERR_NVLOG_SM_FULL' }));
  });

  it('SM-3 releases requests inside the consistency point once their retention passed', () => {
    const sm = new StateMachineLog({ smRequestsMax: 10, replyRetentionMs: 10 });
    for (let i = 1; i <= 3; i++) {
      sm.receive(key(i));
      sm.logged(key(i), i);
      sm.applied(key(i), new Uint8Array([i]));
      sm.replied(key(i), 100);
    }
    expect(sm.release(2, 105)).toBe(0);
    expect(sm.release(2, 110)).toBe(2);
    expect(sm.get(key(3))?.state).toBe('replied');
    expect(sm.metrics()).toMatchObject({ requests: 1, requestsHighWater: 3, replied: 1, evictions: 0 });
  });

  it('SM-3 names the replies a released log half must carry forward', () => {
    const sm = new StateMachineLog({ smRequestsMax: 10, replyRetentionMs: 50 });
    sm.receive(key(1));
    sm.logged(key(1), 1);
    sm.applied(key(1), new Uint8Array([1]));
    sm.replied(key(1), 0);
    sm.noteStateSeq(key(1), 2);
    sm.receive(key(2));
    sm.logged(key(2), 3);
    sm.applied(key(2), new Uint8Array([2]));
    sm.replied(key(2), 0);
    expect(sm.carryCandidates(1, 2, 10).map((r) => r.changeSeq)).toEqual([1]);
    expect(sm.carryCandidates(3, 9, 10).map((r) => r.changeSeq)).toEqual([3]);
    expect(sm.carryCandidates(1, 9, 60)).toEqual([]);
    // Capped: the newest replies win.
    sm.replied(key(2), 5);
    expect(sm.carryCandidates(1, 9, 10, 1).map((r) => r.changeSeq)).toEqual([3]);
  });
});
