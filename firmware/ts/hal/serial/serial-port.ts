// The serial-link (byte stream) interface of the hardware abstraction layer.
// Drivers: linux/ (the `serialport` library; a pty in tests), sim/ (delay, loss,
// duplication, corruption, cut), rig/.

export const SerialErrorCode = {
  closed: 'ERR_SERIAL_CLOSED',
  disconnected: 'ERR_SERIAL_DISCONNECTED',
  canceled: 'ERR_SERIAL_CANCELED',
  invalidArgument: 'ERR_SERIAL_INVALID_ARGUMENT',
  io: 'ERR_SERIAL_IO',
} as const;

export type SerialErrorKind = 'disconnected' | 'canceled' | 'io';

export interface SerialEvents {
  /** Bytes arrived. The array is owned by the listener. */
  data: (chunk: Uint8Array) => void;
  /** The driver can accept more after `write` returned false. */
  drain: () => void;
  /** A runtime failure; `kind` says whether the link went away or an operation was canceled. */
  error: (err: Error & { code: string; kind: string }) => void;
  /** The port closed (by `close` or because the device went away). Emitted once. */
  close: () => void;
}

/**
 * A byte stream to the partner blade (a UART null-modem cable, or a pty in the rig).
 *
 * Contract (test/contract/serial.contract.ts):
 * - `open` resolves once bytes can flow; opening twice rejects `ERR_SERIAL_INVALID_ARGUMENT`.
 * - `write` queues bytes and returns false when the driver's queue is above its
 *   high-water mark (back-pressure): the caller should wait for `drain`. It throws
 *   `ERR_SERIAL_CLOSED` when the port is not open, and never drops queued bytes silently:
 *   bytes are either delivered to the line or the port reports `error`/`close`.
 * - There is no framing: chunk boundaries on the receiving side are arbitrary.
 * - `close` is idempotent; pending writes are canceled (`kind: 'canceled'`).
 */
export interface SerialPort {
  readonly name: string;
  readonly isOpen: boolean;
  open(): Promise<void>;
  write(data: Uint8Array): boolean;
  on<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): this;
  off<E extends keyof SerialEvents>(event: E, listener: SerialEvents[E]): this;
  close(): Promise<void>;
}
