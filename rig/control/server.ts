// The rig side of the control channel: accepts one connection per blade and dispatches
// requests to the emulated hardware (loop controller, GPIO lines, I2C devices). Handlers
// are registered by op name; events are pushed to the blade they concern.
import net from 'node:net';
import fs from 'node:fs/promises';
import {
  parseLine,
  rigControlLineBytesMax,
  rigControlVersion,
  RigControlErrorCode,
  type RigBladeId,
} from '../../firmware/ts/hal/rigctl/protocol.ts';

export type RigHandler = (blade: RigBladeId, args: Record<string, unknown>) => unknown;

export class RigControlError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class RigControlServer {
  private server: net.Server | undefined;
  private readonly handlers = new Map<string, RigHandler>([['ping', () => 'pong']]);
  private readonly sessions = new Map<net.Socket, RigBladeId | undefined>();

  constructor(private readonly socketPath: string) {}

  handle(op: string, handler: RigHandler): void {
    this.handlers.set(op, handler);
  }

  /** Sends an event to every connection of `blade`. */
  emitTo(blade: RigBladeId, event: string, payload: Record<string, unknown>): void {
    const line = `${JSON.stringify({ event, ...payload })}\n`;
    for (const [sock, b] of this.sessions) if (b === blade && !sock.destroyed) sock.write(line);
  }

  connected(blade: RigBladeId): boolean {
    for (const b of this.sessions.values()) if (b === blade) return true;
    return false;
  }

  /** Drops the connections of a blade (its power was cut). */
  disconnect(blade: RigBladeId): void {
    for (const [sock, b] of this.sessions) if (b === blade) sock.destroy();
  }

  async start(): Promise<void> {
    await fs.rm(this.socketPath, { force: true });
    const server = net.createServer((sock) => this.onConnection(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
    await fs.chmod(this.socketPath, 0o600);
    this.server = server;
  }

  async close(): Promise<void> {
    for (const s of this.sessions.keys()) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await fs.rm(this.socketPath, { force: true });
  }

  private onConnection(sock: net.Socket): void {
    this.sessions.set(sock, undefined);
    sock.setEncoding('utf8');
    let buf = '';
    sock.on('error', () => undefined);
    sock.on('close', () => this.sessions.delete(sock));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > rigControlLineBytesMax) {
        sock.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.onLine(sock, line);
      }
    });
  }

  private onLine(sock: net.Socket, line: string): void {
    const msg = parseLine(line);
    if (!msg) {
      sock.destroy();
      return;
    }
    const blade = this.sessions.get(sock);
    if (blade === undefined) {
      if (msg.op !== 'hello' || msg.version !== rigControlVersion || (msg.blade !== 'a' && msg.blade !== 'b')) {
        sock.destroy();
        return;
      }
      this.sessions.set(sock, msg.blade);
      return;
    }
    const id = msg.id;
    const op = msg.op;
    if (typeof id !== 'number' || typeof op !== 'string') {
      sock.destroy();
      return;
    }
    const reply = (body: Record<string, unknown>): void => {
      if (!sock.destroyed) sock.write(`${JSON.stringify({ id, ...body })}\n`);
    };
    const handler = this.handlers.get(op);
    if (!handler) {
      reply({ ok: false, error: { code: RigControlErrorCode.unknownOp, message: `unknown op ${op}` } });
      return;
    }
    const args = typeof msg.args === 'object' && msg.args !== null ? (msg.args as Record<string, unknown>) : {};
    Promise.resolve()
      .then(() => handler(blade, args))
      .then(
        (result) => reply({ ok: true, result }),
        (e: unknown) =>
          reply({
            ok: false,
            error: {
              code: e instanceof RigControlError ? e.code : ((e as { code?: string }).code ?? RigControlErrorCode.failed),
              message: (e as Error).message,
            },
          }),
      );
  }
}
