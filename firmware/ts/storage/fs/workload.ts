// A model-checking harness for the file system: builds random change descriptors, applies
// each to the subject (CowFs, through applyLogged with a sequence number, like the change
// log does) and to a reference model (fsapi/memfs.ts), compares the results, and compares
// whole trees on demand. It keeps the log of applied descriptors so that, after a crash and
// a remount, the entries after the CP's recorded sequence can be replayed.
import type { Prng } from '../../core/prng.ts';
import { bytesEqual } from '../../core/bytes.ts';
import {
  type Attr,
  type ChangeOp,
  type ChangeResult,
  type Cred,
  type FileSystem,
  type InodeRef,
  type SetAttr,
  type Time,
  FileType,
  FsError,
} from '../../fsapi/ops.ts';
import type { CowFs } from './cowfs.ts';

interface Shadow {
  type: FileType;
  cow: InodeRef;
  model: InodeRef;
  /** Offsets written, to compare data windows of large sparse files. */
  writes: number[];
}

export interface WorkloadOptions {
  /** Log origin (blade) the harness applies as. */
  origin?: number;
  /** Largest offset of an ordinary write (bytes). */
  writeOffsetMax?: number;
  /** Chance that a write lands far out in a sparse file (tall block trees). */
  sparseWriteChance?: number;
  /** Chance that a change is made by an unprivileged user (permission checks). */
  userCredChance?: number;
}

type Abstract =
  | { op: 'create'; dir: string; name: string; how: 'unchecked' | 'guarded' | 'exclusive'; attrs: SetAttr; verifier?: Uint8Array }
  | { op: 'mkdir' | 'symlink' | 'mknod'; dir: string; name: string; attrs: SetAttr; target?: string; type?: FileType }
  | { op: 'remove' | 'rmdir'; dir: string; name: string }
  | { op: 'rename'; fromDir: string; fromName: string; toDir: string; toName: string }
  | { op: 'link'; target: string; dir: string; name: string }
  | { op: 'setattr'; target: string; attrs: SetAttr; guard: boolean }
  | { op: 'write'; target: string; offset: number; data: Uint8Array };

const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'file.txt', 'data.bin', 'Ünïcødé', 'n'.repeat(255), 'sub', 'x y'];
const rootCred: Cred = { uid: 0, gid: 0, gids: [] };
const userCred: Cred = { uid: 1000, gid: 1000, gids: [1000, 20] };

export class ModelHarness {
  /** Every descriptor applied to the subject, in order, as the change log would hold it. */
  readonly log: Array<{ seq: bigint; op: ChangeOp }> = [];
  private seq = 0n;
  private now: Time = { sec: 1_700_000_000, nsec: 0 };
  private readonly paths = new Map<string, Shadow>();
  readonly origin: number;
  private readonly opts: Required<WorkloadOptions>;
  stepCount = 0;

  constructor(
    public subject: CowFs,
    readonly model: FileSystem,
    private readonly prng: Prng,
    opts: WorkloadOptions = {},
  ) {
    this.origin = opts.origin ?? 0;
    this.opts = {
      origin: this.origin,
      writeOffsetMax: opts.writeOffsetMax ?? 6 * 1024 * 1024,
      sparseWriteChance: opts.sparseWriteChance ?? 0.01,
      userCredChance: opts.userCredChance ?? 0.1,
    };
    this.paths.set('', { type: FileType.DIR, cow: subject.rootIno, model: model.rootIno, writes: [] });
  }

  /** Builds one random change, applies it to both file systems and checks they agree. */
  async step(): Promise<void> {
    this.stepCount++;
    const a = this.pick();
    this.now = { sec: this.now.sec + this.prng.int(3), nsec: this.prng.int(1_000_000_000) };
    const cred = this.prng.chance(this.opts.userCredChance) ? userCred : rootCred;
    const cowOp = this.render(a, 'cow', cred);
    const modelOp = this.render(a, 'model', cred);
    // Logged first, as the change log does before anything is applied: a power cut while
    // the subject applies it leaves the change to replay. The model stands for what clients
    // were told, and takes the change at once.
    const seq = ++this.seq;
    this.log.push({ seq, op: cowOp });
    const r2 = await settle(this.model.apply(modelOp));
    const r1 = await settle(this.subject.applyLogged(this.origin, seq, cowOp));
    const s1 = describeOutcome(r1);
    const s2 = describeOutcome(r2);
    if (s1 !== s2) throw new Error(`step ${this.stepCount} ${describeAbstract(a)}: file system gave ${s1}, model gave ${s2}`);
    if (!(r2 instanceof Error)) this.track(a, r1 as ChangeResult, r2, cowOp, modelOp);
  }

  /** After a remount: replays the logged changes after the CP's sequence into the new instance. */
  async replay(fs: CowFs): Promise<number> {
    this.subject = fs;
    const root = this.paths.get('');
    if (root !== undefined) root.cow = fs.rootIno;
    const after = fs.appliedSeq(this.origin);
    let n = 0;
    for (const e of this.log) {
      if (e.seq <= after) continue;
      await settle(fs.applyLogged(this.origin, e.seq, e.op));
      n++;
    }
    return n;
  }

  /** Compares the whole tree of both file systems; returns a description of the first difference. */
  async compare(): Promise<string | undefined> {
    const queue: Array<{ path: string; cow: InodeRef; model: InodeRef }> = [{ path: '', cow: this.subject.rootIno, model: this.model.rootIno }];
    while (queue.length > 0) {
      const d = queue.shift() as { path: string; cow: InodeRef; model: InodeRef };
      const mNames = await listNames(this.model, d.model, 7);
      const cNames = await listNames(this.subject, d.cow, 1 + this.prng.int(20));
      if (mNames.join('/') !== cNames.join('/')) return `directory /${d.path}: file system has [${cNames.join(', ')}], model has [${mNames.join(', ')}]`;
      for (const name of mNames) {
        const path = d.path === '' ? name : `${d.path}/${name}`;
        const ma = await this.model.lookup(d.model, name);
        const ca = await this.subject.lookup(d.cow, name);
        const diff = compareAttr(ca, ma);
        if (diff !== undefined) return `/${path}: ${diff}`;
        const cref = { ino: ca.ino, gen: ca.gen };
        const mref = { ino: ma.ino, gen: ma.gen };
        if (ma.type === FileType.DIR) queue.push({ path, cow: cref, model: mref });
        else if (ma.type === FileType.LNK) {
          const [x, y] = [await this.subject.readlink(cref), await this.model.readlink(mref)];
          if (x !== y) return `/${path}: link target ${x} vs ${y}`;
        } else if (ma.type === FileType.REG) {
          for (const [off, len] of this.windows(path, ma.size)) {
            const [x, y] = [await this.subject.read(cref, off, len), await this.model.read(mref, off, len)];
            if (!bytesEqual(x.data, y.data) || x.eof !== y.eof) return `/${path}: data differs in [${off}, ${off + len})`;
          }
        }
      }
    }
    return undefined;
  }

  private windows(path: string, size: number): Array<[number, number]> {
    if (size <= 1024 * 1024) return [[0, size + 1]];
    const out: Array<[number, number]> = [
      [0, 1024 * 1024],
      [Math.max(0, size - 65536), 65537],
    ];
    for (const w of (this.paths.get(path)?.writes ?? []).slice(-4)) out.push([Math.max(0, w - 4096), 72 * 1024]);
    return out;
  }

  private pick(): Abstract {
    const all = [...this.paths.entries()];
    const dirs = all.filter(([, s]) => s.type === FileType.DIR).map(([p]) => p);
    const files = all.filter(([, s]) => s.type === FileType.REG).map(([p]) => p);
    const others = all.filter(([p]) => p !== '').map(([p]) => p);
    const p = this.prng;
    const dir = p.pick(dirs);
    const name = p.chance(0.05) ? p.pick(['.', '..', '', 'bad/name']) : p.pick(names);
    const r = p.int(100);
    const attrs = (): SetAttr => {
      const a: SetAttr = {};
      if (p.chance(0.3)) a.mode = p.int(0o10000);
      if (p.chance(0.1)) a.uid = p.pick([0, 1000, 1001]);
      if (p.chance(0.1)) a.gid = p.pick([0, 20, 1000]);
      return a;
    };
    if (r < 22) {
      const how = p.pick(['unchecked', 'guarded', 'exclusive'] as const);
      const a: SetAttr = how === 'exclusive' ? {} : attrs();
      if (how === 'unchecked' && p.chance(0.2)) a.size = p.int(3) * 1000;
      return how === 'exclusive' ? { op: 'create', dir, name, how, attrs: a, verifier: p.bytes(8) } : { op: 'create', dir, name, how, attrs: a };
    }
    if (r < 32) return { op: 'mkdir', dir, name, attrs: attrs() };
    if (r < 36) return { op: 'symlink', dir, name, attrs: {}, target: p.chance(0.1) ? 't'.repeat(p.range(1000, 4100)) : `../target/${p.int(100)}` };
    if (r < 39) return { op: 'mknod', dir, name, attrs: {}, type: p.pick([FileType.FIFO, FileType.SOCK, FileType.CHR, FileType.BLK]) };
    if (r < 60 && files.length > 0) {
      const target = p.pick(files);
      const sparse = p.chance(this.opts.sparseWriteChance);
      const offset = sparse ? p.int(2 ** 32) * 2 : p.chance(0.5) ? p.int(65536) : p.int(this.opts.writeOffsetMax);
      const len = p.chance(0.2) ? p.range(16 * 1024, 200 * 1024) : p.range(1, 9000);
      return { op: 'write', target, offset, data: p.bytes(len) };
    }
    if (r < 68 && others.length > 0) {
      const target = p.pick(others);
      const a = attrs();
      if (p.chance(0.4)) a.size = p.chance(0.5) ? p.int(20000) : p.int(3 * 1024 * 1024);
      if (p.chance(0.2)) a.mtime = { sec: p.int(2 ** 31), nsec: p.int(1_000_000_000) };
      if (p.chance(0.1)) a.atime = { sec: p.int(2 ** 31), nsec: p.int(1_000_000_000) };
      return { op: 'setattr', target, attrs: a, guard: p.chance(0.1) };
    }
    if (r < 78) return { op: 'remove', dir, name: this.existingName(dir) ?? name };
    if (r < 84) return { op: 'rmdir', dir, name: this.existingName(dir) ?? name };
    if (r < 94) {
      const fromDir = p.pick(dirs);
      return { op: 'rename', fromDir, fromName: this.existingName(fromDir) ?? name, toDir: p.pick(dirs), toName: p.chance(0.5) ? name : (this.existingName(dir) ?? name) };
    }
    if (files.length > 0) return { op: 'link', target: p.pick(files), dir, name };
    return { op: 'mkdir', dir, name, attrs: {} };
  }

  private existingName(dir: string): string | undefined {
    const prefix = dir === '' ? '' : `${dir}/`;
    const children = [...this.paths.keys()].filter((k) => k !== '' && k.startsWith(prefix) && !k.slice(prefix.length).includes('/'));
    return children.length > 0 && this.prng.chance(0.8) ? this.prng.pick(children).slice(prefix.length) : undefined;
  }

  private render(a: Abstract, side: 'cow' | 'model', cred: Cred): ChangeOp {
    const fs = side === 'cow' ? this.subject : this.model;
    const ref = (path: string): InodeRef => {
      const s = this.paths.get(path);
      if (s === undefined) throw new Error(`harness: unknown path ${path}`);
      return side === 'cow' ? s.cow : s.model;
    };
    const base = { time: { ...this.now }, cred };
    switch (a.op) {
      case 'create': {
        const n = fs.allocInode();
        const c: ChangeOp = { ...base, op: 'create', dir: ref(a.dir), name: a.name, how: a.how, attrs: a.attrs, newIno: n.ino, newGen: n.gen };
        if (a.verifier !== undefined) c.verifier = a.verifier;
        return c;
      }
      case 'mkdir': {
        const n = fs.allocInode();
        return { ...base, op: 'mkdir', dir: ref(a.dir), name: a.name, attrs: a.attrs, newIno: n.ino, newGen: n.gen };
      }
      case 'symlink': {
        const n = fs.allocInode();
        return { ...base, op: 'symlink', dir: ref(a.dir), name: a.name, attrs: a.attrs, target: a.target ?? '', newIno: n.ino, newGen: n.gen };
      }
      case 'mknod': {
        const n = fs.allocInode();
        const type = (a.type ?? FileType.FIFO) as typeof FileType.FIFO;
        return { ...base, op: 'mknod', dir: ref(a.dir), name: a.name, type, attrs: a.attrs, rdev: { major: 8, minor: 1 }, newIno: n.ino, newGen: n.gen };
      }
      case 'remove':
      case 'rmdir':
        return { ...base, op: a.op, dir: ref(a.dir), name: a.name };
      case 'rename':
        return { ...base, op: 'rename', fromDir: ref(a.fromDir), fromName: a.fromName, toDir: ref(a.toDir), toName: a.toName };
      case 'link':
        return { ...base, op: 'link', target: ref(a.target), dir: ref(a.dir), name: a.name };
      case 'setattr': {
        const c: ChangeOp = { ...base, op: 'setattr', target: ref(a.target), attrs: a.attrs };
        // The guard is the ctime the other side reports; a wrong guard is as good a test.
        if (a.guard) c.guardCtime = { sec: this.now.sec - 1, nsec: 0 };
        return c;
      }
      case 'write':
        return { ...base, op: 'write', target: ref(a.target), offset: a.offset, data: a.data };
    }
  }

  private track(a: Abstract, cow: ChangeResult, model: ChangeResult, _c: ChangeOp, _m: ChangeOp): void {
    const join = (dir: string, name: string): string => (dir === '' ? name : `${dir}/${name}`);
    switch (a.op) {
      case 'create':
      case 'mkdir':
      case 'symlink':
      case 'mknod': {
        if (!('obj' in cow) || !('obj' in model)) return;
        const path = join(a.dir, a.name);
        if (!this.paths.has(path)) {
          this.paths.set(path, { type: model.obj.type, cow: { ino: cow.obj.ino, gen: cow.obj.gen }, model: { ino: model.obj.ino, gen: model.obj.gen }, writes: [] });
        }
        return;
      }
      case 'remove':
      case 'rmdir':
        this.paths.delete(join(a.dir, a.name));
        return;
      case 'link': {
        const s = this.paths.get(a.target);
        if (s !== undefined) this.paths.set(join(a.dir, a.name), s);
        return;
      }
      case 'rename': {
        const from = join(a.fromDir, a.fromName);
        const to = join(a.toDir, a.toName);
        const moving = this.paths.get(from);
        const victim = this.paths.get(to);
        if (moving === undefined || from === to) return;
        if (victim !== undefined && victim.cow.ino === moving.cow.ino) return;
        this.paths.delete(to);
        for (const [k, v] of [...this.paths]) {
          if (k === from || k.startsWith(`${from}/`)) {
            this.paths.delete(k);
            this.paths.set(to + k.slice(from.length), v);
          }
        }
        return;
      }
      case 'write': {
        const s = this.paths.get(a.target);
        if (s !== undefined) {
          s.writes.push(a.offset);
          if (s.writes.length > 8) s.writes.shift();
        }
        return;
      }
      case 'setattr':
        return;
    }
  }
}

async function settle<T>(p: Promise<T>): Promise<T | Error> {
  try {
    return await p;
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

async function listNames(fs: FileSystem, dir: InodeRef, pageSize: number): Promise<string[]> {
  const out: string[] = [];
  let cookie = 0n;
  for (;;) {
    const r = await fs.readdir(dir, cookie, pageSize);
    for (const e of r.entries) {
      if (e.name !== '.' && e.name !== '..') out.push(e.name);
      cookie = e.cookie;
    }
    if (r.eof) break;
    if (r.entries.length === 0) throw new Error('readdir returned no entries without eof');
  }
  const sorted = [...out].sort();
  for (let i = 1; i < sorted.length; i++) if (sorted[i] === sorted[i - 1]) throw new Error(`readdir returned ${sorted[i]} twice`);
  return sorted;
}

/** The attributes both file systems must agree on (inode numbers, generations and usage differ by design). */
function normAttr(a: Attr): string {
  return JSON.stringify({
    type: a.type,
    mode: a.mode,
    nlink: a.nlink,
    uid: a.uid,
    gid: a.gid,
    size: a.type === FileType.DIR ? 'dir' : a.size,
    rdev: a.rdev,
    atime: a.atime,
    mtime: a.mtime,
    ctime: a.ctime,
  });
}

function compareAttr(x: Attr, y: Attr): string | undefined {
  const [a, b] = [normAttr(x), normAttr(y)];
  return a === b ? undefined : `attributes ${a} vs ${b}`;
}

function describeOutcome(r: ChangeResult | Error): string {
  if (r instanceof FsError) return `error ${r.code}`;
  if (r instanceof Error) return `exception ${r.name}: ${r.message}`;
  const parts: string[] = [r.op];
  for (const [k, v] of Object.entries(r)) {
    if (k === 'op') continue;
    if (typeof v === 'object' && v !== null && 'type' in v) parts.push(`${k}=${normAttr(v as Attr)}`);
    else if (typeof v === 'object' && v !== null) {
      const w = v as { mtime: Time; ctime: Time };
      parts.push(`${k}=${JSON.stringify({ mtime: w.mtime, ctime: w.ctime })}`);
    } else parts.push(`${k}=${String(v)}`);
  }
  return parts.join(' ');
}

function describeAbstract(a: Abstract): string {
  return JSON.stringify(a, (k, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes>` : k === 'name' && typeof v === 'string' && v.length > 20 ? `${v.slice(0, 8)}…(${v.length})` : v));
}
