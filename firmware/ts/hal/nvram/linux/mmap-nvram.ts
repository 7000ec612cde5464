// The mmap NVRAM driver: a shared mapping of a file (the process rig's NVRAM file) or of
// /dev/pmem0 (an NVDIMM, the QEMU rig's emulated one). Stores go straight into the mapping;
// persist is a store fence, or an msync in 'msync' mode for a file on a host that may crash.
import { closeSync, constants, fstatSync, ftruncateSync, openSync } from 'node:fs';
import type { Nvram } from '../nvram.ts';
import { NvramErrorCode } from '../nvram.ts';
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';
import { blockDeviceInfo, mmap, msync, munmap, storeFence } from '../../../native/index.ts';
import { checkNvramData, checkNvramParts, checkNvramRange, joinNvramParts, nvramClosedError, persistRange } from '../sim/nvram-range.ts';

/**
 * - `'fence'` (default): persist = a store fence. Right for battery-backed memory (pmem,
 *   NVDIMM) and for the rigs, where a power cut is a SIGKILL or a VM quit and the mapping's
 *   pages survive in the host's page cache.
 * - `'msync'`: persist also msyncs the range (MS_SYNC) so that a crash of the host itself
 *   loses nothing; it costs a disk flush per persist.
 */
export type MmapNvramMode = 'fence' | 'msync';

export interface MmapNvramOptions {
  /** Size to map. A shorter file is extended with zeros (needs `create` or an existing file); default: the file's or device's size. */
  sizeBytes?: number;
  /** Create the file if missing (requires `sizeBytes`). Default false. */
  create?: boolean;
  mode?: MmapNvramMode;
  /** Name for logs; default the path. */
  name?: string;
}

function ioError(name: string, what: string, cause: unknown): TwinbladeError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new TwinbladeError(NvramErrorCode.io, 'io', `${name}: ${what}: ${detail}`, { cause });
}

export class MmapNvram implements Nvram {
  readonly name: string;
  readonly sizeBytes: number;
  readonly mode: MmapNvramMode;
  readonly path: string;
  private mapping: ArrayBuffer | undefined;
  private view: Uint8Array;
  private words: BigUint64Array;
  private readonly scratch = new DataView(new ArrayBuffer(8));

  private constructor(path: string, name: string, mode: MmapNvramMode, mapping: ArrayBuffer) {
    this.path = path;
    this.name = name;
    this.mode = mode;
    this.mapping = mapping;
    this.view = new Uint8Array(mapping);
    this.words = new BigUint64Array(mapping, 0, Math.floor(mapping.byteLength / 8));
    this.sizeBytes = mapping.byteLength;
  }

  /**
   * Maps `path`. Argument errors throw `ERR_NVRAM_INVALID_ARGUMENT`; failures to open or map
   * reject with `ERR_NVRAM_IO` (cause: the errno error).
   */
  static async open(path: string, options: MmapNvramOptions = {}): Promise<MmapNvram> {
    const name = options.name ?? path;
    const mode = options.mode ?? 'fence';
    if (typeof path !== 'string' || path === '') throw new InvalidArgumentError(NvramErrorCode.invalidArgument, 'path must be a non-empty string');
    if (mode !== 'fence' && mode !== 'msync') throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: mode must be 'fence' or 'msync'`);
    if (options.sizeBytes !== undefined && !(Number.isSafeInteger(options.sizeBytes) && options.sizeBytes > 0)) {
      throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: sizeBytes must be a positive integer`);
    }
    if (options.create === true && options.sizeBytes === undefined) throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: create needs sizeBytes`);

    let fd: number;
    try {
      fd = openSync(path, constants.O_RDWR | (options.create === true ? constants.O_CREAT : 0), 0o600);
    } catch (e) {
      throw ioError(name, 'open', e);
    }
    try {
      const st = fstatSync(fd);
      let size: number;
      if (st.isBlockDevice()) {
        size = blockDeviceInfo(fd).sizeBytes;
        if (options.sizeBytes !== undefined) {
          if (options.sizeBytes > size) throw new InvalidArgumentError(NvramErrorCode.outOfRange, `${name}: sizeBytes beyond the device (${size})`);
          size = options.sizeBytes;
        }
      } else if (st.isFile()) {
        size = options.sizeBytes ?? st.size;
        if (st.size < size) ftruncateSync(fd, size);
      } else {
        throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: not a regular file or block device`);
      }
      if (size <= 0) throw new InvalidArgumentError(NvramErrorCode.outOfRange, `${name}: empty`);
      // The mapping outlives the descriptor, which is closed below.
      return new MmapNvram(path, name, mode, mmap(fd, size, true));
    } catch (e) {
      if (e instanceof TwinbladeError) throw e;
      throw ioError(name, 'map', e);
    } finally {
      closeSync(fd);
    }
  }

  read(offset: number, length: number): Uint8Array {
    checkNvramRange(this.name, this.sizeBytes, offset, length);
    if (this.mapping === undefined) throw nvramClosedError(this.name);
    return this.view.slice(offset, offset + length);
  }

  borrow(offset: number, length: number): Uint8Array {
    checkNvramRange(this.name, this.sizeBytes, offset, length);
    if (this.mapping === undefined) throw nvramClosedError(this.name);
    return this.view.subarray(offset, offset + length);
  }

  write(offset: number, data: Uint8Array): void {
    checkNvramData(this.name, data);
    checkNvramRange(this.name, this.sizeBytes, offset, data.length);
    if (this.mapping === undefined) throw nvramClosedError(this.name);
    const word = Math.floor(offset / 8);
    if (data.length > 0 && data.length <= 8 && Math.floor((offset + data.length - 1) / 8) === word && word < this.words.length) {
      // A store within one aligned 8-byte word is done as a single 64-bit store, so that a
      // process killed mid-copy can never leave it half written (the contract's atomic word).
      this.scratch.setBigUint64(0, this.words[word] as bigint, true);
      const bytes = new Uint8Array(this.scratch.buffer);
      bytes.set(data, offset - word * 8);
      this.words[word] = this.scratch.getBigUint64(0, true);
      return;
    }
    this.view.set(data, offset);
  }

  writeParts(offset: number, parts: readonly Uint8Array[]): void {
    const length = checkNvramParts(this.name, this.sizeBytes, offset, parts);
    if (this.mapping === undefined) throw nvramClosedError(this.name);
    // Small enough to fall within one aligned word: `write` stores it as one 64-bit store.
    if (length <= 8) {
      this.write(offset, joinNvramParts(parts));
      return;
    }
    let at = offset;
    for (const p of parts) {
      this.view.set(p, at);
      at += p.length;
    }
  }

  persist(offset?: number, length?: number): Promise<void> {
    const [off, len] = persistRange(this.name, this.sizeBytes, offset, length);
    if (this.mapping === undefined) return Promise.reject(nvramClosedError(this.name));
    storeFence();
    if (this.mode === 'fence' || len === 0) return Promise.resolve();
    return msync(this.mapping, off, len, true).catch((e: unknown) => {
      throw ioError(this.name, 'msync', e);
    });
  }

  async close(): Promise<void> {
    const mapping = this.mapping;
    if (mapping === undefined) return;
    this.mapping = undefined;
    storeFence();
    if (this.mode === 'msync') await msync(mapping, 0, this.sizeBytes, true).catch(() => undefined);
    munmap(mapping);
    this.view = new Uint8Array(0);
    this.words = new BigUint64Array(0);
  }
}
