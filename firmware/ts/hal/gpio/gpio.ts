// The GPIO line interface of the hardware abstraction layer.
// Drivers: linux/ (the `onoff` library on sysfs), sim/, rig/ (the rig control channel).

export const GpioErrorCode = {
  closed: 'ERR_GPIO_CLOSED',
  invalidArgument: 'ERR_GPIO_INVALID_ARGUMENT',
  direction: 'ERR_GPIO_DIRECTION',
  io: 'ERR_GPIO_IO',
} as const;

export type GpioValue = 0 | 1;
export type GpioEdge = 'rising' | 'falling' | 'both';
export type GpioDirection = 'in' | 'out';

/**
 * One GPIO line (a power-fail input, a partner-reset output, a LED, a MUX select).
 *
 * Contract (test/contract/gpio.contract.ts):
 * - `read` returns the current level (of an output: the level last written).
 * - `write` on an input line rejects `ERR_GPIO_DIRECTION`; a value other than 0/1 throws
 *   `ERR_GPIO_INVALID_ARGUMENT` synchronously.
 * - `watch` calls the listener on each matching edge of an input with the new value;
 *   it returns an unsubscribe function. Watching an output throws `ERR_GPIO_DIRECTION`.
 * - Calls after `close` reject/throw `ERR_GPIO_CLOSED`; `close` is idempotent and removes watchers.
 * - `activeLow` lines are inverted by the driver: callers see logical levels.
 */
export interface GpioLine {
  readonly name: string;
  readonly direction: GpioDirection;
  read(): Promise<GpioValue>;
  write(value: GpioValue): Promise<void>;
  watch(edge: GpioEdge, listener: (value: GpioValue) => void): () => void;
  close(): Promise<void>;
}
