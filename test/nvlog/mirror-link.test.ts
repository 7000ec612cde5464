// Mirroring over the real interconnect: two blades' logs on mmap'd NVRAM files, joined by
// the link layer over TCP loopback. Active-active appends complete only once both copies are
// durable; a 300 KiB descriptor crosses in fragments; losing the partner degrades the mirror
// (reported) without stopping clients; a new link session resynchronises it (NV-1..NV-3, HA-8).
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { realClock, realTimers } from '../../firmware/ts/hal/clock/real.ts';
import { MmapNvram } from '../../firmware/ts/hal/nvram/linux/mmap-nvram.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';
import { MultipathEndpoint } from '../../firmware/ts/link/multipath.ts';
import { TcpPathTransport } from '../../firmware/ts/link/stream-path.ts';
import { decodeChangePayload } from '../../firmware/ts/nvlog/core/entry.ts';
import type { MirrorState } from '../../firmware/ts/nvlog/core/mirror.ts';
import { LinkMirrorTransport, fetchPartnerCopy } from '../../firmware/ts/nvlog/link-transport.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { NvLog } from '../../firmware/ts/nvlog/nvlog.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

const mac = hmacSha256Mac(new Uint8Array(32).fill(0x33));
const nvramBytes = 8 * 1024 * 1024;

function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const poll = (): void => {
      if (cond()) return resolve();
      if (Date.now() - start > timeoutMs) return reject(new Error('condition not met in time'));
      setTimeout(poll, 2);
    };
    poll();
  });
}

async function linkPair(generation: number): Promise<[MultipathEndpoint, MultipathEndpoint]> {
  const server = new TcpPathTransport({ name: 'tcp', mode: 'listen', host: '127.0.0.1', port: 0, timers: realTimers });
  const a = new MultipathEndpoint({ localGeneration: generation, role: 'a', mac, transports: [server], clock: realClock, timers: realTimers });
  await server.whenListening();
  const client = new TcpPathTransport({ name: 'tcp', mode: 'connect', host: '127.0.0.1', port: server.address().port, timers: realTimers, reconnectDelayMsMin: 10, reconnectDelayMsMax: 50 });
  const b = new MultipathEndpoint({ localGeneration: generation + 1, role: 'b', mac, transports: [client], clock: realClock, timers: realTimers });
  return [a, b];
}

describe('mirroring over the link (TCP loopback, mmap NVRAM)', () => {
  it('NV-1 NV-2 NV-3 HA-8 active-active mirroring, fragmentation, degradation and resynchronisation', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nvlog-link-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const nv = await Promise.all([0, 1].map((i) => MmapNvram.open(join(dir, `nvram-${i}`), { sizeBytes: nvramBytes, create: true })));
    cleanups.push(async () => {
      for (const n of nv) await n.close();
    });
    const logs = await Promise.all([0, 1].map(async (i) => (await NvLog.open(nv[i] as MmapNvram, { bladeId: i as 0 | 1, clock: realClock, timers: realTimers, cpSeq: 0, limits: { mirrorAckTimeoutMs: 300, mirrorResyncRetryMs: 200 } })).log));
    const [l0, l1] = logs as [NvLog, NvLog];
    cleanups.push(async () => {
      l0.close();
      l1.close();
    });
    const states: MirrorState[] = [];
    l0.onMirrorState((c) => states.push(c.state));

    let [a, b] = await linkPair(1);
    const t0link = new LinkMirrorTransport(a).bind(l0);
    new LinkMirrorTransport(b).bind(l1);
    cleanups.push(async () => {
      await a.close();
      await b.close();
    });
    await until(() => l0.mirrorState === 'synced' && l1.mirrorState === 'synced');

    // Both blades take changes at once, 32 in flight each; one descriptor needs fragments.
    const big = new Uint8Array(300 * 1024).map((_, i) => i & 0xff);
    const from0 = Array.from({ length: 64 }, (_, i) => l0.appendChange(new Uint8Array([0, i]), i === 10 ? big : new Uint8Array(256).fill(i)));
    const from1 = Array.from({ length: 32 }, (_, i) => l1.appendChange(new Uint8Array([1, i]), new Uint8Array(4096).fill(i)));
    const done = await Promise.all([...from0, ...from1]);
    expect(done.every((r) => !r.writeThrough)).toBe(true);
    // Answered means durable in the partner's NVRAM: its mirror holds every entry.
    const mirrorOf0 = l1.recoverPartnerMirror();
    expect(mirrorOf0.records.map((r) => r.seq)).toEqual([...Array(64).keys()].map((i) => i + 1));
    expect(decodeChangePayload((mirrorOf0.records[10] as { payload: Uint8Array }).payload).descriptor).toEqual(big);
    expect(l0.recoverPartnerMirror().records.length).toBe(32);
    expect(l0.metrics().mirrorInFlightHighWater).toBeGreaterThan(1);
    // Entries appended in the same tick share link messages.
    expect(t0link.linkMessages).toBeLessThan(t0link.mirrorMessages);
    expect(t0link.rejected).toBe(0);

    // The partner goes away: blade 0 keeps answering on its local copy and reports degraded
    // (at once when the link reports every path down, else at the ack timeout).
    await b.close();
    await l0.appendChange(new Uint8Array([0, 99]), new Uint8Array(10));
    expect(l0.mirrorState).toBe('degraded');
    const local = await l0.appendChange(new Uint8Array([0, 100]), new Uint8Array(10));
    expect(local.seq).toBe(66);

    // A new session (the partner rebooted): the unreleased entries are resynchronised.
    await a.close();
    [a, b] = await linkPair(10);
    new LinkMirrorTransport(a).bind(l0);
    new LinkMirrorTransport(b).bind(l1);
    await until(() => l0.mirrorState === 'synced');
    expect(states).toEqual(['resyncing', 'synced', 'degraded', 'resyncing', 'synced']);
    expect(l1.recoverPartnerMirror().records.map((r) => r.seq).at(-1)).toBe(66);
  });

  it('NV-7 NV-5 a blade whose NVRAM was lost (battery failed, then power cut) recovers every answered change from the partner over the link', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nvlog-fetch-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const nv = await Promise.all([0, 1].map((i) => MmapNvram.open(join(dir, `nvram-${i}`), { sizeBytes: nvramBytes, create: true })));
    cleanups.push(async () => {
      for (const n of nv) await n.close();
    });
    const open = async (i: 0 | 1, partnerCopy?: Uint8Array) =>
      NvLog.open(nv[i] as MmapNvram, { bladeId: i, clock: realClock, timers: realTimers, cpSeq: 0, ...(partnerCopy !== undefined ? { partnerCopy } : {}) });
    const l0 = (await open(0)).log;
    const l1 = (await open(1)).log;
    cleanups.push(async () => l1.close());
    let [a, b] = await linkPair(20);
    new LinkMirrorTransport(a).bind(l0);
    new LinkMirrorTransport(b).bind(l1);
    await until(() => l0.mirrorState === 'synced' && l1.mirrorState === 'synced');
    const answered = await Promise.all(Array.from({ length: 40 }, (_, i) => l0.appendChange(new Uint8Array([9, i]), new Uint8Array(300).fill(i))));
    expect(answered.map((r) => r.seq)).toEqual([...Array(40).keys()].map((i) => i + 1));

    // Blade 0's battery had failed: the power cut leaves garbage in its NVRAM.
    l0.close();
    await a.close();
    await b.close();
    (nv[0] as MmapNvram).write(0, new Prng(4).bytes(nvramBytes));
    [a, b] = await linkPair(30);
    cleanups.push(async () => {
      await a.close();
      await b.close();
    });
    new LinkMirrorTransport(b).bind(l1);
    await until(() => a.peerReachable);
    const copy = await fetchPartnerCopy(a, { bladeId: 0, regionBytes: 2 * l1.layout.halfBytes, timers: realTimers, timeoutMs: 2000 });
    expect(copy).toBeDefined();
    const reopened = await open(0, copy);
    cleanups.push(async () => reopened.log.close());
    expect(reopened.report.header).toMatchObject({ kind: 'error', code: 'ERR_NVLOG_HEADER_CORRUPT' });
    expect(reopened.report.fromMirror).toBe(40);
    expect(reopened.plan.toApply.map((r) => r.seq)).toEqual(answered.map((r) => r.seq));
    expect(decodeChangePayload((reopened.plan.toApply[39] as { payload: Uint8Array }).payload).descriptor).toEqual(new Uint8Array(300).fill(39));
    // Written back: the local log alone now holds them too.
    reopened.log.close();
    const again = await open(0);
    expect(again.plan.toApply.length).toBe(40);
    again.log.close();
  });
});
