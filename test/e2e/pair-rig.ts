// End-to-end test helper: a blade pair on the process rig started in-process, waits on the
// blades' control sockets and NFS NULL, a multi-client write load that records every
// acknowledged write and rides through takeovers by reconnecting, and a verifier that reads
// every acknowledged byte back. Teardown leaves no process, socket or temp dir behind.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startRigService, type RunningRig } from '../../rig/service.ts';
import type { Rig } from '../../rig/rig.ts';
import { topologyLeftovers } from '../../rig/net/topology.ts';
import { nfsStandardPorts } from '../../rig/net/plan.ts';
import { mgmtRequest } from '../../firmware/ts/blade/mgmt.ts';
import { mountNfs, Nfs3Client, ok, type MountedNfs } from '../../tools/nfs-client/index.ts';

const run = promisify(execFile);

/** NFS3ERR_JUKEBOX (RFC 1813): the server cannot serve the call now; the client resends it. */
const nfs3Jukebox = 10008;

export type BladeId = 'a' | 'b';

export const e2eLimits = {
  /** How long a freshly powered rig may take until both blades serve their exports. */
  bootWaitMs: 45_000,
  /** How long after both serve their exports both change logs must be mirrored. */
  mirrorSyncWaitMs: 15_000,
  /** A client resends a write answered NFS3ERR_JUKEBOX after this delay. */
  jukeboxRetryMs: 100,
  /** Poll interval for status and NFS NULL probes. */
  pollMs: 100,
  /** A load client gives up reconnecting after this long without an acknowledgement. */
  clientStallMaxMs: 30_000,
  /** RPC timeout of the load clients: longer than a takeover, shorter than the stall limit. */
  clientCallTimeoutMs: 10_000,
} as const;

/**
 * A port base unique per test file and process: vitest forks one process per file, and the
 * offset keeps two files of the same process (or a later run) apart. The loopback rig uses
 * portBase..portBase+10. Kept below the Linux ephemeral range (32768+) so that outgoing
 * connections never hold one of our ports.
 */
export function portBaseFor(fileOffset: number): number {
  return 12_100 + (((process.pid % 60) * 8 + (fileOffset % 8)) * 16);
}

export interface BladeStatus {
  blade: string;
  state: string;
  partner: { state: string; reachable: boolean };
  paths: Array<{ name: string; up: boolean; kind: string; bad: boolean }>;
  mirror: string;
  exports: Array<{ path: string; url: string; owner: string }>;
  [k: string]: unknown;
}

export interface NfsAddress {
  host: string;
  nfsPort: number;
  mountPort: number;
  path: string;
}

export class PairRig {
  private constructor(
    readonly running: RunningRig,
    readonly dir: string,
    readonly portBase: number,
  ) {}

  /**
   * `network: 'netns'` (root only) runs each blade in its own network namespace (rig/net):
   * clients then reach a blade at its net1 address on the standard NFS ports, and faults can
   * cut networks (`port`, `partition`). `netSlot` picks the namespace/subnet slot (0..60).
   */
  static async start(fileOffset: number, opts: { diskBytes?: number; network?: 'loopback' | 'netns'; netSlot?: number } = {}): Promise<PairRig> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-e2e-'));
    const portBase = portBaseFor(fileOffset);
    try {
      const net = opts.network === 'netns' ? { network: 'netns' as const, netSlot: opts.netSlot ?? 0 } : {};
      const running = await startRigService({ dir, portBase, dataDisksPerBlade: 2, diskBytes: opts.diskBytes ?? 64 * 1024 * 1024, ...net });
      return new PairRig(running, dir, portBase);
    } catch (e) {
      await fs.rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  get rig(): Rig {
    return this.running.rig;
  }

  /** Where blade `b`'s export is served (by b, or by its partner after a takeover). */
  address(b: BladeId): NfsAddress {
    const t = this.rig.topology();
    if (t) return { host: t.bladeAddress(b, 'net1'), nfsPort: nfsStandardPorts.nfs, mountPort: nfsStandardPorts.mount, path: `/vol${b}` };
    const nfsPort = b === 'a' ? this.portBase : this.portBase + 2;
    return { host: '127.0.0.1', nfsPort, mountPort: nfsPort + 1, path: `/vol${b}` };
  }

  url(b: BladeId): string {
    const a = this.address(b);
    return `nfs://${a.host}${a.path}?nfsport=${a.nfsPort}&mountport=${a.mountPort}`;
  }

  socket(b: BladeId): string {
    return path.join(this.dir, b, 'run', 'blade.sock');
  }

  log(b: BladeId): string {
    return path.join(this.dir, b, 'blade.log');
  }

  async status(b: BladeId): Promise<BladeStatus> {
    return (await mgmtRequest(this.socket(b), 'status', {}, 3000)) as BladeStatus;
  }

  async statusOrNull(b: BladeId): Promise<BladeStatus | null> {
    return this.status(b).catch(() => null);
  }

  /** Polls until `pred` holds, or throws with `what` and the blades' log tails. */
  async until(what: string, pred: () => Promise<boolean> | boolean, timeoutMs: number = e2eLimits.bootWaitMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await Promise.resolve(pred()).catch(() => false)) return;
      if (Date.now() > deadline) {
        const st = await Promise.all((['a', 'b'] as const).map(async (b) => `blade ${b}: ${JSON.stringify(await this.statusOrNull(b), ['state', 'partner', 'reachable', 'mirror', 'exports', 'path', 'owner', 'blockers', 'ha'])}`));
        throw new Error(`e2e: timed out after ${timeoutMs} ms waiting for ${what}\n${st.join('\n')}\n${await this.logTails()}`);
      }
      await sleep(e2eLimits.pollMs);
    }
  }

  /** One NFS NULL call to the service at blade `b`'s address; true when it answered. */
  async nfsNull(b: BladeId): Promise<boolean> {
    const a = this.address(b);
    let c: Nfs3Client | undefined;
    try {
      c = await Nfs3Client.connect(a.host, a.nfsPort, { callTimeoutMs: 1000 });
      await c.null();
      return true;
    } catch {
      return false;
    } finally {
      await c?.close().catch(() => undefined);
    }
  }

  /** Waits until blade `b` reports it serves its own export and answers NFS NULL there. */
  async waitServing(b: BladeId, timeoutMs: number = e2eLimits.bootWaitMs): Promise<void> {
    await this.until(
      `blade ${b} serving /vol${b}`,
      async () => {
        const s = await this.status(b);
        return s.exports.some((e) => e.path === `/vol${b}` && e.owner === b) && (await this.nfsNull(b));
      },
      timeoutMs,
    );
  }

  async waitBothServing(timeoutMs: number = e2eLimits.bootWaitMs): Promise<void> {
    await Promise.all([this.waitServing('a', timeoutMs), this.waitServing('b', timeoutMs)]);
  }

  /**
   * Waits until both blades see each other and the change logs of `blades` are mirrored to
   * the partner (synced): from then on such a blade may be taken over (HA-8) without losing
   * an acknowledged change.
   */
  async waitMirrored(blades: readonly BladeId[], timeoutMs: number = e2eLimits.bootWaitMs): Promise<void> {
    await this.until(
      `blades ${blades.join(', ')} paired with synced mirrors`,
      async () => {
        const st = { a: await this.status('a'), b: await this.status('b') };
        return st.a.partner.reachable && st.b.partner.reachable && blades.every((b) => st[b].mirror === 'synced');
      },
      timeoutMs,
    );
  }

  /**
   * Brings a freshly started pair to "both serving, both change logs mirrored". Both matter
   * for a takeover: the survivor needs the failed blade's log (its mirror), and the HA machine
   * also refuses to take over while the survivor's own log is not mirrored (HA-8). No power
   * cycles: a log that binds after the partner greeted is resynchronised all the same
   * (the mirror boot race, fixed in the protocol; docs/e2e.md).
   */
  async bringUp(): Promise<void> {
    await this.waitBothServing();
    await this.waitMirrored(['a', 'b'], e2eLimits.mirrorSyncWaitMs);
  }

  /** The disk names of blade `b`'s own set (data + parity) on the loop emulator. */
  ownDisks(b: BladeId): string[] {
    const n = this.rig.diskNames(b);
    return [...n.data, n.parity];
  }

  /** Holders of `b`'s disks as the loop emulator sees them. */
  holders(b: BladeId): Array<string | null> {
    const own = new Set(this.ownDisks(b));
    return this.rig
      .loopEmulator()
      .status()
      .disks.filter((d) => own.has(d.name))
      .map((d) => d.holder);
  }

  async logTails(lines = 15): Promise<string> {
    const out: string[] = [];
    for (const b of ['a', 'b'] as const) {
      const text = await fs.readFile(this.log(b), 'utf8').catch(() => '');
      out.push(`--- ${this.log(b)} (last ${lines} lines)`, ...text.trimEnd().split('\n').slice(-lines));
    }
    return out.join('\n');
  }

  /** Tears the rig down and removes its directory; safe to call twice. */
  async stop(): Promise<void> {
    await this.running.stop();
    // TB_E2E_KEEP_LOGS=DIR keeps the blades' logs of every rig for a post-mortem.
    const keep = process.env.TB_E2E_KEEP_LOGS;
    if (keep) {
      for (const b of ['a', 'b'] as const) {
        await fs.mkdir(path.join(keep, path.basename(this.dir)), { recursive: true });
        await fs.copyFile(this.log(b), path.join(keep, path.basename(this.dir), `${b}.log`)).catch(() => undefined);
      }
    }
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  /**
   * What stop() should have removed: processes whose command line names this rig's directory,
   * and the directory itself (expected empty after stop()).
   */
  async leftovers(): Promise<string[]> {
    const { stdout } = await run('ps', ['-eo', 'args']);
    const left = stdout.split('\n').filter((l) => l.includes(this.dir));
    if (await fs.stat(this.dir).then(() => true, () => false)) left.push(`directory ${this.dir} still exists`);
    const t = this.rig.topology();
    if (t) left.push(...(await topologyLeftovers(t)));
    return left;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- write load --------------------------------------------------------------------------

export interface AckedWrite {
  file: string;
  offset: number;
  length: number;
  /** Seed of the content (see patternFor). */
  seed: number;
}

/** The content of one load write: a byte pattern fixed by (client, write number). */
export function patternFor(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** RPC transport trouble the client rides through; anything else (an NFS status) is an error. */
function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? '';
  return (
    code.startsWith('ERR_RPC_') ||
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ERR_SOCKET_CLOSED', 'EHOSTUNREACH'].includes(code) ||
    /closed|reset|refused/i.test((e as Error).message ?? '')
  );
}

export interface LoadReport {
  acked: AckedWrite[];
  /** NFS error statuses and other non-transport failures seen by clients (must be empty). */
  errors: string[];
  /** Reconnections after transport errors (takeovers show up here). */
  reconnects: number;
  /** Writes the server answered NFS3ERR_JUKEBOX (resent after a delay). */
  jukebox: number;
  /** The longest time any client waited between two acknowledgements, in ms. */
  longestPauseMs: number;
}

export interface WriteLoadOptions {
  target: NfsAddress;
  clients: number;
  /** Bytes per WRITE. */
  writeBytes?: number;
  /** Writes per client before it moves on to a new file. */
  writesPerFile?: number;
  /** Name prefix of the files (distinct per load). */
  prefix: string;
}

/**
 * Several clients, each with its own mount and files, writing FILE_SYNC chunks one at a
 * time; every acknowledged write is recorded. A transport error means reconnect (mount
 * again, look the file up again) and resend the same write, as an NFS client does.
 */
export class WriteLoad {
  private stopping = false;
  private readonly acked: AckedWrite[] = [];
  private readonly errors: string[] = [];
  private reconnects = 0;
  private jukebox = 0;
  private longestPauseMs = 0;
  private readonly done: Promise<void>[] = [];
  private readonly mounts = new Set<MountedNfs>();

  constructor(private readonly o: WriteLoadOptions) {}

  start(): this {
    for (let c = 0; c < this.o.clients; c++) this.done.push(this.client(c));
    return this;
  }

  get ackedCount(): number {
    return this.acked.length;
  }

  /** Resolves once at least `n` more writes have been acknowledged than now. */
  async waitAcked(n: number, timeoutMs = 30_000): Promise<void> {
    const target = this.acked.length + n;
    const deadline = Date.now() + timeoutMs;
    while (this.acked.length < target) {
      if (Date.now() > deadline) throw new Error(`write load: ${this.acked.length}/${target} acked after ${timeoutMs} ms; errors: ${this.errors.join('; ')}`);
      if (this.errors.length > 0) throw new Error(`write load failed: ${this.errors.join('; ')}`);
      await sleep(20);
    }
  }

  async stop(): Promise<LoadReport> {
    this.stopping = true;
    await Promise.all(this.done);
    return { acked: [...this.acked], errors: [...this.errors], reconnects: this.reconnects, jukebox: this.jukebox, longestPauseMs: this.longestPauseMs };
  }

  private async connect(): Promise<MountedNfs> {
    const started = Date.now();
    for (;;) {
      try {
        const m = await mountNfs({ ...this.o.target, callTimeoutMs: e2eLimits.clientCallTimeoutMs });
        this.mounts.add(m);
        return m;
      } catch (e) {
        if (!isConnectionError(e) || Date.now() - started > e2eLimits.clientStallMaxMs) throw e;
        await sleep(50);
      }
    }
  }

  private async client(c: number): Promise<void> {
    const writeBytes = this.o.writeBytes ?? 4096;
    const perFile = this.o.writesPerFile ?? 64;
    let m: MountedNfs | undefined;
    let fh: Uint8Array | undefined;
    let lastAck = Date.now();
    let n = 0;
    /** The last file whose CREATE the server answered (a CREATE cut off by a reset may not have happened). */
    let created: string | undefined;
    try {
      while (!this.stopping) {
        const file = `${this.o.prefix}-c${c}-f${Math.floor(n / perFile)}`;
        const offset = (n % perFile) * writeBytes;
        const seed = c * 1_000_003 + n + 1;
        const data = patternFor(seed, writeBytes);
        // One write, resent over fresh connections until acknowledged.
        for (;;) {
          try {
            m ??= await this.connect();
            if (!fh || offset === 0) {
              const r = await m.nfs.create(m.root, file);
              if (r.status === 0 && r.fh) fh = r.fh;
              else fh = ok(await m.nfs.lookup(m.root, file), `LOOKUP ${file}`).fh;
              created = file;
            }
            const w = await m.nfs.write(fh, offset, data);
            // JUKEBOX is the server's "not now, resend later" (NVRAM full until a CP ends):
            // a client waits and resends, as the Linux client does; not an error.
            if (w.status === nfs3Jukebox) {
              this.jukebox++;
              await sleep(e2eLimits.jukeboxRetryMs);
              continue;
            }
            ok(w, `WRITE ${file}@${offset}`);
            break;
          } catch (e) {
            if (!isConnectionError(e) || Date.now() - lastAck > e2eLimits.clientStallMaxMs) throw e;
            this.reconnects++;
            const old = m;
            m = undefined;
            fh = undefined;
            if (old) {
              this.mounts.delete(old);
              await Promise.all([old.nfs.close(), old.mount.close()]).catch(() => undefined);
            }
            await sleep(50);
            m = await this.connect();
            // A file whose CREATE was answered must exist: find it again. One whose CREATE got
            // no answer may not; the next try (fh unset) creates it.
            if (created === file) fh = ok(await m.nfs.lookup(m.root, file), `LOOKUP ${file} after reconnect (its CREATE was answered)`).fh;
          }
        }
        const now = Date.now();
        this.longestPauseMs = Math.max(this.longestPauseMs, now - lastAck);
        lastAck = now;
        this.acked.push({ file, offset, length: writeBytes, seed });
        n++;
      }
    } catch (e) {
      this.errors.push(`client ${c}: ${(e as { code?: string }).code ?? ''} ${(e as Error).message}`);
    } finally {
      if (m) {
        this.mounts.delete(m);
        await m.close().catch(() => undefined);
      }
    }
  }
}

/**
 * Reads back every acknowledged write from `target` and returns the mismatches (file, offset
 * and what went wrong); empty means nothing acknowledged was lost.
 */
export async function verifyAcked(target: NfsAddress, acked: readonly AckedWrite[]): Promise<string[]> {
  const bad: string[] = [];
  const m = await mountNfs({ ...target, callTimeoutMs: e2eLimits.clientCallTimeoutMs });
  try {
    const byFile = new Map<string, AckedWrite[]>();
    for (const w of acked) byFile.set(w.file, [...(byFile.get(w.file) ?? []), w]);
    for (const [file, writes] of byFile) {
      const l = await m.nfs.lookup(m.root, file);
      if (l.status !== 0) {
        bad.push(`${file}: LOOKUP status ${l.status} (${writes.length} acknowledged writes)`);
        continue;
      }
      const content = await m.nfs.readFile(l.fh);
      for (const w of writes) {
        const got = content.subarray(w.offset, w.offset + w.length);
        const want = patternFor(w.seed, w.length);
        if (got.length !== w.length || !got.every((v, i) => v === want[i])) bad.push(`${file}@${w.offset}+${w.length}: content differs (file is ${content.length} bytes)`);
      }
    }
  } finally {
    await m.close();
  }
  return bad;
}
