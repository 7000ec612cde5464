// The rig control protocol: how a blade's rig drivers (GPIO, I2C, the loop controller's
// reservations) talk to the emulated hardware. Newline-delimited JSON over a Unix socket:
// the blade says hello with its id, then sends requests and receives responses and events.
// Format documented in docs/formats.md ("Rig control protocol").

export const rigControlVersion = 1;
/** A line longer than this is a protocol error and closes the connection. */
export const rigControlLineBytesMax = 64 * 1024;

export type RigBladeId = 'a' | 'b';

export interface RigHello {
  op: 'hello';
  version: number;
  blade: RigBladeId;
}

export interface RigRequest {
  id: number;
  op: string;
  args?: Record<string, unknown>;
}

export type RigResponse =
  | { id: number; ok: true; result?: unknown }
  | { id: number; ok: false; error: { code: string; message: string } };

export interface RigEvent {
  event: string;
  [key: string]: unknown;
}

/** Stable error codes of the control channel. */
export const RigControlErrorCode = {
  protocol: 'ERR_RIGCTL_PROTOCOL',
  unknownOp: 'ERR_RIGCTL_UNKNOWN_OP',
  badArgs: 'ERR_RIGCTL_BAD_ARGS',
  closed: 'ERR_RIGCTL_CLOSED',
  timeout: 'ERR_RIGCTL_TIMEOUT',
  failed: 'ERR_RIGCTL_FAILED',
} as const;

/** Parses one line into a JSON object, or returns undefined for garbage. */
export function parseLine(line: string): Record<string, unknown> | undefined {
  if (line.length === 0 || line.length > rigControlLineBytesMax) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
