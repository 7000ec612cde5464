// A consistency point never commits a change before the change's outcome is durable in both
// copies (SM-2, NV-7; issue #7): a change a CP holds is never replayed, so after a takeover the
// answer to a retransmission of its request can only come from the logged outcome. Real parts:
// two NvLogs mirrored over an in-memory channel, the change path, the CoW file system.
import { describe, expect, it } from 'vitest';
import { Prng } from '../../firmware/ts/core/prng.ts';
import type { Timers } from '../../firmware/ts/core/clock.ts';
import type { BladeId } from '../../firmware/ts/nvlog/core/layout.ts';
import type { MirrorMessage } from '../../firmware/ts/nvlog/core/mirror.ts';
import { EntryType, decodeStatePayload } from '../../firmware/ts/nvlog/core/entry.ts';
import { NvLog } from '../../firmware/ts/nvlog/nvlog.ts';
import { TearingNvram } from '../../firmware/ts/nvlog/sim/tearing-nvram.ts';
import { MemVolume } from '../../firmware/ts/storage/fs/mem-volume.ts';
import { CowFs, mkfs } from '../../firmware/ts/storage/fs/cowfs.ts';
import { FileSystems, NvChangeLog, decodeStored, takeConsistencyPoint } from '../../firmware/ts/blade/change-path.ts';
import type { ChangeOp } from '../../firmware/ts/fsapi/ops.ts';

const size = 8192 + 4 * 16384;
const clock = { nowMs: () => 0, wallNs: () => 0n };
// No timer ever fires: the mirror never times out, so acknowledgements alone decide.
const timers: Timers = { after: () => ({ cancel: () => undefined, refresh: () => undefined }), sleep: () => Promise.resolve() };

/** Two logs on an ordered in-memory channel; acknowledgements above `holdAcksAbove` wait. */
class Wire {
  readonly logs: Partial<Record<BladeId, NvLog>> = {};
  holdAcksAbove = Number.MAX_SAFE_INTEGER;
  private held: Array<() => void> = [];
  transport(from: BladeId): { send(m: MirrorMessage): void } {
    const to: BladeId = from === 0 ? 1 : 0;
    return {
      send: (m) => {
        const deliver = (): void => void queueMicrotask(() => this.logs[to]?.onPeerMessage(m));
        if (m.kind === 'ack' && m.seq > this.holdAcksAbove) this.held.push(deliver);
        else deliver();
      },
    };
  }
  release(): void {
    this.holdAcksAbove = Number.MAX_SAFE_INTEGER;
    for (const d of this.held.splice(0)) d();
  }
}

async function turns(n = 200): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

async function pair(): Promise<{ wire: Wire; a: NvLog; b: NvLog }> {
  const wire = new Wire();
  const open = async (id: BladeId): Promise<NvLog> => {
    const nv = new TearingNvram(size, new Prng(id + 1), (_l, fn) => queueMicrotask(fn));
    const { log } = await NvLog.open(nv, { bladeId: id, clock, timers, cpSeq: 0 });
    wire.logs[id] = log;
    log.attachTransport(wire.transport(id));
    return log;
  };
  const a = await open(0);
  const b = await open(1);
  a.peerConnected();
  b.peerConnected();
  await turns();
  expect([a.mirrorState, b.mirrorState]).toEqual(['synced', 'synced']);
  return { wire, a, b };
}

describe('the outcome barrier of a consistency point (SM-2, NV-7)', () => {
  it('SM-2 NV-7 a CP waits until the outcome of every applied change is in the partner\'s copy, then commits it', async () => {
    const { wire, a, b } = await pair();
    const vol = new MemVolume({ blockCount: 4096, stripeBlocks: 4 });
    await mkfs(vol, { fsid: 7n, rootMode: 0o777 });
    const fs = await CowFs.mount(vol, { timers, clock });
    const fss = new FileSystems();
    fss.add(fs);
    const changeLog = new NvChangeLog(a, fss, 0, { makeSpace: () => Promise.resolve(), writeThrough: () => Promise.resolve() });
    const n = fs.allocInode();
    const create: ChangeOp = { op: 'create', dir: fs.rootIno, name: 'f', how: 'guarded', attrs: { mode: 0o644 }, newIno: n.ino, newGen: n.gen, time: { sec: 1, nsec: 0 }, cred: { uid: 0, gid: 0, gids: [] } };
    const key = { client: 'c', xid: 1, prog: 100003, vers: 3, proc: 8, argsCrc: 0, argsBytes: 0 };
    // The change is mirrored and applied; its outcome entry (the next number) is not acknowledged yet.
    wire.holdAcksAbove = a.lastSeq + 1;
    await changeLog.commit(create, key, fs.fsid);
    const changeSeq = a.lastSeq - 1;
    expect(fs.appliedSeq(0)).toBe(BigInt(changeSeq));
    let committed = false;
    const cp = takeConsistencyPoint(a, changeLog, fss, 0).then(() => (committed = true));
    await turns();
    // Held back: the change is not in a committed CP while its outcome could still be lost.
    expect(committed).toBe(false);
    expect(fs.committedSeq().get(0)).toBeUndefined();
    wire.release();
    await cp;
    expect(fs.committedSeq().get(0)).toBe(BigInt(changeSeq));
    // The partner's copy holds the outcome: a takeover answers a retransmission with it.
    const mirror = b.recoverPartnerMirror();
    const outcome = mirror.records.find((r) => r.type === EntryType.state);
    expect(outcome).toBeDefined();
    const stored = decodeStored(decodeStatePayload((outcome as { payload: Uint8Array }).payload).reply);
    expect(stored?.state).toBe('applied');
    if (stored?.state === 'applied') expect(stored.outcome.ok).toBe(true);
    a.close();
    b.close();
  });
});
