// The HA runtime of one blade: drives the pure HA machine (core/machine.ts) with real
// ports — the link endpoint for status datagrams on every interconnect and network path,
// the mailbox driver, a fence, the partner-reset GPIO line, persistent memory, a tick timer
// — and hands serving, log replay and alerts to the composition root.
import { randomInt } from 'node:crypto';
import type { Clock, TimerHandle, Timers } from '../core/clock.ts';
import { isTwinbladeError } from '../core/errors.ts';
import type { GpioLine } from '../hal/gpio/gpio.ts';
import { LinkDatagramType, type LinkEndpoint } from '../link/endpoint.ts';
import { HaMachine, type HaAction, type HaConfig, type HaPathConfig, type HaStatusReport, type OperatorCommand, type OperatorResult, type PersistedHaState, type SetIndex } from './core/machine.ts';
import { decodeStatus, encodeStatus, StatusFlag } from './core/status.ts';
import { fenceSet, type Fence } from './fence.ts';
import { MailboxIo, mailboxPathId, type MailboxDisk } from './mailbox-io.ts';

export interface HaDriverOptions {
  /** `config.paths` must name every link path (by its name) and every mailbox disk (`mbox<i>`): see `haPathsFor`. */
  config: HaConfig;
  /** The HA state last persisted in NVRAM (undefined on a blade's first boot). */
  persisted: PersistedHaState | undefined;
  clock: Clock;
  timers: Timers;
  link: LinkEndpoint | undefined;
  mailboxDisks: readonly MailboxDisk[];
  fence: Fence;
  /** The fence's disk numbers of each set: `setDisks[i]` is the set normally owned by blade i. */
  setDisks: readonly [readonly number[], readonly number[]];
  /** Output line that resets the partner (optional: not every board has one). */
  partnerReset?: GpioLine;
  /** Makes the state durable (NVRAM). Completes before any action of the same round is carried out. */
  persist(state: PersistedHaState): void | Promise<void>;
  /**
   * Start or stop serving a disk set (mount and export, or flush and unexport). A returned
   * promise is awaited before the round's later actions: stopping must have committed every
   * write to the set before its reservation is released (giveback).
   */
  serve(set: SetIndex, on: boolean): void | Promise<void>;
  /** Replay the change log covering `set` (HA-7, NV-5); resolves true when done. */
  replay(set: SetIndex): Promise<boolean>;
  alert?(code: string, message: string): void;
  /**
   * The timeline of the driver's slow actions (fence, reset pulse, replay, serve), for the
   * structured log: `<action>-start`, then `<action>-done` with `ms` (and `ok`). The takeover
   * benchmark reads it to say where the time between a power cut and service goes.
   */
  trace?(event: HaTraceEvent, fields: Record<string, number | string | boolean>): void;
}

export type HaTraceEvent = 'fence-start' | 'fence-done' | 'reset-start' | 'reset-done' | 'replay-start' | 'replay-done' | 'serve-start' | 'serve-done';

/**
 * The HA path list for a link endpoint's paths plus the mailbox disks. By default a stream
 * path (the serial cable) is the interconnect and a datagram path a network; `kindOf` can
 * say otherwise (a TCP path over the network, from the board description).
 */
export function haPathsFor(
  link: LinkEndpoint | undefined,
  mailboxDisks: readonly MailboxDisk[],
  kindOf: (name: string, linkKind: 'stream' | 'datagram') => 'interconnect' | 'network' = (_n, k) => (k === 'stream' ? 'interconnect' : 'network'),
): HaPathConfig[] {
  const paths: HaPathConfig[] = (link?.paths ?? []).map((p) => ({ id: p.name, kind: kindOf(p.name, p.kind) }));
  for (const d of mailboxDisks) paths.push({ id: mailboxPathId(d.index), kind: 'mailbox' });
  return paths;
}

export class HaDriver {
  private readonly o: HaDriverOptions;
  private readonly machine: HaMachine;
  private readonly mailbox: MailboxIo;
  private tickTimer: TimerHandle | undefined;
  private pumping = false;
  private stopped = false;
  private readonly unsubscribe: (() => void)[] = [];
  readonly stats = { statusSent: 0, statusReceived: 0, rejected: 0, persists: 0 };

  constructor(opts: HaDriverOptions) {
    this.o = opts;
    // A fresh incarnation id at every start, unless the caller chose one (tests, simulation).
    const config = opts.config.bootId === undefined ? { ...opts.config, bootId: randomInt(0, 0x1_0000_0000) } : opts.config;
    this.machine = new HaMachine(config, opts.persisted, opts.clock.nowMs());
    this.mailbox = new MailboxIo({
      bladeIndex: opts.config.bladeIndex,
      disks: opts.mailboxDisks,
      timers: opts.timers,
      pollIntervalMs: opts.config.timing.mailboxPollIntervalMs,
      onStatus: (path, message) => this.step({ type: 'status', path, message }),
      onRejected: (path, code) => this.step({ type: 'rejected', path, code }),
      onWriteFenced: (set) => this.step({ type: 'write-fenced', set }),
    });
  }

  /** Starts the tick timer, the mailbox polling and the link listeners. */
  start(): void {
    const link = this.o.link;
    if (link !== undefined) {
      const onDatagram = (type: number, payload: Uint8Array, path: number): void => {
        if (type !== LinkDatagramType.haStatus) return;
        const id = link.paths[path]?.name;
        if (id === undefined) return;
        try {
          const message = decodeStatus(payload);
          this.stats.statusReceived++;
          this.step({ type: 'status', path: id, message });
        } catch (e) {
          this.stats.rejected++;
          this.step({ type: 'rejected', path: id, code: isTwinbladeError(e) ? e.code : 'unknown' });
        }
      };
      const onUp = (_path: number, name: string): void => this.step({ type: 'path', path: name, up: true });
      const onDown = (_path: number, name: string): void => this.step({ type: 'path', path: name, up: false });
      link.on('datagram', onDatagram).on('pathUp', onUp).on('pathDown', onDown);
      this.unsubscribe.push(() => {
        link.off('datagram', onDatagram).off('pathUp', onUp).off('pathDown', onDown);
      });
    }
    this.mailbox.start();
    this.tickTimer = this.o.timers.after(this.o.config.timing.tickIntervalMs, () => {
      if (this.stopped) return;
      this.machine.tick(this.o.clock.nowMs());
      this.pump();
      this.tickTimer?.refresh();
    });
    this.pump();
  }

  /** Stops everything this driver started (the link itself belongs to the caller). */
  stop(): void {
    this.stopped = true;
    this.tickTimer?.cancel();
    this.mailbox.stop();
    for (const u of this.unsubscribe.splice(0)) u();
  }

  operator(command: OperatorCommand): OperatorResult {
    const r = this.machine.operator(command, this.o.clock.nowMs());
    this.pump();
    return r;
  }

  status(): HaStatusReport {
    return this.machine.status();
  }

  /** From the NVRAM mirroring layer (HA-8). */
  setMirrorSynced(synced: boolean): void {
    this.step({ type: 'mirror', synced });
  }

  /**
   * HA-8, "announce before waiving" (docs/nvlog.md): our log's mirror is not in sync, and it
   * wants to answer clients from its local copy alone. Resolves once a status record saying
   * so (NO-TAKEOVER, flag mirrorSynced clear) is on the mailbox disks we hold: a partner that
   * loses the link and then sees us die must find it there, or it would take us over from a
   * mirror lacking what we answered. The log's `announceDegraded` option.
   */
  announceMirrorDegraded(): Promise<void> {
    const written = this.mailbox.whenWritten((m) => (m.flags & StatusFlag.mirrorSynced) === 0);
    this.step({ type: 'mirror', synced: false });
    return written;
  }

  /**
   * From the partner-power sense line (board `gpio.partnerPower`, watched by
   * `PartnerPowerWatch`): at start and on every change. A board without the line never calls it.
   */
  setPartnerPower(good: boolean): void {
    this.step({ type: 'partner-power', good });
  }

  private step(event: Parameters<HaMachine['step']>[0]): void {
    if (this.stopped) return;
    this.machine.step(event, this.o.clock.nowMs());
    this.pump();
  }

  /** Carries out the machine's output; persist first, then the actions, round by round. */
  private pump(): void {
    if (this.pumping || this.stopped) return;
    this.pumping = true;
    void this.pumpAsync().finally(() => {
      this.pumping = false;
      if (this.machine.hasReady() && !this.stopped) this.pump();
    });
  }

  private async pumpAsync(): Promise<void> {
    while (this.machine.hasReady() && !this.stopped) {
      const r = this.machine.ready();
      if (r.persist !== undefined) {
        this.stats.persists++;
        const p = this.o.persist(r.persist);
        if (p !== undefined) await p;
      }
      for (const a of r.actions) await this.perform(a);
    }
  }

  private async perform(a: HaAction): Promise<void> {
    switch (a.type) {
      case 'send':
        if (this.o.link !== undefined) {
          this.o.link.sendAll(LinkDatagramType.haStatus, encodeStatus(a.message));
          this.stats.statusSent++;
        }
        return;
      case 'write-mailbox':
        void this.mailbox.write(a.message, a.sets);
        return;
      case 'fence': {
        const t0 = this.o.clock.nowMs();
        this.trace('fence-start', { op: a.op, set: a.set });
        // Our mailbox writes to a set's disks stop (and drain) before its reservation goes: the
        // partner may reserve the disks at once, and a late write of ours would be refused.
        if (a.op === 'reserve' || a.op === 'preempt') this.mailbox.resumeWriting(a.set);
        const quiesced = a.op === 'release' ? this.mailbox.stopWriting(a.set) : Promise.resolve();
        quiesced.then(() => fenceSet(this.o.fence, a.op, this.o.setDisks[a.set])).then(
          () => {
            this.trace('fence-done', { op: a.op, set: a.set, ok: true, ms: this.o.clock.nowMs() - t0 });
            this.step({ type: 'fence-result', op: a.op, set: a.set, token: a.token, ok: true });
          },
          (e: unknown) => {
            const code = isTwinbladeError(e) ? e.code : 'unknown';
            this.trace('fence-done', { op: a.op, set: a.set, ok: false, code, ms: this.o.clock.nowMs() - t0 });
            this.step({ type: 'fence-result', op: a.op, set: a.set, token: a.token, ok: false, code });
          },
        );
        return;
      }
      case 'pulse-reset': {
        const t0 = this.o.clock.nowMs();
        this.trace('reset-start', { pulseMs: a.durationMs });
        void this.pulse(a.durationMs).then(() => {
          this.trace('reset-done', { ms: this.o.clock.nowMs() - t0 });
          this.step({ type: 'reset-done' });
        });
        return;
      }
      case 'serve': {
        const t0 = this.o.clock.nowMs();
        this.trace('serve-start', { set: a.set, on: a.on });
        let ok = true;
        try {
          await this.o.serve(a.set, a.on);
        } catch (e) {
          ok = false;
          this.o.alert?.('HA_SERVE_FAILED', `serving set ${a.set} ${a.on ? 'on' : 'off'} failed: ${(e as Error).message}`);
        }
        this.trace('serve-done', { set: a.set, on: a.on, ok, ms: this.o.clock.nowMs() - t0 });
        return;
      }
      case 'replay': {
        const t0 = this.o.clock.nowMs();
        this.trace('replay-start', { set: a.set });
        const done = (ok: boolean): void => {
          this.trace('replay-done', { set: a.set, ok, ms: this.o.clock.nowMs() - t0 });
          this.step({ type: 'replay-done', set: a.set, ok });
        };
        this.o.replay(a.set).then(done, () => done(false));
        return;
      }
      case 'alert':
        this.o.alert?.(a.code, a.message);
        return;
    }
  }

  private trace(event: HaTraceEvent, fields: Record<string, number | string | boolean>): void {
    try {
      this.o.trace?.(event, fields);
    } catch {
      // Tracing is for the log; it must never disturb the machine.
    }
  }

  private async pulse(durationMs: number): Promise<void> {
    const line = this.o.partnerReset;
    try {
      if (line !== undefined) await line.write(1);
      await this.o.timers.sleep(durationMs);
    } catch (e) {
      this.o.alert?.('HA_RESET_FAILED', `partner reset pulse failed: ${(e as Error).message}`);
    } finally {
      if (line !== undefined) await line.write(0).catch(() => undefined);
    }
  }
}
