// The RAID disk label codec: round trips, and every kind of bad input is rejected with a
// DecodeError carrying a stable code (never another exception, never a wrong label).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DecodeError, InvalidArgumentError } from '../../firmware/ts/core/errors.ts';
import { crc32c } from '../../firmware/ts/core/crc32c.ts';
import type { BlockDevice } from '../../firmware/ts/hal/block/block-device.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';
import {
  LabelErrorCode,
  decodeLabel,
  encodeLabel,
  labelRecordBytes,
  readLabel,
  sparePosition,
  writeLabel,
  type DiskLabel,
} from '../../firmware/ts/storage/label.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';

const hex32 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(''));
const id = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.includes('\0') && new TextEncoder().encode(s).length <= 32);

const labelArb: fc.Arbitrary<DiskLabel> = fc
  .record({
    memberCount: fc.integer({ min: 2, max: 32 }),
    generation: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
    pairId: id,
    volumeId: id,
    diskUuid: hex32,
    roleSel: fc.integer({ min: 0, max: 2 }),
    posSel: fc.nat(),
    unitPages: fc.integer({ min: 1, max: 1024 }),
    stripeCount: fc.nat({ max: 2 ** 40 }),
    cursorFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    uuids: fc.array(hex32, { minLength: 32, maxLength: 32 }),
    states: fc.array(fc.constantFrom('ok' as const, 'failed' as const, 'rebuilding' as const), { minLength: 32, maxLength: 32 }),
  })
  .map((r) => {
    const role = r.roleSel === 0 ? ('data' as const) : r.roleSel === 1 ? ('parity' as const) : ('spare' as const);
    const position = role === 'spare' ? sparePosition : role === 'parity' ? r.memberCount - 1 : r.posSel % (r.memberCount - 1);
    return {
      generation: r.generation,
      pairId: r.pairId,
      volumeId: r.volumeId,
      diskUuid: r.diskUuid,
      role,
      position,
      memberCount: r.memberCount,
      stripeUnitBytes: r.unitPages * 4096,
      stripeCount: r.stripeCount,
      rebuildCursorStripe: Math.floor(r.stripeCount * r.cursorFrac),
      members: r.uuids.slice(0, r.memberCount).map((uuid, i) => ({ uuid, state: r.states[i] ?? 'ok' })),
    };
  });

const sample: DiskLabel = {
  generation: 7,
  pairId: 'pair-01',
  volumeId: 'vol-a',
  diskUuid: '00112233445566778899aabbccddeeff',
  role: 'data',
  position: 1,
  memberCount: 4,
  stripeUnitBytes: 65536,
  stripeCount: 1000,
  rebuildCursorStripe: 0,
  members: [0, 1, 2, 3].map((i) => ({ uuid: `${i}`.repeat(32), state: 'ok' as const })),
};

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    return e.code;
  }
}

describe('disk label codec', () => {
  it('round-trips any valid label through a 4 KiB slot', () => {
    fc.assert(
      fc.property(labelArb, (l) => {
        const slot = encodeLabel(l);
        expect(slot.length).toBe(diskLayout.labelBytes);
        expect(decodeLabel(slot)).toEqual(l);
      }),
      { numRuns: 200 },
    );
  });

  it('starts with the magic "TBRL", version 1 and the record length, and ends the record with its CRC32C', () => {
    const slot = encodeLabel(sample);
    expect(new TextDecoder().decode(slot.subarray(0, 4))).toBe('TBRL');
    const v = new DataView(slot.buffer);
    expect(v.getUint16(4, true)).toBe(1);
    const n = labelRecordBytes(4);
    expect(v.getUint16(6, true)).toBe(n);
    expect(v.getUint32(n - 4, true)).toBe(crc32c(slot.subarray(0, n - 4)));
    expect(slot.subarray(n).every((b) => b === 0)).toBe(true);
  });

  it('detects a corrupted label by its checksum: any flipped bit in the record is ERR_LABEL_CRC (or a header check before it)', () => {
    const slot = encodeLabel(sample);
    const n = labelRecordBytes(sample.memberCount);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: n - 1 }), fc.integer({ min: 0, max: 7 }), (byte, bit) => {
        const bad = slot.slice();
        bad[byte] = (bad[byte] as number) ^ (1 << bit);
        const code = codeOf(() => decodeLabel(bad));
        // Bytes 0-7 and the member count are checked before the CRC; all else falls to the CRC.
        const header = byte < 8 || byte === 104 || byte === 105;
        if (header) expect([LabelErrorCode.magic, LabelErrorCode.version, LabelErrorCode.length, LabelErrorCode.crc]).toContain(code);
        else expect(code).toBe(LabelErrorCode.crc);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects garbage with a DecodeError and a stable code, never another exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 4096 }), (bytes) => {
        const code = codeOf(() => decodeLabel(bytes));
        expect(Object.values(LabelErrorCode)).toContain(code);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects garbage that carries the right magic, version and a valid CRC by field checks', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4096, maxLength: 4096 }), fc.integer({ min: 2, max: 32 }), (bytes, members) => {
        const v = new DataView(bytes.buffer);
        const n = labelRecordBytes(members);
        v.setUint32(0, 0x4c524254, true);
        v.setUint16(4, 1, true);
        v.setUint16(6, n, true);
        v.setUint16(104, members, true);
        v.setUint32(n - 4, crc32c(bytes.subarray(0, n - 4)), true);
        try {
          const l = decodeLabel(bytes);
          // If random bytes happen to form a valid label, it must re-encode to the same record.
          expect(encodeLabel(l).subarray(0, n)).toEqual(bytes.subarray(0, n));
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
          expect((e as DecodeError).code).toBe(LabelErrorCode.field);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('fits one 512-byte sector (atomic to write) up to 19 members; a label torn across sectors fails its CRC', () => {
    expect(labelRecordBytes(19)).toBe(512);
    const members = (n: number, state: 'ok' | 'failed'): DiskLabel['members'] => Array.from({ length: n }, (_, i) => ({ uuid: i.toString(16).padStart(32, '0'), state }));
    const before = encodeLabel({ ...sample, memberCount: 24, position: 3, members: members(24, 'ok') });
    const after = encodeLabel({ ...sample, memberCount: 24, position: 3, generation: 8, members: members(24, 'failed') });
    const torn = before.slice();
    torn.set(after.subarray(0, 512)); // the first sector landed, the second did not
    expect(codeOf(() => decodeLabel(torn))).toBe(LabelErrorCode.crc);
    const tornOtherWay = after.slice();
    tornOtherWay.set(before.subarray(0, 512));
    expect(codeOf(() => decodeLabel(tornOtherWay))).toBe(LabelErrorCode.crc);
  });

  it('names the reason: wrong magic, unknown version, impossible length', () => {
    const slot = encodeLabel(sample);
    const wrongMagic = slot.slice();
    wrongMagic[0] = 0x41;
    expect(codeOf(() => decodeLabel(wrongMagic))).toBe(LabelErrorCode.magic);
    const v2 = slot.slice();
    new DataView(v2.buffer).setUint16(4, 2, true);
    expect(codeOf(() => decodeLabel(v2))).toBe(LabelErrorCode.version);
    const longRecord = slot.slice();
    new DataView(longRecord.buffer).setUint16(6, 5000, true);
    expect(codeOf(() => decodeLabel(longRecord))).toBe(LabelErrorCode.length);
    expect(codeOf(() => decodeLabel(slot.subarray(0, 100)))).toBe(LabelErrorCode.length);
    expect(codeOf(() => decodeLabel(slot.subarray(0, labelRecordBytes(4) - 1)))).toBe(LabelErrorCode.length);
  });

  it('refuses to encode labels the format cannot hold', () => {
    const bad: Array<Partial<DiskLabel>> = [
      { pairId: '' },
      { volumeId: 'x'.repeat(33) },
      { pairId: 'a\0b' },
      { diskUuid: 'XYZ' },
      { memberCount: 1, members: [{ uuid: '0'.repeat(32), state: 'ok' }] },
      { memberCount: 33 },
      { stripeUnitBytes: 1000 },
      { role: 'parity', position: 1 },
      { role: 'spare', position: 0 },
      { role: 'data', position: 3 },
      { generation: -1 },
      { generation: 2 ** 60 },
      { rebuildCursorStripe: 1001 },
      { members: [] },
    ];
    for (const patch of bad) {
      expect(() => encodeLabel({ ...sample, ...patch }), JSON.stringify(patch)).toThrow(InvalidArgumentError);
    }
  });
});

class MemDisk implements BlockDevice {
  readonly sectorSize = 4096;
  readonly bytes: Uint8Array;
  failReads = false;
  constructor(
    readonly name: string,
    readonly sizeBytes: number,
  ) {
    this.bytes = new Uint8Array(sizeBytes);
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    if (this.failReads) return Promise.reject(new TwinbladeError('ERR_BLOCK_IO', 'io', `${this.name}: medium error`));
    return Promise.resolve(this.bytes.slice(offset, offset + length));
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    this.bytes.set(data, offset);
    return Promise.resolve();
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('reading a disk label', () => {
  it('classifies a blank disk, a labelled disk, a corrupted label and an unreadable disk', async () => {
    const d = new MemDisk('d0', 1 << 20);
    expect(await readLabel(d)).toEqual({ kind: 'blank' });
    await writeLabel(d, sample);
    expect(await readLabel(d)).toEqual({ kind: 'label', label: sample });
    d.bytes[60] = (d.bytes[60] as number) ^ 0x10;
    const corrupt = await readLabel(d);
    expect(corrupt.kind).toBe('invalid');
    expect(corrupt.kind === 'invalid' && corrupt.code).toBe(LabelErrorCode.crc);
    d.failReads = true;
    expect(await readLabel(d)).toMatchObject({ kind: 'unreadable', code: 'ERR_BLOCK_IO' });
  });

  it('writes only the label slot, never the mailbox region', async () => {
    const d = new MemDisk('d0', 2 << 20);
    d.bytes.fill(0xa5, diskLayout.labelBytes);
    await writeLabel(d, sample);
    expect(d.bytes.subarray(diskLayout.labelBytes).every((b) => b === 0xa5)).toBe(true);
  });
});
