// The blade daemon: the composition root. From the board descriptor it builds the drivers,
// mounts the blade's own disk set (RAID + copy-on-write file system), opens the change log
// in NVRAM and replays what the last consistency point does not contain, then serves NFS
// with every change logged before it is applied and answered. Management: a control socket
// for the `blade` CLI and a Prometheus metrics endpoint; structured JSON logs.
import path from 'node:path';
import fs from 'node:fs/promises';
import { totalmem } from 'node:os';
import type { Logger } from 'pino';
import type { Clock, TimerHandle, Timers } from '../core/clock.ts';
import { Prng } from '../core/prng.ts';
import { fromHex } from '../core/bytes.ts';
import type { Time } from '../fsapi/ops.ts';
import { realClock, realTimers } from '../hal/clock/real.ts';
import type { BlockDevice } from '../hal/block/block-device.ts';
import { MmapNvram } from '../hal/nvram/linux/mmap-nvram.ts';
import type { Board } from '../board/schema.ts';
import { bladeIndex } from '../board/board.ts';
import { NvLog } from '../nvlog/nvlog.ts';
import { replay } from '../nvlog/core/replay.ts';
import { startNfsServer, type NfsServer } from '../nfs/server.ts';
import { deriveWriteVerifier } from '../nfs/fh.ts';
import { openDisks } from './disks.ts';
import { collectReadCacheMetrics, dirtyBytesFor, openStorageSet, readCacheBytesFor, type StorageSet } from './storage-set.ts';
import { FileSystems, NvChangeLog, NvDrc, ReplayApplier, takeConsistencyPoint } from './change-path.ts';
import { MgmtServer } from './mgmt.ts';
import { MetricsRegistry } from './metrics.ts';

export interface BladeOptions {
  board: Board;
  logger: Logger;
  clock?: Clock;
  timers?: Timers;
  /** Format the own disk set when every disk is blank (default true). */
  formatIfBlank?: boolean;
}

export interface ExportInfo {
  path: string;
  /** A URL stock tools accept as-is (libnfs form). */
  url: string;
  owner: 'a' | 'b';
}

export interface BladeStatus {
  blade: 'a' | 'b';
  pairId: string;
  state: string;
  partner: { state: string; reachable: boolean };
  bootGeneration: number;
  nvlog: ReturnType<NvLog['metrics']>;
  mirror: string;
  disks: ReturnType<StorageSet['volume']['status']>;
  cp: { number: number; ageMs: number; lastDurationMs: number };
  exports: ExportInfo[];
  nfs: { host: string; nfsPort: number; mountPort: number };
  metricsPort: number | undefined;
  recovery: { replayed: number; problems: string[] };
}

/** Clients get the blade's own address in URLs; 0.0.0.0 means "any", so name loopback. */
function urlHost(bind: string): string {
  return bind === '0.0.0.0' ? '127.0.0.1' : bind;
}

export function nfsUrl(host: string, exportPath: string, nfsPort: number, mountPort: number): string {
  // Explicit ports even when standard: libnfs then needs no portmapper on the blade.
  return `nfs://${host}${exportPath}?nfsport=${nfsPort}&mountport=${mountPort}&version=3`;
}

export class Blade {
  private constructor(
    private readonly o: Required<Omit<BladeOptions, 'formatIfBlank'>>,
    private readonly set: StorageSet,
    private readonly disks: BlockDevice[],
    private readonly nvram: MmapNvram,
    private readonly log: NvLog,
    private readonly nfs: NfsServer,
    private readonly recovery: { replayed: number; problems: string[] },
    private readonly cpState: { last: number; lastAtMs: number; lastDurationMs: number; timer: TimerHandle | undefined; running: Promise<void> | undefined },
  ) {}

  private mgmt: MgmtServer | undefined;
  private metricsPort: number | undefined;

  static async start(opts: BladeOptions): Promise<Blade> {
    const board = opts.board;
    const logger = opts.logger;
    const clock = opts.clock ?? realClock;
    const timers = opts.timers ?? realTimers;
    const blade = board.identity.blade;
    const origin = bladeIndex(board);
    const svc = board.service;
    const cpIntervalMs = svc?.cpIntervalMs ?? 10_000;
    const now = (): Time => {
      const ns = clock.wallNs();
      return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
    };
    const prng = new Prng(Number(clock.wallNs() % 0x7fffffffn));

    logger.info({ blade, pairId: board.identity.pairId }, 'blade starting');
    const disks = await openDisks([...board.disks.own, ...board.disks.spare]);
    const members = disks.slice(0, board.disks.own.length);
    const spares = disks.slice(board.disks.own.length);
    const cpState: { last: number; lastAtMs: number; lastDurationMs: number; timer: TimerHandle | undefined; running: Promise<void> | undefined } = {
      last: 0,
      lastAtMs: clock.nowMs(),
      lastDurationMs: 0,
      timer: undefined,
      running: undefined,
    };
    const set = await openStorageSet(members, spares, {
      pairId: board.identity.pairId,
      blade,
      clock,
      timers,
      prng,
      cpIntervalMs,
      readCacheBytes: readCacheBytesFor(totalmem(), svc?.readCacheBytes),
      dirtyBytesMax: dirtyBytesFor(board.nvram.sizeBytes),
      formatIfBlank: opts.formatIfBlank ?? true,
      now,
      // The log is released by takeConsistencyPoint only (after the outcomes a CP holds are
      // durable, SM-2), never from here.
      onCpCommitted: (cp) => {
        cpState.last = cp.cpNumber;
      },
      onProblem: (p) => logger.warn({ problem: p }, 'file system problem'),
      onRaidEvent: (e) => logger.info({ raid: e }, 'raid event'),
    });
    if (set.formatted) logger.info({ fsid: set.fs.fsid.toString(16) }, 'formatted a new volume and file system');
    cpState.last = set.fs.cpNumber;

    if (board.nvram.driver !== 'mmap') throw new Error(`NVRAM driver ${board.nvram.driver} is not supported by this daemon build`);
    const nvram = await MmapNvram.open(board.nvram.path, { sizeBytes: board.nvram.sizeBytes, create: true, mode: board.nvram.msync ? 'msync' : 'fence' });
    const cpSeq = Number(set.fs.appliedSeq(origin));
    const opened = await NvLog.open(nvram, { bladeId: origin, clock, timers, cpSeq });
    const log = opened.log;
    for (const p of opened.report.problems) logger.warn({ problem: p }, 'change log recovery');
    // No partner in this composition: the mirror is degraded from the start (NV-1 keeps the
    // local copy; the pair composition attaches the interconnect).
    log.peerDisconnected();

    const filesystems = new FileSystems();
    filesystems.add(set.fs);
    const applier = new ReplayApplier(filesystems);
    const rep = await replay(opened.recovered, cpSeq, applier, log.sm, clock.nowMs());
    logger.info({ replayed: applier.applied, skipped: applier.skipped, cpSeq, lastSeq: rep.lastSeq ?? null }, 'change log replayed');

    // The change log exists only once the CP callbacks below are wired to it.
    const changeLogRef: { log?: NvChangeLog } = {};
    const doCp = (): Promise<void> => {
      if (cpState.running) return cpState.running;
      const started = clock.nowMs();
      cpState.running = (async () => {
        // The same sequence as pair.ts and the simulator: applies held until every applied
        // change's outcome is durable, then freeze, commit and release (SM-2).
        await takeConsistencyPoint(log, changeLogRef.log, filesystems, origin);
        cpState.lastAtMs = clock.nowMs();
        cpState.lastDurationMs = cpState.lastAtMs - started;
      })()
        .catch((e: unknown) => logger.error({ err: e }, 'consistency point failed'))
        .finally(() => {
          cpState.running = undefined;
        });
      return cpState.running;
    };
    cpState.timer = timers.after(cpIntervalMs, () => {
      void doCp().finally(() => cpState.timer?.refresh());
    });
    log.onFull(() => void doCp());

    const changeLog = new NvChangeLog(log, filesystems, origin, {
      makeSpace: () => doCp(),
      writeThrough: async () => {
        await doCp();
      },
    });
    changeLogRef.log = changeLog;
    const fhKey = svc ? fromHex(svc.pairKeyHex) : undefined;
    // The write verifier changes only when acknowledged unstable data could have been lost;
    // every WRITE is FILE_SYNC here (logged in NVRAM first), so it is constant per pair (epoch
    // 0), and derived from the key rather than a piece of it (the key never goes on the wire).
    const writeVerifier = fhKey ? deriveWriteVerifier(fhKey, 0n) : undefined;
    const host = board.nfs.bindAddress;
    const nfs = await startNfsServer({
      exports: board.nfs.exports
        .filter((e) => e.set === 'own')
        .map((e) => ({ path: e.path, fs: set.fs, clients: e.clients, readOnly: e.readOnly })),
      clock,
      host,
      ports: { nfs: board.nfs.ports.nfs, mount: board.nfs.ports.mount },
      changeLog,
      drc: new NvDrc(log, (e) => logger.warn({ err: e }, 'state-machine log reply not recorded'), () => doCp()),
      ...(fhKey ? { fhKey } : {}),
      ...(writeVerifier ? { writeVerifier } : {}),
      onError: (e) => logger.error({ err: e }, 'nfs: unexpected error'),
    });

    const recovery = { replayed: applier.applied, problems: opened.report.problems };
    const b = new Blade({ board, logger, clock, timers }, set, disks, nvram, log, nfs, recovery, cpState);
    b.doCp = doCp;
    if (svc) {
      await fs.mkdir(svc.runDir, { recursive: true, mode: 0o700 });
      const mgmt = new MgmtServer(path.join(svc.runDir, 'blade.sock'));
      mgmt.handle('status', () => b.status());
      mgmt.handle('cp', async () => {
        await doCp();
        return { cp: cpState.last };
      });
      await mgmt.start();
      b.mgmt = mgmt;
      if (svc.metrics) b.metricsPort = await mgmt.startMetrics(b.metrics(), svc.metrics.host, svc.metrics.port);
    }
    for (const e of b.exports()) logger.info({ export: e.path, url: e.url }, 'serving');
    return b;
  }

  /** Takes a consistency point now (also taken on the timer and when the log fills). */
  doCp: () => Promise<void> = async () => undefined;

  exports(): ExportInfo[] {
    const board = this.o.board;
    const host = urlHost(board.nfs.bindAddress);
    return board.nfs.exports
      .filter((e) => e.set === 'own')
      .map((e) => ({ path: e.path, url: nfsUrl(host, e.path, this.nfs.nfsPort, this.nfs.mountPort), owner: board.identity.blade }));
  }

  status(): BladeStatus {
    const board = this.o.board;
    return {
      blade: board.identity.blade,
      pairId: board.identity.pairId,
      state: 'NORMAL',
      partner: { state: 'UNKNOWN', reachable: false },
      bootGeneration: this.log.bootGeneration,
      nvlog: this.log.metrics(),
      mirror: this.log.mirrorState,
      disks: this.set.volume.status(),
      cp: { number: this.cpState.last, ageMs: Math.round(this.o.clock.nowMs() - this.cpState.lastAtMs), lastDurationMs: Math.round(this.cpState.lastDurationMs) },
      exports: this.exports(),
      nfs: { host: urlHost(board.nfs.bindAddress), nfsPort: this.nfs.nfsPort, mountPort: this.nfs.mountPort },
      metricsPort: this.metricsPort,
      recovery: this.recovery,
    };
  }

  metrics(): MetricsRegistry {
    const r = new MetricsRegistry();
    r.collect('twinblade_nvlog_used_bytes', 'NVRAM change log bytes in use', 'gauge', () => [{ value: this.log.metrics().logBytesUsed }]);
    r.collect('twinblade_nvlog_used_bytes_high_water', 'High-water mark of NVRAM change log use', 'gauge', () => [{ value: this.log.metrics().logBytesHighWater }]);
    r.collect('twinblade_nvlog_last_seq', 'Last logged sequence number', 'gauge', () => [{ value: this.log.metrics().lastSeq }]);
    r.collect('twinblade_nvlog_appends_total', 'Change log appends', 'counter', () => [{ value: this.log.metrics().appends }]);
    r.collect('twinblade_sm_requests', 'Requests held in the state-machine log', 'gauge', () => [{ value: this.log.metrics().smRequests }]);
    r.collect('twinblade_sm_requests_high_water', 'High-water mark of the state-machine log', 'gauge', () => [{ value: this.log.metrics().smRequestsHighWater }]);
    r.collect('twinblade_mirror_in_flight_high_water', 'High-water mark of mirrored entries in flight', 'gauge', () => [{ value: this.log.metrics().mirrorInFlightHighWater }]);
    r.collect('twinblade_mirror_synced', '1 when the partner holds a synchronised mirror of this log', 'gauge', () => [{ value: this.log.mirrorState === 'synced' ? 1 : 0 }]);
    r.collect('twinblade_write_through', '1 when changes are committed to disk before replies (battery not good)', 'gauge', () => [{ value: this.log.writeThrough ? 1 : 0 }]);
    r.collect('twinblade_cp_number', 'Last committed consistency point', 'counter', () => [{ value: this.cpState.last }]);
    r.collect('twinblade_cp_age_seconds', 'Seconds since the last consistency point', 'gauge', () => [{ value: (this.o.clock.nowMs() - this.cpState.lastAtMs) / 1000 }]);
    collectReadCacheMetrics(r, () => [{ blade: this.o.board.identity.blade, fs: this.set.fs }]);
    r.collect('twinblade_volume_degraded', '1 when the RAID volume runs without full redundancy', 'gauge', () => [{ value: this.set.volume.status().state === 'normal' ? 0 : 1 }]);
    return r;
  }

  /** Orderly shutdown (SIGTERM): stop serving, take a final consistency point, close devices. */
  async stop(): Promise<void> {
    this.o.logger.info('blade stopping');
    this.cpState.timer?.cancel();
    await this.mgmt?.close();
    await this.nfs.close();
    await this.cpState.running;
    // The final CP goes the same way as every other (doCp logs a failure; the log then keeps
    // the changes and the next start replays them).
    await this.doCp();
    this.log.close();
    await this.set.close();
    await Promise.allSettled(this.disks.map((d) => d.close()));
    await this.nvram.close();
    this.o.logger.info('blade stopped');
  }
}
