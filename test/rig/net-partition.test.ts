// The rig's partition fault at the network level: with the blades' bridge ports isolated, no
// traffic passes between the blades on any network while the host and the client namespace
// still reach both, and the storage network (the loops) is untouched; the heal restores it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createTopology, destroyTopology, inNamespace, rigNets, setBladesIsolated, topology, topologyLeftovers, type RigNet } from '../../rig/net/topology.ts';

const run = promisify(execFile);
// Slot 57: 58 is test/rig/start.test.ts, 59 test/rig/netns.test.ts, 10-49 test/e2e/isolation.test.ts.
const t = topology(57);
const port = 7002;

/** One TCP connect from `fromNs` (undefined: the host) to host:port; the peer's greeting, or the error code. */
async function tcpProbe(fromNs: string | undefined, host: string): Promise<string> {
  const script = `const s=require('net').connect(${port},'${host}');s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});s.on('data',d=>{console.log(String(d));process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)})`;
  const argv = fromNs ? ['ip', 'netns', 'exec', fromNs, process.execPath, '-e', script] : [process.execPath, '-e', script];
  const { stdout } = await run(argv[0] as string, argv.slice(1));
  return stdout.trim();
}

describe('rig network partition (isolated bridge ports) and the storage network', () => {
  const servers: ChildProcess[] = [];
  beforeAll(async () => {
    await createTopology(t);
    // The blades own their addresses on net1/net2/ic; here the test plays the firmware.
    for (const b of ['a', 'b'] as const) {
      for (const net of rigNets) await run('ip', ['netns', 'exec', t.namespaces[b], 'ip', 'addr', 'add', `${t.bladeAddress(b, net)}/24`, 'dev', t.ifname[net]]);
      const [cmd, ...args] = inNamespace(t, b, [process.execPath, '-e', `require('net').createServer(s=>s.end('blade-${b}')).listen(${port},'0.0.0.0')`]);
      servers.push(spawn(cmd as string, args, { stdio: 'ignore' }));
    }
    await new Promise((r) => setTimeout(r, 700));
  });
  afterAll(async () => {
    for (const s of servers) s.kill('SIGKILL');
    await destroyTopology(t);
    expect(await topologyLeftovers(t)).toEqual([]);
  });

  const bladeToBlade = async (net: RigNet): Promise<string> => tcpProbe(t.namespaces.a, t.bladeAddress('b', net));

  it('the blades reach each other on every network, and the storage host, before the partition', async () => {
    for (const net of rigNets) expect(await bladeToBlade(net)).toBe('blade-b');
    // The loop emulator's side of the storage network is the host.
    expect(await tcpProbe(undefined, t.storage.bladeAddress('a'))).toBe('blade-a');
  });

  it('partitioned: nothing between the blades; clients, host and storage still reach both; healed: back', async () => {
    await setBladesIsolated(t, true);
    const cut = await Promise.all(rigNets.map((net) => bladeToBlade(net)));
    expect(cut.filter((r) => r === 'blade-b')).toEqual([]);
    for (const b of ['a', 'b'] as const) {
      const reached = await Promise.all([
        tcpProbe(t.namespaces.c, t.bladeAddress(b, 'net1')),
        tcpProbe(t.namespaces.c, t.bladeAddress(b, 'net2')),
        tcpProbe(undefined, t.bladeAddress(b, 'net1')),
        tcpProbe(undefined, t.storage.bladeAddress(b)),
      ]);
      expect(reached).toEqual(Array(4).fill(`blade-${b}`));
    }
    await setBladesIsolated(t, false);
    expect(await Promise.all(rigNets.map((net) => bladeToBlade(net)))).toEqual(['blade-b', 'blade-b', 'blade-b']);
  });
});
