// The block-device (disk) interface of the hardware abstraction layer.
// Drivers: linux/ (O_DIRECT on a file or /dev/sdX, aligned buffers from the addon),
// sim/ (in memory, with latency, errors and a power-cut model), rig/ (NBD client).

/** Stable error codes every block driver uses (in `TwinbladeError.code`). */
export const BlockErrorCode = {
  /** Offset or length is not a multiple of `sectorSize`, or is negative / not an integer. */
  unaligned: 'ERR_BLOCK_UNALIGNED',
  /** The range lies (partly) outside the device. */
  outOfRange: 'ERR_BLOCK_OUT_OF_RANGE',
  /** The device was closed (or never opened). */
  closed: 'ERR_BLOCK_CLOSED',
  /** The device reported an I/O error (a bad sector, a failed path, a failed disk). */
  io: 'ERR_BLOCK_IO',
  /** A write was refused because another initiator holds the write reservation. */
  fenced: 'ERR_BLOCK_FENCED',
  /** The device is read-only. */
  readOnly: 'ERR_BLOCK_READ_ONLY',
} as const;

/**
 * A disk.
 *
 * Contract (checked by test/contract/block.contract.ts against every driver):
 * - `offset` and the length of every read and write are non-negative integer multiples of
 *   `sectorSize`, and the range lies within `sizeBytes`; otherwise the call throws
 *   synchronously (`ERR_BLOCK_UNALIGNED` / `ERR_BLOCK_OUT_OF_RANGE`) and nothing is done.
 * - Calls on a closed device reject with `ERR_BLOCK_CLOSED`.
 * - A completed `write` is visible to later reads but is **not durable** until a later
 *   `flush` completes: a power cut may drop or tear any write not covered by a flush.
 *   Writes of one sector are atomic (never torn within a sector); larger writes may tear
 *   at sector boundaries.
 * - `flush` is a durability barrier covering every write completed before it was called.
 * - Concurrent operations are allowed; their relative order is unspecified unless the caller
 *   waits for one before issuing the other.
 * - Device failures reject with `ERR_BLOCK_IO` (kind `io`) or `ERR_BLOCK_FENCED` (kind
 *   `fenced`); the device stays usable for other ranges unless it has failed entirely.
 * - `close` is idempotent; operations in flight when it is called complete or reject with
 *   `ERR_BLOCK_CLOSED`.
 */
export interface BlockDevice {
  /** A human-readable name for logs (a path, an NBD export, a sim disk id). */
  readonly name: string;
  /** Capacity in bytes (a multiple of `sectorSize`). */
  readonly sizeBytes: number;
  /** Logical sector size in bytes: 512 or 4096. */
  readonly sectorSize: number;
  /** Reads `length` bytes at `offset`. The result may be a view of a driver-owned aligned buffer that the caller then owns. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Writes `data` at `offset`. The driver copies `data` if it needs alignment; the caller may reuse it once the promise settles. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /**
   * Optional: a zeroed buffer of `bytes` that this device writes without copying it (aligned
   * for O_DIRECT on the Linux driver). Callers that fill buffers for writing allocate them here.
   */
  allocateBuffer?(bytes: number): Uint8Array;
  /**
   * Optional: `write` of the concatenation of `parts` at `offset` (the total, not each part,
   * a multiple of `sectorSize`), straight from the parts' memory where the driver can (pwritev
   * on the Linux driver): a caller holding data in separate buffers (a CP's pages) needs no
   * copy into one first. Same contract as `write`; the caller must change neither `parts` nor
   * their bytes until the promise settles.
   */
  writev?(offset: number, parts: readonly Uint8Array[]): Promise<void>;
  /**
   * Optional: `write` at `offset` of the XOR over `members` of each member's parts
   * concatenated (every concatenation the same length, a multiple of `sectorSize`), computed
   * where the driver can do it off the caller's thread (the Linux driver: on the thread pool,
   * just before the pwrite): RAID's parity of a write whose data members are written in place
   * with `writev`. Same contract as `writev`.
   */
  writeXor?(offset: number, members: ReadonlyArray<readonly Uint8Array[]>): Promise<void>;
  /** Durability barrier for every completed write. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
