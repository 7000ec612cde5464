// A standalone NFS server over an in-memory file system, as a process: for the interop tests,
// the benchmark (so the server does not share an event loop with its client) and quick manual
// trials with stock clients. It prints one JSON line with its ports, then serves until killed.
//   tsx firmware/ts/nfs/standalone.ts [--host H] [--nfs-port N] [--mount-port N] [--portmap-port N]
//                                     [--export /path] [--no-udp] [--root-squash]
import { parseArgs } from 'node:util';
import { MemFs } from '../fsapi/memfs.ts';
import { realClock } from '../hal/clock/real.ts';
import { startNfsServer } from './server.ts';

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      'nfs-port': { type: 'string', default: '0' },
      'mount-port': { type: 'string', default: '0' },
      'portmap-port': { type: 'string' },
      export: { type: 'string', default: '/export' },
      'no-udp': { type: 'boolean', default: false },
      'root-squash': { type: 'boolean', default: false },
    },
  });
  const fs = new MemFs({ rootMode: 0o777 });
  const ports: { nfs: number; mount: number; portmap?: number } = { nfs: Number(values['nfs-port']), mount: Number(values['mount-port']) };
  if (values['portmap-port'] !== undefined) ports.portmap = Number(values['portmap-port']);
  const server = await startNfsServer({
    exports: [{ path: values.export, fs, rootSquash: values['root-squash'] }],
    clock: realClock,
    host: values.host,
    ports,
    udp: !values['no-udp'],
    onError: (e) => console.error('nfs: unexpected error', e),
  });
  process.stdout.write(`${JSON.stringify({ nfsPort: server.nfsPort, mountPort: server.mountPort, portmapPort: server.portmapPort ?? null })}\n`);
  const stop = () => {
    void server.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\0')) {
  void main(process.argv.slice(2));
}
