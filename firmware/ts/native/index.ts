// Typed API of the native addon (firmware/native): O_DIRECT I/O on aligned buffers, mmap,
// block-device ioctls, openpty, a store fence, hardware CRC32C and RAID parity XOR. Importing
// this module loads the addon and installs its CRC32C into core/crc32c.ts and its XOR kernels
// into storage/raid/xor.ts.
import { createRequire } from 'node:module';
import { crc32cPortable, installCrc32c } from '../core/crc32c.ts';
import { installXorKernels } from '../storage/raid/xor.ts';

/**
 * An error from a failed syscall, shaped like Node's own fs errors: `code` is the errno name
 * ('EIO', 'EINVAL', ...), `errno` the negative errno number, `syscall` the call that failed.
 */
export interface NativeSyscallError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

/** Whether `e` is an error from the addon (or from node:fs) carrying an errno `code`. */
export function isSyscallError(e: unknown, code?: string): e is NativeSyscallError {
  if (!(e instanceof Error)) return false;
  const c = (e as { code?: unknown }).code;
  const n = (e as { errno?: unknown }).errno;
  return typeof c === 'string' && typeof n === 'number' && (code === undefined || c === code);
}

export interface BlockDeviceInfo {
  sizeBytes: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
}

export interface PtyPair {
  /** The controlling side (what a rig relay or a test reads and writes). */
  master: number;
  /** The terminal side; `slavePath` is what a serial driver opens. */
  slave: number;
  slavePath: string;
}

/** What the compiled addon exports (firmware/native/src/addon.cc). */
interface NativeBinding {
  version(): number;
  allocAligned(size: number, alignment?: number): Buffer;
  isAligned(view: ArrayBufferView, alignment: number): boolean;
  openDirect(path: string, writable: boolean): number;
  blockDeviceInfo(fd: number): BlockDeviceInfo;
  pread(fd: number, buffer: ArrayBufferView, position: number): Promise<number>;
  pwrite(fd: number, buffer: ArrayBufferView, position: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
  mmap(fd: number, length: number, writable?: boolean): ArrayBuffer;
  munmap(mapping: ArrayBuffer): void;
  msync(mapping: ArrayBuffer, offset: number, length: number, sync: boolean): Promise<void>;
  storeFence(): void;
  crc32c(data: ArrayBufferView, seed?: number): number;
  crc32cPortable(data: ArrayBufferView, seed?: number): number;
  crc32cImplementation: 'sse4.2' | 'armv8-crc' | 'portable';
  openpty(): PtyPair;
  pageSize: number;
  xorInto(dst: ArrayBufferView, src: ArrayBufferView): void;
  xorAll(out: ArrayBufferView, parts: readonly ArrayBufferView[]): void;
  splitStripes(data: ArrayBufferView, unitBytes: number, members: readonly ArrayBufferView[], parity: ArrayBufferView | null): void;
  gatherStripes(blocks: readonly ArrayBufferView[], unitBlocks: number, members: readonly ArrayBufferView[], parity: ArrayBufferView | null): void;
  gatherStripesAsync(blocks: readonly ArrayBufferView[], unitBlocks: number, members: readonly ArrayBufferView[], parity: ArrayBufferView | null): Promise<void>;
  xorConcat(out: ArrayBufferView, members: ReadonlyArray<readonly ArrayBufferView[]>): void;
  pwritev(fd: number, parts: readonly ArrayBufferView[], position: number, alignment?: number): Promise<number>;
  pwriteXor(fd: number, members: ReadonlyArray<readonly ArrayBufferView[]>, position: number, alignment?: number): Promise<number>;
  xorImplementation: 'vector' | 'scalar';
  tuneMalloc(mmapThresholdBytes: number, trimThresholdBytes: number): boolean;
  adjustExternalMemory(deltaBytes: number): number;
}

const addonPath = '../../native/build/Release/twinblade_native.node';

function loadBinding(): NativeBinding {
  const require = createRequire(import.meta.url);
  try {
    return require(addonPath) as NativeBinding;
  } catch (e) {
    // The usual cause is an install with scripts disabled, or a Node upgrade since the build.
    throw new Error(`cannot load the native addon (${addonPath}): build it with \`npm run postinstall\` (see docs/native-addon.md)`, { cause: e });
  }
}

const binding = loadBinding();

/**
 * The unchecked binding, for tests that prove the C++ side rejects bad input on its own.
 * Firmware uses the typed functions below, which check their arguments first.
 */
export const uncheckedBindingForTests: Readonly<Record<string, unknown>> = binding as unknown as Record<string, unknown>;

// Argument checks on the TypeScript side, with the same error classes and codes as the C++
// side (Node's own): a bad argument is the caller's bug and is reported before any syscall.
function typeError(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' });
}

function rangeError(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' });
}

function checkUint(value: unknown, what: string): asserts value is number {
  if (typeof value !== 'number') throw typeError(`${what} must be a number`);
  if (!Number.isSafeInteger(value) || value < 0) throw rangeError(`${what} must be a non-negative safe integer`);
}

function checkFd(fd: unknown): asserts fd is number {
  checkUint(fd, 'fd');
  if (fd > 0x7fffffff) throw rangeError('fd out of range');
}

function checkView(view: unknown, what: string): asserts view is ArrayBufferView {
  if (!ArrayBuffer.isView(view)) throw typeError(`${what} must be a Uint8Array`);
}

function checkMapping(mapping: unknown): asserts mapping is ArrayBuffer {
  if (!(mapping instanceof ArrayBuffer)) throw typeError('mapping must be the ArrayBuffer returned by mmap');
}

/**
 * Sets glibc's allocator thresholds (mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD): chunks up
 * to `mmapThresholdBytes` come from the heap rather than a mapping of their own, and the top of
 * the heap goes back to the kernel only once more than `trimThresholdBytes` of it is free.
 * False where the C library is not glibc (nothing changes). See `tuneDaemonMalloc`.
 */
export function tuneMalloc(mmapThresholdBytes: number, trimThresholdBytes: number): boolean {
  checkUint(mmapThresholdBytes, 'mmapThresholdBytes');
  checkUint(trimThresholdBytes, 'trimThresholdBytes');
  if (mmapThresholdBytes > 0x7fffffff || trimThresholdBytes > 0x7fffffff) throw rangeError('thresholds must be below 2 GiB');
  return binding.tuneMalloc(mmapThresholdBytes, trimThresholdBytes);
}

/**
 * The allocator settings of a blade daemon. Every 1 MiB WRITE arrives in a buffer of its own,
 * which the file system keeps as page memory until a CP has written it and the cache lets it
 * go; V8 frees such buffers in batches, after a full collection. With glibc's adaptive
 * defaults each batch of frees handed the top of the heap back to the kernel, and the next
 * records faulted it in again, one page fault per 4 KiB: 120-300 faults per MiB written in
 * steady state (10-20 with these settings), on a virtual machine each costing a trip to the
 * hypervisor. The price is that the daemon's resident memory stays near its peak, which is
 * what a storage controller's memory is for. 32 MiB is glibc's largest mmap threshold on
 * 64-bit; larger allocations still get mappings of their own.
 */
export function tuneDaemonMalloc(): boolean {
  return tuneMalloc(32 * 1024 * 1024, 1024 * 1024 * 1024);
}

/**
 * V8's count of the memory outside its heap that JavaScript objects keep alive, after adding
 * `deltaBytes` (napi_adjust_external_memory; 0 reads it). V8 starts a full collection each time
 * the count has grown by 64 MB since the last one.
 */
export function adjustExternalMemory(deltaBytes: number): number {
  if (typeof deltaBytes !== 'number') throw typeError('deltaBytes must be a number');
  if (!Number.isSafeInteger(deltaBytes)) throw rangeError('deltaBytes must be a safe integer');
  return binding.adjustExternalMemory(deltaBytes);
}

/** Gives back what `underReportToGc` took off, once the buffer has been collected. */
const underReported = new FinalizationRegistry<number>((bytes) => {
  binding.adjustExternalMemory(bytes);
});

/**
 * Takes `bytes` of `buffer` off V8's count of external memory while the buffer lives: V8 still
 * frees it when nothing refers to it, but its allocation brings the next full collection only
 * as near as the rest of it does. The count is balanced again when the buffer is collected.
 */
export function underReportToGc(buffer: ArrayBuffer, bytes: number): void {
  checkUint(bytes, 'bytes');
  if (bytes > buffer.byteLength) throw rangeError('bytes must not exceed the buffer');
  if (bytes === 0) return;
  binding.adjustExternalMemory(-bytes);
  underReported.register(buffer, bytes);
}

/** Default alignment of buffers for O_DIRECT: the largest logical sector size in use. */
export const directIoAlignmentBytes = 4096;

/** The addon's interface version (bumped when its exports change). */
export const nativeVersion: number = binding.version();
/** The CPU's memory page size (mmap granularity). */
export const pageSizeBytes: number = binding.pageSize;
/** Which CRC32C path the addon selected on this CPU. */
export const crc32cImplementation: 'sse4.2' | 'armv8-crc' | 'portable' = binding.crc32cImplementation;

/**
 * A zeroed Buffer of `size` bytes whose memory starts on an `alignment` boundary (default
 * 4096), suitable for O_DIRECT. The memory is freed when the Buffer is garbage collected.
 */
export function allocAligned(size: number, alignment: number = directIoAlignmentBytes): Buffer {
  checkUint(size, 'size');
  checkUint(alignment, 'alignment');
  return binding.allocAligned(size, alignment);
}

/** Whether the first byte of `view` sits on an `alignment` boundary in memory. */
export function isAligned(view: ArrayBufferView, alignment: number = directIoAlignmentBytes): boolean {
  checkView(view, 'view');
  checkUint(alignment, 'alignment');
  return binding.isAligned(view, alignment);
}

/**
 * Opens `path` with O_DIRECT (and O_CLOEXEC). Throws a {@link NativeSyscallError}; a file
 * system that refuses O_DIRECT fails with code 'EINVAL'.
 */
export function openDirect(path: string, writable: boolean): number {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) throw typeError('path must be a non-empty string');
  if (typeof writable !== 'boolean') throw typeError('writable must be a boolean');
  return binding.openDirect(path, writable);
}

/** Size and sector sizes of a block device (BLKGETSIZE64 / BLKSSZGET / BLKPBSZGET). 'ENOTTY' on a regular file. */
export function blockDeviceInfo(fd: number): BlockDeviceInfo {
  checkFd(fd);
  return binding.blockDeviceInfo(fd);
}

/**
 * Reads into all of `buffer` from `position` on the thread pool; resolves with the bytes read
 * (less than the length only at end of file). With O_DIRECT the buffer, position and length
 * must be sector aligned, otherwise the kernel rejects with 'EINVAL'.
 */
export function pread(fd: number, buffer: ArrayBufferView, position: number): Promise<number> {
  checkFd(fd);
  checkView(buffer, 'buffer');
  checkUint(position, 'position');
  return binding.pread(fd, buffer, position);
}

/** Writes all of `buffer` at `position` on the thread pool; resolves with the bytes written. */
export function pwrite(fd: number, buffer: ArrayBufferView, position: number): Promise<number> {
  checkFd(fd);
  checkView(buffer, 'buffer');
  checkUint(position, 'position');
  return binding.pwrite(fd, buffer, position);
}

/**
 * Writes the concatenation of `parts` at `position` with pwritev on the thread pool, straight
 * from the parts' memory: `Promise<bytesWritten>`. Parts adjacent in memory go as one iovec.
 * With `alignment` > 0 (O_DIRECT: `directIoAlignmentBytes`), runs of parts not aligned to it in
 * address or length are first copied into an aligned scratch buffer on the pool thread; the
 * aligned ones are written in place. The addon holds the array until the promise settles: the
 * caller must change neither it nor the parts' bytes meanwhile.
 */
export function pwritev(fd: number, parts: readonly Uint8Array[], position: number, alignment = 0): Promise<number> {
  checkFd(fd);
  if (!Array.isArray(parts) || parts.length === 0) throw typeError('parts must be a non-empty array of Uint8Arrays');
  for (const p of parts) if (!(p instanceof Uint8Array)) throw typeError('parts must be an array of Uint8Arrays');
  checkUint(position, 'position');
  checkUint(alignment, 'alignment');
  if (alignment !== 0 && ((alignment & (alignment - 1)) !== 0 || alignment > 1 << 21)) throw rangeError('alignment must be 0 or a power of two up to 2 MiB');
  return binding.pwritev(fd, parts, position, alignment);
}

/**
 * Writes at `position` the XOR over `members` of each member's parts concatenated (every
 * concatenation the same length): the parity of a RAID write whose data members are written
 * in place. The XOR (one pass, like {@link xorConcatNative}) and the write both run on the
 * thread pool, in an aligned buffer of the pool thread's own (kept per thread up to 8 MiB), so
 * the calling thread only queues the job: `Promise<bytesWritten>`. The addon holds the array until the promise settles: the
 * caller must change neither it nor the parts' bytes meanwhile.
 */
export function pwriteXor(fd: number, members: ReadonlyArray<readonly Uint8Array[]>, position: number, alignment = 0): Promise<number> {
  checkFd(fd);
  const length = memberLength(members, "every member's parts must add up to the same length");
  if (length === 0) throw rangeError('members must not be empty');
  checkUint(position, 'position');
  checkUint(alignment, 'alignment');
  if (alignment !== 0 && ((alignment & (alignment - 1)) !== 0 || alignment > 1 << 21)) throw rangeError('alignment must be 0 or a power of two up to 2 MiB');
  return binding.pwriteXor(fd, members, position, alignment);
}

/** fdatasync(2) on the thread pool. */
export function fdatasync(fd: number): Promise<void> {
  checkFd(fd);
  return binding.fdatasync(fd);
}

/**
 * A shared mapping of the first `length` bytes of `fd` as an external ArrayBuffer. Unmapped by
 * {@link munmap} (which detaches the ArrayBuffer) or, failing that, when it is collected.
 */
export function mmap(fd: number, length: number, writable = true): ArrayBuffer {
  checkFd(fd);
  checkUint(length, 'length');
  if (length === 0) throw rangeError('length must be positive');
  if (typeof writable !== 'boolean') throw typeError('writable must be a boolean');
  return binding.mmap(fd, length, writable);
}

/** Unmaps a mapping from {@link mmap} now; the ArrayBuffer becomes detached (length 0). */
export function munmap(mapping: ArrayBuffer): void {
  checkMapping(mapping);
  binding.munmap(mapping);
}

/** msync(2) of [offset, offset+length) of a mapping (widened to pages), MS_SYNC or MS_ASYNC. */
export function msync(mapping: ArrayBuffer, offset: number, length: number, sync = true): Promise<void> {
  checkMapping(mapping);
  checkUint(offset, 'offset');
  checkUint(length, 'length');
  if (typeof sync !== 'boolean') throw typeError('sync must be a boolean');
  return binding.msync(mapping, offset, length, sync);
}

/** A full memory fence: the persist barrier for battery-backed memory (see docs/hal-nvram.md). */
export function storeFence(): void {
  binding.storeFence();
}

/** CRC32C through the addon's fastest path; same results as core/crc32c.ts. */
export function crc32cNative(data: Uint8Array, seed = 0): number {
  checkView(data, 'data');
  checkUint(seed, 'seed');
  if (seed > 0xffffffff) throw rangeError('seed must be an unsigned 32-bit integer');
  return binding.crc32c(data, seed);
}

/** CRC32C through the addon's portable tables (to test the fallback on any CPU). */
export function crc32cNativePortable(data: Uint8Array, seed = 0): number {
  checkView(data, 'data');
  checkUint(seed, 'seed');
  if (seed > 0xffffffff) throw rangeError('seed must be an unsigned 32-bit integer');
  return binding.crc32cPortable(data, seed);
}

/** A new pseudo-terminal pair, both ends raw (cfmakeraw) and close-on-exec. */
export function openPty(): PtyPair {
  return binding.openpty();
}

// Below this size the JS call overhead outweighs the instruction, so short records (frame
// headers, status messages) keep using the portable TypeScript tables.
const nativeCrcMinBytes = 64;

installCrc32c((data, crc) => (data.length >= nativeCrcMinBytes ? binding.crc32c(data, crc) : crc32cPortable(data, crc)));

/** Which XOR kernel the addon was compiled with. */
export const xorImplementation: 'vector' | 'scalar' = binding.xorImplementation;

function checkSameLength(views: readonly unknown[], length: number, what: string): asserts views is Uint8Array[] {
  if (!Array.isArray(views) || views.length === 0) throw typeError(`${what} must be a non-empty array of Uint8Arrays`);
  for (const v of views) {
    checkView(v, what);
    if (v.byteLength !== length) throw rangeError(`${what} must all be ${length} bytes long`);
  }
}

/** dst ^= src in the addon (same length; the buffers must not overlap). Same result as storage/raid/xor.ts. */
export function xorIntoNative(dst: Uint8Array, src: Uint8Array): void {
  checkView(dst, 'dst');
  checkView(src, 'src');
  if (dst.byteLength !== src.byteLength) throw rangeError('dst and src must have the same length');
  binding.xorInto(dst, src);
}

/** out = XOR of `parts` in the addon (each as long as `out`, none overlapping it). */
export function xorAllNative(out: Uint8Array, parts: readonly Uint8Array[]): void {
  checkView(out, 'out');
  checkSameLength(parts, out.byteLength, 'parts');
  binding.xorAll(out, parts);
}

/**
 * Splits whole stripes into per-member runs and their parity in one pass in the addon (see
 * splitStripes in storage/raid/xor.ts for the layout). `parity` may be null.
 */
export function splitStripesNative(data: Uint8Array, unitBytes: number, members: readonly Uint8Array[], parity: Uint8Array | null): void {
  checkView(data, 'data');
  checkUint(unitBytes, 'unitBytes');
  if (unitBytes === 0) throw rangeError('unitBytes must be positive');
  if (!Array.isArray(members) || members.length === 0) throw typeError('members must be a non-empty array of Uint8Arrays');
  if (data.byteLength % (unitBytes * members.length) !== 0) throw rangeError('data must hold whole stripes (unitBytes * members.length)');
  const runBytes = (data.byteLength / (unitBytes * members.length)) * unitBytes;
  checkSameLength(members, runBytes, 'members');
  if (parity !== null) {
    checkView(parity, 'parity');
    if (parity.byteLength !== runBytes) throw rangeError('parity must hold one unit per stripe');
  }
  binding.splitStripes(data, unitBytes, members, parity);
}

/**
 * The argument checks both gathers share; `allBlocks` also checks every block's length here
 * (the async gather leaves that to the addon: one pass over the blocks, not two).
 */
function checkGatherArgs(blocks: readonly Uint8Array[], unitBlocks: number, members: readonly Uint8Array[], parity: Uint8Array | null, allBlocks: boolean): void {
  if (!Array.isArray(blocks) || blocks.length === 0) throw typeError('blocks must be a non-empty array of Uint8Arrays');
  checkView(blocks[0], 'blocks');
  const blockBytes = (blocks[0] as Uint8Array).byteLength;
  if (blockBytes === 0) throw rangeError('blocks must not be empty');
  if (allBlocks) checkSameLength(blocks, blockBytes, 'blocks');
  checkUint(unitBlocks, 'unitBlocks');
  if (unitBlocks === 0) throw rangeError('unitBlocks must be positive');
  if (!Array.isArray(members) || members.length === 0) throw typeError('members must be a non-empty array of Uint8Arrays');
  if (blocks.length % (unitBlocks * members.length) !== 0) throw rangeError('blocks must make whole stripes (unitBlocks * members.length)');
  const runBytes = (blocks.length / members.length) * blockBytes;
  checkSameLength(members, runBytes, 'members');
  if (parity !== null) {
    checkView(parity, 'parity');
    if (parity.byteLength !== runBytes) throw rangeError('parity must be as long as a member run');
  }
}

/**
 * Gathers whole stripes given as separate equal-sized blocks into per-member runs and their
 * parity in one pass in the addon (see gatherStripes in storage/raid/xor.ts for the order).
 */
export function gatherStripesNative(blocks: readonly Uint8Array[], unitBlocks: number, members: readonly Uint8Array[], parity: Uint8Array | null): void {
  checkGatherArgs(blocks, unitBlocks, members, parity, true);
  binding.gatherStripes(blocks, unitBlocks, members, parity);
}

/**
 * gatherStripesNative on the libuv thread pool: settles once the runs and parity are filled.
 * The addon holds the arrays (and so their buffers) until then; the caller must not change
 * them meanwhile. Block sizes are checked by the addon (one pass over the blocks, not two).
 */
export function gatherStripesNativeAsync(blocks: readonly Uint8Array[], unitBlocks: number, members: readonly Uint8Array[], parity: Uint8Array | null): Promise<void> {
  checkGatherArgs(blocks, unitBlocks, members, parity, false);
  return binding.gatherStripesAsync(blocks, unitBlocks, members, parity);
}

/**
 * Checks the members of a parity operation (each an array of Uint8Array parts) and returns
 * the length their parts add up to, the same for every member (`expected` when given;
 * `mismatch` is the RangeError's message otherwise).
 */
function memberLength(members: ReadonlyArray<readonly Uint8Array[]>, mismatch: string, expected = -1): number {
  if (!Array.isArray(members) || members.length === 0) throw typeError('members must be a non-empty array of arrays of Uint8Arrays');
  let length = expected;
  for (const parts of members) {
    if (!Array.isArray(parts)) throw typeError('members must be arrays of Uint8Arrays');
    let total = 0;
    for (const p of parts) {
      if (!(p instanceof Uint8Array)) throw typeError('members must be arrays of Uint8Arrays');
      total += p.byteLength;
    }
    if (length >= 0 && total !== length) throw rangeError(mismatch);
    length = total;
  }
  return length;
}

/**
 * out = XOR over `members` of the concatenation of each member's parts (every concatenation as
 * long as `out`), in one pass in the addon: the parity of a write whose data stays in separate
 * buffers (see xorConcat in storage/raid/xor.ts).
 */
export function xorConcatNative(out: Uint8Array, members: ReadonlyArray<readonly Uint8Array[]>): void {
  checkView(out, 'out');
  memberLength(members, "every member's parts must add up to the length of out", out.byteLength);
  binding.xorConcat(out, members);
}

// The RAID layer's parity goes through the addon from now on (checked against the portable
// kernels by installXorKernels first).
installXorKernels({
  xorInto: (d, s) => binding.xorInto(d, s),
  xorAll: (o, p) => binding.xorAll(o, p),
  splitStripes: (d, u, m, p) => binding.splitStripes(d, u, m, p),
  gatherStripes: (b, u, m, p) => binding.gatherStripes(b, u, m, p),
  xorConcat: (o, m) => binding.xorConcat(o, m),
  name: `native-${binding.xorImplementation}`,
});
