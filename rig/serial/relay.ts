// The emulated serial interconnect: one pty pair per blade end, and a relay in the rig that
// copies bytes between the two masters so that it can cut, delay, corrupt or drop them, as
// a flaky null-modem cable would. Each blade opens its end's slave path with the Linux serial
// driver, exactly as it would open /dev/ttyS1 on a board.
import tty from 'node:tty';
import fs from 'node:fs';
import { openPty } from '../../firmware/ts/native/index.ts';

export type SerialEnd = 'a' | 'b';

export interface SerialFaults {
  /** No byte crosses in either direction. */
  cut: boolean;
  /** Added one-way delay in milliseconds. */
  delayMs: number;
  /** Probability that a chunk has one byte flipped. */
  corruptProbability: number;
  /** Probability that a chunk is dropped. */
  dropProbability: number;
}

/** Bytes queued towards an end that is not reading (powered off) beyond this are dropped. */
const queuedBytesMax = 256 * 1024;

interface EndState {
  master: tty.ReadStream;
  masterFd: number;
  /** The rig keeps a slave descriptor open so that a blade's power cut is no hang-up for the master. */
  slaveFd: number;
  slavePath: string;
  powered: boolean;
}

export class SerialRelay {
  readonly faults: SerialFaults = { cut: false, delayMs: 0, corruptProbability: 0, dropProbability: 0 };
  readonly stats = { bytesAtoB: 0, bytesBtoA: 0, droppedChunks: 0, corruptedChunks: 0 };
  private ends: Partial<Record<SerialEnd, EndState>> = {};

  constructor(private readonly random: () => number = Math.random) {}

  start(): Record<SerialEnd, string> {
    for (const end of ['a', 'b'] as const) {
      const p = openPty();
      const master = new tty.ReadStream(p.master);
      master.setRawMode(true);
      master.on('error', () => undefined);
      this.ends[end] = { master, masterFd: p.master, slaveFd: p.slave, slavePath: p.slavePath, powered: true };
    }
    const a = this.ends.a as EndState;
    const b = this.ends.b as EndState;
    a.master.on('data', (chunk: Buffer) => this.forward(chunk, b, 'bytesAtoB'));
    b.master.on('data', (chunk: Buffer) => this.forward(chunk, a, 'bytesBtoA'));
    return { a: a.slavePath, b: b.slavePath };
  }

  slavePath(end: SerialEnd): string {
    const e = this.ends[end];
    if (!e) throw new Error('serial relay not started');
    return e.slavePath;
  }

  /** A powered-off blade reads nothing: bytes sent to it are dropped, as on a dead UART. */
  setPowered(end: SerialEnd, powered: boolean): void {
    const e = this.ends[end];
    if (!e) return;
    e.powered = powered;
    if (!powered) this.drainSlave(e);
  }

  close(): void {
    for (const e of Object.values(this.ends)) {
      e.master.destroy();
      try {
        fs.closeSync(e.slaveFd);
      } catch {
        // already closed
      }
    }
    this.ends = {};
  }

  private forward(chunk: Buffer, to: EndState, counter: 'bytesAtoB' | 'bytesBtoA'): void {
    if (this.faults.cut || !to.powered) return;
    if (this.faults.dropProbability > 0 && this.random() < this.faults.dropProbability) {
      this.stats.droppedChunks++;
      return;
    }
    let out = chunk;
    if (this.faults.corruptProbability > 0 && this.random() < this.faults.corruptProbability) {
      out = Buffer.from(chunk);
      const i = Math.floor(this.random() * out.length);
      out[i] = (out[i] as number) ^ (1 << Math.floor(this.random() * 8));
      this.stats.corruptedChunks++;
    }
    this.stats[counter] += out.length;
    const send = (): void => {
      if (this.faults.cut || !to.powered || to.master.destroyed) return;
      if (to.master.writableLength > queuedBytesMax) {
        this.stats.droppedChunks++;
        return;
      }
      to.master.write(out);
    };
    if (this.faults.delayMs > 0) setTimeout(send, this.faults.delayMs).unref();
    else send();
  }

  /** Discards bytes waiting in a powered-off end's slave input queue. */
  private drainSlave(e: EndState): void {
    const buf = Buffer.alloc(4096);
    try {
      const flags = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK;
      const fd = fs.openSync(e.slavePath, flags);
      try {
        while (fs.readSync(fd, buf, 0, buf.length, null) > 0) {
          // keep discarding
        }
      } catch {
        // EAGAIN: empty
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      // the slave may be gone with the rig
    }
  }
}
