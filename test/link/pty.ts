// Real serial plumbing for link tests and the link benchmark: a pty pair made by socat (a
// null-modem cable in software), opened through the `serialport` library exactly as a UART
// would be, and adapted to the link's ByteStream shape. When the HAL's Linux serial driver
// (firmware/ts/hal/serial/linux) lands it can replace serialPortStream().

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { SerialPort as NodeSerialPort } from 'serialport';
import type { ByteStream } from '../../firmware/ts/link/stream-path.ts';

export interface PtyPair {
  paths: [string, string];
  close(): Promise<void>;
}

/** Starts `socat pty,raw,echo=0 pty,raw,echo=0` and resolves with the two device paths. */
export function openSocatPtyPair(): Promise<PtyPair> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn('socat', ['-d', '-d', 'pty,raw,echo=0', 'pty,raw,echo=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const paths: string[] = [];
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`socat did not report two ptys: ${stderr}`));
    }, 5000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.stderr?.on('data', (b: Buffer) => {
      stderr += b.toString();
      for (const m of stderr.matchAll(/PTY is (\S+)/g)) if (m[1] !== undefined && !paths.includes(m[1])) paths.push(m[1]);
      if (paths.length === 2 && /starting data transfer loop/.test(stderr)) {
        clearTimeout(timer);
        resolve({
          paths: [paths[0] as string, paths[1] as string],
          close: () =>
            new Promise<void>((res) => {
              if (child.exitCode !== null || child.signalCode !== null) return res();
              child.once('exit', () => res());
              child.kill('SIGTERM');
            }),
        });
      }
    });
  });
}

/** Opens `path` with the serialport library and adapts it to a ByteStream. */
export async function serialPortStream(path: string, baudRate = 115200): Promise<ByteStream> {
  const port = new NodeSerialPort({ path, baudRate, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  type Listener = (...args: unknown[]) => void;
  const wrapped = new Map<Listener, Listener>();
  const stream: ByteStream = {
    get isOpen() {
      return port.isOpen;
    },
    write(data) {
      return port.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    },
    on(event, listener) {
      const l = listener as Listener;
      const w: Listener = event === 'data' ? (b) => (listener as (c: Uint8Array) => void)(new Uint8Array((b as Buffer).buffer, (b as Buffer).byteOffset, (b as Buffer).length)) : l;
      wrapped.set(l, w);
      port.on(event, w);
      return stream as never;
    },
    off(event, listener) {
      const w = wrapped.get(listener as Listener);
      if (w !== undefined) port.off(event, w);
      wrapped.delete(listener as Listener);
      return stream as never;
    },
    close() {
      return new Promise<void>((resolve) => {
        if (!port.isOpen) return resolve();
        port.close(() => resolve());
      });
    },
  };
  return stream;
}
