// The fence contract (firmware/ts/ha/fence.ts, SPEC ST-4) against the rig driver: two blades'
// RigLoopFences over real control-channel sessions to a real LoopEmulator, and the effect
// that matters: after a preempt the other blade's NBD writes are refused and recorded.
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LoopEmulator } from '../../rig/loop/loop-emulator.ts';
import { RigControlServer } from '../../rig/control/server.ts';
import { LoopReservations } from '../../rig/hw/reservations.ts';
import { RigControlClient } from '../../firmware/ts/hal/rigctl/client.ts';
import { RigLoopFence } from '../../firmware/ts/ha/fence-rig.ts';
import { FenceErrorCode, fenceSet } from '../../firmware/ts/ha/fence.ts';
import { openNbdBlockDevice } from '../../firmware/ts/hal/block/rig/nbd-client.ts';
import { isTwinbladeError } from '../../firmware/ts/core/errors.ts';

const diskBytes = 4 * 1024 * 1024;
const disks = ['d0', 'd1'];

interface Setup {
  loop: LoopEmulator;
  ports: { a: number; b: number };
  server: RigControlServer;
  fences: [RigLoopFence, RigLoopFence];
  clients: [RigControlClient, RigControlClient];
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return isTwinbladeError(e) ? e.code : 'not-a-twinblade-error';
  }
}

describe('fence contract: rig loop controller', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  async function setup(): Promise<Setup> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-fencerig-'));
    cleanup.push(() => fs.rm(dir, { recursive: true, force: true }));
    const specs = [];
    for (const name of disks) {
      const p = path.join(dir, `${name}.img`);
      await fs.writeFile(p, '');
      specs.push({ name, path: p, sizeBytes: diskBytes });
    }
    const loop = new LoopEmulator({ disks: specs });
    const ports = await loop.start();
    cleanup.push(() => loop.close());
    const server = new RigControlServer(path.join(dir, 'control.sock'));
    new LoopReservations(() => loop).registerOps(server);
    await server.start();
    cleanup.push(() => server.close());
    const clients = (['a', 'b'] as const).map((blade) => new RigControlClient({ socketPath: path.join(dir, 'control.sock'), blade })) as [RigControlClient, RigControlClient];
    for (const c of clients) {
      await c.connect();
      cleanup.push(() => c.close());
    }
    const fences = clients.map((client) => new RigLoopFence({ client, disks })) as [RigLoopFence, RigLoopFence];
    return { loop, ports, server, fences, clients };
  }

  it('ST-4 reserve succeeds for the owner, again idempotently, and conflicts for the partner', async () => {
    const { fences } = await setup();
    const [a, b] = fences;
    await a.register(0);
    await a.reserve(0);
    await a.reserve(0);
    expect(await a.holder(0)).toBe(0);
    expect(await b.holder(0)).toBe(0);
    expect(await codeOf(b.reserve(0))).toBe(FenceErrorCode.conflict);
    expect(a.kind).toBe('rig-loop');
    expect(a.readsUnheldDisks).toBe(true);
  });

  it('ST-4 preempt takes the disk from the partner, whose reserve then conflicts', async () => {
    const { fences } = await setup();
    const [a, b] = fences;
    await a.reserve(0);
    await b.register(0);
    await b.preempt(0);
    expect(await a.holder(0)).toBe(1);
    expect(await codeOf(a.reserve(0))).toBe(FenceErrorCode.conflict);
  });

  it('release by a non-holder does nothing; release by the holder leaves the disk free', async () => {
    const { fences } = await setup();
    const [a, b] = fences;
    await a.reserve(0);
    await b.release(0);
    expect(await a.holder(0)).toBe(0);
    await a.release(0);
    expect(await b.holder(0)).toBeUndefined();
  });

  it('refuses a disk it does not control with a stable code; a rig-side failure is ERR_FENCE_IO', async () => {
    const { fences, loop, clients } = await setup();
    expect(await codeOf(fences[0].reserve(7))).toBe(FenceErrorCode.unknownDisk);
    const stray = new RigLoopFence({ client: clients[0], disks: ['no-such-disk'] });
    expect(await codeOf(stray.reserve(0))).toBe(FenceErrorCode.io);
    await loop.close();
    await clients[0].close();
    expect(await codeOf(fences[0].holder(0))).toBe(FenceErrorCode.io);
  });

  it('applies a command to a whole set in order', async () => {
    const { fences } = await setup();
    await fenceSet(fences[1], 'reserve', [1]);
    await fenceSet(fences[0], 'register', [0, 1]);
    await fenceSet(fences[0], 'preempt', [0, 1]);
    expect(await fences[1].holder(0)).toBe(0);
    expect(await fences[1].holder(1)).toBe(0);
  });

  it('ST-4 of two blades preempting each other, exactly one wins; the loser registers again after its reboot', async () => {
    const { fences } = await setup();
    const [a, b] = fences;
    await a.register(0);
    await b.register(0);
    const outcomes = await Promise.all([codeOf(a.preempt(0)), codeOf(b.preempt(0))]);
    // The channel serialises them: the first preempt wins, the second finds its key removed.
    expect(outcomes.filter((o) => o === undefined)).toHaveLength(1);
    expect(outcomes.filter((o) => o === FenceErrorCode.notRegistered)).toHaveLength(1);
    const winner = outcomes[0] === undefined ? 0 : 1;
    expect(await a.holder(0)).toBe(winner);
    const loser = fences[1 - winner] as RigLoopFence;
    await loser.register(0);
    await loser.preempt(0);
    expect(await a.holder(0)).toBe(1 - winner);
  });

  it('ST-4 after a preempt the other blade\'s NBD writes fail ERR_BLOCK_FENCED and the emulator records them', async () => {
    const { fences, loop, ports } = await setup();
    const [a, b] = fences;
    const devA = await openNbdBlockDevice({ host: '127.0.0.1', port: ports.a, exportName: 'd1' });
    const devB = await openNbdBlockDevice({ host: '127.0.0.1', port: ports.b, exportName: 'd1' });
    try {
      await a.reserve(1);
      await devA.write(0, new Uint8Array(4096).fill(1));
      // B takes over: preempt, then it writes; A's writes are refused from then on.
      await b.register(1);
      await b.preempt(1);
      await devB.write(4096, new Uint8Array(4096).fill(2));
      const err = await devA.write(0, new Uint8Array(4096).fill(9)).catch((e: unknown) => e);
      expect(isTwinbladeError(err, 'ERR_BLOCK_FENCED')).toBe(true);
      expect((await devA.read(0, 4096))[0]).toBe(1); // refused, not applied; A still reads
      expect((await devA.read(4096, 4096))[0]).toBe(2);
      expect(loop.violations()).toEqual([expect.objectContaining({ disk: 'd1', loop: 'a', holder: 'b', offset: 0, length: 4096 })]);
      // A, preempted, cannot preempt back (it lost the race) until it registers again.
      expect(await codeOf(a.preempt(1))).toBe(FenceErrorCode.notRegistered);
      expect(await a.holder(1)).toBe(1);
    } finally {
      await devA.close();
      await devB.close();
    }
  });
});
