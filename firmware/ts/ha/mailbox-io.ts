// The mailbox path's driver (HA-1): writes this blade's status record into its slot on the
// mailbox disks it holds (one disk after the other, each write followed by a flush, so a
// torn or lost write can only ever hit one copy), and polls the partner's slot on every
// mailbox disk on a timer, handing decoded records or rejections to the HA machine.
import type { Timers, TimerHandle } from '../core/clock.ts';
import { isTwinbladeError } from '../core/errors.ts';
import type { BlockDevice } from '../hal/block/block-device.ts';
import { BlockErrorCode } from '../hal/block/block-device.ts';
import { mailboxSlotOffset } from '../storage/layout.ts';
import { decodeMailbox, encodeMailbox, mailboxSectorBytesMin } from './core/mailbox.ts';
import type { StatusMessage } from './core/status.ts';
import type { SetIndex } from './core/machine.ts';

export interface MailboxDisk {
  /** The mailbox disk index in the pair's configuration (written into every record). */
  index: number;
  /** The disk set (owner blade) this disk belongs to. */
  set: SetIndex;
  device: BlockDevice;
}

export interface MailboxIoOptions {
  bladeIndex: 0 | 1;
  disks: readonly MailboxDisk[];
  timers: Timers;
  pollIntervalMs: number;
  /** A record from the partner's slot decoded. */
  onStatus: (path: string, message: StatusMessage) => void;
  /** The partner's slot did not decode (`code` is a MailboxErrorCode). */
  onRejected: (path: string, code: string) => void;
  /** Our write to a disk of `set` was refused by a reservation: the partner holds it. */
  onWriteFenced: (set: SetIndex) => void;
  /** A read or write failed for another reason (counted; the path simply goes quiet). */
  onIoError?: (path: string, code: string) => void;
}

/** The HA path id of mailbox disk `index`. */
export function mailboxPathId(index: number): string {
  return `mbox${index}`;
}

export class MailboxIo {
  private readonly opts: MailboxIoOptions;
  private readonly partnerSlot: 0 | 1;
  private timer: TimerHandle | undefined;
  private polling = false;
  private writing = false;
  private pendingWrite: { message: StatusMessage; sets: number } | undefined;
  /** Sets whose disks get no more writes (bit per set): their reservation is being released. */
  private stoppedSets = 0;
  /** Callers waiting for a message of a kind to be on the disks (whenWritten). */
  private writtenWaiters: Array<{ match: (m: StatusMessage) => boolean; resolve: () => void }> = [];
  /** The disk write (with its flush) running now, and the set of its disk. */
  private current: { set: SetIndex; done: Promise<void> } | undefined;
  private closed = false;
  readonly stats = { writes: 0, reads: 0, writeErrors: 0, readErrors: 0, rejected: 0 };

  constructor(opts: MailboxIoOptions) {
    this.opts = opts;
    this.partnerSlot = opts.bladeIndex === 0 ? 1 : 0;
  }

  /** Starts polling the partner's slots every `pollIntervalMs`. */
  start(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = this.opts.timers.after(this.opts.pollIntervalMs, () => {
      void this.pollOnce().finally(() => {
        if (!this.closed) this.timer?.refresh();
      });
    });
  }

  stop(): void {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Reads the partner's slot on every mailbox disk once (skipped if a poll is still running). */
  async pollOnce(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (const d of this.opts.disks) {
        const path = mailboxPathId(d.index);
        let bytes: Uint8Array;
        try {
          bytes = await d.device.read(mailboxSlotOffset(this.partnerSlot), sectorOf(d.device));
          this.stats.reads++;
        } catch (e) {
          this.stats.readErrors++;
          this.opts.onIoError?.(path, isTwinbladeError(e) ? e.code : 'unknown');
          continue;
        }
        if (this.closed) return;
        let message: StatusMessage;
        try {
          message = decodeMailbox(bytes, this.partnerSlot, d.index).status;
        } catch (e) {
          this.stats.rejected++;
          this.opts.onRejected(path, isTwinbladeError(e) ? e.code : 'unknown');
          continue;
        }
        this.opts.onStatus(path, message);
      }
    } finally {
      this.polling = false;
    }
  }

  /**
   * Writes `message` to our slot on the mailbox disks of `sets`. A write requested while
   * one is running replaces any queued one: only the newest state matters.
   */
  async write(message: StatusMessage, sets: number): Promise<void> {
    this.pendingWrite = { message, sets };
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.pendingWrite !== undefined && !this.closed) {
        const w = this.pendingWrite;
        this.pendingWrite = undefined;
        let written = 0;
        for (const d of this.opts.disks) {
          // Checked at each disk, not once per message: a set stopped while this message was
          // on its way through the disks gets nothing more (stopWriting).
          if ((w.sets & ~this.stoppedSets & (1 << d.set)) === 0 || this.closed) continue;
          const done = this.writeOne(d, w.message);
          this.current = { set: d.set, done: done.then(() => undefined) };
          if (await done) written++;
          this.current = undefined;
        }
        if (written > 0) this.settleWaiters(w.message);
      }
    } finally {
      this.writing = false;
    }
  }

  /**
   * Stops every write to the disks of `set` and resolves once none is in flight: call it
   * before releasing the set's reservation (giveback, or letting go of the partner's disks),
   * since the partner may reserve them the moment they are released and must then find no
   * write of ours arriving (a refused write is a fencing violation, ST-4). Queued and future
   * messages skip the set until `resumeWriting(set)`.
   */
  async stopWriting(set: SetIndex): Promise<void> {
    this.stoppedSets |= 1 << set;
    const c = this.current;
    if (c !== undefined && c.set === set) await c.done;
  }

  /** Writes to the disks of `set` may go out again (we are acquiring its reservation). */
  resumeWriting(set: SetIndex): void {
    this.stoppedSets &= ~(1 << set);
  }

  /**
   * Resolves once a message matching `match` has been written, in one round over the disks
   * of its sets, to every one of them it could reach (at least one): the partner, which
   * merges the newest record of all its mailbox paths, cannot miss it then. Used to announce
   * NO-TAKEOVER before our log answers clients from its local copy alone (HA-8).
   */
  whenWritten(match: (m: StatusMessage) => boolean): Promise<void> {
    return new Promise((resolve) => this.writtenWaiters.push({ match, resolve }));
  }

  private settleWaiters(message: StatusMessage): void {
    const keep: typeof this.writtenWaiters = [];
    for (const w of this.writtenWaiters) {
      if (w.match(message)) w.resolve();
      else keep.push(w);
    }
    this.writtenWaiters = keep;
  }

  /** One disk's record and flush; false if it failed (reported, never thrown). */
  private async writeOne(d: MailboxDisk, message: StatusMessage): Promise<boolean> {
    try {
      await d.device.write(mailboxSlotOffset(this.opts.bladeIndex), encodeMailbox({ slot: this.opts.bladeIndex, diskIndex: d.index, status: message }, sectorOf(d.device)));
      await d.device.flush();
      this.stats.writes++;
      return true;
    } catch (e) {
      this.stats.writeErrors++;
      if (isTwinbladeError(e, BlockErrorCode.fenced)) this.opts.onWriteFenced(d.set);
      else this.opts.onIoError?.(mailboxPathId(d.index), isTwinbladeError(e) ? e.code : 'unknown');
      return false;
    }
  }
}

function sectorOf(device: BlockDevice): number {
  return Math.max(device.sectorSize, mailboxSectorBytesMin);
}
