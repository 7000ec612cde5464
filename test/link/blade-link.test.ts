// The blade's link built from board descriptions: serial (a pty) plus UDP between two
// loopback interconnect addresses, keyed from the pair secret; a blade with another pair's
// secret gets nothing through.
import { afterEach, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { openBladeLink, linkMacFromPairKey } from '../../firmware/ts/link/blade-link.ts';
import type { BladeLinkOptions } from '../../firmware/ts/link/blade-link.ts';
import type { MultipathEndpoint } from '../../firmware/ts/link/multipath.ts';
import { realClock, realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { hmacSha256Mac, linkKeyFromHex } from '../../firmware/ts/link/mac.ts';
import { openPtyPair } from './pty.ts';
import type { SerialPair } from './pty.ts';
import { FrameErrorCode } from '../../firmware/ts/link/core/frame.ts';

const pairKey = 'a1'.repeat(32);
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function board(blade: 'a' | 'b', port: number, key = pairKey): BladeLinkOptions['board'] {
  const self = blade === 'a' ? '127.0.0.1' : '127.0.0.2';
  const partner = blade === 'a' ? '127.0.0.2' : '127.0.0.1';
  return {
    identity: { pairId: 'pair0', blade, systemId: '0123456789abcdef' },
    serial: { path: '/dev/null', baud: 115200 },
    network: { ports: [{ name: 'net0', interface: 'lo', address: `${self}/8` }], interconnect: { self, partner, port } },
    service: { runDir: '/run/twinblade', pairKeyHex: key, logLevel: 'info', cpIntervalMs: 10_000, manageAddresses: false },
  };
}

async function pairOfBlades(keyB = pairKey): Promise<{ a: MultipathEndpoint; b: MultipathEndpoint; serial: SerialPair }> {
  const serial = await openPtyPair();
  cleanups.push(() => serial.close());
  const port = await freeUdpPort();
  const a = await openBladeLink({ board: board('a', port), generation: 5, serialPort: serial.a, clock: realClock, timers: realTimers });
  cleanups.push(() => a.close());
  // Blade B hands over an opener, as a board with a USB serial adapter would.
  const b = await openBladeLink({ board: board('b', port, keyB), generation: 9, serialPort: async () => serial.b, clock: realClock, timers: realTimers });
  cleanups.push(() => b.close());
  return { a, b, serial };
}

function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const poll = (): void => {
      if (cond()) return resolve();
      if (Date.now() - start > timeoutMs) return reject(new Error('condition not met in time'));
      setTimeout(poll, 5);
    };
    poll();
  });
}

describe('blade link from the board description', () => {
  it('HA-1 comes up on the serial and the UDP interconnect path, and status goes out on both', async () => {
    const { a, b } = await pairOfBlades();
    // The network path is preferred for reliable traffic (mirroring); serial is the fallback.
    expect(a.paths.map((p) => p.name)).toEqual(['interconnect-udp', 'serial']);
    await until(() => [0, 1].every((i) => a.isPathUp(i) && b.isPathUp(i)));
    expect(a.peerGeneration).toBe(9);
    expect(a.activePath).toBe(0);
    const seen: number[] = [];
    b.on('datagram', (_t, _p, path) => seen.push(path));
    expect(a.sendAll(1, new Uint8Array([1]))).toBe(2);
    await until(() => seen.length === 2);
    expect(seen.sort()).toEqual([0, 1]);
  });

  it('a blade keyed with another pair secret is refused on every path (ERR_FRAME_MAC)', async () => {
    const { a, b } = await pairOfBlades('b2'.repeat(32));
    await until(() => (a.stats().paths[0]?.rejects[FrameErrorCode.mac] ?? 0) > 0 && (a.stats().paths[1]?.rejects[FrameErrorCode.mac] ?? 0) > 0);
    expect(a.peerGeneration).toBe(0);
    expect(b.peerGeneration).toBe(0);
  });

  it('refuses a board without the pair secret', async () => {
    const serial = await openPtyPair();
    cleanups.push(() => serial.close());
    const { service: _service, ...noKey } = board('a', 1);
    await expect(openBladeLink({ board: noKey, generation: 1, serialPort: serial.a, clock: realClock, timers: realTimers })).rejects.toMatchObject({ code: 'ERR_LINK_KEY' });
  });

  it('derives the link key from the pair secret instead of using it directly', () => {
    const derived = linkMacFromPairKey(pairKey);
    const raw = hmacSha256Mac(linkKeyFromHex(pairKey));
    const data = [new Uint8Array([1, 2, 3])];
    expect(derived.verify(data, derived.sign(data))).toBe(true);
    expect(raw.verify(data, derived.sign(data))).toBe(false);
  });
});
