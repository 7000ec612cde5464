// A change that meets a busy duplicate-request cache (the blade's state-machine log at its
// bound) is held until the cache has made room, then runs once; after drcBusyRetryMax waits
// it is dropped unanswered (the client retransmits), never answered with an error.
import { afterEach, describe, expect, it } from 'vitest';
import { type DrcEntry, MemoryDrc, type RequestKey, drcLimits } from '../../firmware/ts/nfs/core/drc.ts';
import { ok } from '../../tools/nfs-client/index.ts';
import { type Rig, startRig } from './harness.ts';

/** A cache that answers `busy` to the next `busyCount` changes' first calls of begin. */
class BusyDrc extends MemoryDrc {
  busyLeft = 0;
  begins = 0;
  retries = 0;
  override begin(key: RequestKey): DrcEntry | undefined {
    this.begins++;
    if (this.busyLeft > 0) {
      this.busyLeft--;
      // The room comes a little later, as a consistency point's would.
      const retry = new Promise<void>((r) => setTimeout(r, 5)).then(() => {
        this.retries++;
      });
      return { state: 'busy', retry };
    }
    return super.begin(key);
  }
}

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.close().catch(() => undefined);
  rig = undefined;
});

describe('NFS changes behind a busy duplicate-request cache', () => {
  it('SM-3 a change is held while the cache is busy, then runs once and is answered', async () => {
    const drc = new BusyDrc();
    rig = await startRig({ drc });
    const { nfs, root } = rig.mounted;
    drc.busyLeft = 3;
    drc.begins = 0;
    const made = ok(await nfs.create(root, 'held'), 'CREATE');
    expect(made.fh).toBeDefined();
    // Three busy answers, each waited for, then the call that went ahead.
    expect(drc.retries).toBe(3);
    expect(drc.begins).toBe(4);
    expect(ok(await nfs.lookup(root, 'held'), 'LOOKUP').fh).toEqual(made.fh);
  });

  it('SM-3 after drcBusyRetryMax waits the change is dropped unanswered and nothing changed', async () => {
    const drc = new BusyDrc();
    rig = await startRig({ drc });
    const { nfs, root } = rig.mounted;
    drc.busyLeft = Number.MAX_SAFE_INTEGER;
    drc.begins = 0;
    let state = 'no reply';
    void nfs.create(root, 'dropped').then(
      () => (state = 'answered'),
      () => (state = 'failed'),
    );
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    for (const until = Date.now() + 10_000; drc.begins < drcLimits.drcBusyRetryMax + 1 && Date.now() < until; ) await sleep(10);
    // The service has given up on the call (no further begin), and no reply follows.
    await sleep(200);
    expect(drc.begins).toBe(drcLimits.drcBusyRetryMax + 1);
    expect(state).toBe('no reply');
    drc.busyLeft = 0;
    expect((await nfs.lookup(root, 'dropped')).status).not.toBe(0);
  });
});
