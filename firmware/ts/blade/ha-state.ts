// The HA state a blade keeps in NVRAM (SPEC HA-4): generation, last stable phase, the sets it
// had claimed, the operator's disable. It lives in the NVRAM layout's small HA state area,
// written in two alternating slots so a torn write keeps the previous value. It is read and
// written before the change log is open (the boot order needs it first), and the change log's
// own accessor takes over once it is.
import { computeLayout, decodeStateSlot, encodeStateSlot, STATE_SLOT_BYTES } from '../nvlog/core/layout.ts';
import type { Nvram } from '../hal/nvram/nvram.ts';
import type { NvLog } from '../nvlog/nvlog.ts';
import type { PersistedHaState } from '../ha/core/machine.ts';
import { utf8Decode, utf8Encode } from '../core/bytes.ts';

function decodeState(payload: Uint8Array | undefined): PersistedHaState | undefined {
  if (payload === undefined) return undefined;
  try {
    const v = JSON.parse(utf8Decode(payload)) as PersistedHaState;
    if (typeof v.generation === 'number' && typeof v.phase === 'number' && typeof v.claimedSets === 'number' && typeof v.operatorDisabled === 'boolean') return v;
  } catch {
    // A slot with a good checksum but a payload we cannot read: treat as absent.
  }
  return undefined;
}

export class HaStateStore {
  private log: NvLog | undefined;
  private counter = 0;
  private readonly stateOffset: number;

  constructor(private readonly nvram: Nvram) {
    this.stateOffset = computeLayout(nvram.sizeBytes).stateAreaOffset;
  }

  read(): PersistedHaState | undefined {
    if (this.log) return decodeState(this.log.readHaState());
    const a = decodeStateSlot(this.nvram.read(this.stateOffset, STATE_SLOT_BYTES));
    const b = decodeStateSlot(this.nvram.read(this.stateOffset + STATE_SLOT_BYTES, STATE_SLOT_BYTES));
    const best = a === undefined ? b : b === undefined ? a : a.counter >= b.counter ? a : b;
    if (best) this.counter = Math.max(this.counter, best.counter);
    return decodeState(best?.payload);
  }

  async write(state: PersistedHaState): Promise<void> {
    const payload = utf8Encode(JSON.stringify(state));
    if (this.log) return this.log.writeHaState(payload);
    if (this.counter === 0) this.read();
    this.counter++;
    const off = this.stateOffset + (this.counter % 2) * STATE_SLOT_BYTES;
    this.nvram.write(off, encodeStateSlot(this.counter, payload));
    await this.nvram.persist(off, STATE_SLOT_BYTES);
  }

  /** From now on the change log owns the state area. */
  handOver(log: NvLog): void {
    this.log = log;
  }
}
