// WRITE data handed over to the file system (fsapi/codec.ts handOverWriteData): the CoW file
// system keeps handed-over bytes as its page buffers for whole blocks instead of copying them
// (cowfs writeData). Its contents stay right across partial overwrites, CPs, remounts and
// reads that lend pages; data not handed over is still copied, so a caller may reuse it.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bytesEqual } from '../../firmware/ts/core/bytes.ts';
import { handOverWriteData, isHandedOver, decodeChangeOp, encodeChangeOp } from '../../firmware/ts/fsapi/codec.ts';
import { type ChangeOp, type InodeRef } from '../../firmware/ts/fsapi/ops.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { fsck } from '../../firmware/ts/storage/fs/fsck.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';

const cred = { uid: 0, gid: 0, gids: [] };
const time = { sec: 1_700_000_000, nsec: 1 };
const block = 4096;

async function fileOn(fs: CowFs): Promise<InodeRef> {
  const n = fs.allocInode();
  await fs.apply({ op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: { mode: 0o644 }, newIno: n.ino, newGen: n.gen, time, cred });
  return n;
}

const write = (target: InodeRef, offset: number, data: Uint8Array): ChangeOp => ({ op: 'write', target, offset, data, time, cred });

describe('handed-over WRITE data', () => {
  it('is marked per view (only when it is most of its buffer), and a decoded write descriptor hands its own copy over', () => {
    const record = new Uint8Array(100);
    const view = record.subarray(10, 60);
    expect(isHandedOver(view)).toBe(false);
    expect(handOverWriteData(view)).toBe(view);
    expect(isHandedOver(view)).toBe(true);
    expect(isHandedOver(record.subarray(10, 60))).toBe(false);
    // A small part of a large buffer (4 KiB of a 64 KiB socket read) is not kept: not marked.
    const small = new Uint8Array(65536).subarray(100, 4196);
    expect(isHandedOver(handOverWriteData(small))).toBe(false);
    const back = decodeChangeOp(encodeChangeOp(write({ ino: 9, gen: 1 }, 0, Uint8Array.of(1, 2, 3))));
    expect(back.op === 'write' && isHandedOver(back.data)).toBe(true);
  });

  it('NV-4 random handed-over and copied writes, CPs and remounts agree with a byte model', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            offset: fc.oneof(fc.nat(40 * block), fc.nat(10).map((b) => b * block)),
            length: fc.oneof(fc.integer({ min: 1, max: 3 * block }), fc.integer({ min: 1, max: 4 }).map((b) => b * block)),
            handOver: fc.boolean(),
            cp: fc.nat(5),
            seed: fc.nat(255),
          }),
          { minLength: 1, maxLength: 25 },
        ),
        async (steps) => {
          const vol = new MemVolume({ blockCount: 16 * 1024, stripeBlocks: 4 });
          await mkfs(vol.session(), { fsid: 7n, time });
          let fs = await CowFs.mount(vol.session());
          const f = await fileOn(fs);
          const model = new Uint8Array(60 * block);
          let size = 0;
          // One buffer reused by every copied write: the file system must not keep it.
          const scratch = new Uint8Array(4 * block);
          for (const s of steps) {
            const data = s.handOver ? handOverWriteData(new Uint8Array(s.length)) : scratch.subarray(0, s.length);
            for (let i = 0; i < data.length; i++) data[i] = (s.seed + i * 7) & 0xff;
            await fs.apply(write(f, s.offset, data));
            model.set(data, s.offset);
            size = Math.max(size, s.offset + s.length);
            if (!s.handOver) scratch.fill(0xee);
            // A read lends clean pages (shared); the next write must not change what it got.
            const lent = await fs.read(f, 0, size);
            const lentCopy = lent.data.slice();
            if (s.cp === 0) await fs.takeCp();
            if (s.cp === 1) {
              await fs.takeCp();
              await fs.close();
              fs = await CowFs.mount(vol.session());
            }
            expect(bytesEqual(lent.data, lentCopy), 'a lent read changed under its reader').toBe(true);
          }
          const got = await fs.read(f, 0, size);
          expect(bytesEqual(got.data, model.subarray(0, size)), 'file contents differ from the model').toBe(true);
          await fs.takeCp();
          expect(await fsck(vol.session())).toEqual([]);
          await fs.close();
        },
      ),
      { numRuns: 30 },
    );
  });
});
