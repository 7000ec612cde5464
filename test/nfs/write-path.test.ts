// The WRITE payload's way into the NVRAM log in pieces (change envelope parts, change payload
// parts, entry encoded from parts): the bytes logged are exactly those of the one-buffer
// encoders the format (docs/formats.md) is written for, so recovery and the partner's mirror
// decode them unchanged; and out-of-range writes are still refused by the change codec.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { concatBytes } from '../../firmware/ts/core/bytes.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { Timers } from '../../firmware/ts/core/clock.ts';
import { decodeEnvelope, encodeEnvelope, encodeEnvelopeParts } from '../../firmware/ts/blade/change-path.ts';
import { changePayloadParts, decodeChangePayload, decodeEntry, encodeChangePayload, encodeEntry, encodeEntryParts, EntryType } from '../../firmware/ts/nvlog/core/entry.ts';
import { NvLog } from '../../firmware/ts/nvlog/nvlog.ts';
import { TearingNvram } from '../../firmware/ts/nvlog/sim/tearing-nvram.ts';
import { fsLimits, type ChangeOp } from '../../firmware/ts/fsapi/ops.ts';

const cred = { uid: 1000, gid: 100, gids: [4, 24] };
const writeOp = (offset: number, data: Uint8Array): ChangeOp => ({ op: 'write', target: { ino: 42, gen: 3 }, offset, data, time: { sec: 1_700_000_000, nsec: 5 }, cred });

const arbWrite = fc.record({
  offset: fc.oneof(fc.integer({ min: 0, max: 1 << 20 }), fc.constant(2 ** 40)),
  data: fc.uint8Array({ minLength: 0, maxLength: 9000 }),
  pre: fc.integer({ min: 0, max: 64 }),
});

describe('WRITE payload in pieces into the log', () => {
  it('NV-2 envelope, change payload and entry from pieces are the bytes of the one-buffer encoders', () => {
    fc.assert(
      fc.property(arbWrite, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.uint8Array({ minLength: 0, maxLength: 100 }), fc.integer({ min: 1, max: 2 ** 40 }), ({ offset, data, pre }, fsid, key, seq) => {
        // The data as the NFS service hands it over: a view into a larger RPC record.
        const record = new Uint8Array(pre + data.length + 7);
        record.set(data, pre);
        const view = record.subarray(pre, pre + data.length);
        const op = writeOp(offset, view);
        const parts = encodeEnvelopeParts(fsid, op);
        const whole = encodeEnvelope(fsid, op);
        expect(concatBytes(parts)).toEqual(whole);
        if (view.length > 0) expect(parts[parts.length - 1]).toBe(view);
        const payloadParts = changePayloadParts(key, parts);
        expect(concatBytes(payloadParts)).toEqual(encodeChangePayload({ key, descriptor: whole }));
        const h = { type: EntryType.change, origin: 1 as const, seq, bootGeneration: 9 };
        const entry = encodeEntryParts(h, payloadParts);
        expect(entry).toEqual(encodeEntry(h, encodeChangePayload({ key, descriptor: whole })));
        const back = decodeEnvelope(decodeChangePayload(decodeEntry(entry).payload).descriptor);
        expect(back.fsid).toBe(fsid);
        expect(back.op).toMatchObject({ op: 'write', offset, data: data });
      }),
      { numRuns: 150 },
    );
  });

  it('an out-of-range write is refused by the change codec as before', () => {
    const big = new Uint8Array(fsLimits.writeBytesMax + 1);
    expect(() => encodeEnvelopeParts(1n, writeOp(0, big))).toThrow(/change descriptor/);
    expect(() => encodeEnvelopeParts(1n, writeOp(fsLimits.fileSizeBytesMax, new Uint8Array(1)))).toThrow(/change descriptor/);
  });

  it('NV-5 a change appended in pieces is recovered from NVRAM byte for byte after a reopen', async () => {
    const clock = { nowMs: () => 0, wallNs: () => 0n };
    const timers: Timers = { after: () => ({ cancel: () => undefined, refresh: () => undefined }), sleep: () => Promise.resolve() };
    const nv = new TearingNvram(8192 + 2 * 256 * 1024, new Prng(3), (_l, fn) => queueMicrotask(fn));
    const { log } = await NvLog.open(nv, { bladeId: 0, clock, timers, cpSeq: 0 });
    log.peerDisconnected();
    const data = new Uint8Array(70_000).map((_, i) => (i * 7 + 1) & 0xff);
    const op = writeOp(8192, data);
    const key = new Uint8Array([1, 2, 3, 4]);
    const { seq } = await log.appendChange(key, encodeEnvelopeParts(5n, op));
    log.close();
    const reopened = await NvLog.open(nv, { bladeId: 0, clock, timers, cpSeq: 0 });
    const rec = reopened.recovered.records.find((r) => r.seq === seq);
    expect(rec?.type).toBe(EntryType.change);
    const p = decodeChangePayload(rec?.payload ?? new Uint8Array(0));
    expect(p.key).toEqual(key);
    expect(p.descriptor).toEqual(encodeEnvelope(5n, op));
    reopened.log.close();
  });
});
