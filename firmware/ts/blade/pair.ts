// The pair composition: a blade with a partner. Besides what a single blade does (its own
// disk set, NVRAM log, NFS), it runs the interconnect (serial + network paths), the HA state
// machine with the mailbox disks and the fence, and mirrors its log to the partner. The HA
// machine decides when a disk set is replayed and served: its own after the reboot steps
// (HA-10), its partner's after a takeover (HA-6, HA-7), and gives it back (HA-9).
import { totalmem } from 'node:os';
import type { Logger } from 'pino';
import type { Clock, TimerHandle, Timers } from '../core/clock.ts';
import { Prng } from '../core/prng.ts';
import { fromHex } from '../core/bytes.ts';
import type { Time } from '../fsapi/ops.ts';
import { realClock, realTimers } from '../hal/clock/real.ts';
import type { BlockDevice } from '../hal/block/block-device.ts';
import { MmapNvram } from '../hal/nvram/linux/mmap-nvram.ts';
import { LinuxSerialPort } from '../hal/serial/linux/linux-serial-port.ts';
import type { Board } from '../board/schema.ts';
import { bladeIndex } from '../board/board.ts';
import { NvLog } from '../nvlog/nvlog.ts';
import { replay } from '../nvlog/core/replay.ts';
import type { RecoveredLog } from '../nvlog/core/recovery.ts';
import { computeLayout } from '../nvlog/core/layout.ts';
import { LinkMirrorTransport, type MirrorSink } from '../nvlog/link-transport.ts';
import type { MirrorMessage } from '../nvlog/core/mirror.ts';
import { openBladeLink } from '../link/blade-link.ts';
import type { MultipathEndpoint } from '../link/multipath.ts';
import { HaDriver, haPathsFor } from '../ha/driver.ts';
import { HaCode, type SetIndex } from '../ha/core/machine.ts';
import { defaultHaTiming } from '../ha/core/timing.ts';
import { decodeMailbox } from '../ha/core/mailbox.ts';
import { HaPhase } from '../ha/core/status.ts';
import type { PersistedHaState } from '../ha/core/machine.ts';
import { mailboxSlotOffset, diskLayout } from '../storage/layout.ts';
import type { Fence } from '../ha/fence.ts';
import type { MailboxDisk } from '../ha/mailbox-io.ts';
import { startNfsServer, type NfsServer } from '../nfs/server.ts';
import { deriveWriteVerifier } from '../nfs/fh.ts';
import { openDisks } from './disks.ts';
import { collectReadCacheMetrics, dirtyBytesFor, openStorageSet, readCacheBytesFor, type StorageSet } from './storage-set.ts';
import { FileSystems, NvChangeLog, NvDrc, ReplayApplier, takeConsistencyPoint } from './change-path.ts';
import { HaStateStore } from './ha-state.ts';
import { AddressManager, type ClientAddress } from './addresses.ts';
import type { BoardDevices } from './board-devices.ts';
import { PowerMonitor } from '../nvlog/power.ts';
import { nfsUrl, type ExportInfo } from './daemon.ts';
import { MgmtServer } from './mgmt.ts';
import { MetricsRegistry } from './metrics.ts';
import { PartnerPowerWatch } from '../board/partner-power.ts';

export interface PairBladeOptions {
  board: Board;
  logger: Logger;
  /** The fence over the shared disks, numbered as `diskNumbers` below. */
  fence: Fence;
  /** GPIO lines (power-fail, partner reset) and the battery gauge, when the board has them. */
  devices?: BoardDevices;
  clock?: Clock;
  timers?: Timers;
}

/** The firmware's compatibility level (high 16 bits) and release (low 16 bits), HA-8. */
export const firmwareVersion = 0x0001_0000;

/** Mirroring messages kept while the change log is not yet open (a boot's worth of greetings and resync). */
const earlyMirrorMessagesMax = 65_536;

/** See recoverOwn: how long a reachable partner may leave a mirrored entry unacknowledged. */
export const mirrorAckTimeoutMs = 5000;

interface SetRuntime {
  set: StorageSet;
  nfs: NfsServer | undefined;
}

/**
 * Disk numbering shared by both blades (mailbox records and fence commands carry it): set 0
 * (blade a's) first, then set 1, each in board order.
 */
export function diskNumbers(board: Board): { set0: number[]; set1: number[] } {
  const me = bladeIndex(board);
  const own = board.disks.own.length;
  const partner = board.disks.partner.length;
  const first = me === 0 ? own : partner;
  const second = me === 0 ? partner : own;
  return { set0: Array.from({ length: first }, (_, i) => i), set1: Array.from({ length: second }, (_, i) => first + i) };
}

async function stateFromMailboxes(me: 0 | 1, disksBySet: Record<SetIndex, BlockDevice[]>, nums: { set0: number[]; set1: number[] }): Promise<PersistedHaState | undefined> {
  let best: PersistedHaState & { sequence: number } | undefined;
  for (const set of [0, 1] as const) {
    const numbers = set === 0 ? nums.set0 : nums.set1;
    await Promise.all(
      disksBySet[set].map(async (d, i) => {
        try {
          const bytes = await d.read(mailboxSlotOffset(me), diskLayout.mailboxSlotBytes);
          const r = decodeMailbox(bytes, me, numbers[i] as number);
          const st = r.status;
          if (best === undefined || st.generation > best.generation || (st.generation === best.generation && st.sequence > best.sequence)) {
            const stable = st.phase === HaPhase.takeover ? HaPhase.takeover : HaPhase.normal;
            best = { generation: st.generation, sequence: st.sequence, phase: stable, claimedSets: st.claimedSets, operatorDisabled: false };
          }
        } catch {
          // A blank, corrupt or unreadable slot says nothing.
        }
      }),
    );
  }
  if (best === undefined) return undefined;
  const { sequence: _sequence, ...state } = best;
  return state;
}

interface EarlyMirror {
  transport: LinkMirrorTransport;
  messages: MirrorMessage[];
  unbind: () => void;
  /** While own recovery fetches the partner's copy of our log: where its copy messages go. */
  onCopy: ((m: MirrorMessage & { kind: 'copy' | 'copy-done' }) => void) | undefined;
}

/**
 * Until the change log is open (disks assembled, log replayed), the partner's mirroring
 * messages — its greeting above all — are kept and handed to the log in order once it binds.
 * Bound the moment the link exists: a greeting dropped on the floor would leave the partner
 * never resynchronising its log to us, one mirror direction degraded for good, and takeover
 * blocked (HA-8).
 */
function bindEarlyMirror(link: MultipathEndpoint, me: 0 | 1): EarlyMirror {
  const transport = new LinkMirrorTransport(link);
  const messages: MirrorMessage[] = [];
  const early: EarlyMirror = { transport, messages, unbind: () => undefined, onCopy: undefined };
  const sink: MirrorSink = {
    bladeId: me,
    onPeerMessage: (m) => {
      if ((m.kind === 'copy' || m.kind === 'copy-done') && early.onCopy !== undefined) early.onCopy(m);
      else if (messages.length < earlyMirrorMessagesMax) messages.push(m);
    },
    attachTransport: () => undefined,
    peerConnected: () => undefined,
    peerDisconnected: () => undefined,
  };
  early.unbind = transport.bindSink(sink);
  return early;
}

/** How long own recovery after a giveback waits for the partner's copy of our log. */
export const partnerCopyTimeoutMs = 2000;

/**
 * Asks the partner for its copy of our log over the early binding (the protocol of
 * fetchPartnerCopy in nvlog/link-transport.ts) and rebuilds the region image for
 * `NvLog.open`'s `partnerCopy`. Undefined when the partner does not answer in time.
 */
function fetchPartnerCopyEarly(early: EarlyMirror, me: 0 | 1, regionBytes: number, timers: Timers): Promise<Uint8Array | undefined> {
  return new Promise((resolve) => {
    const region = new Uint8Array(regionBytes);
    let received = 0;
    const finish = (v: Uint8Array | undefined): void => {
      timer.cancel();
      early.onCopy = undefined;
      resolve(v);
    };
    early.onCopy = (m) => {
      if (m.origin !== me) return;
      if (m.kind === 'copy') {
        if (m.position >= 0 && m.position + m.bytes.length <= region.length) {
          region.set(m.bytes, m.position);
          received++;
        }
      } else finish(received === m.count ? region : undefined);
    };
    const timer = timers.after(partnerCopyTimeoutMs, () => finish(undefined));
    early.transport.send({ kind: 'fetch', origin: me });
  });
}

export class PairBlade {
  private readonly board: Board;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly timers: Timers;
  private readonly me: 0 | 1;
  private readonly partner: 0 | 1;
  private readonly filesystems = new FileSystems();
  private readonly sets: Partial<Record<SetIndex, SetRuntime>> = {};
  private nvlog: NvLog | undefined;
  private ownRecovered: RecoveredLog | undefined;
  private ownReady: Promise<void> | undefined;
  private changeLog: NvChangeLog | undefined;
  private drc: NvDrc | undefined;
  private awaitedGiveback = false;
  private cpTimer: TimerHandle | undefined;
  private cpRunning: Promise<void> | undefined;
  private cpInfo = { last: 0, lastAtMs: 0 };
  private mgmt: MgmtServer | undefined;
  private metricsPort: number | undefined;
  private readonly prng: Prng;
  private readonly addresses: AddressManager;
  private power: PowerMonitor | undefined;
  /** Mirroring over the link, bound at boot so nothing the partner sends is lost before our log opens. */
  private readonly mirrorTransport: LinkMirrorTransport;
  private readonly earlyMirror: EarlyMirror;
  private stopped = false;

  private ha!: HaDriver;
  /** The partner-power sense line, when the board has one (hardware-assisted takeover). */
  private partnerPower: PartnerPowerWatch | undefined;

  private constructor(
    private readonly o: PairBladeOptions,
    private readonly nvram: MmapNvram,
    private readonly haStore: HaStateStore,
    private readonly link: MultipathEndpoint,
    private readonly serial: LinuxSerialPort,
    private readonly disksBySet: Record<SetIndex, BlockDevice[]>,
    private readonly spares: BlockDevice[],
    early: EarlyMirror,
  ) {
    this.board = o.board;
    this.log = o.logger;
    this.clock = o.clock ?? realClock;
    this.timers = o.timers ?? realTimers;
    this.me = bladeIndex(o.board);
    this.partner = this.me === 0 ? 1 : 0;
    this.prng = new Prng(Number(this.clock.wallNs() % 0x7fffffffn));
    this.cpInfo.lastAtMs = this.clock.nowMs();
    this.addresses = new AddressManager(this.log, o.board.service?.manageAddresses ?? false);
    this.mirrorTransport = early.transport;
    this.earlyMirror = early;
  }

  /** The client addresses that go with serving a set (CF-5): ours, or the partner's after a takeover. */
  private clientAddresses(set: SetIndex): ClientAddress[] {
    if (set === this.me) return this.board.network.ports.map((p) => ({ interface: p.interface, address: p.address }));
    return this.board.partner?.addresses ?? [];
  }

  static async start(o: PairBladeOptions): Promise<PairBlade> {
    const board = o.board;
    const clock = o.clock ?? realClock;
    const timers = o.timers ?? realTimers;
    if (board.nvram.driver !== 'mmap') throw new Error(`NVRAM driver ${board.nvram.driver} is not supported by this daemon build`);
    const nvram = await MmapNvram.open(board.nvram.path, { sizeBytes: board.nvram.sizeBytes, create: true, mode: board.nvram.msync ? 'msync' : 'fence' });
    const haStore = new HaStateStore(nvram);
    let persisted = haStore.read();
    const ic = board.network.interconnect;
    if (board.service?.manageAddresses && ic.interface !== undefined) {
      // The interconnect address is the blade's own for good (never taken over): up at boot.
      await new AddressManager(o.logger, true).claim([{ interface: ic.interface, address: `${ic.self}/24` }]);
    }
    const serial = new LinuxSerialPort({ path: board.serial.path, baudRate: board.serial.baud });
    await serial.open();
    const link = await openBladeLink({ board, generation: (persisted?.generation ?? 0) + 1, serialPort: serial, clock, timers });
    const early = bindEarlyMirror(link, bladeIndex(board));
    const own = await openDisks(board.disks.own);
    const theirs = await openDisks(board.disks.partner);
    const spares = await openDisks(board.disks.spare);
    const me = bladeIndex(board);
    const disksBySet: Record<SetIndex, BlockDevice[]> = me === 0 ? { 0: own, 1: theirs } : { 0: theirs, 1: own };
    // HA-4: the state is also on the mailbox disks. With the NVRAM copy lost (a failed battery),
    // the newest record in our own slots gives back the generation — a blade must never come
    // back with an older generation than its partner has seen, or its messages read as stale.
    persisted ??= await stateFromMailboxes(me, disksBySet, diskNumbers(board));
    if (persisted !== undefined) await haStore.write(persisted);
    const b = new PairBlade(o, nvram, haStore, link, serial, disksBySet, spares, early);
    b.startHa(persisted);
    await b.startMgmt();
    return b;
  }

  private startHa(persisted: ReturnType<HaStateStore['read']>): void {
    const nums = diskNumbers(this.board);
    const mailboxDisks: MailboxDisk[] = [];
    ([0, 1] as const).forEach((set) => {
      const numbers = set === 0 ? nums.set0 : nums.set1;
      this.disksBySet[set].forEach((device, i) => mailboxDisks.push({ index: numbers[i] as number, set, device }));
    });
    this.ha = new HaDriver({
      config: {
        systemId: Number.parseInt(this.board.identity.systemId.slice(8), 16),
        bladeIndex: this.me,
        firmwareVersion,
        paths: haPathsFor(this.link, mailboxDisks),
        timing: defaultHaTiming,
        autoGiveback: true,
        mirrorSyncedAtBoot: false,
        // Giveback takes a CP of the partner's file system before the release (serve off), so
        // the returning partner needs nothing from a mirror it cannot sync before it has its disks.
        givebackNeedsPartnerMirror: false,
      },
      persisted,
      clock: this.clock,
      timers: this.timers,
      link: this.link,
      mailboxDisks,
      fence: this.o.fence,
      ...(this.o.devices?.gpio?.partnerReset ? { partnerReset: this.o.devices.gpio.partnerReset } : {}),
      setDisks: [nums.set0, nums.set1],
      persist: (state) => this.haStore.write(state),
      serve: (set, on) =>
        this.serve(set, on).catch((e: unknown) => {
          this.log.error({ err: e, set, on }, 'serve failed');
          throw e;
        }),
      replay: (set) =>
        this.replaySet(set).then(
          () => true,
          (e: unknown) => {
            this.log.error({ err: e, set }, 'replay failed');
            return false;
          },
        ),
      alert: (code, message) => {
        if (code === HaCode.awaitGiveback) this.awaitedGiveback = true;
        this.log.warn({ alert: code }, message);
      },
      // The takeover timeline (fence, reset, replay, serve) for the log; docs/timing-budget.md.
      trace: (event, fields) => this.log.info({ ha: event, ...fields }, 'ha timeline'),
    });
    this.ha.start();
    const senseLine = this.o.devices?.gpio?.partnerPower;
    if (senseLine !== undefined) {
      const watch = new PartnerPowerWatch({
        line: senseLine,
        timers: this.timers,
        onChange: (good) => {
          this.log.info({ partnerPower: good ? 'good' : 'lost' }, 'partner power sense');
          this.ha.setPartnerPower(good);
        },
        onError: (e) => this.log.warn({ err: e }, 'partner power sense: read failed'),
      });
      this.partnerPower = watch;
      watch.start().catch((e: unknown) => this.log.warn({ err: e }, 'partner power sense: cannot watch the line'));
    }
  }

  private now(): Time {
    const ns = this.clock.wallNs();
    return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
  }

  private bladeOf(set: SetIndex): 'a' | 'b' {
    return set === 0 ? 'a' : 'b';
  }

  /** Recovery of a disk set: own (mount + open and replay own log) or the partner's (mount + replay its mirror). */
  private replaySet(set: SetIndex): Promise<void> {
    if (set === this.me) {
      this.ownReady ??= this.recoverOwn();
      return this.ownReady;
    }
    return this.recoverPartner();
  }

  private async openSet(set: SetIndex, formatIfBlank: boolean): Promise<StorageSet> {
    const s = await openStorageSet(this.disksBySet[set], set === this.me ? this.spares : [], {
      pairId: this.board.identity.pairId,
      blade: this.bladeOf(set),
      clock: this.clock,
      timers: this.timers,
      prng: this.prng,
      cpIntervalMs: this.board.service?.cpIntervalMs ?? 10_000,
      readCacheBytes: readCacheBytesFor(totalmem(), this.board.service?.readCacheBytes),
      dirtyBytesMax: dirtyBytesFor(this.board.nvram.sizeBytes),
      formatIfBlank,
      now: () => this.now(),
      onProblem: (p) => this.log.warn({ problem: p, set }, 'file system problem'),
      onRaidEvent: (e) => this.log.info({ raid: e, set }, 'raid event'),
    });
    if (s.formatted) this.log.info({ set }, 'formatted a new volume and file system');
    return s;
  }

  private async recoverOwn(): Promise<void> {
    const set = await this.openSet(this.me, true);
    // Replay checks continuity from this or from the log's release point, whichever is later
    // (a blade that served its partner's set released entries past its own CP: planReplay).
    const cpSeq = Number(set.fs.appliedSeq(this.me));
    // After a giveback the partner's copy of our log holds what our NVRAM may have lost (a
    // failed battery) and the outcomes of our changes it replayed (continuePartnerLog), which
    // answer retransmissions that reach us now (SM-2).
    const partnerCopy = this.awaitedGiveback ? await fetchPartnerCopyEarly(this.earlyMirror, this.me, 2 * computeLayout(this.nvram.sizeBytes).halfBytes, this.timers) : undefined;
    if (this.awaitedGiveback && partnerCopy === undefined) this.log.warn('the partner did not send its copy of our change log; recovering from the local copy alone');
    const opened = await NvLog.open(this.nvram, {
      ...(partnerCopy !== undefined ? { partnerCopy } : {}),
      // HA-4: the HA generation survives a lost NVRAM (mailbox disks); boots never count from 1 again.
      bootGenerationFloor: this.ha.status().generation,
      bladeId: this.me,
      clock: this.clock,
      timers: this.timers,
      cpSeq,
      // A dead partner is noticed by the link's liveness (the session drops, the mirror turns
      // degraded at once); the ack timeout only catches a partner that is reachable but stuck.
      // Short, it would degrade the mirror under a burst of 1 MiB writes on a busy host — and a
      // degraded mirror forbids takeover (HA-8) exactly when a power cut under load needs it.
      limits: { mirrorAckTimeoutMs: mirrorAckTimeoutMs },
      // HA-8: a degraded mirror answers clients from the local copy only once NO-TAKEOVER is
      // on our mailbox disks (the log degrades the moment the link drops: in a partition the
      // partner must know, before we answer alone, that its copy of our log is stale).
      announceDegraded: () => this.ha.announceMirrorDegraded(),
      ...(this.awaitedGiveback ? { mode: 'after-giveback' as const } : {}),
    });
    const log = opened.log;
    for (const p of opened.report.problems) this.log.warn({ problem: p }, 'change log recovery');
    this.nvlog = log;
    this.haStore.handOver(log);
    this.earlyMirror.unbind();
    this.mirrorTransport.bind(log);
    for (const m of this.earlyMirror.messages.splice(0)) log.onPeerMessage(m);
    log.onMirrorState((s) => {
      this.log.info({ mirror: s.state }, 'mirror state');
      this.ha.setMirrorSynced(s.state === 'synced');
    });
    this.ha.setMirrorSynced(log.mirrorState === 'synced');
    this.filesystems.add(set.fs);
    this.sets[this.me] = { set, nfs: undefined };
    const applier = new ReplayApplier(this.filesystems);
    // After a giveback the partner's CP holds everything acknowledged; what the local log has
    // beyond it was never acknowledged and NvLog.open dropped it — replaying `recovered` would
    // apply it anyway (and reuse its sequence numbers for new changes).
    const rep = this.awaitedGiveback ? undefined : await replay(opened.recovered, cpSeq, applier, log.sm, this.clock.nowMs());
    this.ownRecovered = this.awaitedGiveback ? undefined : opened.recovered;
    this.log.info({ replayed: applier.applied, skipped: applier.skipped, cpSeq, lastSeq: rep?.lastSeq ?? null, afterGiveback: this.awaitedGiveback }, 'own change log replayed');
    this.changeLog = new NvChangeLog(log, this.filesystems, this.me, {
      makeSpace: () => this.doCp(),
      // The change is applied; a CP already running may have frozen before it: take a new one.
      writeThrough: () => this.doCp({ fresh: true }),
    });
    this.drc = new NvDrc(log, (e) => this.log.warn({ err: e }, 'state-machine log reply not recorded'), () => this.doCp());
    log.onFull(() => void this.doCp());
    this.scheduleCp();
    // NV-7 / ST-5: a low or failed battery means write-through; a power-fail edge seals the log.
    const gauge = this.o.devices?.gauge;
    const powerFailLine = this.o.devices?.gpio?.powerFail;
    if (gauge || powerFailLine) {
      this.power = new PowerMonitor({
        log,
        timers: this.timers,
        ...(gauge ? { gauge } : {}),
        ...(powerFailLine ? { powerFailLine } : {}),
        onAlert: (a) => this.log.warn({ alert: a.code, writeThrough: a.writeThrough }, a.message),
      });
      await this.power.start();
    }
  }

  private async recoverPartner(): Promise<void> {
    await this.replaySet(this.me);
    const log = this.nvlog as NvLog;
    if (this.sets[this.partner]) return;
    const openStartMs = this.clock.nowMs();
    const set = await this.openSet(this.partner, false);
    this.log.info({ set: this.partner, ms: Math.round(this.clock.nowMs() - openStartMs) }, 'partner set opened (disks, RAID, file system)');
    this.filesystems.add(set.fs);
    this.sets[this.partner] = { set, nfs: undefined };
    try {
      const mirror = log.recoverPartnerMirror();
      const cpSeq = Number(set.fs.appliedSeq(this.partner));
      const applier = new ReplayApplier(this.filesystems);
      // HA-7 / NV-5: the partner's acknowledged changes, from our mirror of its log, after its
      // CP (or after the log's release point, when later: planReplay).
      const rep = await replay(mirror, cpSeq, applier, log.sm, this.clock.nowMs());
      // Their outcomes, for the partner to fetch when it boots after the giveback.
      await log.continuePartnerLog(rep.outcomes);
      // Changes we logged ourselves for the partner's file system (we served it before a reboot).
      const own = this.ownRecovered;
      if (own) {
        const ownApplier = new ReplayApplier(this.filesystems);
        for (const r of own.records) {
          if (r.seq <= Number(set.fs.appliedSeq(this.me))) continue;
          await ownApplier.applyChangeRecord(r, this.me);
        }
      }
      this.log.info({ replayed: applier.applied, cpSeq, lastSeq: rep.lastSeq ?? null }, 'partner mirror replayed (takeover)');
    } catch (e) {
      // A failed takeover leaves nothing open: the set's disks are released (HA learns of the
      // failure from the rejected replay), so the owner can open them when it comes back.
      this.filesystems.remove(set.fs.fsid);
      delete this.sets[this.partner];
      await set.close().catch((err: unknown) => this.log.warn({ err }, 'closing the partner set after a failed takeover'));
      throw e;
    }
  }

  private async serve(set: SetIndex, on: boolean): Promise<void> {
    const rt = this.sets[set];
    if (on) {
      if (!rt) throw new Error(`serve: set ${set} is not recovered`);
      if (rt.nfs) return;
      const serveStartMs = this.clock.nowMs();
      await this.addresses.claim(this.clientAddresses(set));
      const claimMs = Math.round(this.clock.nowMs() - serveStartMs);
      rt.nfs = await this.startNfs(set, rt.set);
      for (const e of this.exportsOf(set, rt.nfs)) this.log.info({ export: e.path, url: e.url, set, claimMs, ms: Math.round(this.clock.nowMs() - serveStartMs) }, 'serving');
      return;
    }
    if (!rt) return;
    const nfs = rt.nfs;
    rt.nfs = undefined;
    await nfs?.close();
    await this.addresses.release(this.clientAddresses(set));
    if (set !== this.me) {
      // Giveback: every change to the partner's file system goes to its disks before the
      // release — the NFS service is closed, the changes still in the log pipeline are applied,
      // then a CP that starts after the last of them (not one already running) commits them.
      await this.changeLog?.drained();
      await this.doCp({ fresh: true });
      this.changeLog?.forgetFs(rt.set.fs.fsid, Number(rt.set.fs.committedSeq().get(this.me) ?? 0n));
      this.filesystems.remove(rt.set.fs.fsid);
      delete this.sets[set];
      await rt.set.close();
      this.log.info({ set }, 'partner set handed back');
    }
  }

  private async startNfs(set: SetIndex, s: StorageSet): Promise<NfsServer> {
    const board = this.board;
    const svc = board.service;
    const fhKey = svc ? fromHex(svc.pairKeyHex) : undefined;
    const own = set === this.me;
    const exportsList = own
      ? board.nfs.exports.filter((e) => e.set === 'own').map((e) => ({ path: e.path, clients: e.clients, readOnly: e.readOnly }))
      : (board.partner?.exports ?? []);
    const host = own ? board.nfs.bindAddress : (board.partner?.nfs.bindAddress ?? board.nfs.bindAddress);
    const ports = own ? { nfs: board.nfs.ports.nfs, mount: board.nfs.ports.mount } : (board.partner?.nfs.ports ?? { nfs: 0, mount: 0 });
    return startNfsServer({
      exports: exportsList.map((e) => ({ ...e, fs: s.fs })),
      clock: this.clock,
      host,
      ports,
      changeLog: this.changeLog as NvChangeLog,
      drc: this.drc as NvDrc,
      // Constant per pair (every WRITE is FILE_SYNC), the same on both blades (FS-2).
      ...(fhKey ? { fhKey, writeVerifier: deriveWriteVerifier(fhKey, 0n) } : {}),
      onError: (e) => this.log.error({ err: e }, 'nfs: unexpected error'),
    });
  }

  private exportsOf(set: SetIndex, nfs: NfsServer): ExportInfo[] {
    const own = set === this.me;
    const board = this.board;
    const host = (own ? board.nfs.bindAddress : (board.partner?.nfs.bindAddress ?? '127.0.0.1')).replace('0.0.0.0', '127.0.0.1');
    const paths = own ? board.nfs.exports.filter((e) => e.set === 'own').map((e) => e.path) : (board.partner?.exports ?? []).map((e) => e.path);
    return paths.map((p) => ({ path: p, url: nfsUrl(host, p, nfs.nfsPort, nfs.mountPort), owner: this.bladeOf(set) }));
  }

  exports(): ExportInfo[] {
    const out: ExportInfo[] = [];
    for (const set of [0, 1] as const) {
      const rt = this.sets[set];
      if (rt?.nfs) out.push(...this.exportsOf(set, rt.nfs));
    }
    return out;
  }

  private scheduleCp(): void {
    if (this.cpTimer) return;
    this.cpTimer = this.timers.after(this.board.service?.cpIntervalMs ?? 10_000, () => {
      void this.doCp().finally(() => this.cpTimer?.refresh());
    });
  }

  /**
   * A consistency point of every file system this blade serves, then the release of the log
   * entries they all contain: applies run in log order across file systems, so everything up
   * to the last applied entry when the CPs froze is on disk once they commit.
   */
  doCp(opts: { fresh?: boolean } = {}): Promise<void> {
    if (this.cpRunning) {
      // A running CP froze its contents when it started: a caller that needs what was applied
      // since then waits for it and takes another.
      return opts.fresh ? this.cpRunning.then(() => this.doCp({ fresh: true })) : this.cpRunning;
    }
    const log = this.nvlog;
    if (!log) return Promise.resolve();
    this.cpRunning = (async () => {
      // Shared with the simulator: outcomes durable first, then freeze, commit and release.
      const infos = await takeConsistencyPoint(log, this.changeLog, this.filesystems, this.me);
      const ownFs = this.sets[this.me]?.set.fs;
      this.cpInfo.last = ownFs?.cpNumber ?? infos[0]?.cpNumber ?? 0;
      this.cpInfo.lastAtMs = this.clock.nowMs();
    })()
      .catch((e: unknown) => this.log.error({ err: e }, 'consistency point failed'))
      .finally(() => {
        this.cpRunning = undefined;
      });
    return this.cpRunning;
  }

  status(): Record<string, unknown> {
    const ha = this.ha.status();
    const own = this.sets[this.me];
    return {
      blade: this.board.identity.blade,
      pairId: this.board.identity.pairId,
      state: ha.phase,
      ha,
      partner: { state: ha.partner.phase ?? 'UNKNOWN', reachable: this.link.peerReachable, power: ha.partnerPower, powerSenseFaulty: ha.partnerPowerSenseFaulty },
      paths: ha.paths.map((p) => ({ name: p.id, up: p.up, kind: p.kind, bad: p.bad })),
      bootGeneration: ha.generation,
      nvlog: this.nvlog?.metrics() ?? { lastSeq: 0, logBytesUsed: 0, logBytesHighWater: 0, writeThrough: false },
      mirror: this.nvlog?.mirrorState ?? 'degraded',
      disks: own?.set.volume.status() ?? { state: 'not mounted', disks: [] },
      cp: { number: this.cpInfo.last, ageMs: Math.round(this.clock.nowMs() - this.cpInfo.lastAtMs) },
      exports: this.exports(),
      metricsPort: this.metricsPort,
    };
  }

  private metrics(): MetricsRegistry {
    const r = new MetricsRegistry();
    const m = (): ReturnType<NvLog['metrics']> | undefined => this.nvlog?.metrics();
    r.collect('twinblade_nvlog_used_bytes', 'NVRAM change log bytes in use', 'gauge', () => [{ value: m()?.logBytesUsed ?? 0 }]);
    r.collect('twinblade_nvlog_used_bytes_high_water', 'High-water mark of NVRAM change log use', 'gauge', () => [{ value: m()?.logBytesHighWater ?? 0 }]);
    r.collect('twinblade_sm_requests_high_water', 'High-water mark of the state-machine log', 'gauge', () => [{ value: m()?.smRequestsHighWater ?? 0 }]);
    r.collect('twinblade_mirror_in_flight_high_water', 'High-water mark of mirrored entries in flight', 'gauge', () => [{ value: m()?.mirrorInFlightHighWater ?? 0 }]);
    r.collect('twinblade_mirror_synced', '1 when the partner holds a synchronised mirror of this log', 'gauge', () => [{ value: this.nvlog?.mirrorState === 'synced' ? 1 : 0 }]);
    r.collect('twinblade_path_up', 'Interconnect and mailbox paths (1 up)', 'gauge', () => this.ha.status().paths.map((p) => ({ labels: { path: p.id, kind: p.kind }, value: p.up ? 1 : 0 })));
    r.collect('twinblade_serving_sets', 'Disk sets this blade serves', 'gauge', () => [{ value: Object.values(this.sets).filter((s) => s?.nfs).length }]);
    r.collect('twinblade_cp_age_seconds', 'Seconds since the last consistency point', 'gauge', () => [{ value: (this.clock.nowMs() - this.cpInfo.lastAtMs) / 1000 }]);
    collectReadCacheMetrics(r, () => ([0, 1] as const).flatMap((i) => {
      const s = this.sets[i];
      return s === undefined ? [] : [{ blade: this.bladeOf(i), fs: s.set.fs }];
    }));
    return r;
  }

  private async startMgmt(): Promise<void> {
    const svc = this.board.service;
    if (!svc) return;
    const path = await import('node:path');
    const fs = await import('node:fs/promises');
    await fs.mkdir(svc.runDir, { recursive: true, mode: 0o700 });
    const mgmt = new MgmtServer(path.join(svc.runDir, 'blade.sock'));
    mgmt.handle('status', () => this.status());
    mgmt.handle('cp', async () => {
      await this.doCp();
      return { cp: this.cpInfo.last };
    });
    const op = (c: 'takeover' | 'giveback' | 'disable' | 'enable') => () => {
      const r = this.ha.operator(c);
      if (!r.ok) throw Object.assign(new Error(r.message), { code: r.code });
      return { ok: true };
    };
    mgmt.handle('takeover', op('takeover'));
    mgmt.handle('giveback', op('giveback'));
    mgmt.handle('takeover.disable', op('disable'));
    mgmt.handle('takeover.enable', op('enable'));
    await mgmt.start();
    this.mgmt = mgmt;
    if (svc.metrics) this.metricsPort = await mgmt.startMetrics(this.metrics(), svc.metrics.host, svc.metrics.port);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.log.info('blade stopping');
    this.cpTimer?.cancel();
    this.power?.stop();
    this.partnerPower?.stop();
    this.ha.stop();
    await this.mgmt?.close();
    for (const rt of Object.values(this.sets)) await rt?.nfs?.close();
    await this.cpRunning;
    await this.doCp();
    this.nvlog?.close();
    for (const rt of Object.values(this.sets)) await rt?.set.close().catch(() => undefined);
    await this.link.close();
    await this.serial.close().catch(() => undefined);
    await Promise.allSettled([...this.disksBySet[0], ...this.disksBySet[1], ...this.spares].map((d) => d.close()));
    await this.nvram.close();
    await this.o.devices?.close();
    this.log.info('blade stopped');
  }
}
