// The rig's serial relay between two pty pairs: bytes cross, the cut/corrupt/drop/delay
// faults act, and a blade that stops reading (stalled or powered off) never stalls the rig.
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { SerialRelay, serialRelayQueuedBytesMax } from '../../rig/serial/relay.ts';
import { LinuxSerialPort } from '../../firmware/ts/hal/serial/linux/linux-serial-port.ts';

/**
 * A blade's end of the cable, through the HAL's Linux serial driver: its writes never block
 * the event loop (a tty stream's can, when the pty is full — and the relay under test runs on
 * this same event loop, so a blocking write here would deadlock the test).
 */
interface End {
  write(b: Uint8Array): void;
  destroy(): void;
  port: LinuxSerialPort;
}

async function openEnd(path: string): Promise<End> {
  const port = new LinuxSerialPort({ path });
  await port.open();
  return { port, write: (b) => void port.write(b), destroy: () => void port.close() };
}

function collect(e: End): { bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  e.port.on('data', (c: Uint8Array) => chunks.push(Buffer.from(c)));
  return { bytes: () => Buffer.concat(chunks) };
}

const settle = (ms = 150): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `cond` holds (bytes cross several processes' queues; a loaded host is slow). */
async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await settle(10);
}

describe('rig serial relay', () => {
  let relay: SerialRelay | undefined;
  const opened: End[] = [];
  afterEach(() => {
    for (const s of opened.splice(0)) s.destroy();
    relay?.close();
  });

  it('carries bytes both ways between the blades\' ptys', async () => {
    relay = new SerialRelay();
    const paths = relay.start();
    const a = await openEnd(paths.a);
    const b = await openEnd(paths.b);
    opened.push(a, b);
    const atB = collect(b);
    const atA = collect(a);
    const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => i & 0xff));
    a.write(payload);
    b.write(Buffer.from('pong'));
    await until(() => atB.bytes().length >= payload.length && atA.bytes().length >= 4);
    expect(atB.bytes().equals(payload)).toBe(true);
    expect(atA.bytes().toString()).toBe('pong');
  });

  it('drops everything while the link is cut, and carries again when healed', async () => {
    relay = new SerialRelay();
    const paths = relay.start();
    const a = await openEnd(paths.a);
    const b = await openEnd(paths.b);
    opened.push(a, b);
    const atB = collect(b);
    relay.faults.cut = true;
    a.write(Buffer.from('lost'));
    await until(() => relay?.stats.discardedBytes === 4);
    expect(relay.stats.discardedBytes).toBe(4);
    relay.faults.cut = false;
    a.write(Buffer.from('kept'));
    await until(() => atB.bytes().length >= 4);
    expect(atB.bytes().toString()).toBe('kept');
  });

  it('corrupts chunks when told to', async () => {
    relay = new SerialRelay(() => 0);
    const paths = relay.start();
    const a = await openEnd(paths.a);
    const b = await openEnd(paths.b);
    opened.push(a, b);
    const atB = collect(b);
    relay.faults.corruptProbability = 1;
    a.write(Buffer.from([0, 0, 0, 0]));
    await until(() => atB.bytes().length >= 4);
    expect(atB.bytes()[0]).toBe(1);
    expect(relay.stats.corruptedChunks).toBeGreaterThan(0);
  });

  it('drops chunks when told to and counts them', async () => {
    relay = new SerialRelay(() => 0);
    const paths = relay.start();
    const a = await openEnd(paths.a);
    const b = await openEnd(paths.b);
    opened.push(a, b);
    const atB = collect(b);
    relay.faults.dropProbability = 1;
    a.write(Buffer.from('gone'));
    await until(() => (relay?.stats.droppedChunks ?? 0) > 0);
    expect(atB.bytes().length).toBe(0);
    expect(relay.stats.droppedChunks).toBeGreaterThan(0);
  });

  it('delays bytes by the configured time, in order', async () => {
    relay = new SerialRelay();
    const paths = relay.start();
    const a = await openEnd(paths.a);
    const b = await openEnd(paths.b);
    opened.push(a, b);
    const atB = collect(b);
    relay.faults.delayMs = 100;
    a.write(Buffer.from('one'));
    a.write(Buffer.from('two'));
    await settle(20);
    expect(atB.bytes().length).toBe(0);
    await until(() => atB.bytes().length >= 6);
    expect(atB.bytes().toString()).toBe('onetwo');
  });

  it('a stalled end (never reads) blocks neither the other direction nor the rig\'s event loop', async () => {
    relay = new SerialRelay();
    const paths = relay.start();
    // Blade A is healthy (the HAL's Linux driver); blade B has its end open but never reads.
    const a = new LinuxSerialPort({ path: paths.a });
    await a.open();
    const stalledFd = fs.openSync(paths.b, fs.constants.O_RDWR | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK);
    const atA: Uint8Array[] = [];
    a.on('data', (c) => atA.push(c));
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    try {
      // 2 MiB towards B: far more than the pty and the relay queue hold.
      const chunk = new Uint8Array(64 * 1024).fill(0x5a);
      for (let i = 0; i < 32; i++) {
        if (!a.write(chunk)) await new Promise<void>((r) => a.on('drain', r));
      }
      const ticksDuringFlood = ticks;
      // B still talks to A while its own input is full.
      fs.writeSync(stalledFd, Buffer.from('still here'));
      const deadline = Date.now() + 5000;
      while (Buffer.concat(atA).toString() !== 'still here' && Date.now() < deadline) await settle(20);
      expect(Buffer.concat(atA).toString()).toBe('still here');
      expect(ticksDuringFlood).toBeGreaterThan(0);
      expect(ticks).toBeGreaterThan(ticksDuringFlood);
      // What did not fit was dropped, not queued without bound.
      const r = relay;
      await until(() => r.stats.bytesAtoB + r.stats.discardedBytes >= 2 * 1024 * 1024);
      expect(relay.stats.discardedBytes).toBeGreaterThan(0);
      expect(relay.stats.bytesAtoB).toBeLessThan(2 * 1024 * 1024);
      expect(relay.stats.bytesAtoB + relay.stats.discardedBytes).toBe(2 * 1024 * 1024);
      expect(serialRelayQueuedBytesMax).toBeLessThan(2 * 1024 * 1024);
    } finally {
      clearInterval(ticker);
      fs.closeSync(stalledFd);
      await a.close();
    }
  });

  it('a powered-off end gets nothing, and after power-on it starts on a quiet line', async () => {
    relay = new SerialRelay();
    const paths = relay.start();
    const a = await openEnd(paths.a);
    opened.push(a);
    relay.setPowered('b', false);
    a.write(Buffer.alloc(10_000, 7));
    await until(() => (relay?.stats.discardedBytes ?? 0) >= 10_000);
    expect(relay.stats.discardedBytes).toBeGreaterThanOrEqual(10_000);
    relay.setPowered('b', true);
    const b = await openEnd(paths.b);
    opened.push(b);
    const atB = collect(b);
    await settle(50);
    a.write(Buffer.from('fresh'));
    await until(() => atB.bytes().length >= 5);
    expect(atB.bytes().toString()).toBe('fresh');
  });
});
