// The rig control channel: hello, requests, errors with stable codes, events, and garbage.
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RigControlError, RigControlServer } from '../../rig/control/server.ts';
import { RigControlClient } from '../../firmware/ts/hal/rigctl/client.ts';

describe('rig control channel', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  async function setup(): Promise<{ server: RigControlServer; socketPath: string }> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-rigctl-'));
    const socketPath = path.join(dir, 'control.sock');
    const server = new RigControlServer(socketPath);
    await server.start();
    cleanup.push(async () => {
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    });
    return { server, socketPath };
  }

  it('dispatches requests with the caller\'s blade id and returns results', async () => {
    const { server, socketPath } = await setup();
    server.handle('echo', (blade, args) => ({ blade, args }));
    const c = new RigControlClient({ socketPath, blade: 'b' });
    await c.connect();
    cleanup.push(() => c.close());
    await expect(c.request('echo', { x: 1 })).resolves.toEqual({ blade: 'b', args: { x: 1 } });
  });

  it('reports handler failures and unknown ops with stable codes', async () => {
    const { server, socketPath } = await setup();
    server.handle('fail', () => {
      throw new RigControlError('ERR_RIGCTL_BAD_ARGS', 'no such line');
    });
    const c = new RigControlClient({ socketPath, blade: 'a' });
    await c.connect();
    cleanup.push(() => c.close());
    await expect(c.request('fail')).rejects.toMatchObject({ code: 'ERR_RIGCTL_BAD_ARGS' });
    await expect(c.request('nope')).rejects.toMatchObject({ code: 'ERR_RIGCTL_UNKNOWN_OP' });
  });

  it('pushes events to the blade they concern only', async () => {
    const { server, socketPath } = await setup();
    const a = new RigControlClient({ socketPath, blade: 'a' });
    const b = new RigControlClient({ socketPath, blade: 'b' });
    await a.connect();
    await b.connect();
    cleanup.push(() => a.close(), () => b.close());
    const gotA: unknown[] = [];
    const gotB: unknown[] = [];
    a.on('gpio', (e) => gotA.push(e));
    b.on('gpio', (e) => gotB.push(e));
    server.emitTo('a', 'gpio', { line: 'power-fail', value: 1 });
    await new Promise((r) => setTimeout(r, 50));
    expect(gotA).toEqual([{ event: 'gpio', line: 'power-fail', value: 1 }]);
    expect(gotB).toEqual([]);
  });

  it('closes a connection that sends garbage, and keeps serving others', async () => {
    const { server, socketPath } = await setup();
    server.handle('echo', (_b, args) => args);
    const good = new RigControlClient({ socketPath, blade: 'a' });
    await good.connect();
    cleanup.push(() => good.close());
    const bad = net.connect(socketPath);
    bad.resume();
    bad.write('{"op":"hello","version":1,"blade":"a"}\nthis is not json\n');
    await new Promise((r) => bad.once('close', r));
    await expect(good.request('echo', { ok: true })).resolves.toEqual({ ok: true });
  });
});
