// The blade's management interface: a local control socket (owner-only permissions) that
// the `blade` CLI uses for status and operator commands, and a read-only HTTP metrics
// endpoint in Prometheus text format. Requests are newline-delimited JSON, one response each.
import net from 'node:net';
import http from 'node:http';
import fs from 'node:fs/promises';
import type { MetricsRegistry } from './metrics.ts';

export type MgmtHandler = (args: Record<string, unknown>) => unknown;

/** The longest request line accepted on the control socket. */
const mgmtLineBytesMax = 64 * 1024;

export class MgmtServer {
  private server: net.Server | undefined;
  private http: http.Server | undefined;
  private readonly handlers = new Map<string, MgmtHandler>();

  constructor(private readonly socketPath: string) {}

  handle(op: string, handler: MgmtHandler): void {
    this.handlers.set(op, handler);
  }

  async start(): Promise<void> {
    await fs.rm(this.socketPath, { force: true });
    const server = net.createServer((sock) => {
      sock.setEncoding('utf8');
      sock.on('error', () => undefined);
      let buf = '';
      sock.on('data', (chunk: string) => {
        buf += chunk;
        if (buf.length > mgmtLineBytesMax) {
          sock.destroy();
          return;
        }
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          void this.dispatch(line).then((out) => {
            if (!sock.destroyed) sock.write(`${JSON.stringify(out)}\n`);
          });
        }
      });
    });
    // Owner-only: the socket is created under a umask that denies group and others.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.socketPath, () => resolve());
      });
    } finally {
      process.umask(oldMask);
    }
    await fs.chmod(this.socketPath, 0o600);
    this.server = server;
  }

  /** Serves GET /metrics on host:port (port 0 picks one); returns the bound port. */
  async startMetrics(registry: MetricsRegistry, host: string, port: number): Promise<number> {
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
        res.writeHead(req.method === 'GET' ? 404 : 405).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(registry.render());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.http = server;
    return (server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    await Promise.all([
      new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r())),
      new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r())),
    ]);
    await fs.rm(this.socketPath, { force: true });
  }

  private async dispatch(line: string): Promise<unknown> {
    let msg: { op?: unknown; args?: unknown };
    try {
      msg = JSON.parse(line) as { op?: unknown; args?: unknown };
    } catch {
      return { ok: false, error: { code: 'ERR_MGMT_PROTOCOL', message: 'not JSON' } };
    }
    const handler = typeof msg.op === 'string' ? this.handlers.get(msg.op) : undefined;
    if (!handler) return { ok: false, error: { code: 'ERR_MGMT_UNKNOWN_OP', message: `unknown op ${String(msg.op)}` } };
    try {
      const args = typeof msg.args === 'object' && msg.args !== null ? (msg.args as Record<string, unknown>) : {};
      return { ok: true, result: await handler(args) };
    } catch (e) {
      return { ok: false, error: { code: (e as { code?: string }).code ?? 'ERR_MGMT_FAILED', message: (e as Error).message } };
    }
  }
}

/** One request to a blade's control socket (used by the CLI and the tests). */
export async function mgmtRequest(socketPath: string, op: string, args: Record<string, unknown> = {}, timeoutMs = 5000): Promise<unknown> {
  const sock = net.connect(socketPath);
  sock.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error(`blade control: ${op} timed out`), { code: 'ERR_MGMT_TIMEOUT' }));
    }, timeoutMs);
    sock.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    sock.on('connect', () => sock.write(`${JSON.stringify({ op, args })}\n`));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(t);
      sock.end();
      const msg = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: { code: string; message: string } };
      if (msg.ok) resolve(msg.result);
      else reject(Object.assign(new Error(msg.error?.message ?? 'failed'), { code: msg.error?.code }));
    });
  });
}
