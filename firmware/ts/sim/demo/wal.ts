// The demo area's write-ahead log: fixed-size checksummed records appended sector-aligned to
// a block device, acknowledged as durable only after a flush covering them and every earlier
// record. Small on purpose: it shows how an area drives firmware-style code under the kernel.
import type { Timers } from '../../core/clock.ts';
import type { BlockDevice } from '../../hal/block/block-device.ts';
import { crc32c } from '../../core/crc32c.ts';
import { dataView } from '../../core/bytes.ts';
import { buggify } from '../../core/buggify.ts';
import { assert } from '../../core/assert.ts';

/** "WAL1" */
export const walRecordMagic = 0x57414c31;
export const walRecordVersion = 1;
/** magic u32, version u8, pad u8 x3, epoch u32, seq u32, bodyLength u32, bodyCrc u32, headerCrc u32 (LE). */
export const walHeaderBytes = 28;
export const walBodyMaxBytes = 4096;

export interface WalRecord {
  epoch: number;
  seq: number;
  body: Uint8Array;
}

export function encodeWalRecord(rec: WalRecord, sectorSize: number): Uint8Array {
  assert(rec.body.length <= walBodyMaxBytes, 'wal body too large');
  const total = Math.ceil((walHeaderBytes + rec.body.length) / sectorSize) * sectorSize;
  const out = new Uint8Array(total);
  const v = dataView(out);
  v.setUint32(0, walRecordMagic, true);
  v.setUint8(4, walRecordVersion);
  v.setUint32(8, rec.epoch, true);
  v.setUint32(12, rec.seq, true);
  v.setUint32(16, rec.body.length, true);
  v.setUint32(20, crc32c(rec.body), true);
  v.setUint32(24, crc32c(out.subarray(0, 24)), true);
  out.set(rec.body, walHeaderBytes);
  return out;
}

/** Decodes the header at the start of `bytes`; undefined if it is not a valid header. */
export function decodeWalHeader(bytes: Uint8Array): { epoch: number; seq: number; bodyLength: number; bodyCrc: number } | undefined {
  if (bytes.length < walHeaderBytes) return undefined;
  const v = dataView(bytes);
  if (v.getUint32(0, true) !== walRecordMagic || v.getUint8(4) !== walRecordVersion) return undefined;
  if (v.getUint32(24, true) !== crc32c(bytes.subarray(0, 24))) return undefined;
  const bodyLength = v.getUint32(16, true);
  if (bodyLength > walBodyMaxBytes) return undefined;
  return { epoch: v.getUint32(8, true), seq: v.getUint32(12, true), bodyLength, bodyCrc: v.getUint32(20, true) };
}

export interface WalRecovery {
  records: WalRecord[];
  /** Byte offset where the next record goes. */
  endOffset: number;
}

/**
 * Scans from offset 0 and keeps the longest valid chain: sequence numbers consecutive from 1,
 * epochs non-decreasing (a stale record of an older boot after the end is not part of the log).
 */
export async function recoverWal(disk: BlockDevice): Promise<WalRecovery> {
  const records: WalRecord[] = [];
  let offset = 0;
  let prevEpoch = 0;
  while (offset + disk.sectorSize <= disk.sizeBytes) {
    const first = await disk.read(offset, disk.sectorSize);
    const h = decodeWalHeader(first);
    if (h === undefined || h.seq !== records.length + 1 || h.epoch < prevEpoch) break;
    const total = Math.ceil((walHeaderBytes + h.bodyLength) / disk.sectorSize) * disk.sectorSize;
    if (offset + total > disk.sizeBytes) break;
    const whole = total === disk.sectorSize ? first : await disk.read(offset, total);
    const body = whole.slice(walHeaderBytes, walHeaderBytes + h.bodyLength);
    if (crc32c(body) !== h.bodyCrc) break;
    records.push({ epoch: h.epoch, seq: h.seq, body });
    prevEpoch = h.epoch;
    offset += total;
  }
  return { records, endOffset: offset };
}

export interface WalOptions {
  /** Acknowledges records at write completion instead of after a flush: a deliberate bug the checker must catch. */
  ackBeforeFlush?: boolean;
}

export class DemoWal {
  private nextSeq: number;
  private offset: number;
  private readonly completed = new Set<number>();
  /** Every record up to this one has completed its write. */
  private completedPrefix: number;
  private durable: number;

  constructor(
    private readonly disk: BlockDevice,
    private readonly timers: Timers,
    private readonly epoch: number,
    recovered: WalRecovery,
    private readonly options: WalOptions = {},
  ) {
    this.nextSeq = recovered.records.length + 1;
    this.offset = recovered.endOffset;
    this.completedPrefix = recovered.records.length;
    this.durable = recovered.records.length;
  }

  /** Highest sequence number acknowledged durable. */
  get durableSeq(): number {
    return this.durable;
  }

  /** Whether a record of `bodyLength` bytes still fits. */
  fits(bodyLength: number): boolean {
    return this.offset + Math.ceil((walHeaderBytes + bodyLength) / this.disk.sectorSize) * this.disk.sectorSize <= this.disk.sizeBytes;
  }

  /** Appends a record; resolves with its sequence number once the write completed (not yet durable). */
  async append(body: Uint8Array): Promise<number> {
    const seq = this.nextSeq++;
    const bytes = encodeWalRecord({ epoch: this.epoch, seq, body }, this.disk.sectorSize);
    assert(this.offset + bytes.length <= this.disk.sizeBytes, 'wal full');
    const at = this.offset;
    this.offset += bytes.length;
    await this.disk.write(at, bytes);
    this.completed.add(seq);
    while (this.completed.has(this.completedPrefix + 1)) {
      this.completed.delete(this.completedPrefix + 1);
      this.completedPrefix++;
    }
    if (this.options.ackBeforeFlush === true) this.durable = Math.max(this.durable, this.completedPrefix);
    return seq;
  }

  /** Flushes; afterwards every record that had completed (with all before it) is durable. Returns durableSeq. */
  async commit(): Promise<number> {
    const covered = this.completedPrefix;
    // Widen the window between choosing what the flush covers and issuing it.
    if (buggify('demo.wal.delay-flush', 0.3)) await this.timers.sleep(1);
    await this.disk.flush();
    this.durable = Math.max(this.durable, covered);
    return this.durable;
  }
}
