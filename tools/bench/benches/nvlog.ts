// Change-log benchmark: append + mirror acknowledgement latency (p50/p99) and entries per
// second with a window of entries in flight, over TCP loopback and a pty pair (the link layer
// on each), for 256-byte and 4 KiB descriptors, with both blades' NVRAM mmap'd files (the
// process rig's NVRAM: a completed store is durable, persist is a fence). Also the local
// append + persist cost alone (mirror degraded) as a baseline.
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { realClock, realTimers } from '../../../firmware/ts/hal/clock/real.ts';
import { MmapNvram } from '../../../firmware/ts/hal/nvram/linux/mmap-nvram.ts';
import type { PathTransport } from '../../../firmware/ts/link/endpoint.ts';
import { hmacSha256Mac } from '../../../firmware/ts/link/mac.ts';
import { MultipathEndpoint } from '../../../firmware/ts/link/multipath.ts';
import { StreamPathTransport, TcpPathTransport } from '../../../firmware/ts/link/stream-path.ts';
import { LinkMirrorTransport } from '../../../firmware/ts/nvlog/link-transport.ts';
import { NvLog } from '../../../firmware/ts/nvlog/nvlog.ts';
import { openPtyPair } from '../../../test/link/pty.ts';
import type { Bench, BenchReport, BenchRow } from '../bench.ts';

const mac = hmacSha256Mac(new Uint8Array(32).map((_, i) => i * 7 + 3));
const nvramBytes = 64 * 1024 * 1024;

interface Rig {
  logs: [NvLog, NvLog];
  close(): Promise<void>;
}

function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const poll = (): void => {
      if (cond()) return resolve();
      if (performance.now() - start > timeoutMs) return reject(new Error('nvlog bench: condition not met in time'));
      setTimeout(poll, 2);
    };
    poll();
  });
}

async function transports(kind: 'tcp' | 'pty'): Promise<{ ta: PathTransport; tb: PathTransport; wait: () => Promise<void>; close: () => Promise<void> }> {
  if (kind === 'tcp') {
    const server = new TcpPathTransport({ name: 'tcp', mode: 'listen', host: '127.0.0.1', port: 0, timers: realTimers });
    return {
      ta: server,
      get tb(): PathTransport {
        return new TcpPathTransport({ name: 'tcp', mode: 'connect', host: '127.0.0.1', port: server.address().port, timers: realTimers });
      },
      wait: () => server.whenListening(),
      close: async () => undefined,
    };
  }
  const pty = await openPtyPair();
  return { ta: new StreamPathTransport('pty', pty.a), tb: new StreamPathTransport('pty', pty.b), wait: async () => undefined, close: () => pty.close() };
}

async function rig(kind: 'tcp' | 'pty' | 'none'): Promise<Rig> {
  const dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'nvlog-bench-'));
  const nv = await Promise.all([0, 1].map((i) => MmapNvram.open(join(dir, `nvram-${i}`), { sizeBytes: nvramBytes, create: true })));
  const logs = (await Promise.all([0, 1].map(async (i) => (await NvLog.open(nv[i] as MmapNvram, { bladeId: i as 0 | 1, clock: realClock, timers: realTimers, cpSeq: 0 })).log))) as [NvLog, NvLog];
  const closeBase = async (): Promise<void> => {
    for (const l of logs) l.close();
    for (const n of nv) await n.close();
    await rm(dir, { recursive: true, force: true });
  };
  if (kind === 'none') return { logs, close: closeBase };
  const t = await transports(kind);
  const a = new MultipathEndpoint({ localGeneration: 1, role: 'a', mac, transports: [t.ta], clock: realClock, timers: realTimers });
  await t.wait();
  const b = new MultipathEndpoint({ localGeneration: 2, role: 'b', mac, transports: [t.tb], clock: realClock, timers: realTimers });
  new LinkMirrorTransport(a).bind(logs[0]);
  new LinkMirrorTransport(b).bind(logs[1]);
  await until(() => logs[0].mirrorState === 'synced' && logs[1].mirrorState === 'synced', 10_000);
  return {
    logs,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
      await t.close();
      await closeBase();
    },
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** Keeps `window` appends in flight on blade A; releases the log as a CP would. */
async function measure(log: NvLog, count: number, window: number, size: number, warmup: number): Promise<{ p50: number; p99: number; perSec: number }> {
  const desc = new Uint8Array(size).map((_, i) => i & 0xff);
  const lat: number[] = [];
  let issued = 0;
  let completed = 0;
  let t0 = 0;
  await new Promise<void>((resolve, reject) => {
    const issue = (): void => {
      const n = issued++;
      const start = performance.now();
      const key = new Uint8Array([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, 1]);
      log.sm.receive(key);
      log.appendChange(key, desc).then(
        (r) => {
          const now = performance.now();
          // What the request path does next: applied, replied (the reply entry itself is not timed).
          log.sm.applied(key, desc.subarray(0, 8));
          log.sm.replied(key, now);
          if (n === warmup) t0 = start;
          if (n >= warmup) lat.push(now - start);
          completed++;
          // Consistency points keep up: release everything acknowledged so far.
          if (completed % 1024 === 0) {
            log.beginCp();
            log.release(r.seq);
          }
          if (issued < count + warmup) issue();
          else if (completed === count + warmup) resolve();
        },
        (e: unknown) => reject(e instanceof Error ? e : new Error(String(e))),
      );
    };
    for (let i = 0; i < window; i++) issue();
  });
  const elapsedS = (performance.now() - t0) / 1000;
  lat.sort((x, y) => x - y);
  return { p50: percentile(lat, 50), p99: percentile(lat, 99), perSec: count / elapsedS };
}

export const bench: Bench = {
  name: 'nvlog',
  description: 'change log: append + mirror acknowledgement latency and entries/s over TCP loopback and a pty pair',
  async run(args): Promise<BenchReport> {
    const { values } = parseArgs({ args: [...args], options: { count: { type: 'string' }, window: { type: 'string' } }, allowPositionals: true });
    const count = Number(values.count ?? 5000);
    const window = Number(values.window ?? 32);
    const warmup = Math.min(500, Math.floor(count / 5));
    // The firmware's timers are unref'd; this keeps the process alive between I/O events.
    const keepAlive = setInterval(() => undefined, 1000);
    const rows: BenchRow[] = [];
    const figures: Record<string, number | string | boolean> = { window, count };
    for (const kind of ['none', 'tcp', 'pty'] as const) {
      for (const size of [256, 4096]) {
        const r = await rig(kind);
        try {
          const m = await measure(r.logs[0], kind === 'pty' ? Math.min(count, 3000) : count, window, size, warmup);
          const label = kind === 'none' ? 'local append+persist (mirror degraded)' : `append+mirror ack over ${kind === 'tcp' ? 'TCP loopback' : 'pty pair'}`;
          const sz = size === 256 ? '256 B' : '4 KiB';
          rows.push({ metric: `${label}, ${sz}, p50`, value: m.p50, unit: 'ms' });
          rows.push({ metric: `${label}, ${sz}, p99`, value: m.p99, unit: 'ms' });
          rows.push({ metric: `${label}, ${sz}, throughput`, value: m.perSec, unit: 'entries/s' });
          const prefix = kind === 'none' ? 'local' : kind;
          const suffix = size === 256 ? '' : '4k';
          figures[`${prefix}${suffix}AckLatencyMsP50`] = m.p50;
          figures[`${prefix}${suffix}AckLatencyMsP99`] = m.p99;
          figures[`${prefix}${suffix}EntriesPerSec`] = m.perSec;
          const hw = r.logs[0].metrics();
          figures[`${prefix}${suffix}MirrorInFlightHighWater`] = hw.mirrorInFlightHighWater;
        } finally {
          await r.close();
        }
      }
    }
    clearInterval(keepAlive);
    return {
      rows,
      figures,
      notes: [
        `window of ${window} appends in flight on one blade; latency is from append to "both copies durable" (local persist + partner persist + ack)`,
        'tcpAckLatencyMsP50 is for 256-byte descriptors; tcp4kAckLatencyMsP50 for 4 KiB',
        'NVRAM: mmap of a shared-memory file, persist = store fence (no msync), as in the process rig',
      ],
    };
  },
};
