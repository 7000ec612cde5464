// `blade init DIR`: a working single-blade setup in DIR — a board descriptor, sparse disk
// images (three data disks, a parity disk and a spare), an NVRAM file and one export — so
// that `blade run --config DIR/blade.json` serves at once.
import path from 'node:path';
import fs from 'node:fs/promises';
import net from 'node:net';
import crypto from 'node:crypto';
import type { BoardInput } from '../board/schema.ts';

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * The emulated NVRAM of `blade init`: a sparse file, so its size costs only what the log
 * touches. The log's halves are a quarter of it each and a CP starts once half a half is
 * logged, so 1 GiB takes a 128 MiB burst of writes before its CP. At 128 MiB (before the sixth
 * session) CPs ran every 16-24 MiB and 1 MiB WRITEs waited ~5 ms each for them (docs/nfs.md,
 * "sixth pass"). Storage controllers of this class carry hundreds of MiB to GiBs.
 */
export const initNvramBytesDefault = 1024 * 1024 * 1024;

export async function initSingleBlade(dir: string, opts: { nvramBytes?: number } = {}): Promise<string> {
  const root = path.resolve(dir);
  const config = path.join(root, 'blade.json');
  try {
    await fs.access(config);
    throw new Error(`${config} exists: refusing to overwrite a blade setup`);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT') throw e;
  }
  await fs.mkdir(path.join(root, 'disks'), { recursive: true });
  const diskBytes = 256 * 1024 * 1024;
  const disk = async (name: string): Promise<string> => {
    const p = path.join(root, 'disks', `${name}.img`);
    const fh = await fs.open(p, 'w');
    await fh.truncate(diskBytes);
    await fh.close();
    return p;
  };
  const own = [];
  for (const id of ['d0', 'd1', 'd2', 'dp']) own.push({ id, uri: await disk(id), role: 'member' as const });
  const spare = [{ id: 'ds', uri: await disk('ds'), role: 'spare' as const }];
  const nfsPort = await freePort();
  const mountPort = await freePort();
  const board: BoardInput = {
    version: 1,
    identity: { pairId: `solo-${crypto.randomBytes(3).toString('hex')}`, blade: 'a', systemId: crypto.randomBytes(8).toString('hex') },
    disks: { own, partner: [], spare },
    nvram: { driver: 'mmap', path: path.join(root, 'nvram.img'), sizeBytes: opts.nvramBytes ?? initNvramBytesDefault, msync: false },
    serial: { path: path.join(root, 'ttyS1'), baud: 115200 },
    gpio: { driver: 'none' },
    i2c: { driver: 'none' },
    network: {
      ports: [{ name: 'net1', interface: 'lo', address: '127.0.0.1/8' }],
      interconnect: { self: '127.0.0.1', partner: '127.0.0.2', port: 7400 },
    },
    nfs: {
      bindAddress: '127.0.0.1',
      ports: { nfs: nfsPort, mount: mountPort, portmapper: 111 },
      exports: [{ path: '/vol0', set: 'own', clients: ['*'], readOnly: false }],
    },
    service: {
      runDir: path.join(root, 'run'),
      pairKeyHex: crypto.randomBytes(32).toString('hex'),
      metrics: { host: '127.0.0.1', port: 0 },
      logLevel: 'info',
      cpIntervalMs: 10_000,
      manageAddresses: false,
    },
  };
  await fs.writeFile(config, `${JSON.stringify(board, null, 2)}\n`, { mode: 0o600 });
  return config;
}

