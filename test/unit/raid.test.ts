// The RAID layer's pure parts: geometry, parity arithmetic, stripe locks, the rebuild
// token bucket, the assembly decision table over disk labels, and the write-intent record.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';
import { sparePosition, type DiskLabel, type LabelReadResult, type MemberState } from '../../firmware/ts/storage/label.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import { planAssembly, type AssemblyInput } from '../../firmware/ts/storage/raid/assemble.ts';
import { RaidError, RaidErrorCode } from '../../firmware/ts/storage/raid/errors.ts';
import { diskByteOffset, locateBlock, makeGeometry, stripesThatFit, volumeBlockOf } from '../../firmware/ts/storage/raid/geometry.ts';
import { StripeLocks } from '../../firmware/ts/storage/raid/stripe-lock.ts';
import { TokenBucket } from '../../firmware/ts/storage/raid/token-bucket.ts';
import { xorAll, xorInto } from '../../firmware/ts/storage/raid/xor.ts';
import { IntentErrorCode, decodeIntent, encodeIntent, intentRegionCountMax, intentRegionStripes } from '../../firmware/ts/storage/raid/intent.ts';
import { DecodeError } from '../../firmware/ts/core/errors.ts';

describe('RAID-4 geometry', () => {
  it('maps volume blocks unit by unit across the data disks, one stripe unit per disk per stripe', () => {
    const g = makeGeometry(4, 16384, 10); // 3 data disks, 4 blocks per unit
    expect(g.stripeBlocks).toBe(12);
    expect(g.blockCount).toBe(120);
    expect(g.parityPosition).toBe(3);
    expect(locateBlock(g, 0)).toEqual({ member: 0, diskBlock: 0 });
    expect(locateBlock(g, 3)).toEqual({ member: 0, diskBlock: 3 });
    expect(locateBlock(g, 4)).toEqual({ member: 1, diskBlock: 0 });
    expect(locateBlock(g, 11)).toEqual({ member: 2, diskBlock: 3 });
    expect(locateBlock(g, 12)).toEqual({ member: 0, diskBlock: 4 });
    expect(g.memberBytesMin).toBe(diskLayout.raidDataOffsetBytes + 10 * 16384);
    expect(diskByteOffset(0)).toBe(diskLayout.raidDataOffsetBytes);
  });

  it('is a bijection between volume blocks and data-disk blocks', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 9 }), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 50 }), fc.nat(), (members, unitPages, stripes, pick) => {
        const g = makeGeometry(members, unitPages * 4096, stripes);
        const b = pick % g.blockCount;
        const loc = locateBlock(g, b);
        expect(loc.member).toBeLessThan(g.dataDisks);
        expect(loc.diskBlock).toBeLessThan(stripes * g.unitBlocks);
        expect(volumeBlockOf(g, loc.member, loc.diskBlock)).toBe(b);
      }),
      { numRuns: 300 },
    );
  });

  it('sizes a volume by the stripes that fit after the reserved region', () => {
    expect(stripesThatFit(diskLayout.raidDataOffsetBytes - 1, 65536)).toBe(0);
    expect(stripesThatFit(diskLayout.raidDataOffsetBytes + 65536 * 3 + 100, 65536)).toBe(3);
  });

  it('refuses impossible geometries with ERR_RAID_BAD_CONFIG', () => {
    for (const [m, u, s] of [
      [1, 4096, 1],
      [3, 1000, 1],
      [3, 4096, 0],
      [2.5, 4096, 1],
    ] as const) {
      expect(() => makeGeometry(m, u, s)).toThrow(expect.objectContaining({ code: RaidErrorCode.badConfig }));
    }
  });
});

describe('parity arithmetic', () => {
  it('reconstructs any one missing buffer from the others and the parity', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 300 }), fc.nat(), fc.boolean(), (n, len, missing, unaligned) => {
        const bufs = Array.from({ length: n }, (_, i) => {
          const b = new Uint8Array(len + 1).map((_, j) => (i * 31 + j * 7 + len) & 0xff);
          return unaligned ? b.subarray(1) : b.subarray(0, len);
        });
        const parity = xorAll(bufs);
        const lost = missing % n;
        const others = bufs.filter((_, i) => i !== lost);
        expect(xorAll([...others, parity])).toEqual(bufs[lost]);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses buffers of different lengths', () => {
    expect(() => xorInto(new Uint8Array(4), new Uint8Array(5))).toThrow(RangeError);
    expect(() => xorAll([])).toThrow(RangeError);
  });
});

describe('stripe locks', () => {
  it('serializes overlapping ranges first come first served and lets disjoint ones run together', async () => {
    const locks = new StripeLocks();
    const order: string[] = [];
    const r1 = await locks.acquire(0, 4);
    const r2 = await locks.acquire(4, 8); // disjoint: granted at once
    expect(locks.heldCount).toBe(2);
    const p3 = locks.acquire(2, 6).then((r) => {
      order.push('3');
      return r;
    });
    const p4 = locks.acquire(5, 7).then((r) => {
      order.push('4');
      return r;
    });
    const p5 = locks.acquire(8, 9).then((r) => {
      order.push('5');
      return r;
    });
    await Promise.resolve();
    await p5; // disjoint from everything held and waiting
    expect(order).toEqual(['5']);
    r1();
    await Promise.resolve();
    expect(order).toEqual(['5']); // 3 still overlaps r2
    r2();
    const r3 = await p3;
    expect(order).toEqual(['5', '3']); // 4 waits behind 3, which it overlaps
    r3();
    r3(); // idempotent
    (await p4)();
    (await p5)();
    expect(locks.heldCount).toBe(0);
    expect(locks.waitingCount).toBe(0);
  });

  it('grants tryAcquire at once only when acquire would not wait, in the same order', async () => {
    const locks = new StripeLocks();
    const r1 = locks.tryAcquire(0, 4);
    expect(r1).toBeDefined();
    expect(locks.tryAcquire(3, 5)).toBeUndefined(); // overlaps a held range
    const waiter = locks.acquire(2, 6); // waits for [0, 4)
    const r2 = locks.tryAcquire(6, 7); // disjoint from what is held and what waits
    expect(r2).toBeDefined();
    expect(locks.tryAcquire(5, 6)).toBeUndefined(); // free, but must not overtake the waiter it overlaps
    expect(locks.waitingCount).toBe(1);
    r1?.();
    const r3 = await waiter;
    expect(locks.heldCount).toBe(2);
    r3();
    r2?.();
    expect(locks.tryAcquire(0, 9)).toBeDefined();
  });
});

describe('rebuild token bucket', () => {
  it('bounds the average rate on the injected clock', async () => {
    const vt = new VirtualTime();
    const bucket = new TokenBucket(vt.clock, vt.timers, 1_000_000, 100_000); // 1 MB/s, 100 kB burst
    let taken = 0;
    const job = (async () => {
      for (let i = 0; i < 50; i++) {
        await bucket.take(100_000);
        taken += 100_000;
      }
    })();
    let done = false;
    void job.then(() => (done = true));
    while (!done) {
      await new Promise((r) => setImmediate(r));
      if (!done) vt.runNext();
    }
    // 5 MB at 1 MB/s, starting from an empty bucket: 5 s of virtual time.
    expect(taken).toBe(5_000_000);
    expect(vt.clock.nowMs()).toBeGreaterThanOrEqual(4999);
    expect(vt.clock.nowMs()).toBeLessThanOrEqual(5001);
  });

  it('lets a take larger than the bucket through once the bucket is full, then waits off the debt', async () => {
    const vt = new VirtualTime();
    const bucket = new TokenBucket(vt.clock, vt.timers, 1000, 100);
    const steps: number[] = [];
    const job = (async () => {
      await bucket.take(1000); // waits for 100 tokens (0.1 s), leaves 900 of debt
      steps.push(vt.clock.nowMs());
      await bucket.take(10); // waits off the debt plus its own 10: 0.91 s
      steps.push(vt.clock.nowMs());
    })();
    let done = false;
    void job.then(() => (done = true));
    while (!done) {
      await new Promise((r) => setImmediate(r));
      if (!done) vt.runNext();
    }
    expect(steps[0]).toBeCloseTo(100, 3);
    expect(steps[1]).toBeCloseTo(1010, 3);
  });

  it('does not wait when unthrottled', async () => {
    const vt = new VirtualTime();
    const bucket = new TokenBucket(vt.clock, vt.timers, Infinity, 0);
    for (let i = 0; i < 10; i++) await bucket.take(1e9);
    expect(vt.queue.size).toBe(0);
  });
});

// ---- assembly decision table

const P = 'pair-1';
const V = 'vol-a';
const uuid = (n: number): string => n.toString(16).padStart(32, '0');

function label(disk: number, gen: number, table: Array<[number, MemberState]>, patch: Partial<DiskLabel> = {}): DiskLabel {
  const position = table.findIndex(([u]) => u === disk);
  const memberCount = table.length;
  return {
    generation: gen,
    pairId: P,
    volumeId: V,
    diskUuid: uuid(disk),
    role: position < 0 ? 'spare' : position === memberCount - 1 ? 'parity' : 'data',
    position: position < 0 ? sparePosition : position,
    memberCount,
    stripeUnitBytes: 65536,
    stripeCount: 100,
    rebuildCursorStripe: 0,
    members: table.map(([u, state]) => ({ uuid: uuid(u), state })),
    ...patch,
  };
}

const ok3: Array<[number, MemberState]> = [
  [1, 'ok'],
  [2, 'ok'],
  [3, 'ok'],
];
const lab = (l: DiskLabel): LabelReadResult => ({ kind: 'label', label: l });
const inputs = (...reads: LabelReadResult[]): AssemblyInput[] => reads.map((read, i) => ({ name: `d${i}`, read }));

function assemblyError(f: () => unknown): RaidError {
  try {
    f();
  } catch (e) {
    if (e instanceof RaidError) return e;
    throw e;
  }
  throw new Error('expected a RaidError');
}

describe('assembly from labels', () => {
  it('assembles all members in table order, whatever order the disks come in', () => {
    const plan = planAssembly(inputs(lab(label(3, 1, ok3)), lab(label(1, 1, ok3)), lab(label(2, 1, ok3))), P, V);
    expect(plan.members.map((m) => m?.disk)).toEqual([1, 2, 0]);
    expect(plan.verdicts.map((v) => v.use)).toEqual(['member', 'member', 'member']);
  });

  it('opens degraded with one member missing, and refuses with two missing (ERR_RAID_MEMBERS_MISSING)', () => {
    const plan = planAssembly(inputs(lab(label(1, 1, ok3)), lab(label(3, 1, ok3))), P, V);
    expect(plan.members[1]).toBeUndefined();
    const e = assemblyError(() => planAssembly(inputs(lab(label(1, 1, ok3))), P, V));
    expect(e.code).toBe(RaidErrorCode.membersMissing);
  });

  it('rejects a foreign disk, a disk of another pair, a blank disk and a corrupted label, and reports each', () => {
    const plan = planAssembly(
      inputs(
        lab(label(1, 1, ok3)),
        lab(label(2, 1, ok3)),
        lab(label(3, 1, ok3, { volumeId: 'vol-b' })),
        lab(label(3, 1, ok3, { pairId: 'pair-2' })),
        { kind: 'blank' },
        { kind: 'invalid', code: 'ERR_LABEL_CRC', message: 'checksum mismatch' },
        { kind: 'unreadable', code: 'ERR_BLOCK_IO', message: 'medium error' },
      ),
      P,
      V,
    );
    expect(plan.members[2]).toBeUndefined();
    expect(plan.verdicts.slice(2).map((v) => v.code)).toEqual([
      RaidErrorCode.foreignDisk,
      RaidErrorCode.foreignDisk,
      RaidErrorCode.noLabel,
      'ERR_LABEL_CRC',
      'ERR_BLOCK_IO',
    ]);
  });

  it('rejects a member that was failed out (stale generation) even when its own label still says ok', () => {
    const failed: Array<[number, MemberState]> = [
      [1, 'ok'],
      [2, 'failed'],
      [3, 'ok'],
    ];
    const plan = planAssembly(inputs(lab(label(1, 2, failed)), lab(label(2, 1, ok3)), lab(label(3, 2, failed))), P, V);
    expect(plan.members[1]).toBeUndefined();
    expect(plan.verdicts[1]?.code).toBe(RaidErrorCode.staleMember);
    expect(plan.tableStates).toEqual(['ok', 'failed', 'ok']);
  });

  it('rejects the replaced disk after a rebuild and uses the new one', () => {
    const rebuilt: Array<[number, MemberState]> = [
      [1, 'ok'],
      [9, 'ok'],
      [3, 'ok'],
    ];
    const plan = planAssembly(inputs(lab(label(1, 4, rebuilt)), lab(label(2, 1, ok3)), lab(label(3, 4, rebuilt)), lab(label(9, 4, rebuilt))), P, V);
    expect(plan.members[1]?.disk).toBe(3);
    expect(plan.verdicts[1]?.code).toBe(RaidErrorCode.staleMember);
  });

  it('trusts any one label of the newest generation: survivors whose label update was cut short still count', () => {
    const failed: Array<[number, MemberState]> = [
      [1, 'ok'],
      [2, 'failed'],
      [3, 'ok'],
    ];
    // Only disk 3 got the generation-2 label before the power cut.
    const plan = planAssembly(inputs(lab(label(1, 1, ok3)), lab(label(2, 1, ok3)), lab(label(3, 2, failed))), P, V);
    expect(plan.members.map((m) => m?.disk)).toEqual([0, undefined, 2]);
    expect(plan.verdicts[1]?.code).toBe(RaidErrorCode.staleMember);
  });

  it('resumes a rebuild from the checkpoint in the new disk\'s own label, or from 0 if it still has its spare label', () => {
    const rebuilding: Array<[number, MemberState]> = [
      [1, 'ok'],
      [9, 'rebuilding'],
      [3, 'ok'],
    ];
    const withCheckpoint = planAssembly(inputs(lab(label(1, 2, rebuilding)), lab(label(9, 2, rebuilding, { rebuildCursorStripe: 40 })), lab(label(3, 2, rebuilding))), P, V);
    expect(withCheckpoint.members[1]).toMatchObject({ disk: 1, state: 'rebuilding', rebuildCursorStripe: 40 });
    const spareLabel = label(9, 1, ok3);
    expect(spareLabel.role).toBe('spare');
    const fresh = planAssembly(inputs(lab(label(1, 2, rebuilding)), lab(spareLabel), lab(label(3, 2, rebuilding))), P, V);
    expect(fresh.members[1]).toMatchObject({ disk: 1, state: 'rebuilding', rebuildCursorStripe: 0 });
  });

  it('refuses to run with a member missing while another is still being rebuilt', () => {
    const rebuilding: Array<[number, MemberState]> = [
      [1, 'ok'],
      [9, 'rebuilding'],
      [3, 'ok'],
    ];
    const e = assemblyError(() => planAssembly(inputs(lab(label(1, 2, rebuilding)), lab(label(9, 2, rebuilding))), P, V));
    expect(e.code).toBe(RaidErrorCode.membersMissing);
    expect(e.disks.map((d) => d.use)).toEqual(['member', 'member']);
  });

  it('keeps spares of this volume as spares', () => {
    const plan = planAssembly(inputs(lab(label(1, 1, ok3)), lab(label(2, 1, ok3)), lab(label(3, 1, ok3)), lab(label(7, 1, ok3))), P, V);
    expect(plan.spares).toEqual([{ disk: 3, uuid: uuid(7) }]);
    expect(plan.verdicts[3]?.use).toBe('spare');
  });

  it('refuses two disks with the same uuid, and two newest labels that disagree (ERR_RAID_LABEL_CONFLICT)', () => {
    expect(assemblyError(() => planAssembly(inputs(lab(label(1, 1, ok3)), lab(label(1, 1, ok3)), lab(label(2, 1, ok3))), P, V)).code).toBe(RaidErrorCode.labelConflict);
    const other: Array<[number, MemberState]> = [
      [1, 'ok'],
      [2, 'failed'],
      [3, 'ok'],
    ];
    expect(assemblyError(() => planAssembly(inputs(lab(label(1, 2, ok3)), lab(label(3, 2, other))), P, V)).code).toBe(RaidErrorCode.labelConflict);
  });

  it('reports a disk whose label position disagrees with the member table', () => {
    const plan = planAssembly(inputs(lab(label(1, 1, ok3)), lab(label(2, 1, ok3, { position: 0 })), lab(label(3, 1, ok3))), P, V);
    expect(plan.verdicts[1]?.code).toBe(RaidErrorCode.labelConflict);
    expect(plan.members[1]).toBeUndefined();
  });

  it('never throws anything but a RaidError for any mix of labels', () => {
    const arbRead: fc.Arbitrary<LabelReadResult> = fc.oneof(
      fc.constant<LabelReadResult>({ kind: 'blank' }),
      fc.constant<LabelReadResult>({ kind: 'invalid', code: 'ERR_LABEL_CRC', message: 'x' }),
      fc
        .record({
          disk: fc.integer({ min: 1, max: 6 }),
          gen: fc.integer({ min: 1, max: 4 }),
          table: fc.array(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.constantFrom<MemberState>('ok', 'failed', 'rebuilding')), { minLength: 3, maxLength: 3 }),
          cursor: fc.integer({ min: 0, max: 100 }),
        })
        .map(({ disk, gen, table, cursor }) => lab(label(disk, gen, table, { rebuildCursorStripe: cursor }))),
    );
    fc.assert(
      fc.property(fc.array(arbRead, { maxLength: 6 }), (reads) => {
        try {
          const plan = planAssembly(inputs(...reads), P, V);
          expect(plan.members.filter((m) => m === undefined || m.state !== 'ok').length).toBeLessThanOrEqual(1);
          const used = plan.members.flatMap((m) => (m === undefined ? [] : [m.disk]));
          expect(new Set(used).size).toBe(used.length);
        } catch (e) {
          expect(e).toBeInstanceOf(RaidError);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('write-intent record', () => {
  it('round-trips any bitmap that fits, in a 4 KiB slot', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 32 - 1 }), fc.array(fc.boolean(), { maxLength: 2000 }), (regionStripes, dirty) => {
        const slot = encodeIntent({ regionStripes, dirty });
        expect(slot.length).toBe(diskLayout.raidIntentBytes);
        expect(decodeIntent(slot)).toEqual({ regionStripes, dirty });
      }),
      { numRuns: 200 },
    );
    const full = Array.from({ length: intentRegionCountMax }, (_, i) => i % 3 === 0);
    expect(decodeIntent(encodeIntent({ regionStripes: 7, dirty: full })).dirty).toEqual(full);
    expect(() => encodeIntent({ regionStripes: 1, dirty: [...full, true] })).toThrow(expect.objectContaining({ code: IntentErrorCode.invalid }));
    expect(() => encodeIntent({ regionStripes: 0, dirty: [] })).toThrow(expect.objectContaining({ code: IntentErrorCode.invalid }));
  });

  it('detects corruption by its checksum and rejects garbage with stable codes only', () => {
    const slot = encodeIntent({ regionStripes: 16, dirty: [true, false, true, true, false, false, false, false, true] });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 16 + 2 + 4 - 1 }), fc.integer({ min: 0, max: 7 }), (byte, bit) => {
        const bad = slot.slice();
        bad[byte] = (bad[byte] as number) ^ (1 << bit);
        expect(() => decodeIntent(bad)).toThrow(DecodeError);
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => {
        try {
          decodeIntent(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
          expect(Object.values(IntentErrorCode)).toContain((e as DecodeError).code);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('sizes regions to the target bytes per member, with few enough regions for one record', () => {
    expect(intentRegionStripes(1000, 65536, 64 * 1024 * 1024)).toBe(1024);
    expect(intentRegionStripes(1000, 65536, 1)).toBe(1);
    expect(intentRegionStripes(10 * intentRegionCountMax, 65536, 1)).toBe(10);
  });
});
