// The blade's management surfaces: the owner-only control socket and the metrics endpoint.
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MgmtServer, mgmtRequest } from '../../firmware/ts/blade/mgmt.ts';
import { MetricsRegistry } from '../../firmware/ts/blade/metrics.ts';

describe('blade management', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  it('answers control requests on an owner-only socket', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-mgmt-'));
    const sock = path.join(dir, 'blade.sock');
    const m = new MgmtServer(sock);
    m.handle('status', () => ({ state: 'NORMAL' }));
    m.handle('boom', () => {
      throw Object.assign(new Error('refused'), { code: 'ERR_HA_GIVEBACK_REFUSED' });
    });
    await m.start();
    cleanup.push(async () => {
      await m.close();
      await fs.rm(dir, { recursive: true, force: true });
    });
    expect(((await fs.stat(sock)).mode & 0o777).toString(8)).toBe('600');
    await expect(mgmtRequest(sock, 'status')).resolves.toEqual({ state: 'NORMAL' });
    await expect(mgmtRequest(sock, 'boom')).rejects.toMatchObject({ code: 'ERR_HA_GIVEBACK_REFUSED' });
    await expect(mgmtRequest(sock, 'nope')).rejects.toMatchObject({ code: 'ERR_MGMT_UNKNOWN_OP' });
  });

  it('renders metrics in the Prometheus text format', async () => {
    const r = new MetricsRegistry();
    r.counter('twinblade_nfs_requests_total', 'NFS requests').inc({ proc: 'WRITE' }, 3);
    r.gauge('twinblade_nvlog_used_bytes', 'NVRAM log bytes in use').set(4096);
    r.collect('twinblade_path_up', 'Interconnect path state', 'gauge', () => [{ labels: { path: 'serial "0"' }, value: 1 }]);
    const text = r.render();
    expect(text).toContain('# TYPE twinblade_nfs_requests_total counter\ntwinblade_nfs_requests_total{proc="WRITE"} 3');
    expect(text).toContain('twinblade_nvlog_used_bytes 4096');
    expect(text).toContain('twinblade_path_up{path="serial \\"0\\""} 1');
    const m = new MgmtServer(path.join(os.tmpdir(), `tb-metrics-${process.pid}.sock`));
    const port = await m.startMetrics(r, '127.0.0.1', 0);
    cleanup.push(() => m.close());
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(await res.text()).toBe(text);
  });
});
