// Named limits and stable error codes of the change log (nvlog). Every queue, window and
// retention in the log has its limit here, with the qualifier last (STYLE.md rule 6).

export const nvlogLimits = {
  /** Mirror entries sent to the partner and not yet acknowledged (the pipelined window). */
  mirrorInFlightMax: 32,
  /** An unacknowledged mirror entry older than this marks the mirror degraded. */
  mirrorAckTimeoutMs: 200,
  /** While degraded with the partner reachable, a new resynchronisation is tried this often. */
  mirrorResyncRetryMs: 1000,
  /** Requests tracked by the state-machine log at once (bounds the pipeline, SM-3). */
  smRequestsMax: 16384,
  /** How long a reply is kept for retransmissions after it was sent. */
  replyRetentionMs: 30_000,
  /**
   * Replies re-logged when a half is released, at most (the newest first): the ones a client
   * may still retransmit after a crash are the recent ones; re-logging all of a large table
   * at every release would cost more than the changes themselves.
   */
  carryForwardMax: 256,
  /** Largest request key (client address, port, xid...) kept with a change. */
  requestKeyBytesMax: 64,
  /** Largest reply kept for a retransmission. */
  replyBytesMax: 1024,
  /** Largest change descriptor: a 1 MiB write plus its fixed fields. */
  descriptorBytesMax: 1024 * 1024 + 4096,
  /** Smallest log half that the layout accepts. */
  halfBytesMin: 16 * 1024,
} as const;

export type NvlogLimits = { -readonly [K in keyof typeof nvlogLimits]: number };

export const NvlogErrorCode = {
  /** The NVRAM header (both copies) could not be read. */
  headerCorrupt: 'ERR_NVLOG_HEADER_CORRUPT',
  /** The header is intact but was written by an unknown format version. */
  headerVersion: 'ERR_NVLOG_HEADER_VERSION',
  /** The header names another blade: this NVRAM belongs to the partner (a swapped card?). */
  bladeId: 'ERR_NVLOG_BLADE_ID',
  /** The header's layout does not match this NVRAM's size. */
  layout: 'ERR_NVLOG_LAYOUT',
  /** Both log halves hold unreleased entries: a consistency point must finish first. */
  full: 'ERR_NVLOG_FULL',
  /** A power failure is in progress: no new changes are accepted. */
  powerFail: 'ERR_NVLOG_POWER_FAIL',
  /** The log is closed. */
  closed: 'ERR_NVLOG_CLOSED',
  /** Replay found entries missing after the consistency point: it refuses to guess. */
  replayGap: 'ERR_NVLOG_REPLAY_GAP',
  /** The state-machine log is at `smRequestsMax`: the request must be retried later. */
  smFull: 'ERR_NVLOG_SM_FULL',
  /** Entry or message bytes were rejected by a decoder. */
  entryCorrupt: 'ERR_NVLOG_ENTRY_CORRUPT',
  entryVersion: 'ERR_NVLOG_ENTRY_VERSION',
  entryTruncated: 'ERR_NVLOG_ENTRY_TRUNCATED',
  messageCorrupt: 'ERR_NVLOG_MESSAGE_CORRUPT',
  /** The HA state area is larger than its slot. */
  stateTooLarge: 'ERR_NVLOG_STATE_TOO_LARGE',
  invalidArgument: 'ERR_NVLOG_INVALID_ARGUMENT',
} as const;
