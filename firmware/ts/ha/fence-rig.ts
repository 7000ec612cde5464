// The fence over the process rig's loop controller (SPEC ST-4): write-exclusive reservations
// held by the rig's loop emulator, reached over the rig control channel (ops loop.register,
// loop.reserve, loop.release, loop.preempt, loop.holder). The reservation key is the blade's
// loop id, which the channel knows from the session; a fenced blade's NBD writes then fail
// ERR_BLOCK_FENCED at the emulator, which records them as the fencing oracle.
import { isTwinbladeError } from '../core/errors.ts';
import type { RigControlClient } from '../hal/rigctl/client.ts';
import type { RigBladeId } from '../hal/rigctl/protocol.ts';
import { FenceError, FenceErrorCode, type BladeIndex, type Fence } from './fence.ts';

export interface RigLoopFenceOptions {
  client: RigControlClient;
  /** The shared disks' names on the rig (NBD export names), by disk index. */
  disks: readonly string[];
}

interface LoopReply {
  ok: boolean;
  holder: RigBladeId | null;
  reason?: string;
}

const indexOf = (b: RigBladeId | null): BladeIndex | undefined => (b === 'a' ? 0 : b === 'b' ? 1 : undefined);

export class RigLoopFence implements Fence {
  readonly kind = 'rig-loop';
  /** Reservations are write exclusive: everyone reads every disk. */
  readonly readsUnheldDisks = true;
  private readonly client: RigControlClient;
  private readonly disks: readonly string[];

  constructor(opts: RigLoopFenceOptions) {
    this.client = opts.client;
    this.disks = [...opts.disks];
  }

  private name(disk: number): string {
    const n = Number.isInteger(disk) ? this.disks[disk] : undefined;
    if (n === undefined) throw new FenceError(FenceErrorCode.unknownDisk, `rig fence: no disk ${disk}`);
    return n;
  }

  private async call(op: string, disk: number): Promise<unknown> {
    const name = this.name(disk);
    try {
      return await this.client.request(op, { disk: name });
    } catch (e) {
      const code = isTwinbladeError(e) ? e.code : 'unknown';
      throw new FenceError(FenceErrorCode.io, `rig fence: ${op} ${name}: ${code}: ${(e as Error).message}`);
    }
  }

  private async reply(op: string, disk: number): Promise<LoopReply> {
    const r = (await this.call(op, disk)) as Partial<LoopReply> | null;
    if (r === null || typeof r !== 'object' || typeof r.ok !== 'boolean') throw new FenceError(FenceErrorCode.io, `rig fence: ${op}: malformed reply`);
    return { ok: r.ok, holder: r.holder === 'a' || r.holder === 'b' ? r.holder : null, ...(typeof r.reason === 'string' ? { reason: r.reason } : {}) };
  }

  async register(disk: number): Promise<void> {
    await this.reply('loop.register', disk);
  }

  async reserve(disk: number): Promise<void> {
    const r = await this.reply('loop.reserve', disk);
    if (!r.ok) throw new FenceError(FenceErrorCode.conflict, `disk ${this.name(disk)} is reserved by blade ${String(r.holder)}`);
  }

  async preempt(disk: number): Promise<void> {
    const r = await this.reply('loop.preempt', disk);
    if (!r.ok) {
      if (r.reason === 'not-registered') throw new FenceError(FenceErrorCode.notRegistered, `disk ${this.name(disk)}: blade ${this.client.blade} was preempted by its partner`);
      throw new FenceError(FenceErrorCode.io, `disk ${this.name(disk)}: preempt refused (${r.reason ?? 'no reason'})`);
    }
  }

  async release(disk: number): Promise<void> {
    await this.reply('loop.release', disk);
  }

  async holder(disk: number): Promise<BladeIndex | undefined> {
    const h = await this.call('loop.holder', disk);
    if (h !== null && h !== 'a' && h !== 'b') throw new FenceError(FenceErrorCode.io, `rig fence: loop.holder: malformed reply`);
    return indexOf(h);
  }
}
