// Link benchmark: reliable-channel round-trip latency (p50/p99) and throughput over a real
// pty pair (native openpty; the HAL's Linux serial driver on the slave) and over TCP and UDP loopback, and
// the framing overhead as a fraction of payload for 64-byte and 4 KiB messages.
import { parseArgs } from 'node:util';
import { MultipathEndpoint } from '../../../firmware/ts/link/multipath.ts';
import { StreamPathTransport, TcpPathTransport } from '../../../firmware/ts/link/stream-path.ts';
import { UdpPathTransport } from '../../../firmware/ts/link/udp-path.ts';
import { hmacSha256Mac } from '../../../firmware/ts/link/mac.ts';
import { frameWireBytes } from '../../../firmware/ts/link/core/frame.ts';
import { reliableEnvelopeBytes } from '../../../firmware/ts/link/core/multipath.ts';
import type { PathTransport } from '../../../firmware/ts/link/endpoint.ts';
import { realClock, realTimers } from '../../../firmware/ts/hal/clock/real.ts';
import { openPtyPair } from '../../../test/link/pty.ts';
import type { Bench, BenchReport, BenchRow } from '../bench.ts';

const mac = hmacSha256Mac(new Uint8Array(32).map((_, i) => i * 13 + 1));

interface Pair {
  a: MultipathEndpoint;
  b: MultipathEndpoint;
  close(): Promise<void>;
}

function pairOf(ta: PathTransport, tb: PathTransport, extraClose: () => Promise<void> = async () => undefined): Pair {
  const a = new MultipathEndpoint({ localGeneration: 1, role: 'a', mac, transports: [ta], clock: realClock, timers: realTimers });
  const b = new MultipathEndpoint({ localGeneration: 1, role: 'b', mac, transports: [tb], clock: realClock, timers: realTimers });
  return {
    a,
    b,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
      await extraClose();
    },
  };
}

async function ptyPair(): Promise<Pair> {
  const pty = await openPtyPair();
  return pairOf(new StreamPathTransport('pty', pty.a), new StreamPathTransport('pty', pty.b), async () => undefined);
}

async function tcpPair(): Promise<Pair> {
  const server = new TcpPathTransport({ name: 'tcp', mode: 'listen', host: '127.0.0.1', port: 0, timers: realTimers });
  const a = new MultipathEndpoint({ localGeneration: 1, role: 'a', mac, transports: [server], clock: realClock, timers: realTimers });
  await server.whenListening();
  const client = new TcpPathTransport({ name: 'tcp', mode: 'connect', host: '127.0.0.1', port: server.address().port, timers: realTimers });
  const b = new MultipathEndpoint({ localGeneration: 1, role: 'b', mac, transports: [client], clock: realClock, timers: realTimers });
  return { a, b, close: async () => void (await Promise.all([a.close(), b.close()])) };
}

async function udpPair(): Promise<Pair> {
  const ua = new UdpPathTransport({ name: 'udp', localHost: '127.0.0.1', localPort: 0 });
  const ub = new UdpPathTransport({ name: 'udp', localHost: '127.0.0.1', localPort: 0 });
  const p = pairOf(ua, ub);
  await Promise.all([ua.whenBound(), ub.whenBound()]);
  ua.setRemote('127.0.0.1', ub.address().port);
  ub.setRemote('127.0.0.1', ua.address().port);
  return p;
}

function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const poll = (): void => {
      if (cond()) return resolve();
      if (performance.now() - start > timeoutMs) return reject(new Error('link bench: condition not met in time'));
      setTimeout(poll, 2);
    };
    poll();
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Ping-pong of `size`-byte reliable messages: B echoes each one; A times send → echo. */
async function measureRtt(pair: Pair, count: number, size: number): Promise<{ p50: number; p99: number }> {
  const echo = (ch: number, payload: Uint8Array): void => void pair.b.sendReliable(ch, payload);
  pair.b.on('message', echo);
  const samples: number[] = [];
  const payload = new Uint8Array(size);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      const onEcho = (): void => {
        pair.a.off('message', onEcho);
        resolve();
      };
      pair.a.on('message', onEcho);
      pair.a.sendReliable(1, payload);
    });
    samples.push(performance.now() - t0);
  }
  pair.b.off('message', echo);
  samples.sort((x, y) => x - y);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

/** One-way bulk transfer of `totalBytes` in `size`-byte reliable messages, honouring back-pressure. */
async function measureThroughput(pair: Pair, totalBytes: number, size: number): Promise<{ mibs: number; wireOverhead: number }> {
  let received = 0;
  pair.b.on('message', (_ch, p) => {
    received += p.length;
  });
  const count = Math.ceil(totalBytes / size);
  const payload = new Uint8Array(size).map((_, i) => i & 0xff);
  const sentBefore = (pair.a.stats().paths[0]?.channel.bytesSent ?? 0) + (pair.b.stats().paths[0]?.channel.bytesSent ?? 0);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    if (!pair.a.sendReliable(1, payload)) await new Promise<void>((resolve) => pair.a.on('drain', function once() {
      pair.a.off('drain', once);
      resolve();
    }));
  }
  await until(() => received >= count * size, 120_000);
  const seconds = (performance.now() - t0) / 1000;
  const sentAfter = (pair.a.stats().paths[0]?.channel.bytesSent ?? 0) + (pair.b.stats().paths[0]?.channel.bytesSent ?? 0);
  const payloadBytes = count * size;
  return { mibs: payloadBytes / (1024 * 1024) / seconds, wireOverhead: (sentAfter - sentBefore - payloadBytes) / payloadBytes };
}

export const bench: Bench = {
  name: 'link',
  description: 'link layer: reliable RTT p50/p99 and throughput over a pty pair and TCP/UDP loopback; framing overhead',
  async run(args): Promise<BenchReport> {
    const { values } = parseArgs({
      args: [...args],
      options: {
        pings: { type: 'string', default: '2000' },
        mib: { type: 'string', default: '32' },
        quick: { type: 'boolean', default: false },
        paths: { type: 'string', default: 'pty,tcp,udp' },
      },
      strict: true,
    });
    const pings = values.quick ? 200 : Number(values.pings);
    const mib = values.quick ? 4 : Number(values.mib);
    if (!(pings > 0) || !(mib > 0)) throw new Error('link bench: --pings and --mib must be positive');
    // The link's timers and sockets are unref'd (they never keep a blade alive); the benchmark
    // holds the process open itself while it runs.
    const keepAlive = setInterval(() => undefined, 1000);
    try {
      return await runAll(pings, mib, values.paths.split(','));
    } finally {
      clearInterval(keepAlive);
    }
  },
};

async function runAll(pings: number, mib: number, only: readonly string[]): Promise<BenchReport> {
    const rows: BenchRow[] = [];
    const figures: Record<string, number | string | boolean> = {};
    const notes: string[] = [];
    // The blade installs the native addon's hardware CRC32C at start-up; do the same here when
    // the addon is built, so the figures are the blade's.
    try {
      const mod = (await import('../../../firmware/ts/native/index.ts')) as Record<string, unknown>;
      figures['crc32cImplementation'] = typeof mod['crc32cImplementation'] === 'string' ? mod['crc32cImplementation'] : 'native';
    } catch (e) {
      figures['crc32cImplementation'] = 'portable';
      notes.push(`native addon not available (${(e as Error).message.split('\n')[0] ?? ''}): portable CRC32C`);
    }

    // Framing overhead of one reliable message: header, MAC tag and the 4-byte message id.
    const overhead = (size: number): number => (frameWireBytes(size + reliableEnvelopeBytes, mac) - size) / size;
    figures['overhead64'] = overhead(64);
    figures['overhead4k'] = overhead(4096);
    figures['overhead4kWithinGoal'] = overhead(4096) <= 0.1;
    rows.push({ metric: 'framing overhead, 64-byte message', value: overhead(64) * 100, unit: '% of payload' });
    rows.push({ metric: 'framing overhead, 4 KiB message (goal <= 10%)', value: overhead(4096) * 100, unit: '% of payload' });

    const transports: [string, () => Promise<Pair>][] = [['pty', ptyPair], ['tcp', tcpPair], ['udp', udpPair]];
    for (const [name, make] of transports) {
      if (!only.includes(name)) continue;
      const rttPair = await make();
      try {
        await until(() => rttPair.a.peerReachable && rttPair.b.peerReachable, 5000);
        // Warm-up round trips so the JIT and the socket paths settle before timing.
        await measureRtt(rttPair, Math.min(200, pings), 64);
        const rtt = await measureRtt(rttPair, pings, 64);
        figures[`${name}RttMsP50`] = rtt.p50;
        figures[`${name}RttMsP99`] = rtt.p99;
        rows.push({ metric: `${name}: reliable 64 B round trip p50`, value: rtt.p50, unit: 'ms' });
        rows.push({ metric: `${name}: reliable 64 B round trip p99`, value: rtt.p99, unit: 'ms' });
      } finally {
        await rttPair.close();
      }
      const tpPair = await make();
      try {
        await until(() => tpPair.a.peerReachable && tpPair.b.peerReachable, 5000);
        const tp = await measureThroughput(tpPair, mib * 1024 * 1024, 4096);
        figures[`${name}ThroughputMiBs`] = tp.mibs;
        figures[`${name}MeasuredOverhead4k`] = tp.wireOverhead;
        rows.push({ metric: `${name}: reliable throughput, 4 KiB messages`, value: tp.mibs, unit: 'MiB/s' });
        rows.push({ metric: `${name}: bytes on the wire beyond payload (acks included)`, value: tp.wireOverhead * 100, unit: '% of payload' });
      } finally {
        await tpPair.close();
      }
    }
    notes.push('Both blades run in this one process (2 cores shared). The pty is one native openpty pair: blade A on the master side (PtyMasterPort), blade B on the slave with the HAL Linux serial driver; no baud-rate limit applies to a pty.');
    notes.push('Overhead per reliable message = 36-byte header + 16-byte MAC tag + 4-byte message id.');
    return { rows, figures, notes };
}
