// The mailbox path driver (SPEC HA-1) over the simulated block driver: our slot written on
// the disks we hold with a flush each, the partner's slot polled on a timer, corrupt and
// never-written slots rejected with their codes, and a fenced write reported as such.
import { describe, expect, it } from 'vitest';
import { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';
import { SimBlockDevice } from '../../firmware/ts/hal/block/sim/sim-block-device.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { MailboxIo, mailboxPathId, type MailboxDisk } from '../../firmware/ts/ha/mailbox-io.ts';
import { decodeMailbox } from '../../firmware/ts/ha/core/mailbox.ts';
import { mailboxSlotOffset } from '../../firmware/ts/storage/layout.ts';
import { statusMessage, untilSettled } from './mailbox-fixtures.ts';

const msg = statusMessage;

interface Side {
  io: MailboxIo;
  status: { path: string; seq: number }[];
  rejected: { path: string; code: string }[];
  fenced: number[];
  ioErrors: string[];
}

function setup(sectorSize: 512 | 4096 = 4096): { vt: VirtualTime; disks: SimBlockDevice[]; sides: [Side, Side] } {
  const vt = new VirtualTime();
  const prng = new Prng(7);
  // Disks 0,1 belong to blade 0's set, 2,3 to blade 1's; each blade has its own handle.
  const disks = [0, 1, 2, 3].map((i) => new SimBlockDevice({ timers: vt.timers, prng, sizeBytes: 2 * 1024 * 1024, sectorSize, name: `d${i}` }));
  const mk = (blade: 0 | 1): Side => {
    const side: Side = { io: undefined as unknown as MailboxIo, status: [], rejected: [], fenced: [], ioErrors: [] };
    const mine: MailboxDisk[] = disks.map((d, i) => ({ index: i, set: i < 2 ? 0 : 1, device: d.attach({ name: `d${i}@${blade}` }) }));
    side.io = new MailboxIo({
      bladeIndex: blade,
      disks: mine,
      timers: vt.timers,
      pollIntervalMs: 150,
      onStatus: (path, m) => side.status.push({ path, seq: m.sequence }),
      onRejected: (path, code) => side.rejected.push({ path, code }),
      onWriteFenced: (set) => side.fenced.push(set),
      onIoError: (path, code) => side.ioErrors.push(`${path}:${code}`),
    });
    return side;
  };
  return { vt, disks, sides: [mk(0), mk(1)] };
}

describe('mailbox I/O', () => {
  it('HA-1 writes our slot on the disks of the sets we hold, durably, and the partner reads it', async () => {
    const { vt, disks, sides } = setup();
    const [a, b] = sides;
    await untilSettled(vt, a.io.write(msg(0, 5), 0b01));
    // Only set 0's disks got a record, in our slot, and it is durable (flushed).
    for (const i of [0, 1]) expect(decodeMailbox((disks[i] as SimBlockDevice).peekDurable(mailboxSlotOffset(0), 4096), 0, i).status.sequence).toBe(5);
    for (const i of [2, 3]) expect((disks[i] as SimBlockDevice).peek(mailboxSlotOffset(0), 4096).every((x) => x === 0)).toBe(true);
    await untilSettled(vt, b.io.pollOnce());
    expect(b.status).toEqual([
      { path: mailboxPathId(0), seq: 5 },
      { path: mailboxPathId(1), seq: 5 },
    ]);
    // Slots never written are reported as empty (silence, not corruption).
    expect(b.rejected.map((r) => r.code)).toEqual(['ERR_MAILBOX_EMPTY', 'ERR_MAILBOX_EMPTY']);
  });

  it('works with 512-byte sectors (the record is one sector: atomic)', async () => {
    const { vt, sides } = setup(512);
    await untilSettled(vt, sides[1].io.write(msg(1, 9), 0b10));
    await untilSettled(vt, sides[0].io.pollOnce());
    expect(sides[0].status.map((s) => s.seq)).toEqual([9, 9]);
  });

  it('HA-1 a corrupted record is rejected with its code, the other disk still delivers', async () => {
    const { vt, disks, sides } = setup();
    await untilSettled(vt, sides[1].io.write(msg(1, 3), 0b10));
    (disks[2] as SimBlockDevice).corrupt(mailboxSlotOffset(1) + 20, 8);
    await untilSettled(vt, sides[0].io.pollOnce());
    expect(sides[0].status).toEqual([{ path: mailboxPathId(3), seq: 3 }]);
    expect(sides[0].rejected.find((r) => r.path === mailboxPathId(2))?.code).toMatch(/^ERR_MAILBOX_/);
    expect(sides[0].io.stats.rejected).toBe(3);
  });

  it('ST-4 a write refused by a reservation is reported as fenced for that set', async () => {
    const { vt, sides } = setup();
    const a = sides[0];
    const handle = (a.io as unknown as { opts: { disks: MailboxDisk[] } }).opts.disks[2]?.device as SimBlockDevice;
    handle.setFenced(true);
    await untilSettled(vt, a.io.write(msg(0, 1), 0b11));
    expect(a.fenced).toEqual([1]);
    expect(a.io.stats.writes).toBe(3);
  });

  it('read failures are counted and reported, not fatal', async () => {
    const { vt, disks, sides } = setup();
    (disks[0] as SimBlockDevice).fail();
    await untilSettled(vt, sides[1].io.pollOnce());
    expect(sides[1].ioErrors).toEqual([`${mailboxPathId(0)}:ERR_BLOCK_IO`]);
    expect(sides[1].io.stats.readErrors).toBe(1);
  });

  it('polls on its timer until stopped, and only the newest queued write is written', async () => {
    const { vt, sides } = setup();
    const [a, b] = sides;
    const w1 = a.io.write(msg(0, 1), 0b01);
    void a.io.write(msg(0, 2), 0b01);
    void a.io.write(msg(0, 3), 0b01);
    await untilSettled(vt, w1);
    b.io.start();
    for (let t = 0; t < 3; t++) {
      await untilSettled(vt, new Promise<void>((r) => vt.timers.after(150, r)));
    }
    b.io.stop();
    const seen = new Set(b.status.map((s) => s.seq));
    expect(seen).toEqual(new Set([3]));
    expect(a.io.stats.writes).toBe(4);
    const polled = b.io.stats.reads;
    expect(polled).toBeGreaterThanOrEqual(8);
    await untilSettled(vt, new Promise<void>((r) => vt.timers.after(1000, r)));
    expect(b.io.stats.reads).toBe(polled);
  });
});
