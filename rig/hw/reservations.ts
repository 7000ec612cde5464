// The loop controller's reservation ops on the rig control channel (loop.register, reserve,
// release, preempt, holder). The loop emulator keeps the holder (and refuses other writers);
// this adds the registrations of SCSI-3 persistent reservations, which make two blades
// preempting each other at once resolve to exactly one winner: a preempt removes the
// partner's registration, and a blade whose registration was removed cannot preempt until
// it registers (or reserves) again. The reservation key is the blade's loop id (a or b).
import { RigControlError, type RigControlServer } from '../control/server.ts';
import type { LoopEmulator, LoopId } from '../loop/loop-emulator.ts';
import { RigControlErrorCode } from '../../firmware/ts/hal/rigctl/protocol.ts';

/** A blade's key on one disk. `removed`: a partner's preempt took it away. */
export type RegistrationState = 'unregistered' | 'registered' | 'removed';

/** What every loop.* op answers (besides loop.holder, which answers the holder or null). */
export interface LoopReservationReply {
  ok: boolean;
  holder: LoopId | null;
  /** Why a preempt was refused. */
  reason?: 'not-registered';
}

export class LoopReservations {
  private readonly keys = new Map<string, Record<LoopId, RegistrationState>>();

  constructor(private readonly loop: () => LoopEmulator) {}

  private key(disk: string): Record<LoopId, RegistrationState> {
    // Asking the emulator first validates the disk name.
    this.loop().holder(disk);
    let k = this.keys.get(disk);
    if (k === undefined) {
      k = { a: 'unregistered', b: 'unregistered' };
      this.keys.set(disk, k);
    }
    return k;
  }

  registration(disk: string, blade: LoopId): RegistrationState {
    return this.key(disk)[blade];
  }

  register(disk: string, blade: LoopId): LoopReservationReply {
    this.key(disk)[blade] = 'registered';
    return { ok: true, holder: this.loop().holder(disk) };
  }

  reserve(disk: string, blade: LoopId): LoopReservationReply {
    this.key(disk)[blade] = 'registered';
    return this.loop().reserve(disk, blade);
  }

  release(disk: string, blade: LoopId): LoopReservationReply {
    this.key(disk);
    return this.loop().release(disk, blade);
  }

  preempt(disk: string, blade: LoopId): LoopReservationReply {
    const k = this.key(disk);
    if (k[blade] === 'removed') return { ok: false, holder: this.loop().holder(disk), reason: 'not-registered' };
    k[blade] = 'registered';
    k[blade === 'a' ? 'b' : 'a'] = 'removed';
    return this.loop().preempt(disk, blade);
  }

  holder(disk: string): LoopId | null {
    return this.loop().holder(disk);
  }

  /** Registers the loop.* ops on the control channel (the caller's blade id is its key). */
  registerOps(server: RigControlServer): void {
    const disk = (args: Record<string, unknown>): string => {
      if (typeof args['disk'] !== 'string') throw new RigControlError(RigControlErrorCode.badArgs, 'disk must be a string');
      return args['disk'];
    };
    const wrap =
      <T>(f: (d: string, blade: LoopId) => T) =>
      (blade: LoopId, args: Record<string, unknown>): T => {
        const d = disk(args);
        try {
          return f(d, blade);
        } catch (e) {
          throw new RigControlError(RigControlErrorCode.badArgs, (e as Error).message);
        }
      };
    server.handle('loop.register', wrap((d, b) => this.register(d, b)));
    server.handle('loop.reserve', wrap((d, b) => this.reserve(d, b)));
    server.handle('loop.release', wrap((d, b) => this.release(d, b)));
    server.handle('loop.preempt', wrap((d, b) => this.preempt(d, b)));
    server.handle('loop.holder', wrap((d) => this.holder(d)));
  }
}
