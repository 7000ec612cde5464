// Errors with a stable `code` (undici style). Operating errors (a disk error, a timeout, a
// bad request) are one of these and are handled; broken invariants use `assert` and crash.

/** Portable error kinds that drivers map their specific failures onto (embedded-hal style). */
export type ErrorKind =
  | 'invalid-argument' // the caller passed something the contract forbids
  | 'out-of-range' // an offset or length outside the device
  | 'closed' // the device or channel is closed
  | 'io' // the device reported an I/O error
  | 'fenced' // a write was refused because another blade holds the reservation
  | 'disconnected' // the peer or link went away
  | 'canceled' // the operation was canceled (close, abort)
  | 'timeout'
  | 'corrupt' // a decoder rejected bytes (checksum, magic, version, bounds)
  | 'unsupported'
  | 'busy'
  | 'no-space';

export class TwinbladeError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  constructor(code: string, kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TwinbladeError';
    this.code = code;
    this.kind = kind;
  }
}

/** Argument errors are thrown synchronously by every driver and codec. */
export class InvalidArgumentError extends TwinbladeError {
  constructor(code: string, message: string) {
    super(code, 'invalid-argument', message);
    this.name = 'InvalidArgumentError';
  }
}

/** A decoder rejected its input; `code` says why (e.g. ERR_FRAME_CRC). */
export class DecodeError extends TwinbladeError {
  constructor(code: string, message: string) {
    super(code, 'corrupt', message);
    this.name = 'DecodeError';
  }
}

export function isTwinbladeError(e: unknown, code?: string): e is TwinbladeError {
  return e instanceof TwinbladeError && (code === undefined || e.code === code);
}
