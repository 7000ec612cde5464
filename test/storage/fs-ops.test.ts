// The CoW file system's operation set on its own: large and sparse files through indirect
// blocks, directories of 100,000 entries with readdir cookies that stay valid across CPs and
// remounts, inode reservation, limits, the dirty-data and timer CP triggers.
import { describe, expect, it } from 'vitest';
import { bytesEqual } from '../../firmware/ts/core/bytes.ts';
import { Prng } from '../../firmware/ts/core/prng.ts';
import { VirtualTime } from '../../firmware/ts/hal/clock/sim/virtual.ts';
import type { FsError} from '../../firmware/ts/fsapi/ops.ts';
import { type ChangeOp, type InodeRef, FileType, FsStatus, fsLimits } from '../../firmware/ts/fsapi/ops.ts';
import { CowFs, mkfs, type CpInfo } from '../../firmware/ts/storage/fs/cowfs.ts';
import { fsck } from '../../firmware/ts/storage/fs/fsck.ts';
import { fsInfo, pathConf } from '../../firmware/ts/storage/fs/limits.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';

const cred = { uid: 0, gid: 0, gids: [] };
let clock = 1000;
const now = (): { sec: number; nsec: number } => ({ sec: clock++, nsec: 123_456_789 });

async function fresh(blockCount = 64 * 1024, stripeBlocks = 4, inodeCountMax?: number): Promise<{ vol: MemVolume; fs: CowFs }> {
  const vol = new MemVolume({ blockCount, stripeBlocks });
  await mkfs(vol.session(), { fsid: 42n, time: { sec: 1, nsec: 2 }, ...(inodeCountMax !== undefined ? { inodeCountMax } : {}) });
  return { vol, fs: await CowFs.mount(vol.session()) };
}

async function create(fs: CowFs, dir: InodeRef, name: string): Promise<InodeRef> {
  const n = fs.allocInode();
  const r = await fs.apply({ op: 'create', dir, name, how: 'guarded', attrs: { mode: 0o640 }, newIno: n.ino, newGen: n.gen, time: now(), cred });
  if (r.op !== 'create') throw new Error('unexpected result');
  return { ino: r.obj.ino, gen: r.obj.gen };
}

async function mkdir(fs: CowFs, dir: InodeRef, name: string): Promise<InodeRef> {
  const n = fs.allocInode();
  await fs.apply({ op: 'mkdir', dir, name, attrs: {}, newIno: n.ino, newGen: n.gen, time: now(), cred });
  return n;
}

async function readAll(fs: CowFs, dir: InodeRef, page: number): Promise<Array<{ name: string; cookie: bigint }>> {
  const out: Array<{ name: string; cookie: bigint }> = [];
  let cookie = 0n;
  for (;;) {
    const r = await fs.readdir(dir, cookie, page);
    for (const e of r.entries) {
      out.push({ name: e.name, cookie: e.cookie });
      cookie = e.cookie;
    }
    if (r.eof) return out;
  }
}

describe('CoW file system operations', () => {
  it('mkfs makes a root directory with the given time, and fsinfo/pathconf limits are exported', async () => {
    const { vol, fs } = await fresh();
    const root = await fs.getattr(fs.rootIno);
    expect(root).toMatchObject({ type: FileType.DIR, nlink: 2, ino: 1, gen: 1, size: 4096, mode: 0o755, ctime: { sec: 1, nsec: 2 } });
    expect(fs.fsid).toBe(42n);
    expect(fsInfo.fileSizeBytesMax).toBe(fsLimits.fileSizeBytesMax);
    expect(pathConf.nameBytesMax).toBe(255);
    const st = await fs.fsstat();
    expect(st.freeBytes).toBeGreaterThan(0);
    expect(st.totalBytes).toBeGreaterThan(st.freeBytes);
    expect(await fsck(vol.session())).toEqual([]);
  });

  it('large files use indirect blocks, holes read as zeros, truncate frees and zeroes the tail', async () => {
    const { vol, fs } = await fresh(128 * 1024);
    const f = await create(fs, fs.rootIno, 'big');
    const chunk = new Uint8Array(1024 * 1024).map((_, i) => (i * 7 + 3) & 0xff);
    for (let i = 0; i < 6; i++) await fs.apply({ op: 'write', target: f, offset: i * chunk.length, data: chunk, time: now(), cred });
    // A write 5 TiB... no: far out, making the tree taller (2^33 bytes = 2^21 blocks).
    const far = 2 ** 33 + 4000;
    await fs.apply({ op: 'write', target: f, offset: far, data: new Uint8Array([1, 2, 3]), time: now(), cred });
    await fs.takeCp();
    expect((await fs.getattr(f)).size).toBe(far + 3);
    const mid = await fs.read(f, 3 * 1024 * 1024 - 10, 20);
    expect(Array.from(mid.data)).toEqual(Array.from(chunk.subarray(chunk.length - 10)).concat(Array.from(chunk.subarray(0, 10))));
    expect((await fs.read(f, 2 ** 32, 8192)).data).toEqual(new Uint8Array(8192));
    expect(Array.from((await fs.read(f, far - 2, 10)).data)).toEqual([0, 0, 1, 2, 3]);
    expect(await fsck(vol.session())).toEqual([]);
    const usedBefore = (await fs.getattr(f)).used;
    await fs.apply({ op: 'setattr', target: f, attrs: { size: 1_000_001 }, time: now(), cred });
    await fs.apply({ op: 'setattr', target: f, attrs: { size: 2_000_000 }, time: now(), cred });
    const after = await fs.getattr(f);
    expect(after.used).toBeLessThan(usedBefore);
    expect((await fs.read(f, 999_999, 4)).data).toEqual(new Uint8Array([chunk[999_999 % chunk.length]!, chunk[1_000_000 % chunk.length]!, 0, 0]));
    await fs.takeCp();
    await fs.close();
    const fs2 = await CowFs.mount(vol.session());
    expect((await fs2.read(f, 999_999, 4)).data).toEqual(new Uint8Array([chunk[999_999 % chunk.length]!, chunk[1_000_000 % chunk.length]!, 0, 0]));
    expect(await fsck(vol.session())).toEqual([]);
    const e = await fs2.apply({ op: 'write', target: f, offset: fsLimits.fileSizeBytesMax, data: new Uint8Array(1), time: now(), cred }).catch((x: unknown) => x);
    expect((e as FsError).status).toBe(FsStatus.FBIG);
  });

  it('a directory scales to 100,000 entries; readdir cookies stay valid across CPs and remounts', async () => {
    const { vol, fs } = await fresh(256 * 1024, 8, 131_072);
    const d = await mkdir(fs, fs.rootIno, 'many');
    const count = 100_000;
    for (let i = 0; i < count; i++) {
      const n = fs.allocInode();
      await fs.apply({ op: 'create', dir: d, name: `entry-${i}`, how: 'unchecked', attrs: {}, newIno: n.ino, newGen: n.gen, time: now(), cred });
    }
    expect((await fs.lookup(d, 'entry-77777')).type).toBe(FileType.REG);
    const first = await fs.readdir(d, 0n, 1000);
    expect(first.entries.length).toBe(1000);
    expect(first.eof).toBe(false);
    const resumeAt = first.entries[999]!.cookie;
    await fs.takeCp();
    // Remove some entries before the cookie and after it; the resume point still holds.
    for (const i of [0, 1, 500, 998, 999, 1000, 1001]) await fs.apply({ op: 'remove', dir: d, name: `entry-${i}`, time: now(), cred });
    await fs.takeCp();
    await fs.close();
    const fs2 = await CowFs.mount(vol.session());
    const next = await fs2.readdir(d, resumeAt, 3);
    const before = new Set(first.entries.map((e) => e.name));
    for (const e of next.entries) expect(before.has(e.name)).toBe(false);
    expect(next.entries.map((e) => e.name)).not.toContain('entry-1000');
    const all = await readAll(fs2, d, 4096);
    expect(all.length).toBe(count - 7 + 2);
    expect(new Set(all.map((e) => e.name)).size).toBe(all.length);
    expect((await fs2.getattr(d)).nlink).toBe(2);
    const bad = await fs2.readdir(d, 1n << 60n, 10).catch((x: unknown) => x);
    expect((bad as FsError).status).toBe(FsStatus.BAD_COOKIE);
    expect(await fsck(vol.session())).toEqual([]);
  }, 120_000);

  it('FS-2 NV-5 after a takeover (partner mounts the last CP and replays the log) every readdir cookie is the same', async () => {
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 5n });
    const fs = await CowFs.mount(vol.session());
    const log: Array<{ seq: bigint; op: ChangeOp }> = [];
    const apply = async (op: ChangeOp): Promise<void> => {
      const seq = BigInt(log.length + 1);
      log.push({ seq, op });
      await fs.applyLogged(0, seq, op);
    };
    const d = fs.allocInode();
    await apply({ op: 'mkdir', dir: fs.rootIno, name: 'd', attrs: {}, newIno: d.ino, newGen: d.gen, time: now(), cred });
    for (let i = 0; i < 300; i++) {
      const n = fs.allocInode();
      await apply({ op: 'create', dir: d, name: `name-${i}-${'x'.repeat(i % 40)}`, how: 'guarded', attrs: {}, newIno: n.ino, newGen: n.gen, time: now(), cred });
      if (i % 7 === 3) await apply({ op: 'remove', dir: d, name: `name-${i - 2}-${'x'.repeat((i - 2) % 40)}`, time: now(), cred });
      if (i === 150) await fs.takeCp();
    }
    const before = await readAll(fs, d, 50);
    // The blade dies; its partner mounts the disks and replays the mirrored log.
    vol.powerCut(new Prng(3));
    vol.powerOn();
    const partner = await CowFs.mount(vol.session());
    for (const e of log) if (e.seq > partner.appliedSeq(0)) await partner.applyLogged(0, e.seq, e.op);
    expect(await readAll(partner, d, 50)).toEqual(before);
    // A client resuming with a cookie it got before the takeover continues where it was.
    const mid = before[before.length >> 1]!;
    const rest = await partner.readdir(d, mid.cookie, 1000);
    expect(rest.entries.map((e) => e.name)).toEqual(before.slice((before.length >> 1) + 1).map((e) => e.name));
  });

  it('a fragmented volume (every other small file removed) still takes CPs, using partly used stripes', async () => {
    const vol = new MemVolume({ blockCount: 3072, stripeBlocks: 8 });
    await mkfs(vol.session(), { fsid: 6n, inodeCountMax: 4096 });
    const fs = await CowFs.mount(vol.session());
    const files: InodeRef[] = [];
    const block = (i: number): Uint8Array => new Uint8Array(4096).fill(i & 0xff);
    // Fill most of the volume with one-block files, a CP every 100 files.
    for (let i = 0; (await fs.fsstat()).availBytes > 40 * 4096; i++) {
      const f = await create(fs, fs.rootIno, `f${i}`);
      await fs.apply({ op: 'write', target: f, offset: 0, data: block(i), time: now(), cred });
      files.push(f);
      if (i % 100 === 99) await fs.takeCp();
    }
    await fs.takeCp();
    for (let i = 0; i < files.length; i += 2) await fs.apply({ op: 'remove', dir: fs.rootIno, name: `f${i}`, time: now(), cred });
    await fs.takeCp();
    await fs.takeCp();
    // Half the data blocks are free again, but hardly any stripe is wholly free.
    const more: InodeRef[] = [];
    let partial = 0;
    for (let i = 0; i < files.length / 3; i++) {
      const f = await create(fs, fs.rootIno, `g${i}`);
      await fs.apply({ op: 'write', target: f, offset: 0, data: block(i + 7), time: now(), cred });
      more.push(f);
      if (i % 50 === 49) {
        await fs.takeCp();
        partial += fs.lastCpStats?.partialStripes ?? 0;
      }
    }
    expect(partial).toBeGreaterThan(0);
    await fs.takeCp();
    expect(await fsck(vol.session())).toEqual([]);
    await fs.close();
    const fs2 = await CowFs.mount(vol.session());
    let wrong = 0;
    for (let i = 1; i < files.length; i += 2) if (!bytesEqual((await fs2.read(files[i]!, 0, 4096)).data, block(i))) wrong++;
    for (let i = 0; i < more.length; i++) if (!bytesEqual((await fs2.read(more[i]!, 0, 4096)).data, block(i + 7))) wrong++;
    expect(wrong).toBe(0);
  });

  it('allocInode never hands out the same inode and generation twice', async () => {
    const { fs } = await fresh();
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const r = fs.allocInode();
      expect(seen.has(`${r.ino}/${r.gen}`)).toBe(false);
      seen.add(`${r.ino}/${r.gen}`);
    }
    // A removed file's inode comes back with a new generation; the old handle is stale.
    const f = await create(fs, fs.rootIno, 'x');
    await fs.apply({ op: 'remove', dir: fs.rootIno, name: 'x', time: now(), cred });
    expect(((await fs.getattr(f).catch((e: unknown) => e)) as FsError).status).toBe(FsStatus.STALE);
  });

  it('symlinks, hard links, devices and renames across directories keep nlink and parents right', async () => {
    const { vol, fs } = await fresh();
    const a = await mkdir(fs, fs.rootIno, 'a');
    const b = await mkdir(fs, a, 'b');
    const f = await create(fs, b, 'f');
    const l = fs.allocInode();
    await fs.apply({ op: 'symlink', dir: a, name: 'ln', target: 'b/f', attrs: {}, newIno: l.ino, newGen: l.gen, time: now(), cred });
    expect(await fs.readlink(l)).toBe('b/f');
    await fs.apply({ op: 'link', target: f, dir: fs.rootIno, name: 'hard', time: now(), cred });
    expect((await fs.getattr(f)).nlink).toBe(2);
    const dev = fs.allocInode();
    const mk: ChangeOp = { op: 'mknod', dir: a, name: 'dev', type: FileType.CHR, attrs: {}, rdev: { major: 4, minor: 64 }, newIno: dev.ino, newGen: dev.gen, time: now(), cred };
    expect((await fs.apply(mk)).op).toBe('mknod');
    expect((await fs.getattr(dev)).rdev).toEqual({ major: 4, minor: 64 });
    await fs.apply({ op: 'rename', fromDir: a, fromName: 'b', toDir: fs.rootIno, toName: 'b2', time: now(), cred });
    expect((await fs.lookup(b, '..')).ino).toBe(1);
    expect((await fs.getattr(fs.rootIno)).nlink).toBe(4);
    expect((await fs.getattr(a)).nlink).toBe(2);
    const loop = await fs.apply({ op: 'rename', fromDir: fs.rootIno, fromName: 'a', toDir: a, toName: 'inside', time: now(), cred }).catch((e: unknown) => e);
    expect((loop as FsError).status).toBe(FsStatus.INVAL);
    await fs.takeCp();
    expect(await fsck(vol.session())).toEqual([]);
  });

  it('NV-4 dirty data beyond dirtyBytesMax starts a CP by itself', async () => {
    const vol = new MemVolume({ blockCount: 32 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 1n });
    const cps: CpInfo[] = [];
    const fs = await CowFs.mount(vol.session(), { dirtyBytesMax: 256 * 1024, onCpCommitted: (c) => cps.push(c) });
    const f = await create(fs, fs.rootIno, 'stream');
    for (let i = 0; i < 40; i++) await fs.applyLogged(0, BigInt(i + 1), { op: 'write', target: f, offset: i * 65536, data: new Uint8Array(65536).fill(i), time: now(), cred });
    await fs.close();
    expect(cps.length).toBeGreaterThan(0);
    expect(fs.dirtyBlocks * 4096).toBeLessThanOrEqual(2 * 256 * 1024 + 65536);
  });

  it('NV-4 the CP timer takes a CP after cpIntervalMs when there are changes, and records the sequences', async () => {
    const vt = new VirtualTime();
    const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
    await mkfs(vol.session(), { fsid: 1n });
    let committed: (c: CpInfo) => void = () => undefined;
    const done = new Promise<CpInfo>((r) => {
      committed = r;
    });
    const fs = await CowFs.mount(vol.session(), { timers: vt.timers, cpIntervalMs: 10_000, onCpCommitted: (c) => committed(c) });
    fs.startCpTimer();
    const n = fs.allocInode();
    await fs.applyLogged(1, 7n, { op: 'mkdir', dir: fs.rootIno, name: 'd', attrs: {}, newIno: n.ino, newGen: n.gen, time: now(), cred });
    vt.advanceBy(9_999);
    expect(fs.cpNumber).toBe(1);
    vt.advanceBy(1);
    const cp = await done;
    expect(cp.cpNumber).toBe(2);
    expect(cp.appliedSeq.get(1)).toBe(7n);
    const seqErr = await fs.applyLogged(1, 7n, { op: 'rmdir', dir: fs.rootIno, name: 'd', time: now(), cred }).catch((e: unknown) => e);
    expect((seqErr as { code: string }).code).toBe('ERR_FS_SEQ_ORDER');
    await fs.close();
    const fs2 = await CowFs.mount(vol.session());
    expect(fs2.appliedSeq(1)).toBe(7n);
    expect((await fs2.lookup(fs2.rootIno, 'd')).ino).toBe(n.ino);
  });
});
