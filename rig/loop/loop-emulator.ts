// The loop emulator: serves every disk image of the rig over NBD (newstyle, fixed
// handshake) on two loops, A and B, one TCP port each. Each disk has a MUX per loop (in the
// loop, bypassed, failed) for faults and hot-swap, and a write-exclusive reservation like a
// SCSI-3 persistent reservation: anyone reads, only the holder writes. A write from anyone
// else fails with an I/O error to that initiator and is recorded: the emulator is the
// fencing oracle that tests and `rig status` read.
import net from 'node:net';
import fs from 'node:fs/promises';
import { EventEmitter } from 'node:events';
import {
  ByteQueue,
  decodeRequest,
  NBD,
  nbdPayloadBytesMax,
  nbdRequestHeaderBytes,
} from '../../firmware/ts/hal/block/rig/nbd-protocol.ts';

export type LoopId = 'a' | 'b';
export type MuxState = 'in' | 'bypassed' | 'failed';

export interface LoopDiskSpec {
  name: string;
  path: string;
  sizeBytes: number;
}

export interface FenceViolation {
  disk: string;
  loop: LoopId;
  holder: LoopId;
  offset: number;
  length: number;
  atMs: number;
}

export interface LoopEmulatorOptions {
  disks: LoopDiskSpec[];
  host?: string;
  /** 0 (default) picks a free port per loop. */
  ports?: { a: number; b: number };
  /** Wall-clock source for violation records (ms). */
  nowMs?: () => number;
}

interface DiskState {
  spec: LoopDiskSpec;
  file: fs.FileHandle;
  mux: Record<LoopId, MuxState>;
  /** A failed disk returns EIO on both loops (a dead drive). */
  failed: boolean;
  holder: LoopId | undefined;
  stats: { reads: number; writes: number; flushes: number; refusedWrites: number };
}

export interface LoopStatus {
  ports: { a: number; b: number };
  disks: Array<{
    name: string;
    sizeBytes: number;
    mux: Record<LoopId, MuxState>;
    failed: boolean;
    holder: LoopId | null;
    stats: DiskState['stats'];
  }>;
  violations: FenceViolation[];
  connections: Record<LoopId, number>;
}

/** Limits of one connection (named, so a misbehaving client cannot exhaust the rig). */
const requestsInFlightMax = 64;
const blockSizeMin = 512;
const blockSizePreferred = 4096;

export class LoopEmulator extends EventEmitter {
  private readonly disks = new Map<string, DiskState>();
  private readonly servers: Partial<Record<LoopId, net.Server>> = {};
  private readonly sockets = new Set<net.Socket>();
  private readonly connCount: Record<LoopId, number> = { a: 0, b: 0 };
  private readonly violationLog: FenceViolation[] = [];
  private readonly nowMs: () => number;
  private ports = { a: 0, b: 0 };

  constructor(private readonly opts: LoopEmulatorOptions) {
    super();
    this.nowMs = opts.nowMs ?? (() => Date.now());
  }

  async start(): Promise<{ a: number; b: number }> {
    for (const spec of this.opts.disks) {
      if (this.disks.has(spec.name)) throw new Error(`loop emulator: duplicate disk ${spec.name}`);
      const file = await fs.open(spec.path, 'r+');
      const st = await file.stat();
      if (st.size < spec.sizeBytes) await file.truncate(spec.sizeBytes);
      this.disks.set(spec.name, {
        spec,
        file,
        mux: { a: 'in', b: 'in' },
        failed: false,
        holder: undefined,
        stats: { reads: 0, writes: 0, flushes: 0, refusedWrites: 0 },
      });
    }
    const host = this.opts.host ?? '127.0.0.1';
    for (const loop of ['a', 'b'] as const) {
      const server = net.createServer((sock) => this.onConnection(loop, sock));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.opts.ports?.[loop] ?? 0, host, () => resolve());
      });
      this.servers[loop] = server;
      this.ports[loop] = (server.address() as net.AddressInfo).port;
    }
    return { ...this.ports };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(
      Object.values(this.servers).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    );
    for (const d of this.disks.values()) await d.file.close().catch(() => undefined);
    this.disks.clear();
  }

  // ---- the emulated loop controller (reached through the rig control channel) ----

  /** Reserve: granted when the disk is free or already held by `loop`. */
  reserve(disk: string, loop: LoopId): { ok: boolean; holder: LoopId | null } {
    const d = this.disk(disk);
    if (d.holder === undefined || d.holder === loop) {
      d.holder = loop;
      return { ok: true, holder: loop };
    }
    return { ok: false, holder: d.holder };
  }

  /** Release: only the holder releases; releasing a disk you do not hold is a no-op. */
  release(disk: string, loop: LoopId): { ok: boolean; holder: LoopId | null } {
    const d = this.disk(disk);
    if (d.holder === loop) d.holder = undefined;
    return { ok: true, holder: d.holder ?? null };
  }

  /** Preempt: take the reservation from whoever holds it (a takeover). */
  preempt(disk: string, loop: LoopId): { ok: boolean; holder: LoopId | null } {
    const d = this.disk(disk);
    d.holder = loop;
    return { ok: true, holder: loop };
  }

  holder(disk: string): LoopId | null {
    return this.disk(disk).holder ?? null;
  }

  // ---- faults ----

  setMux(disk: string, loop: LoopId, state: MuxState): void {
    this.disk(disk).mux[loop] = state;
  }

  setLoop(loop: LoopId, state: MuxState): void {
    for (const d of this.disks.values()) d.mux[loop] = state;
  }

  setDiskFailed(disk: string, failed: boolean): void {
    this.disk(disk).failed = failed;
  }

  /**
   * Swaps a new, blank disk into the bay (a hot-swap replacement): every byte reads zero, it
   * works again, and it carries no reservation (a reservation lives on the old drive).
   */
  async replaceDisk(disk: string): Promise<void> {
    const d = this.disk(disk);
    await d.file.truncate(0);
    await d.file.truncate(d.spec.sizeBytes);
    d.holder = undefined;
    d.failed = false;
  }

  violations(): FenceViolation[] {
    return [...this.violationLog];
  }

  status(): LoopStatus {
    return {
      ports: { ...this.ports },
      disks: [...this.disks.values()].map((d) => ({
        name: d.spec.name,
        sizeBytes: d.spec.sizeBytes,
        mux: { ...d.mux },
        failed: d.failed,
        holder: d.holder ?? null,
        stats: { ...d.stats },
      })),
      violations: this.violations(),
      connections: { ...this.connCount },
    };
  }

  private disk(name: string): DiskState {
    const d = this.disks.get(name);
    if (!d) throw new Error(`loop emulator: no disk named ${JSON.stringify(name)}`);
    return d;
  }

  // ---- NBD ----

  private onConnection(loop: LoopId, sock: net.Socket): void {
    this.sockets.add(sock);
    this.connCount[loop]++;
    sock.setNoDelay(true);
    const q = new ByteQueue();
    sock.on('data', (c: Buffer) => q.push(c));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      this.sockets.delete(sock);
      this.connCount[loop]--;
      q.end(new Error('connection closed'));
    });
    this.serve(loop, sock, q).catch(() => sock.destroy());
  }

  private async serve(loop: LoopId, sock: net.Socket, q: ByteQueue): Promise<void> {
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(NBD.initMagic, 0);
    hello.writeBigUInt64BE(NBD.optsMagic, 8);
    hello.writeUInt16BE(NBD.flagFixedNewstyle | NBD.flagNoZeroes, 16);
    sock.write(hello);
    const clientFlags = (await q.take(4)).readUInt32BE(0);
    const noZeroes = (clientFlags & NBD.clientFlagNoZeroes) !== 0;
    if ((clientFlags & ~(NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes)) !== 0) {
      sock.destroy();
      return;
    }
    let structured = false;
    let chosen: DiskState | undefined;

    const optReply = (opt: number, type: number, data: Buffer = Buffer.alloc(0)): void => {
      const h = Buffer.alloc(20);
      h.writeBigUInt64BE(NBD.repMagic, 0);
      h.writeUInt32BE(opt, 8);
      h.writeUInt32BE(type, 12);
      h.writeUInt32BE(data.length, 16);
      sock.write(Buffer.concat([h, data]));
    };

    // Option haggling.
    while (!chosen) {
      const hdr = await q.take(16);
      if (hdr.readBigUInt64BE(0) !== NBD.optsMagic) {
        sock.destroy();
        return;
      }
      const opt = hdr.readUInt32BE(8);
      const len = hdr.readUInt32BE(12);
      if (len > 64 * 1024) {
        sock.destroy();
        return;
      }
      const data = await q.take(len);
      switch (opt) {
        case NBD.optExportName: {
          const d = this.lookupExport(loop, data.toString('utf8'));
          if (!d) {
            sock.destroy();
            return;
          }
          const r = Buffer.alloc(noZeroes ? 10 : 134);
          r.writeBigUInt64BE(BigInt(d.spec.sizeBytes), 0);
          r.writeUInt16BE(this.transmissionFlags(), 8);
          sock.write(r);
          chosen = d;
          break;
        }
        case NBD.optAbort:
          optReply(opt, NBD.repAck);
          sock.end();
          return;
        case NBD.optList: {
          if (len !== 0) {
            optReply(opt, NBD.repErrInvalid);
            break;
          }
          for (const d of this.disks.values()) {
            if (d.mux[loop] === 'bypassed') continue;
            const name = Buffer.from(d.spec.name, 'utf8');
            const body = Buffer.alloc(4 + name.length);
            body.writeUInt32BE(name.length, 0);
            name.copy(body, 4);
            optReply(opt, NBD.repServer, body);
          }
          optReply(opt, NBD.repAck);
          break;
        }
        case NBD.optStructuredReply:
          if (len !== 0) optReply(opt, NBD.repErrInvalid);
          else {
            structured = true;
            optReply(opt, NBD.repAck);
          }
          break;
        case NBD.optListMetaContext:
        case NBD.optSetMetaContext:
          // No metadata contexts are offered: an empty list followed by ACK.
          optReply(opt, structured ? NBD.repAck : NBD.repErrInvalid);
          break;
        case NBD.optInfo:
        case NBD.optGo: {
          if (len < 6) {
            optReply(opt, NBD.repErrInvalid);
            break;
          }
          const nameLen = data.readUInt32BE(0);
          if (4 + nameLen + 2 > len) {
            optReply(opt, NBD.repErrInvalid);
            break;
          }
          const name = data.subarray(4, 4 + nameLen).toString('utf8');
          const d = this.lookupExport(loop, name);
          if (!d) {
            optReply(opt, NBD.repErrUnknown, Buffer.from(`no disk ${name} on loop ${loop}`));
            break;
          }
          const exp = Buffer.alloc(12);
          exp.writeUInt16BE(NBD.infoExport, 0);
          exp.writeBigUInt64BE(BigInt(d.spec.sizeBytes), 2);
          exp.writeUInt16BE(this.transmissionFlags(), 10);
          optReply(opt, NBD.repInfo, exp);
          const bs = Buffer.alloc(14);
          bs.writeUInt16BE(NBD.infoBlockSize, 0);
          bs.writeUInt32BE(blockSizeMin, 2);
          bs.writeUInt32BE(blockSizePreferred, 6);
          bs.writeUInt32BE(nbdPayloadBytesMax, 10);
          optReply(opt, NBD.repInfo, bs);
          optReply(opt, NBD.repAck);
          if (opt === NBD.optGo) chosen = d;
          break;
        }
        case NBD.optStartTls:
          optReply(opt, NBD.repErrPolicy);
          break;
        default:
          optReply(opt, NBD.repErrUnsup);
      }
    }

    await this.transmit(loop, sock, q, chosen, structured);
  }

  private lookupExport(loop: LoopId, name: string): DiskState | undefined {
    const d = this.disks.get(name === '' ? [...this.disks.keys()][0] ?? '' : name);
    if (!d || d.mux[loop] === 'bypassed') return undefined;
    return d;
  }

  private transmissionFlags(): number {
    return NBD.tflagHasFlags | NBD.tflagSendFlush | NBD.tflagSendFua | NBD.tflagSendTrim | NBD.tflagSendWriteZeroes;
  }

  private async transmit(loop: LoopId, sock: net.Socket, q: ByteQueue, d: DiskState, structured: boolean): Promise<void> {
    let inFlight = 0;
    let slotFree: (() => void) | undefined;

    const reply = (cookie: bigint, error: number, message: string, payload?: Buffer, offset?: bigint): void => {
      if (sock.destroyed) return;
      if (!structured) {
        const h = Buffer.alloc(16);
        h.writeUInt32BE(NBD.simpleReplyMagic, 0);
        h.writeUInt32BE(error, 4);
        h.writeBigUInt64BE(cookie, 8);
        sock.write(payload && error === 0 ? Buffer.concat([h, payload]) : h);
        return;
      }
      const h = Buffer.alloc(20);
      h.writeUInt32BE(NBD.structuredReplyMagic, 0);
      h.writeUInt16BE(NBD.replyFlagDone, 4);
      h.writeBigUInt64BE(cookie, 8);
      if (error !== 0) {
        const msg = Buffer.from(message, 'utf8');
        const body = Buffer.alloc(6 + msg.length);
        body.writeUInt32BE(error, 0);
        body.writeUInt16BE(msg.length, 4);
        msg.copy(body, 6);
        h.writeUInt16BE(NBD.replyTypeError, 6);
        h.writeUInt32BE(body.length, 16);
        sock.write(Buffer.concat([h, body]));
      } else if (payload) {
        const off = Buffer.alloc(8);
        off.writeBigUInt64BE(offset ?? 0n, 0);
        h.writeUInt16BE(NBD.replyTypeOffsetData, 6);
        h.writeUInt32BE(8 + payload.length, 16);
        sock.write(Buffer.concat([h, off, payload]));
      } else {
        h.writeUInt16BE(NBD.replyTypeNone, 6);
        h.writeUInt32BE(0, 16);
        sock.write(h);
      }
    };

    for (;;) {
      const hdr = await q.take(nbdRequestHeaderBytes);
      const req = decodeRequest(hdr);
      if (!req) {
        sock.destroy();
        return;
      }
      let payload: Buffer | undefined;
      if (req.type === NBD.cmdWrite) {
        if (req.length > nbdPayloadBytesMax) {
          // The protocol cannot resynchronise after refusing to read a payload: close.
          sock.destroy();
          return;
        }
        payload = await q.take(req.length);
      }
      if (req.type === NBD.cmdDisc) {
        sock.end();
        return;
      }
      while (inFlight >= requestsInFlightMax) await new Promise<void>((r) => (slotFree = r));
      inFlight++;
      this.execute(loop, d, req.type, req.flags, req.offset, req.length, payload)
        .then(
          (r) => reply(req.cookie, r.error, r.message, r.data, req.offset),
          (e: unknown) => reply(req.cookie, NBD.EIO, String(e)),
        )
        .finally(() => {
          inFlight--;
          const f = slotFree;
          slotFree = undefined;
          f?.();
        });
    }
  }

  private async execute(
    loop: LoopId,
    d: DiskState,
    type: number,
    flags: number,
    offset64: bigint,
    length: number,
    payload: Buffer | undefined,
  ): Promise<{ error: number; message: string; data?: Buffer }> {
    if (d.failed || d.mux[loop] === 'failed') return { error: NBD.EIO, message: `disk ${d.spec.name} failed on loop ${loop}` };
    if (d.mux[loop] === 'bypassed') return { error: NBD.EIO, message: `disk ${d.spec.name} bypassed on loop ${loop}` };
    const size = BigInt(d.spec.sizeBytes);
    const inRange = offset64 + BigInt(length) <= size;
    const offset = Number(offset64);
    switch (type) {
      case NBD.cmdRead: {
        if (!inRange || length > nbdPayloadBytesMax) return { error: NBD.EINVAL, message: 'read beyond the end of the disk' };
        const buf = Buffer.alloc(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await d.file.read(buf, done, length - done, offset + done);
          if (bytesRead === 0) break; // a sparse tail reads as zeroes
          done += bytesRead;
        }
        d.stats.reads++;
        return { error: 0, message: '', data: buf };
      }
      case NBD.cmdWrite:
      case NBD.cmdTrim:
      case NBD.cmdWriteZeroes: {
        if (!inRange) return { error: NBD.ENOSPC, message: 'write beyond the end of the disk' };
        if (d.holder !== undefined && d.holder !== loop) {
          d.stats.refusedWrites++;
          const v: FenceViolation = { disk: d.spec.name, loop, holder: d.holder, offset, length, atMs: this.nowMs() };
          this.violationLog.push(v);
          this.emit('violation', v);
          return { error: NBD.EPERM, message: `reservation conflict: ${d.spec.name} is reserved by blade ${d.holder}` };
        }
        const data = type === NBD.cmdWrite ? (payload as Buffer) : Buffer.alloc(length);
        if (type === NBD.cmdTrim) return { error: 0, message: '' };
        await d.file.write(data, 0, data.length, offset);
        d.stats.writes++;
        if (flags & NBD.cmdFlagFua) await d.file.datasync();
        return { error: 0, message: '' };
      }
      case NBD.cmdFlush:
        await d.file.datasync();
        d.stats.flushes++;
        return { error: 0, message: '' };
      case NBD.cmdCache:
        return { error: 0, message: '' };
      default:
        return { error: NBD.EINVAL, message: `unsupported command ${type}` };
    }
  }
}
