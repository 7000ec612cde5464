// The emulated serial interconnect: one pty pair per blade end, and a relay in the rig that
// copies bytes between the two masters so that it can cut, delay, corrupt or drop them, as
// a flaky null-modem cable would. Each blade opens its end's slave path with the Linux serial
// driver, exactly as it would open /dev/ttyS1 on a board.
//
// Nothing here may block the rig's event loop: a blade that stops reading (powered off, hung,
// stopped in a debugger) must not stall the loop emulator, the control channel or the other
// direction of the cable. So the masters are PtyMasterPorts (non-blocking writes retried on
// EAGAIN, never a blocking tty write), and each direction's queue is bounded: what does not
// fit is dropped, as bytes are lost on a wire nobody listens to.
import fs from 'node:fs';
import { PtyMasterPort } from '../../firmware/ts/hal/serial/linux/pty-master-port.ts';

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

export interface SerialRelayStats {
  bytesAtoB: number;
  bytesBtoA: number;
  /** Chunks lost to the drop fault. */
  droppedChunks: number;
  corruptedChunks: number;
  /** Bytes dropped because the link was cut, the receiving end was powered off, or its queue was full. */
  discardedBytes: number;
}

/**
 * Bytes queued towards one end (in the relay, not yet taken by the pty) above which further
 * chunks are dropped, as a UART's receive FIFO overruns when its CPU does not read. 64 KiB is
 * about 200 ms of traffic at 3 Mbaud: enough to ride out a blade's event-loop hiccup, small
 * enough that a stalled one costs the rig nothing. The link layer retransmits what is lost.
 */
export const serialRelayQueuedBytesMax = 64 * 1024;

/** How often the input of a powered-off end is discarded (a dead UART reads nothing). */
export const serialRelayDeadDrainIntervalMs = 20;

interface EndState {
  end: SerialEnd;
  port: PtyMasterPort;
  powered: boolean;
  /** The port said its queue is above the limit; chunks are dropped until it drains. */
  congested: boolean;
  /** While powered off: a non-blocking descriptor on the slave whose input we discard. */
  deadFd: number | undefined;
  deadTimer: NodeJS.Timeout | undefined;
  /** Delayed chunks not yet handed to the port (the delay fault). */
  delayed: Set<NodeJS.Timeout>;
}

export class SerialRelay {
  readonly faults: SerialFaults = { cut: false, delayMs: 0, corruptProbability: 0, dropProbability: 0 };
  readonly stats: SerialRelayStats = { bytesAtoB: 0, bytesBtoA: 0, droppedChunks: 0, corruptedChunks: 0, discardedBytes: 0 };
  private ends: Partial<Record<SerialEnd, EndState>> = {};

  constructor(private readonly random: () => number = Math.random) {}

  /** Creates both pty pairs and starts relaying; returns the slave paths the blades open. */
  start(): Record<SerialEnd, string> {
    for (const end of ['a', 'b'] as const) {
      // The port keeps its own slave descriptor open, so a blade's power cut (its descriptor
      // closing) is no hang-up for the master and the same path works after the reboot.
      const port = PtyMasterPort.create({ name: `rig-serial-${end}`, highWaterMark: serialRelayQueuedBytesMax });
      this.ends[end] = { end, port, powered: true, congested: false, deadFd: undefined, deadTimer: undefined, delayed: new Set() };
    }
    const a = this.ends.a as EndState;
    const b = this.ends.b as EndState;
    for (const [from, to, counter] of [
      [a, b, 'bytesAtoB'],
      [b, a, 'bytesBtoA'],
    ] as const) {
      from.port.on('data', (chunk) => this.forward(chunk, to, counter));
      to.port.on('drain', () => {
        to.congested = false;
      });
      // A write error cannot happen while our slave descriptor is open; if the pty dies anyway
      // the relay stops carrying towards it rather than taking the rig down.
      from.port.on('error', () => undefined);
      void from.port.open();
    }
    return { a: a.port.slavePath, b: b.port.slavePath };
  }

  slavePath(end: SerialEnd): string {
    const e = this.ends[end];
    if (!e) throw new Error('serial relay not started');
    return e.port.slavePath;
  }

  /**
   * A powered-off blade reads nothing: bytes sent to it are dropped, as on a dead UART, and
   * what was already on its way is discarded, so a rebooted blade starts on a quiet line.
   */
  setPowered(end: SerialEnd, powered: boolean): void {
    const e = this.ends[end];
    if (!e || e.powered === powered) return;
    e.powered = powered;
    if (!powered) {
      for (const t of e.delayed) clearTimeout(t);
      e.delayed.clear();
      this.startDeadDrain(e);
    } else {
      this.stopDeadDrain(e);
    }
  }

  close(): void {
    for (const e of Object.values(this.ends)) {
      for (const t of e.delayed) clearTimeout(t);
      this.stopDeadDrain(e);
      void e.port.close();
    }
    this.ends = {};
  }

  private forward(chunk: Uint8Array, to: EndState, counter: 'bytesAtoB' | 'bytesBtoA'): void {
    if (this.faults.cut || !to.powered) {
      this.stats.discardedBytes += chunk.length;
      return;
    }
    if (this.faults.dropProbability > 0 && this.random() < this.faults.dropProbability) {
      this.stats.droppedChunks++;
      return;
    }
    let out = chunk;
    if (this.faults.corruptProbability > 0 && this.random() < this.faults.corruptProbability) {
      out = chunk.slice();
      const i = Math.floor(this.random() * out.length);
      out[i] = (out[i] as number) ^ (1 << Math.floor(this.random() * 8));
      this.stats.corruptedChunks++;
    }
    const send = (): void => {
      if (this.faults.cut || !to.powered || !to.port.isOpen) return;
      if (to.congested) {
        this.stats.discardedBytes += out.length;
        return;
      }
      this.stats[counter] += out.length;
      if (!to.port.write(out)) to.congested = true;
    };
    if (this.faults.delayMs > 0) {
      const t = setTimeout(() => {
        to.delayed.delete(t);
        send();
      }, this.faults.delayMs);
      t.unref();
      to.delayed.add(t);
    } else send();
  }

  private startDeadDrain(e: EndState): void {
    try {
      e.deadFd = fs.openSync(e.port.slavePath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
    } catch {
      return; // the pty is gone with the rig
    }
    this.drainDead(e);
    e.deadTimer = setInterval(() => this.drainDead(e), serialRelayDeadDrainIntervalMs);
    e.deadTimer.unref();
  }

  private stopDeadDrain(e: EndState): void {
    if (e.deadTimer !== undefined) clearInterval(e.deadTimer);
    e.deadTimer = undefined;
    if (e.deadFd === undefined) return;
    this.drainDead(e);
    fs.closeSync(e.deadFd);
    e.deadFd = undefined;
  }

  /** Discards what waits in a powered-off end's slave input queue (non-blocking reads). */
  private drainDead(e: EndState): void {
    if (e.deadFd === undefined) return;
    const buf = Buffer.alloc(4096);
    try {
      for (;;) {
        const n = fs.readSync(e.deadFd, buf, 0, buf.length, null);
        if (n <= 0) break;
        this.stats.discardedBytes += n;
      }
    } catch {
      // EAGAIN: empty
    }
  }
}
