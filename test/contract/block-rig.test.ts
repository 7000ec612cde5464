// Runs the BlockDevice contract against the rig block driver: the NBD client reaching a disk
// image through the rig's loop emulator (both loops, both sector sizes the contract allows).
import { afterAll, beforeAll } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { blockContract } from './block.contract.ts';
import { LoopEmulator } from '../../rig/loop/loop-emulator.ts';
import { openNbdBlockDevice } from '../../firmware/ts/hal/block/rig/nbd-client.ts';

const diskBytes = 1 << 20;
let dir: string;
let loop: LoopEmulator;
let ports: { a: number; b: number };
let next = 0;
const names = Array.from({ length: 64 }, (_, i) => `disk${i}`);

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tb-blockrig-'));
  const disks = [];
  for (const name of names) {
    const p = path.join(dir, `${name}.img`);
    await fs.writeFile(p, '');
    disks.push({ name, path: p, sizeBytes: diskBytes });
  }
  loop = new LoopEmulator({ disks });
  ports = await loop.start();
});

afterAll(async () => {
  await loop.close();
  await fs.rm(dir, { recursive: true, force: true });
});

for (const [loopId, sectorSize] of [
  ['a', 4096],
  ['b', 512],
] as const) {
  blockContract(`rig NBD client (loop ${loopId}, ${sectorSize}-byte sectors)`, async () => {
    // A fresh disk per test: the contract expects a device it has to itself.
    const exportName = names[next++ % names.length] as string;
    const device = await openNbdBlockDevice({ host: '127.0.0.1', port: ports[loopId], exportName, sectorSize });
    return { device, settle: (p) => p };
  });
}
