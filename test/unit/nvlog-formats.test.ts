// Round-trip and corruption tests of the change log's formats: the NVRAM header (and which
// copy recovery trusts), the HA state slot, the log entry and its payloads, mirror messages.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32c } from '../../firmware/ts/core/crc32c.ts';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';
import {
  EntryType,
  decodeChangePayload,
  decodeEntry,
  decodeStatePayload,
  encodeChangePayload,
  encodeEntry,
  encodeEntryHeader,
  encodeStatePayload,
  entryPadding,
  statePayloadParts,
} from '../../firmware/ts/nvlog/core/entry.ts';
import {
  HEADER_COPY_BYTES,
  computeLayout,
  decodeHeaderCopy,
  decodeStateSlot,
  encodeHeader,
  encodeStateSlot,
  type NvramHeader,
} from '../../firmware/ts/nvlog/core/layout.ts';
import { decodeMirrorMessage, encodeMirrorMessage } from '../../firmware/ts/nvlog/core/mirror-wire.ts';
import type { MirrorMessage } from '../../firmware/ts/nvlog/core/mirror.ts';
import { decideHeader } from '../../firmware/ts/nvlog/core/recovery.ts';

const layout = computeLayout(1 << 20);
const header = (over: Partial<NvramHeader> = {}): NvramHeader => ({ bladeId: 0, bootGeneration: 3, writeCounter: 5, battery: 'good', sealed: false, sealedSeq: 0, layout, ...over });
function slot(b: Uint8Array): Uint8Array {
  const s = new Uint8Array(HEADER_COPY_BYTES);
  s.set(b);
  return s;
}

describe('NVRAM layout', () => {
  it('splits the memory into header copies, HA state, two local and two mirror halves', () => {
    const l = computeLayout(64 * 1024 * 1024);
    expect(l.headerOffsets).toEqual([0, 512]);
    expect(l.stateAreaOffset).toBe(4096);
    expect(l.localOffset).toBe(8192);
    expect(l.mirrorOffset).toBe(l.localOffset + 2 * l.halfBytes);
    expect(l.mirrorOffset + 2 * l.halfBytes).toBeLessThanOrEqual(l.nvramBytes);
    expect(l.halfBytes % 4096).toBe(0);
  });
  it('refuses an NVRAM too small for a log', () => {
    expect(() => computeLayout(32 * 1024)).toThrow(/too small/);
  });
});

describe('NVRAM header', () => {
  it('round-trips', () => {
    const h = header({ sealed: true, sealedSeq: 2 ** 40 + 7, battery: 'low' });
    const c = decodeHeaderCopy(encodeHeader(h));
    expect(c).toEqual({ kind: 'valid', header: h });
  });
  it('detects every single-bit flip', () => {
    const b = encodeHeader(header());
    for (let bit = 0; bit < b.length * 8; bit += 7) {
      const x = b.slice();
      x[bit >> 3] = (x[bit >> 3] as number) ^ (1 << (bit & 7));
      expect(decodeHeaderCopy(x).kind).not.toBe('valid');
    }
  });
  it('NV-6 recovery trusts the newer valid copy, survives a torn copy, and reports bad input', () => {
    const a = slot(encodeHeader(header({ writeCounter: 4 })));
    const b = slot(encodeHeader(header({ writeCounter: 5, bootGeneration: 9 })));
    const torn = b.slice();
    torn[20] = (torn[20] as number) ^ 0xff;
    const empty = new Uint8Array(HEADER_COPY_BYTES);
    const both = decideHeader(a, b, 0, layout);
    expect(both.kind === 'use' && both.copy === 1 && both.header.bootGeneration === 9).toBe(true);
    const one = decideHeader(a, torn, 0, layout);
    expect(one.kind === 'use' && one.copy === 0 && one.otherCopy === 'torn').toBe(true);
    expect(decideHeader(empty, empty, 0, layout).kind).toBe('fresh');
    const bad = decideHeader(torn, torn, 0, layout);
    expect(bad.kind === 'error' && bad.code).toBe('ERR_NVLOG_HEADER_CORRUPT');
    const wrongBlade = decideHeader(a, b, 1, layout);
    expect(wrongBlade.kind === 'error' && wrongBlade.code).toBe('ERR_NVLOG_BLADE_ID');
    const wrongLayout = decideHeader(a, b, 0, computeLayout(2 << 20));
    expect(wrongLayout.kind === 'error' && wrongLayout.code).toBe('ERR_NVLOG_LAYOUT');
  });
  it('reports an unknown format version rather than guessing', () => {
    const b = encodeHeader(header());
    const v = new DataView(b.buffer);
    v.setUint16(4, 2, true);
    // Recompute the checksum so only the version is wrong.
    v.setUint32(124, crc32c(b.subarray(0, 124)), true);
    expect(decodeHeaderCopy(b)).toEqual({ kind: 'version', version: 2 });
    const d = decideHeader(slot(b), new Uint8Array(HEADER_COPY_BYTES), 0, layout);
    expect(d.kind === 'error' && d.code).toBe('ERR_NVLOG_HEADER_VERSION');
  });
  it('never throws on garbage', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), (g) => {
        const k = decodeHeaderCopy(g).kind;
        expect(['valid', 'empty', 'torn', 'version']).toContain(k);
      }),
      { numRuns: 300 },
    );
  });
});

describe('HA state slot', () => {
  it('round-trips and rejects corruption', () => {
    const p = new Uint8Array([1, 2, 3, 4, 5]);
    const s = encodeStateSlot(7, p);
    expect(decodeStateSlot(s)).toEqual({ counter: 7, payload: p });
    const x = s.slice();
    x[s.length - 1] = (x[s.length - 1] as number) ^ 1;
    expect(decodeStateSlot(x)).toBeUndefined();
    expect(decodeStateSlot(new Uint8Array(100))).toBeUndefined();
  });
  it('refuses a payload larger than the slot', () => {
    expect(() => encodeStateSlot(1, new Uint8Array(4000))).toThrow(/exceeds/);
  });
});

describe('log entry', () => {
  it('round-trips any payload, padded to 8 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 2 ** 48 }), fc.nat(2 ** 32 - 1), fc.constantFrom(0 as const, 1 as const), (payload, seq, boot, origin) => {
        const b = encodeEntry({ type: EntryType.change, origin, seq, bootGeneration: boot }, payload);
        expect(b.length % 8).toBe(0);
        const r = decodeEntry(b);
        expect([r.seq, r.bootGeneration, r.origin, r.type]).toEqual([seq, boot, origin, EntryType.change]);
        expect(r.payload).toEqual(payload);
      }),
      { numRuns: 200 },
    );
  });
  it('as header + payload pieces + padding (the gather write into NVRAM) is the same bytes as encodeEntry', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 5 }), fc.integer({ min: 1, max: 2 ** 48 }), (pieces, seq) => {
        const h = { type: EntryType.change, origin: 1 as const, seq, bootGeneration: 9 };
        const joined = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of pieces) {
          joined.set(p, at);
          at += p.length;
        }
        const gathered = [encodeEntryHeader(h, pieces), ...pieces, entryPadding(joined.length)];
        const out = new Uint8Array(gathered.reduce((n, p) => n + p.length, 0));
        at = 0;
        for (const p of gathered) {
          out.set(p, at);
          at += p.length;
        }
        expect(out).toEqual(encodeEntry(h, joined));
      }),
      { numRuns: 200 },
    );
  });
  it('a state payload as parts (head written by hand, key and reply by reference) joins to encodeStatePayload', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 1024 }), fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })), (key, reply, changeSeq) => {
        const parts = statePayloadParts({ key, changeSeq, reply });
        expect(parts[1]).toBe(key);
        expect(parts[2]).toBe(reply);
        const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
          joined.set(p, at);
          at += p.length;
        }
        expect(joined).toEqual(encodeStatePayload({ key, changeSeq, reply }));
      }),
      { numRuns: 300 },
    );
  });
  it('NV-6 detects a flipped bit anywhere in header or payload with a stable code', () => {
    const b = encodeEntry({ type: EntryType.state, origin: 1, seq: 99, bootGeneration: 2 }, new Uint8Array(50).fill(7));
    for (let bit = 0; bit < (32 + 50) * 8; bit += 3) {
      const x = b.slice();
      x[bit >> 3] = (x[bit >> 3] as number) ^ (1 << (bit & 7));
      let code = '';
      try {
        decodeEntry(x);
      } catch (e) {
        if (isTwinbladeError(e)) code = e.code;
      }
      expect(['ERR_NVLOG_ENTRY_CORRUPT', 'ERR_NVLOG_ENTRY_TRUNCATED', 'ERR_NVLOG_ENTRY_VERSION']).toContain(code);
    }
  });
  it('payloads round-trip and reject inconsistent lengths', () => {
    const c = encodeChangePayload({ key: new Uint8Array([1, 2]), descriptor: new Uint8Array([3, 4, 5]) });
    expect(decodeChangePayload(c)).toEqual({ key: new Uint8Array([1, 2]), descriptor: new Uint8Array([3, 4, 5]) });
    const s = encodeStatePayload({ key: new Uint8Array([9]), changeSeq: 12345, reply: new Uint8Array([8, 8]) });
    expect(decodeStatePayload(s)).toEqual({ key: new Uint8Array([9]), changeSeq: 12345, reply: new Uint8Array([8, 8]) });
    expect(() => decodeStatePayload(s.subarray(0, s.length - 1))).toThrow(/lengths/);
    expect(() => decodeChangePayload(new Uint8Array([200, 0, 1]))).toThrow(/key length/);
  });
});

describe('mirror messages', () => {
  const samples: MirrorMessage[] = [
    { kind: 'hello', from: 1, bootGeneration: 4, halfBytes: 8192 },
    { kind: 'reset', origin: 0, epoch: 3, fromSeq: 17 },
    { kind: 'entry', origin: 1, epoch: 2, position: 4096, bytes: encodeEntry({ type: EntryType.change, origin: 1, seq: 5, bootGeneration: 1 }, new Uint8Array(10)) },
    { kind: 'ack', origin: 0, epoch: 2, seq: 2 ** 40 },
    { kind: 'resync-request', origin: 1, reason: 'expected entry 4, got 6' },
    { kind: 'fetch', origin: 0 },
    { kind: 'copy', origin: 0, position: 8, bytes: encodeEntry({ type: EntryType.state, origin: 0, seq: 9, bootGeneration: 2 }, new Uint8Array(3)) },
    { kind: 'copy-done', origin: 0, count: 12 },
  ];
  it('round-trip', () => {
    for (const m of samples) expect(decodeMirrorMessage(encodeMirrorMessage(m))).toEqual(m);
  });
  it('reject corruption and garbage with ERR_NVLOG_MESSAGE_CORRUPT, never crash', () => {
    fc.assert(
      fc.property(fc.constantFrom(...samples), fc.nat(), fc.integer({ min: 1, max: 255 }), (m, at, x) => {
        const b = encodeMirrorMessage(m);
        b[at % b.length] = (b[at % b.length] as number) ^ x;
        expect(() => decodeMirrorMessage(b)).toThrow(expect.objectContaining({ code: 'ERR_NVLOG_MESSAGE_CORRUPT' }));
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (g) => {
        try {
          decodeMirrorMessage(g);
        } catch (e) {
          expect(isTwinbladeError(e, 'ERR_NVLOG_MESSAGE_CORRUPT')).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});
