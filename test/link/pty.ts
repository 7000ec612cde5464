// Real serial plumbing for link tests and the link benchmark, through the HAL's own drivers:
// a pty (native openpty) whose master side is a PtyMasterPort and whose slave side is opened
// by the blade's LinuxSerialPort, or two blades on a relayed cable (two ptys and a relay that
// can cut, drop and corrupt, like a flaky null-modem cable).

import { LinuxSerialPort } from '../../firmware/ts/hal/serial/linux/linux-serial-port.ts';
import { PtyMasterPort } from '../../firmware/ts/hal/serial/linux/pty-master-port.ts';
import type { SerialPort } from '../../firmware/ts/hal/serial/serial-port.ts';

export interface SerialPair {
  a: SerialPort;
  b: SerialPort;
  close(): Promise<void>;
}

/** One pty: blade A holds the master side, blade B opens the slave path with the Linux driver. */
export async function openPtyPair(): Promise<SerialPair> {
  const master = PtyMasterPort.create();
  const slave = new LinuxSerialPort({ path: master.slavePath });
  await slave.open();
  await master.open();
  return {
    a: master,
    b: slave,
    close: async () => {
      await Promise.all([master.close(), slave.close()]);
    },
  };
}

export interface CableFaults {
  cut: boolean;
  /** Chance that a chunk is lost in transit. */
  dropProbability: number;
  /** Chance that a chunk has one bit flipped. */
  corruptProbability: number;
}

export interface RelayPair extends SerialPair {
  faults: CableFaults;
  stats: { chunksDropped: number; chunksCorrupted: number; bytesRelayed: number };
}

/**
 * Two blades on a relayed cable: two ptys, each blade opening its slave path with the Linux
 * driver, and a relay between the master sides that can cut, drop and corrupt. (The rig's
 * SerialRelay does the same in the rig process; it writes to the masters through tty streams,
 * whose writes block the event loop when a slave's input queue is full, which deadlocks when
 * the blades live in the same process, as they do here. PtyMasterPort writes off-thread.)
 */
export async function openRelayPair(random: () => number): Promise<RelayPair> {
  const masters = [PtyMasterPort.create({ name: 'relay-a' }), PtyMasterPort.create({ name: 'relay-b' })] as const;
  const blades = [new LinuxSerialPort({ path: masters[0].slavePath }), new LinuxSerialPort({ path: masters[1].slavePath })] as const;
  await Promise.all(blades.map((b) => b.open()));
  await Promise.all(masters.map((m) => m.open()));
  const faults: CableFaults = { cut: false, dropProbability: 0, corruptProbability: 0 };
  const stats = { chunksDropped: 0, chunksCorrupted: 0, bytesRelayed: 0 };
  const forward = (to: PtyMasterPort) => (chunk: Uint8Array): void => {
    if (faults.cut) return;
    if (random() < faults.dropProbability) {
      stats.chunksDropped++;
      return;
    }
    let out = chunk;
    if (random() < faults.corruptProbability) {
      out = chunk.slice();
      const i = Math.floor(random() * out.length);
      out[i] = (out[i] as number) ^ (1 << Math.floor(random() * 8));
      stats.chunksCorrupted++;
    }
    stats.bytesRelayed += out.length;
    // While the pair is being closed one master may already be gone: bytes for it are lost,
    // as on a cable being unplugged, rather than thrown out of an event handler.
    if (to.isOpen) to.write(out);
  };
  const forwards = [forward(masters[1]), forward(masters[0])] as const;
  masters[0].on('data', forwards[0]);
  masters[1].on('data', forwards[1]);
  return {
    a: blades[0],
    b: blades[1],
    faults,
    stats,
    close: async () => {
      masters[0].off('data', forwards[0]);
      masters[1].off('data', forwards[1]);
      await Promise.all([...blades.map((b) => b.close()), ...masters.map((m) => m.close())]);
    },
  };
}
