// Argument checks every NVRAM driver shares (sim, mmap, FRAM), so that all of them reject the
// same bad input with the same stable codes before touching anything.
import { NvramErrorCode } from '../nvram.ts';
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';

/** Throws `ERR_NVRAM_INVALID_ARGUMENT` for a non-integer or negative value, `ERR_NVRAM_OUT_OF_RANGE` past the end. */
export function checkNvramRange(name: string, sizeBytes: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: offset ${String(offset)} / length ${String(length)} must be non-negative integers`);
  }
  if (offset + length > sizeBytes) {
    throw new TwinbladeError(NvramErrorCode.outOfRange, 'out-of-range', `${name}: range ${offset}+${length} beyond ${sizeBytes}`);
  }
}

export function checkNvramData(name: string, data: unknown): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: data must be a Uint8Array`);
}

/** `persist(offset?, length?)` arguments: both absent (everything) or a valid range. */
export function persistRange(name: string, sizeBytes: number, offset: number | undefined, length: number | undefined): [number, number] {
  const off = offset ?? 0;
  const len = length ?? sizeBytes - off;
  checkNvramRange(name, sizeBytes, off, len);
  return [off, len];
}

export function nvramClosedError(name: string): TwinbladeError {
  return new TwinbladeError(NvramErrorCode.closed, 'closed', `${name}: closed`);
}
