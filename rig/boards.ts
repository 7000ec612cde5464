// Writes each rig blade's board descriptor: its disks as NBD exports on its own loop, its
// NVRAM file, its end of the serial relay, the rig control channel, its network ports and
// NFS service, and what it must know of its partner to take it over.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { BoardInput } from '../firmware/ts/board/schema.ts';
import type { BladeConfigContext } from './rig.ts';
import { rigGauge, rigGpioActiveLow, rigGpioChip, rigGpioLines } from './hw/wiring.ts';

export interface RigNetworkPlan {
  /** Address the blade's NFS service binds (loopback fallback: 127.0.0.1). */
  nfsBind(blade: 'a' | 'b'): string;
  nfsPorts(blade: 'a' | 'b'): { nfs: number; mount: number };
  /** Client addresses a blade owns (CIDR) and the interface they go on. */
  clientAddresses(blade: 'a' | 'b'): Array<{ interface: string; address: string }>;
  interconnect(blade: 'a' | 'b'): { self: string; partner: string; port: number; interface?: string };
  manageAddresses: boolean;
}

/** The loopback fallback: every blade on 127.0.0.1 with its own ports (no namespaces needed). */
export function loopbackPlan(portBase: number): RigNetworkPlan {
  return {
    nfsBind: () => '127.0.0.1',
    nfsPorts: (b) => (b === 'a' ? { nfs: portBase, mount: portBase + 1 } : { nfs: portBase + 2, mount: portBase + 3 }),
    clientAddresses: () => [{ interface: 'lo', address: '127.0.0.1/8' }],
    interconnect: (b) => ({ self: b === 'a' ? '127.0.0.1' : '127.0.0.2', partner: b === 'a' ? '127.0.0.2' : '127.0.0.1', port: portBase + 10 }),
    manageAddresses: false,
  };
}

const rigLine = (line: number): { chip: string; line: number; activeLow: boolean } => ({ chip: rigGpioChip, line, activeLow: rigGpioActiveLow.has(line) });

export const rigSystemId = '7477696e626c6164';
export const rigPairId = 'rig';

export async function writeRigBoard(ctx: BladeConfigContext, plan: RigNetworkPlan, pairKeyHex: string): Promise<string> {
  const partner = ctx.blade === 'a' ? 'b' : 'a';
  const nbd = (name: string): string => `nbd://${ctx.nbd.host}:${ctx.nbd.port}/${name}`;
  const exportPath = (b: 'a' | 'b'): string => `/vol${b}`;
  const board: BoardInput = {
    version: 1,
    identity: { pairId: rigPairId, blade: ctx.blade, systemId: rigSystemId, hostname: `rig-${ctx.blade}` },
    disks: {
      own: ctx.ownDisks.map((id) => ({ id, uri: nbd(id), role: 'member' as const })),
      partner: ctx.partnerDisks.map((id) => ({ id, uri: nbd(id), role: 'member' as const })),
      spare: [{ id: ctx.spare, uri: nbd(ctx.spare), role: 'spare' as const }],
    },
    nvram: { driver: 'mmap', path: ctx.nvramPath, sizeBytes: (await fs.stat(ctx.nvramPath)).size, msync: false },
    // A pty ignores the line rate; a fast rate also lifts the link layer's UART pacing.
    serial: { path: ctx.serialPath, baud: 3000000 },
    // The rig board's lines and gauge (rig/hw/wiring.ts), reached over the rig control channel.
    gpio: {
      driver: 'rig',
      powerFail: rigLine(rigGpioLines.powerFail),
      partnerReset: rigLine(rigGpioLines.partnerReset),
      partnerPower: rigLine(rigGpioLines.partnerPower),
      leds: { status: rigLine(rigGpioLines.ledStatus), fault: rigLine(rigGpioLines.ledFault), takeover: rigLine(rigGpioLines.ledTakeover) },
    },
    i2c: { driver: 'rig', gauge: { ...rigGauge } },
    rigControl: { path: ctx.controlSocket },
    network: {
      ports: plan.clientAddresses(ctx.blade).map((a, i) => ({ name: `net${i + 1}`, interface: a.interface, address: a.address })),
      interconnect: plan.interconnect(ctx.blade),
    },
    nfs: {
      bindAddress: plan.nfsBind(ctx.blade),
      ports: { ...plan.nfsPorts(ctx.blade), portmapper: 111 },
      exports: [{ path: exportPath(ctx.blade), set: 'own', clients: ['*'], readOnly: false }],
    },
    service: {
      runDir: path.join(ctx.dir, 'run'),
      pairKeyHex,
      metrics: { host: '127.0.0.1', port: 0 },
      logLevel: 'info',
      cpIntervalMs: 10_000,
      manageAddresses: plan.manageAddresses,
    },
    partner: {
      nfs: { bindAddress: plan.nfsBind(partner), ports: plan.nfsPorts(partner) },
      addresses: plan.clientAddresses(partner),
      exports: [{ path: exportPath(partner), clients: ['*'], readOnly: false }],
      controlSocket: path.join(path.dirname(ctx.dir), partner, 'run', 'blade.sock'),
    },
  };
  const file = path.join(ctx.dir, 'blade.json');
  await fs.writeFile(file, `${JSON.stringify(board, null, 2)}\n`, { mode: 0o600 });
  return file;
}
