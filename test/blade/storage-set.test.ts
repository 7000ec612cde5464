// The blade's storage set on simulated disks: a member that dies is rebuilt onto the spare,
// and a replaced disk (the dead one readable again, or a blank one) becomes the new spare
// without an operator; a disk holding anything else is reported and never formatted.
import { afterEach, describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { realClock, realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { openStorageSet, type StorageSet } from '../../firmware/ts/blade/storage-set.ts';
import { readLabel } from '../../firmware/ts/storage/label.ts';
import { diskLayout } from '../../firmware/ts/storage/layout.ts';
import type { RaidEvent } from '../../firmware/ts/storage/raid/index.ts';

const diskBytes = 12 * 1024 * 1024;
const probeMs = 20;

function disks(names: string[]): SimBlockDevice[] {
  return names.map((name, i) => new SimBlockDevice({ timers: realTimers, prng: new Prng(100 + i), sizeBytes: diskBytes, name, latency: { readMs: 0, writeMs: 0, flushMs: 0, jitterMs: 0 } }));
}

async function open(members: SimBlockDevice[], spares: SimBlockDevice[], events: RaidEvent[], refused: string[] = []): Promise<StorageSet> {
  return openStorageSet(members, spares, {
    pairId: 'test',
    blade: 'a',
    clock: realClock,
    timers: realTimers,
    prng: new Prng(7),
    cpIntervalMs: 60_000,
    formatIfBlank: true,
    now: () => ({ sec: 1_800_000_000, nsec: 0 }),
    onRaidEvent: (e) => events.push(e),
    onDiskRefused: (disk, message) => refused.push(`${disk}: ${message}`),
    replacedDiskProbeIntervalMs: probeMs,
  });
}

/** Polls `pred` (no timing assertion: the deadline only bounds a hung test). */
async function until(what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Writes the volume's last stripe, so that every member (the dead one too) sees a write. */
async function touchLastStripe(set: StorageSet, fill: number): Promise<void> {
  const v = set.volume;
  const first = Math.floor(v.blockCount / v.stripeBlocks - 1) * v.stripeBlocks;
  await v.writeStripes(first, new Uint8Array(v.stripeBlocks * v.blockSize).fill(fill));
  await v.flush();
}

const layoutOf = (set: StorageSet): string[] => set.volume.status().disks.map((d) => `${d.role}:${d.name}:${d.state}`);

describe('storage set: hot spare and replaced disks', () => {
  let set: StorageSet | undefined;
  afterEach(async () => {
    await set?.close();
    set = undefined;
  });

  it('ST-2 a dead member is rebuilt onto the spare; healed, it becomes the new spare and carries the next rebuild', async () => {
    const [d0, d1, dp, ds] = disks(['d0', 'd1', 'dp', 'ds']) as [SimBlockDevice, SimBlockDevice, SimBlockDevice, SimBlockDevice];
    const events: RaidEvent[] = [];
    set = await open([d0, d1, dp], [ds], events);
    expect(set.formatted).toBe(true);
    const s = set;
    expect(layoutOf(s)).toEqual(['data:d0:ok', 'data:d1:ok', 'parity:dp:ok', 'spare:ds:ok']);

    d1.fail();
    await touchLastStripe(s, 0x11);
    await s.volume.whenRebuildDone();
    expect(layoutOf(s)).toEqual(['data:d0:ok', 'data:ds:ok', 'parity:dp:ok']);
    // Still dead: probing it changes nothing.
    await new Promise((r) => setTimeout(r, probeMs * 5));
    expect(layoutOf(s)).toEqual(['data:d0:ok', 'data:ds:ok', 'parity:dp:ok']);

    d1.heal();
    await until('d1 adopted as the spare', () => layoutOf(s).includes('spare:d1:ok'));
    const label = await readLabel(d1);
    expect(label.kind === 'label' && label.label.role).toBe('spare');

    ds.fail();
    await touchLastStripe(s, 0x22);
    await until('the rebuild onto d1 done', () => s.volume.status().state === 'normal' && layoutOf(s).includes('data:d1:ok'));
    expect(layoutOf(s)).toEqual(['data:d0:ok', 'data:d1:ok', 'parity:dp:ok']);
    const v = s.volume;
    const last = await v.readBlocks(Math.floor(v.blockCount / v.stripeBlocks - 1) * v.stripeBlocks, v.stripeBlocks);
    expect(last.every((b) => b === 0x22)).toBe(true);
    expect(events.filter((e) => e.type === 'spare-added').map((e) => (e as { disk: string }).disk)).toEqual(['d1']);
    expect(events.some((e) => e.type === 'rebuild-done' && e.disk === 'd1')).toBe(true);
  });

  it('ST-2 without a spare a dead member stays failed until its bay holds a disk again; the set adopts it while open and rebuilds it', async () => {
    const [d0, d1, dp] = disks(['d0', 'd1', 'dp']) as [SimBlockDevice, SimBlockDevice, SimBlockDevice];
    const events: RaidEvent[] = [];
    set = await open([d0, d1, dp], [], events);
    const s = set;
    d1.fail();
    await touchLastStripe(s, 0x33);
    expect(s.volume.status().state).toBe('degraded');
    // Still dead: the probe's addSpare fails with an I/O error and is tried again later.
    await new Promise((r) => setTimeout(r, probeMs * 3));
    expect(layoutOf(s)).toEqual(['data:d0:ok', 'data:d1:failed', 'parity:dp:ok']);
    // The swap: a new, blank disk in d1's bay (the handle stays, the medium is new). The
    // volume takes it back into its failed position (RaidVolume.addSpare) and rebuilds it.
    d1.poke(0, new Uint8Array(diskLayout.raidDataOffsetBytes));
    d1.heal();
    await until('d1 adopted and rebuilt', () => s.volume.status().state === 'normal');
    expect(layoutOf(s)).toEqual(['data:d0:ok', 'data:d1:ok', 'parity:dp:ok']);
    const v = s.volume;
    const last = await v.readBlocks(Math.floor(v.blockCount / v.stripeBlocks - 1) * v.stripeBlocks, v.stripeBlocks);
    expect(last.every((b) => b === 0x33)).toBe(true);
  });

  it('a disk swapped in holding another volume is reported once and never formatted', async () => {
    const [d0, d1, dp, other] = disks(['d0', 'd1', 'dp', 'x']) as [SimBlockDevice, SimBlockDevice, SimBlockDevice, SimBlockDevice];
    // `other` is a member of blade b's volume.
    const foreign = await openStorageSet([other, ...disks(['y', 'z'])], [], {
      pairId: 'test',
      blade: 'b',
      clock: realClock,
      timers: realTimers,
      prng: new Prng(9),
      cpIntervalMs: 60_000,
      formatIfBlank: true,
      now: () => ({ sec: 1_800_000_000, nsec: 0 }),
      replacedDiskProbeIntervalMs: 0,
    });
    await foreign.close();
    const refused: string[] = [];
    const [ds] = disks(['ds']) as [SimBlockDevice];
    set = await open([d0, d1, dp], [ds], [], refused);
    const s = set;
    d1.fail();
    await touchLastStripe(s, 0x44);
    await s.volume.whenRebuildDone();
    // The swap: d1's bay now holds a copy of b's disk.
    const theirs = other.peek(0, diskLayout.raidDataOffsetBytes);
    d1.poke(0, theirs);
    d1.heal();
    await until('the refusal reported', () => refused.length > 0);
    await new Promise((r) => setTimeout(r, probeMs * 5));
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/^d1: .*vol-b/);
    expect(Buffer.from(d1.peek(0, diskLayout.raidDataOffsetBytes)).equals(theirs)).toBe(true);
    expect(layoutOf(s)).toEqual(['data:d0:ok', 'data:ds:ok', 'parity:dp:ok']);
  });
});
