// The fence contract (firmware/ts/ha/fence.ts, SPEC ST-4), run against every driver: the
// simulator's recording SCSI-3 fence and the GPIO 2:1 MUX fence over simulated GPIO lines.
// Plus the simulated fence's oracle (the record the simulation's checkers read).
import { describe, expect, it } from 'vitest';
import { SimFenceArray } from '../../firmware/ts/ha/fence-sim.ts';
import { GpioMuxFence, type MuxLines } from '../../firmware/ts/ha/fence-gpio-mux.ts';
import { FenceErrorCode, fenceSet, type Fence } from '../../firmware/ts/ha/fence.ts';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';
import { SimGpioChip } from '../../firmware/ts/hal/gpio/sim/sim-gpio.ts';
import { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';

interface Rig {
  fences: [Fence, Fence];
  /** Disks start selected to / reserved by their owner: disk 0 is blade 0's, disk 1 blade 1's. */
  startsOwned: boolean;
  /** Two preempts at once: exactly one wins (reservations), or the read-back tells (MUX). */
  hasFreeState: boolean;
  failDisk?: (disk: number) => void;
}

function simRig(): Rig {
  const array = new SimFenceArray(2);
  return { fences: [array.forBlade(0), array.forBlade(1)], startsOwned: false, hasFreeState: true };
}

/**
 * Two MUXes on one simulated GPIO chip. Per disk d: line 4d is blade 0's claim, 4d+1 blade
 * 1's claim, 4d+2 and 4d+3 the two blades' sense inputs; a rising claim sets the latch.
 */
function muxRig(): Rig {
  const vt = new VirtualTime();
  const chip = new SimGpioChip({ timers: vt.timers }, 'mux-board', 8);
  const lines: [Map<number, MuxLines>, Map<number, MuxLines>] = [new Map(), new Map()];
  for (const d of [0, 1]) {
    const latch = (blade: 0 | 1): void => {
      chip.drive(4 * d + 2, blade);
      chip.drive(4 * d + 3, blade);
    };
    latch(d as 0 | 1); // power-on default: each blade's own disks select to it
    for (const b of [0, 1] as const) {
      chip.onOutput(4 * d + b, (level) => {
        if (level === 1) latch(b);
      });
      lines[b].set(d, {
        claim: chip.open(4 * d + b, { direction: 'out', name: `mux${d}-claim${b}` }),
        sense: chip.open(4 * d + 2 + b, { direction: 'in', name: `mux${d}-sense${b}` }),
      });
    }
  }
  return {
    fences: [new GpioMuxFence({ bladeIndex: 0, muxes: lines[0] }), new GpioMuxFence({ bladeIndex: 1, muxes: lines[1] })],
    startsOwned: true,
    hasFreeState: false,
    failDisk: (d) => {
      chip.setFailed(4 * d + 2, true);
      chip.setFailed(4 * d, true);
    },
  };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isTwinbladeError(e) ? e.code : 'not-a-twinblade-error';
  }
}

for (const [name, make] of [
  ['sim (SCSI-3 write exclusive)', simRig],
  ['gpio-mux', muxRig],
] as const) {
  describe(`fence contract: ${name}`, () => {
    it('ST-4 reserve succeeds for the owner, again idempotently, and conflicts for the partner', async () => {
      const { fences } = make();
      const [a, b] = fences;
      await a.register(0);
      await a.reserve(0);
      await a.reserve(0);
      expect(await a.holder(0)).toBe(0);
      expect(await b.holder(0)).toBe(0);
      expect(await codeOf(b.reserve(0))).toBe(FenceErrorCode.conflict);
    });

    it('ST-4 preempt takes the disk from the partner, whose reserve then conflicts', async () => {
      const { fences } = make();
      const [a, b] = fences;
      await a.reserve(0);
      await b.register(0);
      await b.preempt(0);
      expect(await a.holder(0)).toBe(1);
      expect(await codeOf(a.reserve(0))).toBe(FenceErrorCode.conflict);
    });

    it('release by a non-holder does nothing', async () => {
      const { fences } = make();
      const [a, b] = fences;
      await a.reserve(0);
      await b.release(0);
      expect(await a.holder(0)).toBe(0);
    });

    it('refuses a disk it does not control with a stable code', async () => {
      const { fences } = make();
      expect(await codeOf(fences[0].reserve(7))).toBe(FenceErrorCode.unknownDisk);
    });

    it('applies a command to a whole set in order', async () => {
      const { fences, startsOwned } = make();
      if (!startsOwned) await fenceSet(fences[1], 'reserve', [1]);
      await fenceSet(fences[0], 'register', [0, 1]);
      await fenceSet(fences[0], 'preempt', [0, 1]);
      expect(await fences[1].holder(0)).toBe(0);
      expect(await fences[1].holder(1)).toBe(0);
    });
  });
}

describe('fence drivers: differences the HA layer relies on', () => {
  it('sim: of two blades preempting each other, exactly one wins (registration is removed)', async () => {
    const { fences } = simRig();
    const [a, b] = fences;
    await a.register(0);
    await b.register(0);
    await a.preempt(0);
    expect(await codeOf(b.preempt(0))).toBe(FenceErrorCode.notRegistered);
    expect(await a.holder(0)).toBe(0);
    // After a reboot the loser registers again (step 251) and may preempt again later.
    await b.register(0);
    await b.preempt(0);
    expect(await a.holder(0)).toBe(1);
  });

  it('sim: release leaves the disk free; the MUX has no free position', async () => {
    const sim = simRig();
    await sim.fences[0].reserve(0);
    await sim.fences[0].release(0);
    expect(await sim.fences[0].holder(0)).toBeUndefined();
    const mux = muxRig();
    await mux.fences[0].release(0);
    expect(await mux.fences[0].holder(0)).toBe(0);
    expect(mux.fences[0].readsUnheldDisks).toBe(false);
    expect(sim.fences[0].readsUnheldDisks).toBe(true);
  });

  it('gpio-mux: a failed MUX line is an I/O error, not a conflict', async () => {
    const mux = muxRig();
    mux.failDisk?.(0);
    expect(await codeOf(mux.fences[0].reserve(0))).toBe(FenceErrorCode.io);
    expect(await codeOf(mux.fences[0].preempt(0))).toBe(FenceErrorCode.io);
  });
});

describe('sim fence oracle', () => {
  it('ST-4 records refused writes from a blade that does not hold the disk', () => {
    const f = new SimFenceArray(1, () => 5);
    f.reserve(0, 0);
    expect(f.write(0, 0)).toBe(true);
    f.register(0, 1);
    f.preempt(0, 1);
    expect(f.write(0, 0)).toBe(false);
    expect(f.fencedWrites).toEqual([{ disk: 0, blade: 0, holder: 1, atMs: 5 }]);
    expect(f.violations).toEqual([]);
  });

  it('flags two blades writing one unreserved disk in the same epoch (the split brain a reservation prevents)', () => {
    const f = new SimFenceArray(1);
    f.register(0, 0);
    f.register(0, 1);
    expect(f.write(0, 0)).toBe(true);
    expect(f.write(0, 1)).toBe(true);
    expect(f.violations).toHaveLength(1);
    expect(f.violations[0]?.blades).toEqual([0, 1]);
  });

  it('an unregistered blade cannot write even an unreserved disk', () => {
    const f = new SimFenceArray(1);
    expect(f.write(0, 1)).toBe(false);
  });
});
