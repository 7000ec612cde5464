// A tiny command-line front end to the TypeScript NFS client, for poking at a server by hand:
//   tsx tools/nfs-client/cli.ts <ls|cat|get|put|stat|mkdir|rm|exports> URL [FILE]
// URL is libnfs-style: nfs://HOST/EXPORT/PATH?nfsport=N&mountport=M[&uid=U&gid=G]
import { readFile, writeFile } from 'node:fs/promises';
import { FileType } from '../../firmware/ts/fsapi/ops.ts';
import { MountClient, mountNfs, ok } from './index.ts';

export interface NfsUrl {
  host: string;
  nfsPort: number;
  mountPort: number;
  exportPath: string;
  path: string;
  uid: number;
  gid: number;
}

/** Parses a libnfs-style URL; the export is the first path component (the server resolves deeper mounts too). */
export function parseNfsUrl(u: string): NfsUrl {
  const url = new URL(u);
  if (url.protocol !== 'nfs:') throw new Error(`not an nfs:// URL: ${u}`);
  const parts = decodeURIComponent(url.pathname).split('/').filter((s) => s.length > 0);
  const num = (k: string, d: number) => (url.searchParams.has(k) ? Number(url.searchParams.get(k)) : d);
  return {
    host: url.hostname || '127.0.0.1',
    nfsPort: num('nfsport', 2049),
    mountPort: num('mountport', num('nfsport', 2049)),
    exportPath: '/' + (parts[0] ?? ''),
    path: parts.slice(1).join('/'),
    uid: num('uid', process.getuid?.() ?? 0),
    gid: num('gid', process.getgid?.() ?? 0),
  };
}

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const [cmd, rawUrl, file] = argv;
  if (cmd === undefined || rawUrl === undefined) {
    out('usage: cli.ts <ls|cat|get|put|stat|mkdir|rm|exports> nfs://HOST/EXPORT/PATH?nfsport=N&mountport=M [FILE]\n');
    return 2;
  }
  const u = parseNfsUrl(rawUrl);
  if (cmd === 'exports') {
    const m = await MountClient.connect(u.host, u.mountPort);
    try {
      for (const e of await m.exports()) out(`${e.dir} ${e.groups.join(',') || '*'}\n`);
    } finally {
      await m.close();
    }
    return 0;
  }
  const c = await mountNfs({ host: u.host, nfsPort: u.nfsPort, mountPort: u.mountPort, path: u.exportPath, auth: { uid: u.uid, gid: u.gid } });
  try {
    const { nfs, root } = c;
    const parent = u.path.split('/').slice(0, -1).join('/');
    const base = u.path.split('/').pop() ?? '';
    switch (cmd) {
      case 'ls': {
        const dir = await nfs.lookupPath(root, u.path);
        for (const name of (await nfs.listDir(dir)).sort()) out(`${name}\n`);
        return 0;
      }
      case 'stat': {
        const a = ok(await nfs.getattr(await nfs.lookupPath(root, u.path)), 'GETATTR').attr;
        out(`${JSON.stringify({ ...a, fsid: a.fsid.toString(), type: Object.entries(FileType).find(([, v]) => v === a.type)?.[0] })}\n`);
        return 0;
      }
      case 'cat':
        out(new TextDecoder().decode(await nfs.readFile(await nfs.lookupPath(root, u.path))));
        return 0;
      case 'get':
        if (file === undefined) throw new Error('get needs a local FILE');
        await writeFile(file, await nfs.readFile(await nfs.lookupPath(root, u.path)));
        return 0;
      case 'put':
        if (file === undefined) throw new Error('put needs a local FILE');
        await nfs.writeFile(await nfs.lookupPath(root, parent), base, await readFile(file));
        return 0;
      case 'mkdir':
        ok(await nfs.mkdir(await nfs.lookupPath(root, parent), base), 'MKDIR');
        return 0;
      case 'rm':
        ok(await nfs.remove(await nfs.lookupPath(root, parent), base), 'REMOVE');
        return 0;
      default:
        out(`unknown command ${cmd}\n`);
        return 2;
    }
  } finally {
    await c.close();
  }
}

if (process.argv[1] !== undefined && process.argv[1].endsWith('cli.ts')) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
