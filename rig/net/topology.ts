// The rig's networks: a network namespace per blade and one for clients, veth ports on two
// client networks (net1, net2) and an interconnect network (ic), joined by bridges in the
// host namespace, where the host also has an address on each client network so that a user
// on the host reaches the blades. Addresses are in 198.18.0.0/15, the range set aside for
// network-device benchmarking (RFC 2544), so they never collide with a real network.
// The rig creates ports only: the blades configure their own addresses (they belong to the
// firmware, which adds its partner's on takeover). The storage loops (NBD from the loop
// emulator on the host) have a network of their own, like the FC loops of a board: cutting
// the interconnect or a client network never cuts a blade off its disks.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type RigNet = 'net1' | 'net2' | 'ic';
export const rigNets: readonly RigNet[] = ['net1', 'net2', 'ic'];
export type RigHost = 'a' | 'b' | 'c';

export interface Topology {
  /** Short id used in every name (namespaces, bridges, veths). */
  id: string;
  namespaces: Record<RigHost, string>;
  bridges: Record<RigNet, string>;
  /** Interface name inside a namespace for a network. */
  ifname: Record<RigNet, string>;
  /** Prefix (first three octets) of each network. */
  subnet: Record<RigNet, string>;
  /** Host-side address on each client network. */
  hostAddress: Record<'net1' | 'net2', string>;
  /** The client namespace's address on each client network. */
  clientAddress: Record<'net1' | 'net2', string>;
  /** Each blade's own address on a network (its client address on net1/net2; its interconnect address on ic). */
  bladeAddress(blade: 'a' | 'b', net: RigNet): string;
  /**
   * The storage network: the loop emulator listens on the host's address, each blade has a
   * port with an address the rig sets (hardware, not the firmware's: it survives power cuts).
   */
  storage: { bridge: string; ifname: string; subnet: string; hostAddress: string; bladeAddress(blade: 'a' | 'b'): string };
}

/** The topology of rig number `slot` (0..60): each slot has its own names and subnets. */
export function topology(slot: number): Topology {
  if (!Number.isInteger(slot) || slot < 0 || slot > 60) throw new RangeError('rig network slot must be 0..60');
  const id = `tb${slot.toString(36)}`;
  const base = slot * 4;
  const subnet: Record<RigNet, string> = { net1: `198.18.${base + 1}`, net2: `198.18.${base + 2}`, ic: `198.18.${base + 3}` };
  return {
    id,
    namespaces: { a: `${id}-a`, b: `${id}-b`, c: `${id}-c` },
    bridges: { net1: `${id}br1`, net2: `${id}br2`, ic: `${id}bri` },
    ifname: { net1: 'net1', net2: 'net2', ic: 'ic0' },
    subnet,
    hostAddress: { net1: `${subnet.net1}.254`, net2: `${subnet.net2}.254` },
    clientAddress: { net1: `${subnet.net1}.100`, net2: `${subnet.net2}.100` },
    bladeAddress: (blade, net) => `${subnet[net]}.${blade === 'a' ? 1 : 2}`,
    // The slot's fourth /24 (base + 0) was unused.
    storage: {
      bridge: `${id}brs`,
      ifname: 'san0',
      subnet: `198.18.${base}`,
      hostAddress: `198.18.${base}.254`,
      bladeAddress: (blade) => `198.18.${base}.${blade === 'a' ? 1 : 2}`,
    },
  };
}

async function ip(args: string[], ns?: string): Promise<void> {
  const argv = ns ? ['netns', 'exec', ns, 'ip', ...args] : args;
  await run(ns ? 'ip' : 'ip', argv);
}

async function tryIp(args: string[]): Promise<void> {
  await run('ip', args).catch(() => undefined);
}

/** Whether this process may create namespaces (root with iproute2). */
export async function namespacesAvailable(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  try {
    await run('ip', ['netns', 'list']);
    return true;
  } catch {
    return false;
  }
}

function vethName(t: Topology, host: RigHost, net: RigNet): string {
  return `${t.id}${host}${net === 'ic' ? 'i' : net.slice(3)}`;
}

/** Creates the namespaces, bridges and ports (removing leftovers of the same slot first). */
export async function createTopology(t: Topology): Promise<void> {
  await destroyTopology(t);
  for (const net of rigNets) {
    await ip(['link', 'add', t.bridges[net], 'type', 'bridge']);
    await ip(['link', 'set', t.bridges[net], 'up']);
  }
  await ip(['addr', 'add', `${t.hostAddress.net1}/24`, 'dev', t.bridges.net1]);
  await ip(['addr', 'add', `${t.hostAddress.net2}/24`, 'dev', t.bridges.net2]);
  for (const host of ['a', 'b', 'c'] as const) {
    const ns = t.namespaces[host];
    await ip(['netns', 'add', ns]);
    await ip(['link', 'set', 'lo', 'up'], ns);
    for (const net of rigNets) {
      if (host === 'c' && net === 'ic') continue;
      const outer = vethName(t, host, net);
      const inner = `${outer}x`;
      await ip(['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
      await ip(['link', 'set', inner, 'netns', ns]);
      await ip(['link', 'set', inner, 'name', t.ifname[net]], ns);
      await ip(['link', 'set', outer, 'master', t.bridges[net]]);
      await ip(['link', 'set', outer, 'up']);
      await ip(['link', 'set', t.ifname[net], 'up'], ns);
    }
  }
  for (const net of ['net1', 'net2'] as const) {
    await ip(['addr', 'add', `${t.clientAddress[net]}/24`, 'dev', t.ifname[net]], t.namespaces.c);
  }
  const st = t.storage;
  await ip(['link', 'add', st.bridge, 'type', 'bridge']);
  await ip(['link', 'set', st.bridge, 'up']);
  await ip(['addr', 'add', `${st.hostAddress}/24`, 'dev', st.bridge]);
  for (const blade of ['a', 'b'] as const) {
    const ns = t.namespaces[blade];
    const outer = storageVethName(t, blade);
    await ip(['link', 'add', outer, 'type', 'veth', 'peer', 'name', `${outer}x`]);
    await ip(['link', 'set', `${outer}x`, 'netns', ns]);
    await ip(['link', 'set', `${outer}x`, 'name', st.ifname], ns);
    await ip(['link', 'set', outer, 'master', st.bridge]);
    await ip(['link', 'set', outer, 'up']);
    await ip(['addr', 'add', `${st.bladeAddress(blade)}/24`, 'dev', st.ifname], ns);
    await ip(['link', 'set', st.ifname, 'up'], ns);
  }
}

function storageVethName(t: Topology, blade: 'a' | 'b'): string {
  return `${t.id}${blade}s`;
}

/** Powers a blade's ports down (a powered-off NIC: no carrier, no addresses) or back up. */
export async function setBladePorts(t: Topology, blade: 'a' | 'b', up: boolean): Promise<void> {
  const ns = t.namespaces[blade];
  for (const net of rigNets) {
    if (!up) await ip(['addr', 'flush', 'dev', t.ifname[net]], ns).catch(() => undefined);
    await ip(['link', 'set', vethName(t, blade, net), up ? 'up' : 'down']).catch(() => undefined);
    await ip(['link', 'set', t.ifname[net], up ? 'up' : 'down'], ns).catch(() => undefined);
  }
}

/** Fails or restores one port of a blade (the cable is pulled: carrier lost on both ends). */
export async function setBladePort(t: Topology, blade: 'a' | 'b', net: RigNet, up: boolean): Promise<void> {
  await ip(['link', 'set', vethName(t, blade, net), up ? 'up' : 'down']);
}

/**
 * Isolates the blades from each other on every network (serial aside), or ends that: their
 * bridge ports become isolated ports (Linux bridge `isolated`), which forward to and from the
 * host and the client namespace but never to another isolated port. The blades keep their
 * carrier, addresses and clients; only blade-to-blade traffic (the UDP interconnect, anything
 * over a client network) is gone. The storage network is left alone: the disks stay shared.
 */
export async function setBladesIsolated(t: Topology, isolated: boolean): Promise<void> {
  for (const blade of ['a', 'b'] as const) {
    for (const net of rigNets) await run('bridge', ['link', 'set', 'dev', vethName(t, blade, net), 'isolated', isolated ? 'on' : 'off']);
  }
}

/** Removes everything of this slot; safe to call when nothing exists. */
export async function destroyTopology(t: Topology): Promise<void> {
  for (const host of ['a', 'b', 'c'] as const) await tryIp(['netns', 'del', t.namespaces[host]]);
  for (const host of ['a', 'b', 'c'] as const) for (const net of rigNets) await tryIp(['link', 'del', vethName(t, host, net)]);
  for (const blade of ['a', 'b'] as const) await tryIp(['link', 'del', storageVethName(t, blade)]);
  for (const net of rigNets) await tryIp(['link', 'del', t.bridges[net]]);
  await tryIp(['link', 'del', t.storage.bridge]);
}

/** Namespaces and links of this slot that exist now (empty after destroyTopology). */
export async function topologyLeftovers(t: Topology): Promise<string[]> {
  const names = new Set<string>([...Object.values(t.bridges), t.storage.bridge, storageVethName(t, 'a'), storageVethName(t, 'b')]);
  for (const host of ['a', 'b', 'c'] as const) for (const net of rigNets) names.add(vethName(t, host, net));
  const ns = (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '');
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout.split('\n').map((l) => (l.split(': ')[1] ?? '').split('@')[0] ?? '');
  return [...ns.filter((n) => Object.values(t.namespaces).includes(n)).map((n) => `namespace ${n}`), ...links.filter((l) => names.has(l)).map((l) => `link ${l}`)];
}

/** The argv prefix that runs a command inside a host's namespace. */
export function inNamespace(t: Topology, host: RigHost, argv: string[]): string[] {
  return ['ip', 'netns', 'exec', t.namespaces[host], ...argv];
}
