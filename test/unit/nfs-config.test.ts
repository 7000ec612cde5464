// The NFS configuration section: defaults, validation errors, and mapping to server options.
import { describe, expect, it } from 'vitest';
import { MemFs } from '../../firmware/ts/fsapi/memfs.ts';
import { parseNfsConfig, serverOptionsFromConfig } from '../../firmware/ts/nfs/config.ts';

const clock = { nowMs: () => 0, wallNs: () => 0n };

describe('NFS config', () => {
  it('fills defaults and maps volumes to file systems', () => {
    const cfg = parseNfsConfig({ exports: [{ path: '/vol0', volume: 'v0', clients: ['10.0.0.0/8'] }] });
    expect(cfg).toMatchObject({ host: '0.0.0.0', ports: { nfs: 2049, mount: 20048 }, udp: true });
    expect(cfg.exports[0]).toMatchObject({ readOnly: false, rootSquash: true, anonUid: 65534 });
    const fs = new MemFs();
    const o = serverOptionsFromConfig(cfg, (name) => (name === 'v0' ? fs : new MemFs()), { clock });
    expect(o.exports[0]?.fs).toBe(fs);
    expect(o.ports).toEqual({ nfs: 2049, mount: 20048 });
  });

  it('rejects bad paths, networks, ports and limits', () => {
    expect(() => parseNfsConfig({ exports: [] })).toThrow();
    expect(() => parseNfsConfig({ exports: [{ path: 'rel', volume: 'v' }] })).toThrow();
    expect(() => parseNfsConfig({ exports: [{ path: '/a', volume: 'v', clients: ['10.0.0.0/33'] }] })).toThrow(/client network/);
    expect(() => parseNfsConfig({ ports: { nfs: 70000 }, exports: [{ path: '/a', volume: 'v' }] })).toThrow();
    expect(() => parseNfsConfig({ limits: { recordBytesMax: -1 }, exports: [{ path: '/a', volume: 'v' }] })).toThrow();
    expect(parseNfsConfig({ limits: { connectionsMax: 5 }, exports: [{ path: '/a', volume: 'v' }] }).limits).toEqual({ connectionsMax: 5 });
  });
});
