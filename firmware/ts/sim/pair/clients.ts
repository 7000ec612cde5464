// Model NFS clients of the simulated pair: one per export, each sending file-system changes
// one at a time to whichever blade serves the export now and retransmitting (same xid) until
// answered, as an NFSv3 client over a hard mount does. Every answered change is applied to
// a MemFs model in answer order; the checker compares the blades' file systems with it.
import { utf8Decode, utf8Encode } from '../../core/bytes.ts';
import type { Prng } from '../../core/prng.ts';
import { MemFs } from '../../fsapi/memfs.ts';
import { FileType, FsError, type ChangeOp, type ChangeResult, type FileSystem, type InodeRef, type Time } from '../../fsapi/ops.ts';
import { drcLimits, type ChangeOutcome, type RequestKey } from '../../nfs/core/drc.ts';
import { setFsid, type BladeId, type PairSimWorld, type SimBlade } from './world.ts';

/** A client's change, named the way an NFS client names it: handles it learned, and names. */
export type ClientOp =
  | { op: 'create'; name: string }
  | { op: 'mkdir'; name: string }
  | { op: 'write'; name: string; ref: InodeRef; offset: number; data: Uint8Array }
  | { op: 'remove'; name: string }
  | { op: 'rename'; from: string; to: string };

/** What the service answers (and keeps in the state-machine log as the reply). */
interface Reply {
  ok: boolean;
  status: number;
  obj?: InodeRef;
}

const nfsProgram = 100003;
const retransmitMs = 30;
const cred = { uid: 0, gid: 0, gids: [] as number[] };

function timeOf(ms: number): Time {
  return { sec: Math.floor(ms / 1000), nsec: Math.floor((ms % 1000) * 1e6) };
}

function encodeReply(r: Reply): Uint8Array {
  return utf8Encode(JSON.stringify(r));
}

function replyOfOutcome(o: ChangeOutcome): Reply {
  if (!o.ok) return { ok: false, status: o.status };
  const res: ChangeResult = o.result;
  return res.op === 'create' || res.op === 'mkdir' ? { ok: true, status: 0, obj: { ino: res.obj.ino, gen: res.obj.gen } } : { ok: true, status: 0 };
}

/** Builds the ChangeOp for `op` on `fs` (the server side: names resolved in the root). */
async function buildChange(fs: FileSystem, op: ClientOp, nowMs: number): Promise<ChangeOp> {
  const base = { time: timeOf(nowMs), cred };
  const root = fs.rootIno;
  switch (op.op) {
    case 'create': {
      const n = fs.allocInode();
      return { ...base, op: 'create', dir: root, name: op.name, how: 'guarded', attrs: { mode: 0o644 }, newIno: n.ino, newGen: n.gen };
    }
    case 'mkdir': {
      const n = fs.allocInode();
      return { ...base, op: 'mkdir', dir: root, name: op.name, attrs: { mode: 0o755 }, newIno: n.ino, newGen: n.gen };
    }
    case 'write':
      return { ...base, op: 'write', target: op.ref, offset: op.offset, data: op.data };
    case 'remove':
      return { ...base, op: 'remove', dir: root, name: op.name };
    case 'rename':
      return { ...base, op: 'rename', fromDir: root, fromName: op.from, toDir: root, toName: op.to };
  }
}

/**
 * The sim blade's NFS change path (nfs3-service.ts change()): the duplicate-request cache
 * first, then commit through the change log; the reply is recorded in the state-machine log.
 * Undefined: no reply (dropped, in progress, or the blade died meanwhile).
 */
async function serveChange(world: PairSimWorld, b: SimBlade, set: BladeId, key: RequestKey, op: ClientOp): Promise<Reply | undefined> {
  const inc = b.incarnation;
  const fs = b.filesystems.get(setFsid(set));
  const drc = b.drc;
  const changeLog = b.changeLog;
  if (!world.alive(b, inc) || world.server[set] !== b.id || fs === undefined || drc === undefined || changeLog === undefined) return undefined;
  let prior = drc.begin(key);
  for (let held = 0; prior?.state === 'busy'; held++) {
    if (held >= drcLimits.drcBusyRetryMax) return undefined;
    await prior.retry;
    if (!world.alive(b, inc)) return undefined;
    prior = drc.begin(key);
  }
  if (prior !== undefined) {
    if (prior.state === 'in-progress') return undefined;
    if (prior.state === 'replied') return JSON.parse(utf8Decode(prior.reply)) as Reply;
    const r = replyOfOutcome(prior.outcome);
    drc.complete(key, encodeReply(r));
    return r;
  }
  let outcome: ChangeOutcome;
  try {
    const change = await buildChange(fs, op, world.sim.clock.nowMs());
    outcome = { ok: true, result: await changeLog.commit(change, key, fs.fsid) };
  } catch (e) {
    if (e instanceof FsError) outcome = { ok: false, status: e.status };
    else {
      drc.abandon(key);
      return undefined;
    }
  }
  if (!world.alive(b, inc)) return undefined;
  const r = replyOfOutcome(outcome);
  drc.complete(key, encodeReply(r));
  return r;
}

interface FileState {
  ref: InodeRef;
  size: number;
}

export class ModelClient {
  readonly model: MemFs;
  readonly files = new Map<string, FileState>();
  readonly dirs: string[] = [];
  answered = 0;
  sent = 0;
  retransmits = 0;
  current: { xid: number; op: ClientOp; answered: boolean } | undefined;
  private next = 0;
  private xid = 0;

  constructor(
    private readonly world: PairSimWorld,
    readonly set: BladeId,
    private readonly prng: Prng,
    private opsLeft: number,
    private readonly issueUntilMs: number,
  ) {
    this.model = new MemFs({ fsid: setFsid(set), rootMode: 0o777 });
    // Think time spreads the changes over the fault phase, so faults meet requests in flight.
    this.thinkMs = (issueUntilMs - world.sim.clock.nowMs()) / opsLeft;
  }
  private readonly thinkMs: number;

  get done(): boolean {
    return this.current === undefined && (this.opsLeft === 0 || this.world.sim.clock.nowMs() > this.issueUntilMs);
  }

  start(): void {
    this.world.sim.timers.after(this.prng.float() * 5, () => this.issue());
  }

  private pickOp(): ClientOp {
    const names = [...this.files.keys()].sort();
    const k = this.next++;
    const roll = this.prng.int(10);
    const target = names.length > 0 ? this.prng.pick(names) : undefined;
    if (target !== undefined && roll < 4) {
      const f = this.files.get(target) as FileState;
      const data = new Uint8Array(1 + this.prng.int(300)).map((_, i) => (k * 31 + i) & 0xff);
      return { op: 'write', name: target, ref: f.ref, offset: f.size, data };
    }
    if (target !== undefined && roll === 4) return { op: 'remove', name: target };
    if (target !== undefined && roll === 5) return { op: 'rename', from: target, to: `r${this.set}.${k}` };
    if (roll === 6) return { op: 'mkdir', name: `d${this.set}.${k}` };
    return { op: 'create', name: `f${this.set}.${k}` };
  }

  private issue(): void {
    if (this.opsLeft === 0 || this.world.sim.clock.nowMs() > this.issueUntilMs) return;
    this.opsLeft--;
    this.current = { xid: ++this.xid, op: this.pickOp(), answered: false };
    this.send();
  }

  private send(): void {
    const cur = this.current;
    if (cur === undefined || cur.answered) return;
    this.sent++;
    const server = this.world.server[this.set];
    if (server !== undefined) {
      const b = this.world.blades[server];
      const inc = b.incarnation;
      const key: RequestKey = { client: `client-${this.set}`, xid: cur.xid, prog: nfsProgram, vers: 3, proc: procOf(cur.op), argsCrc: 0, argsBytes: 0 };
      this.world.sim.timers.after(0.01 + this.prng.float() * 0.2, () => {
        this.world.spawnBlade(b, inc, `nfs${b.id}`, async () => {
          const r = await serveChange(this.world, b, this.set, key, cur.op);
          if (r !== undefined) this.world.sim.timers.after(0.01 + this.prng.float() * 0.2, () => this.onReply(cur, r));
        });
      });
    }
    this.world.sim.timers.after(retransmitMs * (0.5 + this.prng.float()), () => {
      if (!cur.answered) {
        this.retransmits++;
        this.send();
      }
    });
  }

  private onReply(cur: { xid: number; op: ClientOp; answered: boolean }, r: Reply): void {
    if (cur.answered) return;
    cur.answered = true;
    this.answered++;
    this.current = undefined;
    const op = cur.op;
    // Every change is chosen valid for the state the answered changes left: a failure means a
    // change was applied twice (a create's EXIST) or an answered one is missing (NOENT).
    if (!r.ok) this.world.violations.push(`export ${this.set} xid ${cur.xid} ${describe(op)} answered status ${r.status}: an earlier change was lost or this one ran twice`);
    else this.applyToModel(op, r);
    this.world.sim.timers.after(this.prng.float() * 2 * this.thinkMs, () => this.issue());
  }

  private applyToModel(op: ClientOp, r: Reply): void {
    this.world.sim.spawn(`model${this.set}`, async () => {
      const m = this.model;
      const base = { time: timeOf(this.world.sim.clock.nowMs()), cred };
      const root = m.rootIno;
      switch (op.op) {
        case 'create':
        case 'mkdir': {
          const n = m.allocInode();
          await m.apply(op.op === 'create' ? { ...base, op: 'create', dir: root, name: op.name, how: 'guarded', attrs: { mode: 0o644 }, newIno: n.ino, newGen: n.gen } : { ...base, op: 'mkdir', dir: root, name: op.name, attrs: { mode: 0o755 }, newIno: n.ino, newGen: n.gen });
          if (op.op === 'create' && r.obj !== undefined) this.files.set(op.name, { ref: r.obj, size: 0 });
          if (op.op === 'mkdir') this.dirs.push(op.name);
          return;
        }
        case 'write': {
          const attr = await m.lookup(root, op.name);
          await m.apply({ ...base, op: 'write', target: { ino: attr.ino, gen: attr.gen }, offset: op.offset, data: op.data });
          const f = this.files.get(op.name);
          if (f !== undefined) f.size = op.offset + op.data.length;
          return;
        }
        case 'remove':
          await m.apply({ ...base, op: 'remove', dir: root, name: op.name });
          this.files.delete(op.name);
          return;
        case 'rename': {
          await m.apply({ ...base, op: 'rename', fromDir: root, fromName: op.from, toDir: root, toName: op.to });
          const f = this.files.get(op.from);
          this.files.delete(op.from);
          if (f !== undefined) this.files.set(op.to, f);
          return;
        }
      }
    });
  }
}

function procOf(op: ClientOp): number {
  // NFSv3 procedure numbers (RFC 1813).
  return { write: 7, create: 8, mkdir: 9, remove: 12, rename: 14 }[op.op];
}

function describe(op: ClientOp): string {
  return op.op === 'rename' ? `rename ${op.from}->${op.to}` : `${op.op} ${op.name}`;
}

/** Names, types and contents of a root directory (the only one clients change). */
export async function snapshotRoot(fs: FileSystem): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let cookie = 0n;
  for (;;) {
    const { entries, eof } = await fs.readdir(fs.rootIno, cookie, 64);
    for (const e of entries) {
      cookie = e.cookie;
      if (e.name === '.' || e.name === '..') continue;
      const a = await fs.lookup(fs.rootIno, e.name);
      if (a.type === FileType.DIR) out.set(e.name, 'dir');
      else {
        const { data } = a.size > 0 ? await fs.read({ ino: a.ino, gen: a.gen }, 0, a.size) : { data: new Uint8Array(0) };
        let h = 0;
        for (const x of data) h = (h * 31 + x) >>> 0;
        out.set(e.name, `file size ${a.size} read ${data.length} hash ${h}`);
      }
    }
    if (eof || entries.length === 0) break;
  }
  return out;
}

/** Differences between a blade's root directory and the model's, or undefined when equal. */
export function diffRoots(actual: Map<string, string>, model: Map<string, string>): string | undefined {
  const diffs: string[] = [];
  for (const [name, v] of model) {
    const a = actual.get(name);
    if (a === undefined) diffs.push(`${name} missing (model: ${v})`);
    else if (a !== v) diffs.push(`${name}: ${a}, model ${v}`);
  }
  for (const [name, v] of actual) if (!model.has(name)) diffs.push(`${name} present but never answered (${v})`);
  return diffs.length === 0 ? undefined : diffs.slice(0, 5).join('; ');
}

