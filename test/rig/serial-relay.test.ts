// The rig's serial relay between two pty pairs: bytes cross, and the cut/corrupt faults act.
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import tty from 'node:tty';
import { SerialRelay } from '../../rig/serial/relay.ts';

function openEnd(path: string): tty.ReadStream {
  const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  const s = new tty.ReadStream(fd);
  s.setRawMode(true);
  return s;
}

function collect(s: tty.ReadStream): { bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return { bytes: () => Buffer.concat(chunks) };
}

const settle = (ms = 150): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('rig serial relay', () => {
  let relay: SerialRelay | undefined;
  const opened: tty.ReadStream[] = [];
  afterEach(() => {
    for (const s of opened.splice(0)) s.destroy();
    relay?.close();
  });

  it('carries bytes both ways between the blades\' ptys', async () => {
    relay = new SerialRelay();
    const paths = relay.start();
    const a = openEnd(paths.a);
    const b = openEnd(paths.b);
    opened.push(a, b);
    const atB = collect(b);
    const atA = collect(a);
    const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => i & 0xff));
    a.write(payload);
    b.write(Buffer.from('pong'));
    await settle(300);
    expect(atB.bytes().equals(payload)).toBe(true);
    expect(atA.bytes().toString()).toBe('pong');
  });

  it('drops everything while the link is cut, and carries again when healed', async () => {
    relay = new SerialRelay();
    const paths = relay.start();
    const a = openEnd(paths.a);
    const b = openEnd(paths.b);
    opened.push(a, b);
    const atB = collect(b);
    relay.faults.cut = true;
    a.write(Buffer.from('lost'));
    await settle();
    relay.faults.cut = false;
    a.write(Buffer.from('kept'));
    await settle();
    expect(atB.bytes().toString()).toBe('kept');
  });

  it('corrupts chunks when told to', async () => {
    relay = new SerialRelay(() => 0);
    const paths = relay.start();
    const a = openEnd(paths.a);
    const b = openEnd(paths.b);
    opened.push(a, b);
    const atB = collect(b);
    relay.faults.corruptProbability = 1;
    a.write(Buffer.from([0, 0, 0, 0]));
    await settle();
    expect(atB.bytes()[0]).toBe(1);
    expect(relay.stats.corruptedChunks).toBeGreaterThan(0);
  });
});
