// Argument checks every NVRAM driver shares (sim, mmap, FRAM), so that all of them reject the
// same bad input with the same stable codes before touching anything.
import { NvramErrorCode } from '../nvram.ts';
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';
import { concatBytes } from '../../../core/bytes.ts';

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

/**
 * `writeParts(offset, parts)` arguments: `parts` an array of Uint8Array, and their joined
 * range valid (the same errors as `write`). Returns the joined length.
 */
export function checkNvramParts(name: string, sizeBytes: number, offset: number, parts: unknown): number {
  if (!Array.isArray(parts)) throw new InvalidArgumentError(NvramErrorCode.invalidArgument, `${name}: parts must be an array of Uint8Array`);
  let length = 0;
  for (const p of parts as unknown[]) {
    checkNvramData(name, p);
    length += p.length;
  }
  checkNvramRange(name, sizeBytes, offset, length);
  return length;
}

/** The joined bytes of `parts`: for drivers that store a small gather write whole. */
export function joinNvramParts(parts: readonly Uint8Array[]): Uint8Array {
  return parts.length === 1 ? (parts[0] as Uint8Array) : concatBytes(parts);
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
