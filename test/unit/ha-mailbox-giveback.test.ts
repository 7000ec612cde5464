// The late mailbox write after a giveback (ST-4, HA-9): mailbox writes to a set's disks stop,
// and the one in flight completes, before that set's reservation is released — a partner
// that reserves its disks the moment they are released must never find a write of ours.
import { describe, expect, it } from 'vitest';
import { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { MailboxIo, type MailboxDisk } from '../../firmware/ts/ha/mailbox-io.ts';
import { decodeMailbox } from '../../firmware/ts/ha/core/mailbox.ts';
import { HaPhase, StateIndicator, type StatusMessage } from '../../firmware/ts/ha/core/status.ts';
import { mailboxSlotOffset } from '../../firmware/ts/storage/layout.ts';
import { statusMessage, untilSettled } from './mailbox-fixtures.ts';

/** Blade b in TAKEOVER, claiming both sets. */
function msg(sequence: number): StatusMessage {
  return statusMessage(1, sequence, { indicator: StateIndicator.takeover, phase: HaPhase.takeover, claimedSets: 0b11 });
}

/** Blade b (index 1) holding both sets after a takeover: disks 0,1 are a's set, 2,3 its own. */
function setup(): { vt: VirtualTime; disks: SimBlockDevice[]; handles: SimBlockDevice[]; io: MailboxIo; fenced: number[]; started: number[] } {
  const vt = new VirtualTime();
  const prng = new Prng(11);
  const disks = [0, 1, 2, 3].map((i) => new SimBlockDevice({ timers: vt.timers, prng, sizeBytes: 2 * 1024 * 1024, sectorSize: 4096, name: `d${i}` }));
  const handles = disks.map((d, i) => d.attach({ name: `d${i}@b` }));
  const started: number[] = [];
  const mine: MailboxDisk[] = handles.map((h, i) => {
    // Records which disk each write went to, in order (the real device underneath).
    const device = Object.create(h) as SimBlockDevice;
    device.write = (offset: number, data: Uint8Array) => {
      started.push(i);
      return h.write(offset, data);
    };
    return { index: i, set: i < 2 ? 0 : 1, device };
  });
  const fenced: number[] = [];
  const io = new MailboxIo({ bladeIndex: 1, disks: mine, timers: vt.timers, pollIntervalMs: 150, onStatus: () => undefined, onRejected: () => undefined, onWriteFenced: (set) => fenced.push(set) });
  return { vt, disks, handles, io, fenced, started };
}

function seqOn(disk: SimBlockDevice, index: number): number | undefined {
  try {
    return decodeMailbox(disk.peekDurable(mailboxSlotOffset(1), 4096), 1, index).status.sequence;
  } catch {
    return undefined;
  }
}

describe('mailbox writes around a giveback', () => {
  it('ST-4 HA-9 stopWriting drains the write in flight to the set and skips its disks after; the partner reserving them then sees no refused write', async () => {
    const { vt, disks, handles, io, fenced, started } = setup();
    await untilSettled(vt, io.write(msg(1), 0b11));
    expect([0, 1, 2, 3].map((i) => seqOn(disks[i] as SimBlockDevice, i))).toEqual([1, 1, 1, 1]);
    started.length = 0;
    // A heartbeat to both sets is on its way through a's first disk when the giveback starts.
    const heartbeat = io.write(msg(2), 0b11);
    expect(started).toEqual([0]);
    let drained = false;
    const stopped = io.stopWriting(0).then(() => {
      drained = true;
    });
    await untilSettled(vt, stopped);
    expect(drained).toBe(true);
    // The release happens now, and a reserves its disks at once: any write of b is refused.
    (handles[0] as SimBlockDevice).setFenced(true);
    (handles[1] as SimBlockDevice).setFenced(true);
    await untilSettled(vt, heartbeat);
    // Another heartbeat still names both sets (the machine clears the set only when the release completes).
    await untilSettled(vt, io.write(msg(3), 0b11));
    expect(fenced).toEqual([]);
    expect(started).toEqual([0, 2, 3, 2, 3]);
    expect([0, 1, 2, 3].map((i) => seqOn(disks[i] as SimBlockDevice, i))).toEqual([2, 1, 3, 3]);
  });

  it('HA-6 resumeWriting lets the set be written again once we acquire it (a later takeover)', async () => {
    const { vt, disks, io, fenced } = setup();
    await untilSettled(vt, io.stopWriting(0));
    await untilSettled(vt, io.write(msg(1), 0b11));
    expect([0, 1, 2, 3].map((i) => seqOn(disks[i] as SimBlockDevice, i))).toEqual([undefined, undefined, 1, 1]);
    io.resumeWriting(0);
    await untilSettled(vt, io.write(msg(2), 0b11));
    expect([0, 1, 2, 3].map((i) => seqOn(disks[i] as SimBlockDevice, i))).toEqual([2, 2, 2, 2]);
    expect(fenced).toEqual([]);
  });

  it('without stopWriting the same interleaving is refused (the race this closes)', async () => {
    const { vt, handles, io, fenced } = setup();
    const heartbeat = io.write(msg(2), 0b11);
    (handles[1] as SimBlockDevice).setFenced(true);
    await untilSettled(vt, heartbeat);
    expect(fenced).toEqual([0]);
  });

  it('HA-8 whenWritten resolves when a round of a matching record is written (a failed disk does not hold it back), not for other records', async () => {
    const { vt, disks, io } = setup();
    let announced = false;
    void io.whenWritten((m) => m.indicator === StateIndicator.noTakeover).then(() => (announced = true));
    await untilSettled(vt, io.write(msg(1), 0b11));
    expect(announced).toBe(false);
    (disks[3] as SimBlockDevice).fail();
    const w = io.write({ ...msg(2), indicator: StateIndicator.noTakeover }, 0b11);
    await untilSettled(vt, w);
    expect(announced).toBe(true);
    expect([0, 1, 2].map((i) => seqOn(disks[i] as SimBlockDevice, i))).toEqual([2, 2, 2]);
  });
});
