// The simulated NVRAM: the Nvram contract, and its power model (NV-7): content survives a
// power cut while the battery is good, only the last unpersisted write tears (in whole 8-byte
// words), and a failed battery loses everything.
import { describe, expect, it } from 'vitest';
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
