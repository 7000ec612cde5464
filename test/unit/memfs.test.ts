// The reference in-memory file system: the semantics the real file system is checked against.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { type ChangeOp, type Cred, type InodeRef, FileType, FsError, FsStatus } from '../../firmware/ts/fsapi/ops.ts';

const root: Cred = { uid: 0, gid: 0, gids: [] };
const user: Cred = { uid: 1000, gid: 1000, gids: [] };
let clock = 100;
const t = () => ({ sec: ++clock, nsec: 0 });

async function status(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (e) {
    if (e instanceof FsError) return e.status;
    throw e;
  }
}

function newObj(fs: MemFs) {
  const r = fs.allocInode();
  return { newIno: r.ino, newGen: r.gen };
}

async function create(fs: MemFs, dir: InodeRef, name: string, cred = root): Promise<InodeRef> {
  const r = await fs.apply({ op: 'create', time: t(), cred, dir, name, how: 'guarded', attrs: {}, ...newObj(fs) });
  if (r.op !== 'create') throw new Error('unexpected');
  return { ino: r.obj.ino, gen: r.obj.gen };
}

async function mkdir(fs: MemFs, dir: InodeRef, name: string, cred = root, mode = 0o755): Promise<InodeRef> {
  const r = await fs.apply({ op: 'mkdir', time: t(), cred, dir, name, attrs: { mode }, ...newObj(fs) });
  if (r.op !== 'mkdir') throw new Error('unexpected');
  return { ino: r.obj.ino, gen: r.obj.gen };
}

describe('MemFs', () => {
  it('writes and reads sparse data across chunk boundaries', async () => {
    const fs = new MemFs();
    const f = await create(fs, fs.rootIno, 'f');
    const data = Uint8Array.from({ length: 70_000 }, (_, i) => i % 251);
    await fs.apply({ op: 'write', time: t(), cred: root, target: f, offset: 1_000_000, data });
    const a = await fs.getattr(f);
    expect(a.size).toBe(1_070_000);
    const head = await fs.read(f, 0, 100);
    expect(head.data.every((b) => b === 0)).toBe(true);
    expect(head.eof).toBe(false);
    const mid = await fs.read(f, 1_000_000, 70_000);
    expect(mid.data).toEqual(data);
    expect(mid.eof).toBe(true);
    // Truncation zeroes what is cut off, even when the file grows back.
    await fs.apply({ op: 'setattr', time: t(), cred: root, target: f, attrs: { size: 1_000_010 } });
    await fs.apply({ op: 'setattr', time: t(), cred: root, target: f, attrs: { size: 1_000_020 } });
    const tail = await fs.read(f, 1_000_000, 20);
    expect([...tail.data]).toEqual([...data.subarray(0, 10), ...new Array(10).fill(0)]);
  });

  it('readParts lends chunk views that later writes and truncations leave unchanged', async () => {
    const fs = new MemFs();
    const f = await create(fs, fs.rootIno, 'f');
    const data = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7) % 251);
    await fs.apply({ op: 'write', time: t(), cred: root, target: f, offset: 200_000, data });
    const concat = (parts: Uint8Array[]): Uint8Array => {
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
      return out;
    };
    // A hole, then data across a chunk boundary, up to the end.
    const r = await fs.readParts(f, 150_000, 200_000);
    expect(r.length).toBe(150_000);
    expect(r.eof).toBe(true);
    expect(r.attr.size).toBe(300_000);
    const want = new Uint8Array(150_000);
    want.set(data, 50_000);
    expect(concat(r.parts)).toEqual(want);
    await fs.apply({ op: 'write', time: t(), cred: root, target: f, offset: 200_000, data: new Uint8Array(100_000).fill(9) });
    await fs.apply({ op: 'setattr', time: t(), cred: root, target: f, attrs: { size: 250_001 } });
    expect(concat(r.parts)).toEqual(want);
    expect(concat((await fs.readParts(f, 250_000, 10)).parts)).toEqual(Uint8Array.of(9));
    // The check sees the attributes first and its error is the answer; past the end is empty.
    await expect(fs.readParts(f, 0, 1, () => { throw new FsError(FsStatus.ACCES); })).rejects.toMatchObject({ status: FsStatus.ACCES });
    expect(await fs.readParts(f, 250_001, 10)).toMatchObject({ parts: [], length: 0, eof: true });
    expect(await status(fs.readParts(fs.rootIno, 0, 1))).toBe(FsStatus.ISDIR);
  });

  it('enforces its capacity with NOSPC and frees space on remove', async () => {
    const fs = new MemFs({ totalBytes: 128 * 1024 });
    const f = await create(fs, fs.rootIno, 'big');
    await fs.apply({ op: 'write', time: t(), cred: root, target: f, offset: 0, data: new Uint8Array(128 * 1024) });
    expect(await status(fs.apply({ op: 'write', time: t(), cred: root, target: f, offset: 200_000, data: new Uint8Array(1) }))).toBe(FsStatus.NOSPC);
    await fs.apply({ op: 'remove', time: t(), cred: root, dir: fs.rootIno, name: 'big' });
    expect((await fs.fsstat()).freeBytes).toBe(128 * 1024);
  });

  it('checks permissions with the change credentials', async () => {
    const fs = new MemFs({ rootMode: 0o755 });
    expect(await status(create(fs, fs.rootIno, 'x', user))).toBe(FsStatus.ACCES);
    const d = await mkdir(fs, fs.rootIno, 'd', root, 0o777);
    const f = await create(fs, d, 'mine', user);
    expect((await fs.getattr(f)).uid).toBe(1000);
    const other = { uid: 2000, gid: 2000, gids: [] };
    expect(await status(fs.apply({ op: 'write', time: t(), cred: other, target: f, offset: 0, data: new Uint8Array(1) }))).toBe(FsStatus.ACCES);
    expect(await status(fs.apply({ op: 'setattr', time: t(), cred: other, target: f, attrs: { mode: 0o777 } }))).toBe(FsStatus.PERM);
    expect(await status(fs.apply({ op: 'setattr', time: t(), cred: user, target: f, attrs: { uid: 0 } }))).toBe(FsStatus.PERM);
    // The sticky bit: others may not remove my file from a shared directory.
    await fs.apply({ op: 'setattr', time: t(), cred: root, target: d, attrs: { mode: 0o1777 } });
    expect(await status(fs.apply({ op: 'remove', time: t(), cred: other, dir: d, name: 'mine' }))).toBe(FsStatus.ACCES);
    await fs.apply({ op: 'remove', time: t(), cred: user, dir: d, name: 'mine' });
  });

  it('readdir cookies are stable: resuming after a removed entry continues correctly', async () => {
    const fs = new MemFs();
    for (let i = 0; i < 10; i++) await create(fs, fs.rootIno, `f${i}`);
    const first = await fs.readdir(fs.rootIno, 0n, 5);
    expect(first.entries.map((e) => e.name)).toEqual(['.', '..', 'f0', 'f1', 'f2']);
    expect(first.eof).toBe(false);
    await fs.apply({ op: 'remove', time: t(), cred: root, dir: fs.rootIno, name: 'f2' });
    const rest = await fs.readdir(fs.rootIno, (first.entries[4] as { cookie: bigint }).cookie, 100);
    expect(rest.entries.map((e) => e.name)).toEqual(['f3', 'f4', 'f5', 'f6', 'f7', 'f8', 'f9']);
    expect(rest.eof).toBe(true);
    expect(await status(fs.readdir(fs.rootIno, 10_000n, 1))).toBe(FsStatus.BAD_COOKIE);
  });

  it('rename keeps link counts and parents right, and refuses cycles', async () => {
    const fs = new MemFs();
    const a = await mkdir(fs, fs.rootIno, 'a');
    const b = await mkdir(fs, a, 'b');
    expect((await fs.getattr(fs.rootIno)).nlink).toBe(3);
    await fs.apply({ op: 'rename', time: t(), cred: root, fromDir: a, fromName: 'b', toDir: fs.rootIno, toName: 'b2' });
    expect((await fs.getattr(fs.rootIno)).nlink).toBe(4);
    expect((await fs.getattr(a)).nlink).toBe(2);
    expect((await fs.lookup(b, '..')).ino).toBe(fs.rootIno.ino);
    expect(await status(fs.apply({ op: 'rename', time: t(), cred: root, fromDir: fs.rootIno, fromName: 'a', toDir: a, toName: 'x' }))).toBe(FsStatus.INVAL);
  });

  it('a failed change changes nothing and reports the directory wcc', async () => {
    const fs = new MemFs();
    await create(fs, fs.rootIno, 'dup');
    const before = await fs.getattr(fs.rootIno);
    try {
      await fs.apply({ op: 'mkdir', time: t(), cred: root, dir: fs.rootIno, name: 'dup', attrs: {}, ...newObj(fs) });
      throw new Error('expected EXIST');
    } catch (e) {
      expect(e).toBeInstanceOf(FsError);
      expect((e as FsError).status).toBe(FsStatus.EXIST);
      expect((e as FsError).dirPost).toEqual(before);
    }
    expect(await fs.getattr(fs.rootIno)).toEqual(before);
  });

  it('same descriptors applied to two instances give identical file systems (determinism)', async () => {
    const ops = fc.array(
      fc.record({ kind: fc.constantFrom('create', 'mkdir', 'remove', 'rmdir', 'rename', 'write', 'link'), a: fc.nat(5), b: fc.nat(5), n: fc.nat(3000) }),
      { maxLength: 60 },
    );
    await fc.assert(
      fc.asyncProperty(ops, async (list) => {
        const one = new MemFs();
        const two = new MemFs();
        const names = ['a', 'b', 'c', 'd', 'e', 'f'];
        const log: ChangeOp[] = [];
        for (const o of list) {
          const time = { sec: log.length + 1, nsec: 0 };
          const n = names[o.a] as string;
          const m = names[o.b] as string;
          const ino = one.allocInode();
          let c: ChangeOp;
          if (o.kind === 'create') c = { op: 'create', time, cred: root, dir: one.rootIno, name: n, how: 'unchecked', attrs: {}, newIno: ino.ino, newGen: ino.gen };
          else if (o.kind === 'mkdir') c = { op: 'mkdir', time, cred: root, dir: one.rootIno, name: n, attrs: {}, newIno: ino.ino, newGen: ino.gen };
          else if (o.kind === 'remove' || o.kind === 'rmdir') c = { op: o.kind, time, cred: root, dir: one.rootIno, name: n };
          else if (o.kind === 'rename') c = { op: 'rename', time, cred: root, fromDir: one.rootIno, fromName: n, toDir: one.rootIno, toName: m };
          else {
            let target: InodeRef;
            try {
              const at = await one.lookup(one.rootIno, n);
              target = { ino: at.ino, gen: at.gen };
            } catch {
              continue;
            }
            c = o.kind === 'write'
              ? { op: 'write', time, cred: root, target, offset: o.n, data: new Uint8Array(o.b + 1).fill(o.a) }
              : { op: 'link', time, cred: root, target, dir: one.rootIno, name: m };
          }
          log.push(c);
          const r1 = await one.apply(c).catch((e: FsError) => e.status);
          const r2 = await two.apply(c).catch((e: FsError) => e.status);
          expect(r2).toEqual(r1);
        }
        const dump = async (fs: MemFs) => {
          const { entries } = await fs.readdir(fs.rootIno, 0n, 1000);
          const out: unknown[] = [];
          for (const e of entries) {
            const a = await fs.lookup(fs.rootIno, e.name);
            out.push([e.name, a, a.type === FileType.REG ? [...(await fs.read(a, 0, 1 << 20)).data] : null]);
          }
          return out;
        };
        expect(await dump(two)).toEqual(await dump(one));
        // Link counts agree with the directory entries.
        const { entries } = await one.readdir(one.rootIno, 0n, 1000);
        for (const e of entries) {
          if (e.name === '.' || e.name === '..') continue;
          const a = await one.lookup(one.rootIno, e.name);
          if (a.type === FileType.REG) expect(a.nlink).toBe(entries.filter((x) => x.ino === a.ino).length);
        }
      }),
      { numRuns: 150 },
    );
  });
});
