// The simulated NVRAM: the Nvram contract, and its power model (NV-7): content survives a
// power cut while the battery is good, only the last unpersisted write tears (in whole 8-byte
// words), and a failed battery loses everything.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nvramContract } from '../contract/nvram.contract.ts';
import { SimNvram } from '../../firmware/ts/hal/nvram/sim/sim-nvram.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';

nvramContract('sim', async () => {
  const nvram = new SimNvram({ sizeBytes: 64 * 1024, prng: new Prng(5) });
  return { nvram, reopen: async () => nvram.reopen() };
});

describe('SimNvram power model', () => {
  it('NV-7 keeps persisted content across a power cut while the battery is good', async () => {
    const nv = new SimNvram({ sizeBytes: 4096, prng: new Prng(1) });
    nv.write(0, new Uint8Array(100).fill(3));
    await nv.persist();
    expect(nv.powerCut()).toEqual({ lost: false, tornBytes: 0 });
    expect(nv.read(0, 100).every((b) => b === 3)).toBe(true);
  });

  it('tears only the last unpersisted write, in whole aligned 8-byte words', async () => {
    let sawTorn = false;
    for (let seed = 1; seed <= 20; seed++) {
      const nv = new SimNvram({ sizeBytes: 4096, prng: new Prng(seed) });
      nv.write(0, new Uint8Array(64).fill(1));
      nv.write(100, new Uint8Array(64).fill(2)); // earlier unpersisted: kept
      nv.write(203, new Uint8Array(45).fill(3)); // last: may tear
      expect(nv.unpersistedBytes).toBe(45);
      const report = nv.powerCut();
      expect(report.lost).toBe(false);
      expect(nv.read(0, 64).every((b) => b === 1)).toBe(true);
      expect(nv.read(100, 64).every((b) => b === 2)).toBe(true);
      const region = nv.read(203, 45);
      let reverted = 0;
      for (let pos = 203; pos < 248; ) {
        const end = Math.min(248, (Math.floor(pos / 8) + 1) * 8);
        const word = region.subarray(pos - 203, end - 203);
        expect(new Set(word).size).toBe(1);
        if (word[0] === 0) reverted += word.length;
        pos = end;
      }
      expect(reverted).toBe(report.tornBytes);
      if (report.tornBytes > 0 && report.tornBytes < 45) sawTorn = true;
    }
    expect(sawTorn).toBe(true);
  });

  it('NV-6 tears a gather write (writeParts) as one write: whole words of the joined range, old or new', async () => {
    let sawTorn = false;
    for (let seed = 1; seed <= 20; seed++) {
      const nv = new SimNvram({ sizeBytes: 4096, prng: new Prng(seed) });
      nv.write(0, new Uint8Array(96).fill(9));
      await nv.persist();
      // 3 + 50 + 11 bytes from offset 16: parts that do not start or end on words.
      nv.writeParts(16, [new Uint8Array(3).fill(1), new Uint8Array(50).fill(2), new Uint8Array(11).fill(3)]);
      expect(nv.unpersistedBytes).toBe(64);
      const joined = [...new Uint8Array(3).fill(1), ...new Uint8Array(50).fill(2), ...new Uint8Array(11).fill(3)];
      const r = nv.powerCut();
      const after = nv.read(16, 64);
      for (let w = 0; w < 64; w += 8) {
        const word = [...after.subarray(w, w + 8)];
        const isNew = word.every((b, i) => b === joined[w + i]);
        const isOld = word.every((b) => b === 9);
        expect(isNew || isOld).toBe(true);
        if (isOld) sawTorn = true;
      }
      expect(r.tornBytes % 8).toBe(0);
    }
    expect(sawTorn).toBe(true);
  });

  it('never tears an aligned 8-byte store', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const nv = new SimNvram({ sizeBytes: 64, prng: new Prng(seed) });
      nv.write(16, new Uint8Array(8).fill(0xff));
      nv.powerCut();
      const word = nv.read(16, 8);
      expect(word.every((b) => b === 0xff) || word.every((b) => b === 0)).toBe(true);
    }
  });

  it('does not tear what a persist covered, even partly', async () => {
    const nv = new SimNvram({ sizeBytes: 4096, prng: new Prng(2) });
    nv.write(0, new Uint8Array(256).fill(9));
    await nv.persist(64, 128);
    expect(nv.unpersistedBytes).toBe(128);
    nv.powerCut();
    expect(nv.read(64, 128).every((b) => b === 9)).toBe(true);
  });

  it('NV-7 loses everything at a power cut while the battery has failed', async () => {
    const nv = new SimNvram({ sizeBytes: 4096, prng: new Prng(3) });
    nv.write(0, new Uint8Array(4096).fill(0x42));
    await nv.persist();
    nv.batteryFailed = true;
    expect(nv.powerCut()).toEqual({ lost: true, tornBytes: 0 });
    expect(nv.read(0, 4096).filter((b) => b === 0x42).length).toBeLessThan(100);
    const zeros = new SimNvram({ sizeBytes: 64, prng: new Prng(3), lostContent: 'zeros' });
    zeros.write(0, new Uint8Array(64).fill(1));
    zeros.batteryFailed = true;
    zeros.powerCut();
    expect(zeros.read(0, 64).every((b) => b === 0)).toBe(true);
    expect(zeros.powerCutCount).toBe(1);
  });

  it('shares memory and battery state between handles (a reboot reopens it)', async () => {
    const nv = new SimNvram({ sizeBytes: 128, prng: new Prng(4), name: 'nv-a' });
    nv.write(0, Uint8Array.of(1, 2, 3));
    const after = nv.reopen('nv-a@boot2');
    await nv.close();
    expect([...after.read(0, 3)]).toEqual([1, 2, 3]);
    after.batteryFailed = true;
    expect(nv.batteryFailed).toBe(true);
  });

  it('NV-6/NV-7 model check: a power cut changes nothing but whole aligned words of the last unpersisted write', async () => {
    const size = 256;
    type Op = { kind: 'write'; at: number; data: Uint8Array } | { kind: 'persist' } | { kind: 'cut' };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ kind: fc.constant('write' as const), at: fc.nat(size - 1), data: fc.uint8Array({ minLength: 1, maxLength: 40 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('persist' as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const) }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1_000_000 }), fc.array(opArb, { maxLength: 30 }), async (seed, ops) => {
        const nv = new SimNvram({ sizeBytes: size, prng: new Prng(seed) });
        const model = new Uint8Array(size);
        let last: { at: number; before: Uint8Array; after: Uint8Array } | undefined;
        for (const op of ops) {
          if (op.kind === 'write') {
            const data = op.data.subarray(0, size - op.at);
            last = { at: op.at, before: model.slice(op.at, op.at + data.length), after: data.slice() };
            nv.write(op.at, data);
            model.set(data, op.at);
          } else if (op.kind === 'persist') {
            await nv.persist();
            last = undefined;
          } else {
            nv.powerCut();
            const got = nv.read(0, size);
            for (let i = 0; i < size; i++) {
              const inLast = last !== undefined && i >= last.at && i < last.at + last.after.length;
              if (!inLast) expect(got[i]).toBe(model[i]);
            }
            if (last !== undefined) {
              const { at, before, after } = last;
              for (let pos = at; pos < at + after.length; ) {
                const end = Math.min(at + after.length, (Math.floor(pos / 8) + 1) * 8);
                const word = got.subarray(pos, end);
                const isNew = word.every((b, k) => b === after[pos - at + k]);
                const isOld = word.every((b, k) => b === before[pos - at + k]);
                expect(isNew || isOld).toBe(true);
                pos = end;
              }
            }
            model.set(got);
            last = undefined;
          }
        }
      }),
      { numRuns: 100 },
    );
  });

  it('never lets a power cut undo a poke (it is stored as persisted)', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const nv = new SimNvram({ sizeBytes: 128, prng: new Prng(seed) });
      nv.write(0, new Uint8Array(64).fill(1));
      nv.poke(8, new Uint8Array(16).fill(9));
      nv.powerCut();
      expect(nv.read(8, 16).every((b) => b === 9)).toBe(true);
    }
  });

  it('has a back door for checkers and corruption', () => {
    const nv = new SimNvram({ sizeBytes: 128, prng: new Prng(6) });
    nv.poke(10, Uint8Array.of(7, 7));
    expect([...nv.peek(10, 2)]).toEqual([7, 7]);
    nv.corrupt(20, 8);
    expect(nv.peek(20, 8).some((b) => b !== 0)).toBe(true);
    expect(() => nv.poke(127, Uint8Array.of(1, 2))).toThrow(TwinbladeError);
    expect(() => new SimNvram({ sizeBytes: 0, prng: new Prng(1) })).toThrow(TwinbladeError);
  });
});
