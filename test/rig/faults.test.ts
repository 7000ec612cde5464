// The rig's fault commands refuse what they cannot do with a usage error (stable code), before
// touching anything: the network faults on a loopback rig, bad arguments.
import { describe, expect, it } from 'vitest';
import { applyFault } from '../../rig/faults.ts';
import type { Rig } from '../../rig/rig.ts';

/** A loopback rig as far as argument checks go: no namespace topology; anything else is a test failure. */
const loopbackRig = new Proxy({ topology: () => undefined } as unknown as Rig, {
  get(target, prop) {
    if (prop === 'topology') return (target as unknown as { topology: () => undefined }).topology;
    throw new Error(`the fault touched rig.${String(prop)} before checking its arguments`);
  },
});

async function usageError(kind: string, args: string[], heal = false): Promise<string> {
  const e = (await applyFault(loopbackRig, kind, args, heal).then(() => undefined, (err: unknown) => err)) as { code?: string; message?: string } | undefined;
  expect(e?.code).toBe('ERR_RIG_FAULT_USAGE');
  return e?.message ?? '';
}

describe('rig faults: usage errors', () => {
  it('port and partition need the netns rig', async () => {
    expect(await usageError('partition', [])).toMatch(/netns/);
    expect(await usageError('partition', [], true)).toMatch(/netns/);
    expect(await usageError('port', ['a', 'ic'])).toMatch(/netns/);
  });

  it('bad arguments are refused', async () => {
    expect(await usageError('port', ['c', 'ic'])).toMatch(/blade/);
    expect(await usageError('port', ['a', 'net3'])).toMatch(/net1\|net2\|ic/);
    expect(await usageError('disk-fail', [])).toMatch(/DISK/);
    // `blank` is a kind of replacement: a heal argument only.
    expect(await usageError('disk-fail', ['a0', 'blank'])).toMatch(/blank/);
    expect(await usageError('disk-fail', ['a0', 'new'], true)).toMatch(/blank/);
    expect(await usageError('no-such-fault', [])).toMatch(/partition/);
  });
});
