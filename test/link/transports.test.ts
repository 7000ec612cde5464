// The link endpoint over real transports: TCP loopback (with a reconnect), UDP loopback, and a
// serial cable made of two ptys, a relay and the HAL's Linux serial driver, with fail-over.
import { afterEach, describe, expect, it } from 'vitest';
import { MultipathEndpoint } from '../../firmware/ts/link/multipath.ts';
import { StreamPathTransport, TcpPathTransport } from '../../firmware/ts/link/stream-path.ts';
import { UdpPathTransport } from '../../firmware/ts/link/udp-path.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';
import type { LinkEndpoint, PathTransport } from '../../firmware/ts/link/endpoint.ts';
import { realClock, realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { openRelayPair } from './pty.ts';
import type { RelayPair } from './pty.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { FrameErrorCode } from '../../firmware/ts/link/core/frame.ts';

const mac = hmacSha256Mac(new Uint8Array(32).fill(0x5a));
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

function endpoint(role: 'a' | 'b', generation: number, transports: PathTransport[], m = mac): MultipathEndpoint {
  const e = new MultipathEndpoint({ localGeneration: generation, role, mac: m, transports, clock: realClock, timers: realTimers });
  cleanups.push(() => e.close());
  return e;
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

function collect(e: LinkEndpoint): { channel: number; payload: Uint8Array }[] {
  const got: { channel: number; payload: Uint8Array }[] = [];
  e.on('message', (channel, payload) => got.push({ channel, payload }));
  return got;
}

function msg(i: number, size: number): Uint8Array {
  const b = new Uint8Array(Math.max(4, size));
  new DataView(b.buffer).setUint32(0, i);
  return b;
}
function idOf(p: Uint8Array): number {
  return new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0);
}

/** Blade A listens, blade B connects (the convention for TCP paths). */
async function tcpPair(): Promise<{ a: MultipathEndpoint; b: MultipathEndpoint; client: TcpPathTransport }> {
  const server = new TcpPathTransport({ name: 'tcp', mode: 'listen', host: '127.0.0.1', port: 0, timers: realTimers });
  const a = endpoint('a', 1, [server]);
  await server.whenListening();
  const client = new TcpPathTransport({ name: 'tcp', mode: 'connect', host: '127.0.0.1', port: server.address().port, timers: realTimers, reconnectDelayMsMin: 10, reconnectDelayMsMax: 100 });
  const b = endpoint('b', 2, [client]);
  return { a, b, client };
}

async function udpPair(): Promise<[UdpPathTransport, UdpPathTransport, MultipathEndpoint, MultipathEndpoint]> {
  const ua = new UdpPathTransport({ name: 'udp', localHost: '127.0.0.1', localPort: 0 });
  const ub = new UdpPathTransport({ name: 'udp', localHost: '127.0.0.1', localPort: 0 });
  const a = endpoint('a', 10, [ua]);
  const b = endpoint('b', 20, [ub]);
  await Promise.all([ua.whenBound(), ub.whenBound()]);
  ua.setRemote('127.0.0.1', ub.address().port);
  ub.setRemote('127.0.0.1', ua.address().port);
  return [ua, ub, a, b];
}

describe('link over real transports', () => {
  it('TCP loopback: handshake, reliable messages both ways in order, status datagrams, and recovery after the connection drops', async () => {
    const { a, b, client } = await tcpPair();
    const gotB = collect(b);
    const gotA = collect(a);
    const status: number[] = [];
    b.on('datagram', (type, payload) => status.push(payload[0] as number));
    await until(() => a.peerReachable && b.peerReachable);
    expect(a.peerGeneration).toBe(2);
    expect(b.peerGeneration).toBe(1);
    for (let i = 0; i < 500; i++) a.sendReliable(1, msg(i, 1 + (i % 5000)));
    for (let i = 0; i < 100; i++) b.sendReliable(2, msg(i, 64));
    expect(a.sendAll(1, new Uint8Array([7]))).toBe(1);
    await until(() => gotB.length === 500 && gotA.length === 100);
    expect(gotB.map((m) => idOf(m.payload))).toEqual([...Array(500).keys()]);
    expect(gotA.map((m) => idOf(m.payload))).toEqual([...Array(100).keys()]);
    await until(() => status.length === 1);
    // Kill the TCP connection under the link: the client reconnects and the session carries on.
    const connectionsBefore = client.connections;
    (client as unknown as { socket: { destroy(): void } }).socket.destroy();
    for (let i = 500; i < 600; i++) a.sendReliable(1, msg(i, 100));
    await until(() => gotB.length === 600, 10_000);
    expect(gotB.slice(500).map((m) => idOf(m.payload))).toEqual([...Array(100).keys()].map((i) => i + 500));
    expect(client.connections).toBeGreaterThan(connectionsBefore);
    expect(a.peerGeneration).toBe(2);
  });

  it('TCP listen mode with partnerHost refuses a stranger, so it cannot displace the partner', async () => {
    const server = new TcpPathTransport({ name: 'tcp', mode: 'listen', host: '127.0.0.1', port: 0, timers: realTimers, partnerHost: '127.0.0.2' });
    const a = endpoint('a', 1, [server]);
    await server.whenListening();
    // A stranger connects from 127.0.0.3 and is refused.
    const { connect } = await import('node:net');
    const stranger = connect({ host: '127.0.0.1', port: server.address().port, localAddress: '127.0.0.3' });
    await new Promise<void>((r) => stranger.once('close', () => r()).once('error', () => r()));
    expect(server.foreignConnections).toBe(1);
    expect(server.connections).toBe(0);
    // The partner connects from its interconnect address, 127.0.0.2, and the link comes up.
    const partnerSide = new TcpPathTransport({ name: 'tcp', mode: 'connect', host: '127.0.0.1', port: server.address().port, localHost: '127.0.0.2', timers: realTimers });
    const b = endpoint('b', 2, [partnerSide]);
    await until(() => a.peerReachable && b.peerReachable);
    expect(server.connections).toBe(1);
  });

  it('UDP loopback: reliable messages in order and HA status datagrams', async () => {
    const [, , a, b] = await udpPair();
    const got = collect(b);
    const status: number[] = [];
    b.on('datagram', (_t, payload, path) => status.push(path));
    await until(() => a.peerReachable && b.peerReachable);
    for (let i = 0; i < 300; i++) a.sendReliable(3, msg(i, 4096));
    a.sendAll(1, new Uint8Array([1]));
    await until(() => got.length === 300);
    expect(got.map((m) => idOf(m.payload))).toEqual([...Array(300).keys()]);
    expect(got.every((m) => m.channel === 3 && m.payload.length === 4096)).toBe(true);
    await until(() => status.length === 1);
    // Mirror-sized messages far above the 65 507-byte datagram limit go as 8 KiB fragments.
    const big = [200_000, 65_536, 100_001].map((n, i) => msg(1000 + i, n));
    for (const m of big) a.sendReliable(3, m);
    await until(() => got.length === 303);
    expect(got.slice(300).map((m) => m.payload.length)).toEqual([200_000, 65_536, 100_001]);
    expect(got.slice(300).map((m) => idOf(m.payload))).toEqual([1000, 1001, 1002]);
  });

  it('UDP: a stranger with the wrong key is counted and dropped', async () => {
    const [ua, ub, a, b] = await udpPair();
    await until(() => a.peerReachable && b.peerReachable);
    // A stray device at A's address and port (same socket, other key) sends a status message.
    const { encodeFrame, FrameType } = await import('../../firmware/ts/link/core/frame.ts');
    const forged = encodeFrame({ type: FrameType.datagram, flags: 0, channel: 1, srcGeneration: 10, dstGeneration: 20, seq: 1_000_000, ack: 0, payload: new Uint8Array([9]) }, hmacSha256Mac(new Uint8Array(32).fill(1)));
    const status: Uint8Array[] = [];
    b.on('datagram', (_t, p) => status.push(p));
    ua.write(forged);
    await until(() => (b.stats().paths[0]?.rejects[FrameErrorCode.mac] ?? 0) === 1);
    expect(status).toEqual([]);
    expect(ub.foreignDatagrams).toBe(0);
  });

  let serial: RelayPair | undefined;
  afterEach(async () => {
    await serial?.close();
    serial = undefined;
  });

  it('serial cable (Linux serial driver on ptys, relayed): in order over a noisy line, fail-over to UDP when cut, back when healed', async () => {
    const rng = new Prng(99);
    serial = await openRelayPair(() => rng.float());
    const ua = new UdpPathTransport({ name: 'udp', localHost: '127.0.0.1', localPort: 0 });
    const ub = new UdpPathTransport({ name: 'udp', localHost: '127.0.0.1', localPort: 0 });
    const a = endpoint('a', 100, [new StreamPathTransport('serial', serial.a), ua]);
    const b = endpoint('b', 200, [new StreamPathTransport('serial', serial.b), ub]);
    await Promise.all([ua.whenBound(), ub.whenBound()]);
    ua.setRemote('127.0.0.1', ub.address().port);
    ub.setRemote('127.0.0.1', ua.address().port);
    const got = collect(b);
    const back = collect(a);
    const downs: string[] = [];
    a.on('pathDown', (_p, name) => downs.push(name));
    const active: number[] = [];
    a.on('activePath', (p) => active.push(p));
    await until(() => a.activePath === 0 && b.activePath === 0);
    // A noisy cable: chunks dropped and bits flipped. Everything still arrives, in order.
    serial.faults.dropProbability = 0.02;
    serial.faults.corruptProbability = 0.02;
    for (let i = 0; i < 200; i++) a.sendReliable(1, msg(i, 1024));
    for (let i = 0; i < 50; i++) b.sendReliable(1, msg(i, 32));
    await until(() => got.length === 200 && back.length === 50, 20_000);
    expect(got.map((m) => idOf(m.payload))).toEqual([...Array(200).keys()]);
    expect(back.map((m) => idOf(m.payload))).toEqual([...Array(50).keys()]);
    const serialStats = b.stats().paths[0];
    expect(serialStats?.framesIn).toBeGreaterThan(0);
    if (serial.stats.chunksCorrupted + serial.stats.chunksDropped > 0) {
      expect(Object.values(serialStats?.rejects ?? {}).reduce((x, y) => x + y, 0) + (a.stats().paths[0]?.channel.retransmits ?? 0)).toBeGreaterThan(0);
    }
    serial.faults.dropProbability = 0;
    serial.faults.corruptProbability = 0;
    // The cable is pulled: traffic moves to the network.
    serial.faults.cut = true;
    for (let i = 200; i < 300; i++) a.sendReliable(1, msg(i, 1024));
    await until(() => got.length === 300, 10_000);
    expect(a.activePath).toBe(1);
    expect(downs).toContain('serial');
    // Healed: traffic returns to the preferred serial path.
    serial.faults.cut = false;
    await until(() => a.activePath === 0, 5000);
    for (let i = 300; i < 350; i++) a.sendReliable(1, msg(i, 1024));
    await until(() => got.length === 350, 10_000);
    expect(got.map((m) => idOf(m.payload))).toEqual([...Array(350).keys()]);
    expect(active.slice(-2)).toEqual([1, 0]);
  });
});
