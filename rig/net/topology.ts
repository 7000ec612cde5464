// The rig's networks: a network namespace per blade and one for clients, veth ports on two
// client networks (net1, net2) and an interconnect network (ic), joined by bridges in the
// host namespace, where the host also has an address on each client network so that a user
// on the host reaches the blades. Addresses are in 198.18.0.0/15, the range set aside for
// network-device benchmarking (RFC 2544), so they never collide with a real network.
// The rig creates ports only: the blades configure their own addresses (they belong to the
// firmware, which adds its partner's on takeover).
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

/** Removes everything of this slot; safe to call when nothing exists. */
export async function destroyTopology(t: Topology): Promise<void> {
  for (const host of ['a', 'b', 'c'] as const) await tryIp(['netns', 'del', t.namespaces[host]]);
  for (const host of ['a', 'b', 'c'] as const) for (const net of rigNets) await tryIp(['link', 'del', vethName(t, host, net)]);
  for (const net of rigNets) await tryIp(['link', 'del', t.bridges[net]]);
}

/** The argv prefix that runs a command inside a host's namespace. */
export function inNamespace(t: Topology, host: RigHost, argv: string[]): string[] {
  return ['ip', 'netns', 'exec', t.namespaces[host], ...argv];
}
