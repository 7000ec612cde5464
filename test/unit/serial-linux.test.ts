// The Linux serial driver on a pseudo-terminal from the addon's openpty: the SerialPort
// contract with the blade's LinuxSerialPort on the slave path and a PtyMasterPort on the
// master, and disconnection when either side goes away.
import { describe, expect, it } from 'vitest';
import { serialContract, collect, waitUntil } from '../contract/serial.contract.ts';
import { LinuxSerialPort } from '../../firmware/ts/hal/serial/linux/linux-serial-port.ts';
import { PtyMasterPort } from '../../firmware/ts/hal/serial/linux/pty-master-port.ts';
import { SerialErrorCode } from '../../firmware/ts/hal/serial/serial-port.ts';
import { TwinbladeError } from '../../firmware/ts/core/errors.ts';

const highWaterMark = 16 * 1024;

serialContract('linux (serialport on a pty slave) with the pty master', async () => {
  const b = PtyMasterPort.create({ highWaterMark });
  const a = new LinuxSerialPort({ path: b.slavePath, highWaterMark });
  return { a, b, highWaterMark };
});

serialContract('pty master with linux (serialport on the slave)', async () => {
  const a = PtyMasterPort.create({ highWaterMark });
  const b = new LinuxSerialPort({ path: a.slavePath, highWaterMark });
  return { a, b, highWaterMark };
});

describe('LinuxSerialPort', () => {
  it('rejects opening a missing device with ERR_SERIAL_IO', async () => {
    const port = new LinuxSerialPort({ path: '/dev/pts/does-not-exist' });
    const e: unknown = await port.open().catch((err: unknown) => err);
    expect(e).toBeInstanceOf(TwinbladeError);
    expect((e as TwinbladeError).code).toBe(SerialErrorCode.io);
    expect(port.isOpen).toBe(false);
    await port.close();
  });

  it('checks its options', () => {
    expect(() => new LinuxSerialPort({ path: '' })).toThrow(expect.objectContaining({ code: SerialErrorCode.invalidArgument }));
    expect(() => new LinuxSerialPort({ path: '/dev/null', baudRate: 0 })).toThrow(TwinbladeError);
    expect(() => new LinuxSerialPort({ path: '/dev/null', highWaterMark: -1 })).toThrow(TwinbladeError);
  });

  it('carries 1 MiB each way at the same time, far more than the tty buffers hold', async () => {
    const master = PtyMasterPort.create({ highWaterMark: 1 << 20 });
    const blade = new LinuxSerialPort({ path: master.slavePath, highWaterMark: 1 << 20 });
    await blade.open();
    await master.open();
    try {
      const atBlade = collect(blade);
      const atMaster = collect(master);
      const up = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 0xff);
      const down = new Uint8Array(1 << 20).map((_, i) => (i * 13 + 1) & 0xff);
      blade.write(up);
      master.write(down);
      await waitUntil(() => atMaster.length() === up.length && atBlade.length() === down.length, '1 MiB in each direction', 20_000);
      expect(Buffer.compare(atMaster.bytes(), up)).toBe(0);
      expect(Buffer.compare(atBlade.bytes(), down)).toBe(0);
    } finally {
      await blade.close();
      await master.close();
    }
  });

  it('reports the disconnect when the blade side closes, on the master', async () => {
    const master = PtyMasterPort.create({ keepSlaveOpen: false });
    const blade = new LinuxSerialPort({ path: master.slavePath });
    await blade.open();
    await master.open();
    const kinds: string[] = [];
    let closed = false;
    master.on('error', (e) => kinds.push(e.kind));
    master.on('close', () => {
      closed = true;
    });
    const atMaster = collect(master);
    blade.write(Uint8Array.of(9));
    await waitUntil(() => atMaster.length() === 1, 'the byte');
    await blade.close();
    await waitUntil(() => closed, 'the master to close');
    expect(kinds).toEqual(['disconnected']);
  });

  it('keeps the pty usable while the blade closes and reopens the slave path (a reboot)', async () => {
    const master = PtyMasterPort.create();
    await master.open();
    const atMaster = collect(master);
    for (const round of [1, 2]) {
      const blade = new LinuxSerialPort({ path: master.slavePath });
      await blade.open();
      const atBlade = collect(blade);
      blade.write(Uint8Array.of(round));
      await waitUntil(() => atMaster.length() === round, 'the byte at the master');
      master.write(Uint8Array.of(10 + round));
      await waitUntil(() => atBlade.length() === 1, 'the byte at the blade');
      expect([...atBlade.bytes()]).toEqual([10 + round]);
      await blade.close();
    }
    expect(master.isOpen).toBe(true);
    expect([...atMaster.bytes()]).toEqual([1, 2]);
    await master.close();
  });
});
