// The rig's network namespaces: blades and the client reach each other over the bridges,
// the host reaches the client network, and a powered-off blade's ports carry nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createTopology, destroyTopology, inNamespace, setBladePorts, topology } from '../../rig/net/topology.ts';

const run = promisify(execFile);
const t = topology(59);

async function tcpProbe(fromNs: string | undefined, host: string, port: number): Promise<string> {
  const script = `const s=require('net').connect(${port},'${host}');s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});s.on('data',d=>{console.log(String(d));process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(0)})`;
  const argv = fromNs ? ['ip', 'netns', 'exec', fromNs, process.execPath, '-e', script] : [process.execPath, '-e', script];
  const { stdout } = await run(argv[0] as string, argv.slice(1));
  return stdout.trim();
}

describe('rig networks (namespaces, veth, bridges)', () => {
  let server: ChildProcess | undefined;
  beforeAll(async () => {
    await createTopology(t);
    const addr = t.bladeAddress('a', 'net1');
    await run('ip', ['netns', 'exec', t.namespaces.a, 'ip', 'addr', 'add', `${addr}/24`, 'dev', t.ifname.net1]);
    const [cmd, ...args] = inNamespace(t, 'a', [process.execPath, '-e', `require('net').createServer(s=>s.end('blade-a')).listen(7001,'${addr}')`]);
    server = spawn(cmd as string, args, { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 700));
  });
  afterAll(async () => {
    server?.kill('SIGKILL');
    await destroyTopology(t);
  });

  it('the client namespace and the host reach a blade address on net1', async () => {
    expect(await tcpProbe(t.namespaces.c, t.bladeAddress('a', 'net1'), 7001)).toBe('blade-a');
    expect(await tcpProbe(undefined, t.bladeAddress('a', 'net1'), 7001)).toBe('blade-a');
  });

  it('a powered-off blade\'s ports lose carrier and addresses', async () => {
    await setBladePorts(t, 'a', false);
    expect(await tcpProbe(t.namespaces.c, t.bladeAddress('a', 'net1'), 7001)).not.toBe('blade-a');
    const { stdout } = await run('ip', ['netns', 'exec', t.namespaces.a, 'ip', '-o', 'addr', 'show', 'dev', t.ifname.net1]);
    expect(stdout).not.toContain(t.bladeAddress('a', 'net1'));
    await setBladePorts(t, 'a', true);
  });
});
