// SM-2 under random schedules: clients issue non-idempotent calls, retransmit some while the
// original runs and some after its reply, and the server crashes at random points; the
// survivor replays the log into a fresh file system and rebuilds the duplicate-request state.
// Checked: every reply a client saw is what its retransmission gets, no call is logged twice,
// and the survivor's file system equals the log applied once.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { type ChangeOp, type ChangeResult, FsError } from '../../firmware/ts/fsapi/ops.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { type ChangeOutcome, MemoryDrc, type RequestKey, requestKeyString } from '../../firmware/ts/nfs/core/drc.ts';
import { encodeCall, replyBody } from '../../firmware/ts/nfs/core/rpc.ts';
import { type Codec, encode } from '../../firmware/ts/nfs/core/xdr.ts';
import * as x from '../../firmware/ts/nfs/core/nfs3.ts';
import { NFS_PROGRAM, NFS_V3, Nfs3Proc, sattr } from '../../firmware/ts/nfs/core/nfs3.ts';
import type { ChangeLog } from '../../firmware/ts/nfs/nfs3-service.ts';
import { RpcDispatcher } from '../../firmware/ts/nfs/rpc-server.ts';
import { buildNfsPrograms } from '../../firmware/ts/nfs/server.ts';
import { RpcClient } from '../../firmware/ts/nfs/rpc-client.ts';
import { FH_KEY } from './harness.ts';

interface LogEntry {
  change: ChangeOp;
  key: RequestKey;
  /** The reply made it into the (simulated) state log before the crash. */
  reply: Uint8Array | undefined;
}

/** The mirrored NVRAM log as the survivor sees it: descriptors with keys, some replies. */
class SimLog implements ChangeLog {
  constructor(
    private readonly fs: MemFs,
    readonly entries: LogEntry[],
  ) {}
  commit(change: ChangeOp, key: RequestKey): Promise<ChangeResult> {
    this.entries.push({ change, key, reply: undefined });
    return this.fs.apply(change);
  }
}

/** A DRC that also records replies into the log entries (as the state-machine log does). */
class LoggingDrc extends MemoryDrc {
  constructor(private readonly logEntries: LogEntry[]) {
    super();
  }
  override complete(key: RequestKey, reply: Uint8Array): void {
    super.complete(key, reply);
    const k = requestKeyString(key);
    for (let i = this.logEntries.length - 1; i >= 0; i--) {
      const e = this.logEntries[i] as LogEntry;
      if (requestKeyString(e.key) === k) {
        e.reply = reply.slice();
        break;
      }
    }
  }
}

const clock = { nowMs: () => 0, wallNs: () => 1_000_000_000_000_000_000n };
const newFs = () => new MemFs({ fsid: 3n, rootMode: 0o777, time: { sec: 1, nsec: 0 } });

function serverOver(fs: MemFs, entries: LogEntry[], drc: MemoryDrc) {
  const p = buildNfsPrograms({ exports: [{ path: '/s', fs, rootSquash: false }], clock, fhKey: FH_KEY, changeLog: new SimLog(fs, entries), drc, writeVerifier: new Uint8Array(8) });
  return { d: new RpcDispatcher([p.nfs], { onFatal: (e) => { throw e; } }), root: p.handles.encode({ fsid: 3n, ino: 1, gen: 1 }), handles: p.handles };
}

/** Replays the log into a fresh file system; rebuilds the cache from replies or outcomes. */
async function recover(entries: LogEntry[]): Promise<{ fs: MemFs; drc: MemoryDrc }> {
  const fs = newFs();
  const drc = new LoggingDrc(entries);
  for (const e of entries) {
    if (e.reply !== undefined) {
      await fs.apply(e.change).catch((err: unknown) => {
        if (!(err instanceof FsError)) throw err;
      });
      drc.put(e.key, { state: 'replied', reply: e.reply });
      continue;
    }
    let outcome: ChangeOutcome;
    try {
      outcome = { ok: true, result: await fs.apply(e.change) };
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
      outcome = { ok: false, status: err.status };
      if (err.dirPre !== undefined) outcome.dirPre = err.dirPre;
      if (err.dirPost !== undefined) outcome.dirPost = err.dirPost;
    }
    drc.put(e.key, { state: 'applied', outcome });
  }
  return { fs, drc };
}

async function snapshot(fs: MemFs): Promise<unknown[]> {
  const out: unknown[] = [];
  const walk = async (dir: { ino: number; gen: number }, path: string): Promise<void> => {
    const { entries } = await fs.readdir(dir, 0n, 10_000);
    for (const e of entries) {
      if (e.name === '.' || e.name === '..') continue;
      const a = await fs.lookup(dir, e.name);
      out.push([path + e.name, a.type, a.size, a.nlink, a.mode, a.ino]);
      if (a.type === 2) await walk(a, `${path}${e.name}/`);
    }
  };
  await walk(fs.rootIno, '/');
  return out;
}

describe('duplicate requests across crashes (SM-2)', () => {
  it('SM-2 random calls, retransmissions and crashes: original replies, each change once', async () => {
    const covered = { crashes: 0, overtaken: 0, comparedAfterRecovery: 0, fromOutcome: 0 };
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (seed) => {
        const prng = new Prng(seed);
        const entries: LogEntry[] = [];
        let fs = newFs();
        let drc: MemoryDrc = new LoggingDrc(entries);
        let srv = serverOver(fs, entries, drc);
        const names = ['a', 'b', 'c', 'd'];
        const seen = new Map<string, Uint8Array>(); // call bytes (hex of xid+client) → reply
        const sent: { rec: Uint8Array; client: string; id: string }[] = [];
        const cred = RpcClient.credFor({ uid: 0, gid: 0 });
        for (let i = 0; i < 40; i++) {
          const client = `10.0.0.${prng.range(1, 3)}`;
          const n = prng.pick(names);
          const m = prng.pick(names);
          const root = srv.root;
          const e = <T>(c: Codec<T>, v: T) => encode(c, v);
          const calls: [number, Uint8Array][] = [
            [Nfs3Proc.CREATE, e(x.createArgs, { where: { dir: root, name: n }, how: { mode: 1, attrs: sattr() } })],
            [Nfs3Proc.MKDIR, e(x.mkdirArgs, { where: { dir: root, name: n }, attrs: sattr() })],
            [Nfs3Proc.REMOVE, e(x.removeArgs, { dir: root, name: n })],
            [Nfs3Proc.RMDIR, e(x.rmdirArgs, { dir: root, name: n })],
            [Nfs3Proc.RENAME, e(x.renameArgs, { from: { dir: root, name: n }, to: { dir: root, name: m } })],
            [Nfs3Proc.CREATE, e(x.createArgs, { where: { dir: root, name: n }, how: { mode: 2, verf: new Uint8Array(8).fill(i) } })],
          ];
          const [proc, args] = prng.pick(calls);
          const rec = replyBody(encodeCall(1000 + i, NFS_PROGRAM, NFS_V3, proc, cred, args)).slice();
          const id = `${client}/${1000 + i}`;
          sent.push({ rec, client, id });
          // The original, sometimes with a retransmission overtaking it while it runs.
          const first = srv.d.dispatch(rec, 'tcp', client);
          const dup = prng.chance(0.3) ? srv.d.dispatch(rec, 'tcp', client) : undefined;
          const r = await first;
          if (dup !== undefined) {
            expect(await dup).toBeNull();
            covered.overtaken++;
          }
          if (r !== null && prng.chance(0.8)) seen.set(id, replyBody(r).slice());
          if (prng.chance(0.2)) {
            // A retransmission after the reply.
            const again = await srv.d.dispatch(rec, 'tcp', client);
            if (r !== null && again !== null) expect(Buffer.from(replyBody(again)).equals(Buffer.from(replyBody(r)))).toBe(true);
          }
          if (prng.chance(0.1)) {
            // Crash: some replies never reached the state log.
            for (const le of entries) if (le.reply !== undefined && prng.chance(0.3)) le.reply = undefined;
            covered.crashes++;
            ({ fs, drc } = await recover(entries));
            srv = serverOver(fs, entries, drc);
          }
        }
        // Final crash and recovery (half the stored replies lost), then every call is retransmitted.
        for (const le of entries) if (le.reply !== undefined && prng.chance(0.5)) le.reply = undefined;
        covered.fromOutcome += entries.filter((le) => le.reply === undefined).length;
        ({ fs, drc } = await recover(entries));
        srv = serverOver(fs, entries, drc);
        const logged = entries.length;
        for (const s of sent) {
          const again = await srv.d.dispatch(s.rec, 'tcp', s.client);
          const orig = seen.get(s.id);
          if (orig !== undefined && again !== null) {
            expect(Buffer.from(replyBody(again)).equals(Buffer.from(orig))).toBe(true);
            covered.comparedAfterRecovery++;
          }
        }
        expect(entries.length).toBe(logged);
        const keys = new Set(entries.map((en) => requestKeyString(en.key)));
        expect(keys.size).toBe(entries.length);
        // The survivor's tree is the log applied once.
        const reference = newFs();
        for (const en of entries) await reference.apply(en.change).catch(() => undefined);
        expect(await snapshot(fs)).toEqual(await snapshot(reference));
      }),
      { numRuns: 60, seed: 7 },
    );
    // The schedules did exercise what the test is about.
    expect(covered.crashes).toBeGreaterThan(20);
    expect(covered.overtaken).toBeGreaterThan(100);
    expect(covered.comparedAfterRecovery).toBeGreaterThan(1000);
    expect(covered.fromOutcome).toBeGreaterThan(500);
  });
});
