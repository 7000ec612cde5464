// The Linux block driver: a disk image file, /dev/sdX or /dev/pmemN opened with O_DIRECT
// through the native addon, with I/O on the thread pool and bounce buffers for unaligned data.
import { closeSync, fstatSync, ftruncateSync, openSync, rmSync, type Stats } from 'node:fs';
import { BlockErrorCode, type BlockDevice } from '../block-device.ts';
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';
import {
  allocAligned,
  blockDeviceInfo,
  directIoAlignmentBytes,
  fdatasync,
  isAligned,
  isSyscallError,
  openDirect,
  pread,
  pwrite,
  pwritev,
  pwriteXor,
} from '../../../native/index.ts';

/**
 * How to treat O_DIRECT:
 * - `'require'` (default): open with O_DIRECT or fail (a file system that refuses it, such as
 *   an old tmpfs, fails with `ERR_BLOCK_IO` whose cause has code 'EINVAL').
 * - `'prefer'`: try O_DIRECT; if the file system refuses it, open through the page cache.
 *   Durability is unchanged (flush is fdatasync either way); only caching differs. Meant for
 *   tests and benchmarks on whatever temporary directory a host has.
 */
export type DirectIoMode = 'require' | 'prefer';

export interface LinuxBlockDeviceOptions {
  /** Open for writing (default true). A read-only device rejects writes with `ERR_BLOCK_READ_ONLY`. */
  writable?: boolean;
  /** O_DIRECT policy (default `'require'`). */
  direct?: DirectIoMode;
  /** Logical sector size, 512 or 4096. Default: the device's logical sector size, or 4096 for a file. */
  sectorSize?: number;
  /**
   * For a regular file: the device size. A shorter file is extended (sparsely) to it; a longer
   * one is used up to it. For a block device: must not exceed the device. Default: the
   * file's size (rounded down to a sector) or the device's size.
   */
  sizeBytes?: number;
  /** Create the file if it does not exist (requires `sizeBytes`). Default false. */
  create?: boolean;
  /** Name for logs; default the path. */
  name?: string;
}

function ioError(name: string, what: string, cause: unknown): TwinbladeError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  if (isSyscallError(cause, 'EROFS')) {
    return new TwinbladeError(BlockErrorCode.readOnly, 'unsupported', `${name}: ${what}: read-only (${detail})`, { cause });
  }
  return new TwinbladeError(BlockErrorCode.io, 'io', `${name}: ${what}: ${detail}`, { cause });
}

function closedError(name: string): TwinbladeError {
  return new TwinbladeError(BlockErrorCode.closed, 'closed', `${name}: device is closed`);
}

export class LinuxBlockDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly sectorSize: number;
  /** Whether the device was opened with O_DIRECT (false only after a `'prefer'` fallback). */
  readonly direct: boolean;
  readonly writable: boolean;
  readonly path: string;

  private fd: number;
  private closed = false;
  private closing: Promise<void> | undefined;
  // Operations on the thread pool. close() waits for them before closing the descriptor, so
  // that an I/O in flight can never land on a reused descriptor number.
  private readonly inFlight = new Set<Promise<unknown>>();

  private constructor(path: string, fd: number, direct: boolean, writable: boolean, sizeBytes: number, sectorSize: number, name: string) {
    this.path = path;
    this.fd = fd;
    this.direct = direct;
    this.writable = writable;
    this.sizeBytes = sizeBytes;
    this.sectorSize = sectorSize;
    this.name = name;
  }

  /**
   * Opens `path` (a file, /dev/sdX, /dev/pmemN). Argument errors throw
   * `InvalidArgumentError`; failures to open reject with `ERR_BLOCK_IO` (cause: the errno error).
   */
  static async open(path: string, options: LinuxBlockDeviceOptions = {}): Promise<LinuxBlockDevice> {
    const writable = options.writable ?? true;
    const directMode = options.direct ?? 'require';
    const name = options.name ?? path;
    if (typeof path !== 'string' || path === '') throw new InvalidArgumentError(BlockErrorCode.unaligned, 'path must be a non-empty string');
    if (directMode !== 'require' && directMode !== 'prefer') throw new InvalidArgumentError(BlockErrorCode.unaligned, `direct must be 'require' or 'prefer'`);
    if (options.sectorSize !== undefined && options.sectorSize !== 512 && options.sectorSize !== 4096) {
      throw new InvalidArgumentError(BlockErrorCode.unaligned, `${name}: sectorSize must be 512 or 4096`);
    }
    if (options.sizeBytes !== undefined && !(Number.isSafeInteger(options.sizeBytes) && options.sizeBytes > 0)) {
      throw new InvalidArgumentError(BlockErrorCode.outOfRange, `${name}: sizeBytes must be a positive integer`);
    }
    if (options.create === true && options.sizeBytes === undefined) {
      throw new InvalidArgumentError(BlockErrorCode.outOfRange, `${name}: create needs sizeBytes`);
    }

    if (options.create === true) {
      try {
        closeSync(openSync(path, 'a'));
      } catch (e) {
        throw ioError(name, 'create', e);
      }
    }

    let fd: number;
    let direct = true;
    try {
      fd = openDirect(path, writable);
    } catch (e) {
      if (!(directMode === 'prefer' && isSyscallError(e, 'EINVAL'))) throw ioError(name, 'open', e);
      try {
        fd = openSync(path, writable ? 'r+' : 'r');
      } catch (e2) {
        throw ioError(name, 'open', e2);
      }
      direct = false;
    }

    try {
      const st: Stats = fstatSync(fd);
      let deviceBytes: number;
      let sectorSize: number;
      if (st.isBlockDevice()) {
        const info = blockDeviceInfo(fd);
        sectorSize = options.sectorSize ?? (info.logicalSectorSize === 512 ? 512 : 4096);
        if (sectorSize < info.logicalSectorSize) {
          throw new InvalidArgumentError(BlockErrorCode.unaligned, `${name}: sectorSize ${sectorSize} is below the device's ${info.logicalSectorSize}`);
        }
        deviceBytes = info.sizeBytes;
        if (options.sizeBytes !== undefined) {
          if (options.sizeBytes > deviceBytes) throw new InvalidArgumentError(BlockErrorCode.outOfRange, `${name}: sizeBytes beyond the device (${deviceBytes})`);
          deviceBytes = options.sizeBytes;
        }
      } else if (st.isFile()) {
        sectorSize = options.sectorSize ?? 4096;
        deviceBytes = st.size;
        if (options.sizeBytes !== undefined) {
          if (st.size < options.sizeBytes) {
            if (!writable) throw new InvalidArgumentError(BlockErrorCode.outOfRange, `${name}: file shorter than sizeBytes and opened read-only`);
            ftruncateSync(fd, options.sizeBytes);
          }
          deviceBytes = options.sizeBytes;
        }
      } else {
        throw new InvalidArgumentError(BlockErrorCode.unaligned, `${name}: not a regular file or block device`);
      }
      const sizeBytes = deviceBytes - (deviceBytes % sectorSize);
      if (sizeBytes <= 0) throw new InvalidArgumentError(BlockErrorCode.outOfRange, `${name}: smaller than one sector`);
      return new LinuxBlockDevice(path, fd, direct, writable, sizeBytes, sectorSize, name);
    } catch (e) {
      closeSync(fd);
      if (e instanceof TwinbladeError) throw e;
      throw ioError(name, 'open', e);
    }
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    this.checkRange(offset, length);
    if (this.closed) return Promise.reject(closedError(this.name));
    if (length === 0) return Promise.resolve(new Uint8Array(0));
    const buf = allocAligned(length);
    return this.track(
      pread(this.fd, buf, offset).then(
        (n) => {
          if (n !== length) throw ioError(this.name, `read ${offset}+${length}`, new Error(`short read (${n} bytes): the file shrank`));
          return new Uint8Array(buf.buffer, buf.byteOffset, length);
        },
        (e: unknown) => {
          throw ioError(this.name, `read ${offset}+${length}`, e);
        },
      ),
    );
  }

  allocateBuffer(bytes: number): Uint8Array {
    if (!this.direct) return new Uint8Array(bytes);
    const buf = allocAligned(bytes);
    return new Uint8Array(buf.buffer, buf.byteOffset, bytes);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: data must be a Uint8Array`);
    this.checkRange(offset, data.length);
    if (this.closed) return Promise.reject(closedError(this.name));
    if (!this.writable) return Promise.reject(new TwinbladeError(BlockErrorCode.readOnly, 'unsupported', `${this.name}: opened read-only`));
    if (data.length === 0) return Promise.resolve();
    let src: Uint8Array = data;
    // O_DIRECT needs the memory aligned too; the caller's bytes are copied (bounced) only then.
    if (this.direct && !isAligned(data, directIoAlignmentBytes)) {
      const bounce = allocAligned(data.length);
      bounce.set(data);
      src = bounce;
    }
    return this.track(
      pwrite(this.fd, src, offset).then(
        (n) => {
          if (n !== data.length) throw ioError(this.name, `write ${offset}+${data.length}`, new Error(`short write (${n} bytes)`));
        },
        (e: unknown) => {
          throw ioError(this.name, `write ${offset}+${data.length}`, e);
        },
      ),
    );
  }

  writev(offset: number, parts: readonly Uint8Array[]): Promise<void> {
    if (!Array.isArray(parts)) throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: parts must be an array of Uint8Arrays`);
    let length = 0;
    for (const p of parts) {
      if (!(p instanceof Uint8Array)) throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: parts must be an array of Uint8Arrays`);
      length += p.length;
    }
    this.checkRange(offset, length);
    if (this.closed) return Promise.reject(closedError(this.name));
    if (!this.writable) return Promise.reject(new TwinbladeError(BlockErrorCode.readOnly, 'unsupported', `${this.name}: opened read-only`));
    if (length === 0) return Promise.resolve();
    // O_DIRECT: the addon copies misaligned parts into an aligned buffer on the pool thread
    // (never on this one); aligned parts (pages of aligned slabs) are written in place.
    return this.track(
      pwritev(this.fd, parts, offset, this.direct ? directIoAlignmentBytes : 0).then(
        (n) => {
          if (n !== length) throw ioError(this.name, `write ${offset}+${length}`, new Error(`short write (${n} bytes)`));
        },
        (e: unknown) => {
          throw ioError(this.name, `write ${offset}+${length}`, e);
        },
      ),
    );
  }

  writeXor(offset: number, members: ReadonlyArray<readonly Uint8Array[]>): Promise<void> {
    if (!Array.isArray(members) || members.length === 0) throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: members must be a non-empty array of arrays of Uint8Arrays`);
    let length = -1;
    for (const parts of members) {
      let total = 0;
      if (Array.isArray(parts)) for (const p of parts) total += p instanceof Uint8Array ? p.length : Number.NaN;
      if (!(total >= 0) || (length >= 0 && total !== length)) throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: every member must be Uint8Arrays of the same total length`);
      length = total;
    }
    this.checkRange(offset, length);
    if (this.closed) return Promise.reject(closedError(this.name));
    if (!this.writable) return Promise.reject(new TwinbladeError(BlockErrorCode.readOnly, 'unsupported', `${this.name}: opened read-only`));
    if (length === 0) return Promise.resolve();
    // The XOR runs on the pool thread into its own aligned buffer, then one pwrite from it.
    return this.track(
      pwriteXor(this.fd, members, offset, this.direct ? directIoAlignmentBytes : 0).then(
        (n) => {
          if (n !== length) throw ioError(this.name, `write ${offset}+${length}`, new Error(`short write (${n} bytes)`));
        },
        (e: unknown) => {
          throw ioError(this.name, `write ${offset}+${length}`, e);
        },
      ),
    );
  }

  flush(): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.name));
    if (!this.writable) return Promise.resolve();
    return this.track(
      fdatasync(this.fd).catch((e: unknown) => {
        throw ioError(this.name, 'flush', e);
      }),
    );
  }

  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      await Promise.allSettled([...this.inFlight]);
      const fd = this.fd;
      this.fd = -1;
      closeSync(fd);
    })();
    return this.closing;
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const done = (): void => {
      this.inFlight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  private checkRange(offset: number, length: number): void {
    checkBlockRange(this.name, this.sizeBytes, this.sectorSize, offset, length);
  }
}

/** The argument checks every block driver shares: alignment first, then bounds. */
export function checkBlockRange(name: string, sizeBytes: number, sectorSize: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset % sectorSize !== 0 || length % sectorSize !== 0) {
    throw new InvalidArgumentError(BlockErrorCode.unaligned, `${name}: offset ${offset} / length ${length} not aligned to ${sectorSize}`);
  }
  if (offset + length > sizeBytes) {
    throw new TwinbladeError(BlockErrorCode.outOfRange, 'out-of-range', `${name}: range ${offset}+${length} beyond ${sizeBytes}`);
  }
}

/**
 * Whether files in `dir` can be opened with O_DIRECT (tmpfs before Linux 6.6 refuses it).
 * Tests and benchmarks use it to pick a directory; it creates and removes one probe file.
 */
export function directIoSupported(dir: string): boolean {
  const probe = `${dir}/.tb-odirect-probe-${process.pid}`;
  try {
    closeSync(openSync(probe, 'w'));
    const fd = openDirect(probe, true);
    closeSync(fd);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { force: true });
  }
}
