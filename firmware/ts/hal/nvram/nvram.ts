// The NVRAM (battery-backed memory) interface of the hardware abstraction layer.
// Drivers: linux/ (mmap of a file or /dev/pmem0 through the addon; I2C FRAM), sim/, rig/.

export const NvramErrorCode = {
  outOfRange: 'ERR_NVRAM_OUT_OF_RANGE',
  invalidArgument: 'ERR_NVRAM_INVALID_ARGUMENT',
  closed: 'ERR_NVRAM_CLOSED',
  io: 'ERR_NVRAM_IO',
} as const;

/**
 * Battery-backed memory.
 *
 * Contract (test/contract/nvram.contract.ts):
 * - Byte addressed: any `offset`/`length` within `sizeBytes` is valid; anything else throws
 *   synchronously with `ERR_NVRAM_OUT_OF_RANGE` (or `ERR_NVRAM_INVALID_ARGUMENT` for a
 *   non-integer / negative value) and changes nothing.
 * - `write` stores the bytes; they are readable at once. A completed store into NVRAM is
 *   durable across a power cut **while the battery is good**, once `persist` covering it
 *   has returned. `persist` is a store fence (cheap: no disk flush) unless the driver was
 *   opened in `msync` mode for a file on a host that may itself crash.
 * - A power cut tears at most the writes not yet covered by `persist`; 8-byte aligned
 *   stores of 8 bytes or less are never torn.
 * - If the battery has failed, the whole content is lost at the next power cut (the sim and
 *   rig drivers model this; real hardware reports it through the battery gauge).
 * - `read` returns a copy the caller owns.
 * - `borrow(offset, length)`, where a driver has it, returns the bytes themselves (a view of
 *   memory-mapped NVRAM), not a copy: what later writes store shows through it. For reading
 *   a large range once (the log region at boot) without copying it; the caller drops it
 *   before anything else writes, and never keeps it past `close`.
 * - `writeParts(offset, parts)` stores the concatenation of `parts` at `offset`: the same
 *   result, durability and tearing as one `write` of the joined bytes, but each part is
 *   copied once, straight into the memory (a log entry's header and its 1 MiB of WRITE data
 *   are not joined in a fresh buffer first). The range is that of the joined bytes; every
 *   part must be a Uint8Array; the checks run before anything is stored.
 * - Calls after `close` throw `ERR_NVRAM_CLOSED`; `close` is idempotent.
 */
export interface Nvram {
  readonly name: string;
  readonly sizeBytes: number;
  read(offset: number, length: number): Uint8Array;
  /** The bytes themselves, not a copy (see the contract); only drivers whose NVRAM is mapped memory. */
  borrow?(offset: number, length: number): Uint8Array;
  write(offset: number, data: Uint8Array): void;
  /** Gather write: `parts` joined, stored at `offset` as one `write` (see the contract). */
  writeParts(offset: number, parts: readonly Uint8Array[]): void;
  /** Makes every completed `write` in [offset, offset+length) (default: all) durable. */
  persist(offset?: number, length?: number): Promise<void>;
  close(): Promise<void>;
}
