// Error constructors shared by the serial drivers, so that every driver reports the same
// stable codes and kinds (hal/serial/serial-port.ts).
import { SerialErrorCode } from '../serial-port.ts';
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';

export function serialClosedError(name: string): TwinbladeError {
  return new TwinbladeError(SerialErrorCode.closed, 'closed', `${name}: port is not open`);
}

export function serialCanceledError(name: string, pendingBytes: number): TwinbladeError {
  return new TwinbladeError(SerialErrorCode.canceled, 'canceled', `${name}: close canceled ${pendingBytes} queued bytes`);
}

export function serialDisconnectedError(name: string, cause?: unknown): TwinbladeError {
  const detail = cause instanceof Error ? `: ${cause.message}` : '';
  return new TwinbladeError(SerialErrorCode.disconnected, 'disconnected', `${name}: device went away${detail}`, { cause });
}

export function serialIoError(name: string, what: string, cause: unknown): TwinbladeError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new TwinbladeError(SerialErrorCode.io, 'io', `${name}: ${what}: ${detail}`, { cause });
}

export function serialInvalidArgument(name: string, message: string): InvalidArgumentError {
  return new InvalidArgumentError(SerialErrorCode.invalidArgument, `${name}: ${message}`);
}

export function checkSerialData(name: string, data: unknown): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) throw serialInvalidArgument(name, 'data must be a Uint8Array');
}
