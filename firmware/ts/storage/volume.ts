// The interface between the RAID layer (storage/raid) and the file system (storage/fs):
// a volume of 4 KiB blocks that prefers full-stripe writes.

export const VolumeErrorCode = {
  outOfRange: 'ERR_VOLUME_OUT_OF_RANGE',
  /** More disks failed than the parity can cover: the volume is offline, never corrupted. */
  offline: 'ERR_VOLUME_OFFLINE',
  /** The data could not be read or reconstructed. */
  io: 'ERR_VOLUME_IO',
  notFullStripe: 'ERR_VOLUME_NOT_FULL_STRIPE',
} as const;

export type VolumeState = 'normal' | 'degraded' | 'rebuilding' | 'offline';

export interface VolumeStatus {
  state: VolumeState;
  disks: Array<{ name: string; role: 'data' | 'parity' | 'spare'; state: 'ok' | 'failed' | 'rebuilding' | 'missing' }>;
  /** 0..1 while rebuilding. */
  rebuildProgress?: number;
}

/**
 * A RAID volume of `blockCount` blocks of `blockSize` (4096) bytes.
 *
 * - Blocks are numbered 0..blockCount-1. A stripe is `stripeBlocks` consecutive blocks
 *   starting at a multiple of `stripeBlocks`; `writeStripes` takes whole stripes only, so
 *   parity is always written together with its data (no RAID write hole).
 * - `readBlocks` reconstructs from parity when a disk is missing or returns an error, and
 *   repairs a bad sector it reconstructed.
 * - `flush` is a durability barrier over every member disk.
 */
export interface Volume {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly stripeBlocks: number;
  readBlocks(firstBlock: number, count: number): Promise<Uint8Array>;
  /**
   * Optional: `readBlocks` as consecutive pieces rather than one buffer — views of the
   * buffers the disks were read into, each a whole number of blocks, `count` blocks in all —
   * so that a caller that keeps them (the file system's block cache) needs no copy. Nothing
   * else refers to those buffers: the caller owns them.
   */
  readBlockParts?(firstBlock: number, count: number): Promise<Uint8Array[]>;
  /** Writes `data` (a whole number of stripes) at `firstBlock` (a stripe boundary). The caller may reuse `data` once the promise settles. */
  writeStripes(firstBlock: number, data: Uint8Array): Promise<void>;
  /**
   * Optional: `writeStripes` with the data as separate `blockSize` buffers (whole stripes in
   * all), so that a caller holding blocks apart (a CP) needs no copy into one buffer first.
   * The caller may reuse the buffers once the promise settles.
   */
  writeStripeBlocks?(firstBlock: number, blocks: readonly Uint8Array[]): Promise<void>;
  /**
   * Optional: the caller is about to write whole stripes in these block ranges (a CP names
   * all of its stripes when it freezes): whatever the volume must make durable before such
   * writes (the RAID volume's write-intent record) is done now, once for all of them, rather
   * than by whichever write first enters a region, mid-CP. Only an optimisation: every write
   * still waits for what it needs. Resolves when done; a failure is left to the writes.
   */
  prepareWrites?(ranges: ReadonlyArray<{ readonly first: number; readonly count: number }>): Promise<void>;
  /**
   * Optional: a zeroed buffer of `bytes` (a plain Uint8Array) that the volume's disks write
   * without copying (aligned for O_DIRECT on the Linux driver). A caller whose buffers end up
   * in `writeStripeBlocks` (the file system's page slabs) allocates them here, so a CP's data
   * goes to the disks straight from its pages. A function that may be kept and called
   * unbound: it holds no reference to the volume itself.
   */
  readonly allocateBuffer?: (bytes: number) => Uint8Array;
  flush(): Promise<void>;
  status(): VolumeStatus;
}
