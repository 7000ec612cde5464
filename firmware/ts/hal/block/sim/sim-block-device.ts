// The simulated block driver: an in-memory disk driven by injected Timers and a seeded Prng,
// with latency, per-range I/O errors, whole-disk failure, write fencing and a FoundationDB
// style power-cut model (writes not covered by a completed flush are kept, dropped or torn).
import { BlockErrorCode, type BlockDevice } from '../block-device.ts';
import type { TimerHandle, Timers } from '../../../core/clock.ts';
import type { Prng } from '../../../core/prng.ts';
import { InvalidArgumentError, TwinbladeError } from '../../../core/errors.ts';
import { assert } from '../../../core/assert.ts';

/** Granularity of the in-memory maps: content, durable copies and the unflushed journal are per 4 KiB page. */
export const simPageBytes = 4096;

/** Latency of each operation in (virtual) milliseconds: `base + uniform(0, jitterMs)`. */
export interface SimBlockLatency {
  readMs: number;
  writeMs: number;
  flushMs: number;
  jitterMs: number;
}

export const defaultSimBlockLatency: SimBlockLatency = { readMs: 0.1, writeMs: 0.1, flushMs: 1, jitterMs: 0.05 };

export interface SimBlockDeviceOptions {
  timers: Timers;
  prng: Prng;
  /** Capacity (default 64 MiB); a multiple of `sectorSize`. Memory is only used for written pages. */
  sizeBytes?: number;
  /** 512 or 4096 (default 4096). */
  sectorSize?: number;
  /** Name for logs (default "sim-disk"). */
  name?: string;
  latency?: Partial<SimBlockLatency>;
  /** This handle rejects writes with `ERR_BLOCK_READ_ONLY` (default false). */
  readOnly?: boolean;
}

/** Which operations an injected error hits. */
export type SimBlockOp = 'read' | 'write' | 'any';

export interface SimBlockErrorSpec {
  /** Byte range (any alignment; an operation overlapping it fails). */
  offset: number;
  length: number;
  op?: SimBlockOp;
  /** `'io'` (default) rejects `ERR_BLOCK_IO`, `'fenced'` rejects `ERR_BLOCK_FENCED`. */
  error?: 'io' | 'fenced';
  /** How many operations fail before the error removes itself (default: until removed). */
  count?: number;
}

/** A handle on an injected error. */
export interface SimBlockErrorHandle {
  remove(): void;
}

/** Relative weights of what happens to each unflushed write at a power cut (default 1:1:1). */
export interface SimPowerCutOptions {
  keep?: number;
  drop?: number;
  tear?: number;
}

/** What a power cut did to the writes that were not covered by a completed flush. */
export interface SimPowerCutReport {
  kept: number;
  dropped: number;
  torn: number;
}

export interface SimBlockStats {
  misdirectedWrites: number;
  reads: number;
  writes: number;
  flushes: number;
  bytesRead: number;
  bytesWritten: number;
  errorsInjected: number;
  powerCuts: number;
}

interface JournalEntry {
  readonly seq: number;
  readonly offset: number;
  readonly data: Uint8Array;
}

interface PendingOp {
  timer: TimerHandle | undefined;
  readonly reject: (e: Error) => void;
  /** For writes: the bytes, which a power cut may still put on the medium. */
  readonly write: { offset: number; data: Uint8Array; seq: number } | undefined;
}

interface InjectedError {
  readonly offset: number;
  readonly end: number;
  readonly op: SimBlockOp;
  readonly error: 'io' | 'fenced';
  remaining: number;
}

function ioError(name: string, msg: string): TwinbladeError {
  return new TwinbladeError(BlockErrorCode.io, 'io', `${name}: ${msg}`);
}

/** Calls `fn` for each 4 KiB page that [offset, offset+length) touches. */
function forEachPage(offset: number, length: number, fn: (page: number, pageOff: number, dataOff: number, n: number) => void): void {
  let pos = offset;
  const end = offset + length;
  while (pos < end) {
    const page = Math.floor(pos / simPageBytes);
    const pageOff = pos - page * simPageBytes;
    const n = Math.min(simPageBytes - pageOff, end - pos);
    fn(page, pageOff, pos - offset, n);
    pos += n;
  }
}

function writeInto(map: Map<number, Uint8Array>, offset: number, data: Uint8Array): void {
  forEachPage(offset, data.length, (page, pageOff, dataOff, n) => {
    let buf = map.get(page);
    if (buf === undefined) {
      buf = new Uint8Array(simPageBytes);
      map.set(page, buf);
    }
    buf.set(data.subarray(dataOff, dataOff + n), pageOff);
  });
}

/**
 * Internal (exported only so that the handle constructor can name it): the medium shared by every handle: current content, the durable image of pages with
 * unflushed writes, and the journal of those writes.
 */
export class SimDisk {
  readonly sizeBytes: number;
  readonly sectorSize: number;
  readonly timers: Timers;
  readonly prng: Prng;
  latency: SimBlockLatency;
  failed = false;
  // Writes still to be misdirected (TigerBeetle's fault): they land at another offset.
  misdirectRemaining = 0;
  readonly stats: SimBlockStats = { misdirectedWrites: 0, reads: 0, writes: 0, flushes: 0, bytesRead: 0, bytesWritten: 0, errorsInjected: 0, powerCuts: 0 };

  // What reads see: pages never written are absent (zero).
  readonly current = new Map<number, Uint8Array>();
  // For pages with unflushed writes only: their durable content (null = never written).
  // A page absent here is durable exactly as in `current`.
  readonly durable = new Map<number, Uint8Array | null>();
  // Per page: how many journal entries touch it; the page leaves `durable` at zero.
  readonly pendingPerPage = new Map<number, number>();
  // Completed, unflushed writes in completion order.
  journal: JournalEntry[] = [];
  completedSeq = 0;
  issuedSeq = 0;
  readonly pending = new Set<PendingOp>();
  readonly errors = new Set<InjectedError>();

  constructor(sizeBytes: number, sectorSize: number, timers: Timers, prng: Prng, latency: SimBlockLatency) {
    this.sizeBytes = sizeBytes;
    this.sectorSize = sectorSize;
    this.timers = timers;
    this.prng = prng;
    this.latency = latency;
  }

  delayMs(base: number): number {
    return this.latency.jitterMs > 0 ? base + this.prng.float() * this.latency.jitterMs : base;
  }

  /** Consumes an injected error matching the operation, if any. */
  takeError(op: 'read' | 'write', offset: number, length: number): InjectedError | undefined {
    for (const e of this.errors) {
      if (e.op !== 'any' && e.op !== op) continue;
      if (offset < e.end && e.offset < offset + Math.max(length, 1)) {
        e.remaining--;
        if (e.remaining <= 0) this.errors.delete(e);
        this.stats.errorsInjected++;
        return e;
      }
    }
    return undefined;
  }

  readNow(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    forEachPage(offset, length, (page, pageOff, dataOff, n) => {
      const buf = this.current.get(page);
      if (buf !== undefined) out.set(buf.subarray(pageOff, pageOff + n), dataOff);
    });
    return out;
  }

  readDurable(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    forEachPage(offset, length, (page, pageOff, dataOff, n) => {
      const buf = this.durable.has(page) ? this.durable.get(page) : this.current.get(page);
      if (buf !== undefined && buf !== null) out.set(buf.subarray(pageOff, pageOff + n), dataOff);
    });
    return out;
  }

  /** A completed write: visible now, durable only after a flush that covers it. */
  completeWrite(offset: number, data: Uint8Array): void {
    forEachPage(offset, data.length, (page) => {
      if (!this.durable.has(page)) this.durable.set(page, this.current.get(page)?.slice() ?? null);
      this.pendingPerPage.set(page, (this.pendingPerPage.get(page) ?? 0) + 1);
    });
    writeInto(this.current, offset, data);
    this.journal.push({ seq: ++this.completedSeq, offset, data });
  }

  /** A flush completed: every write completed before it was issued (seq <= upTo) is durable. */
  completeFlush(upTo: number): void {
    let k = 0;
    while (k < this.journal.length && (this.journal[k] as JournalEntry).seq <= upTo) {
      const entry = this.journal[k] as JournalEntry;
      forEachPage(entry.offset, entry.data.length, (page, pageOff, dataOff, n) => {
        let buf = this.durable.get(page);
        assert(buf !== undefined, 'sim disk: journal entry on a page without a durable copy');
        if (buf === null) {
          buf = new Uint8Array(simPageBytes);
          this.durable.set(page, buf);
        }
        buf.set(entry.data.subarray(dataOff, dataOff + n), pageOff);
        const left = (this.pendingPerPage.get(page) ?? 0) - 1;
        if (left > 0) {
          this.pendingPerPage.set(page, left);
        } else {
          this.pendingPerPage.delete(page);
          this.durable.delete(page);
        }
      });
      k++;
    }
    if (k > 0) this.journal = this.journal.slice(k);
  }

  /** Where a write lands: its own offset, or (while misdirection is armed) a random other aligned one. */
  misdirect(offset: number, length: number): number {
    if (this.misdirectRemaining <= 0) return offset;
    const slots = (this.sizeBytes - length) / this.sectorSize + 1;
    // A target not overlapping the intended range, found by a few seeded draws (a disk too
    // small for one is left alone).
    for (let attempt = 0; attempt < 16; attempt++) {
      const target = this.prng.int(slots) * this.sectorSize;
      if (target + length <= offset || target >= offset + length) {
        this.misdirectRemaining--;
        this.stats.misdirectedWrites++;
        return target;
      }
    }
    return offset;
  }

  /** Writes bytes straight to the medium, durable at once (back door). */
  poke(offset: number, data: Uint8Array): void {
    writeInto(this.current, offset, data);
    forEachPage(offset, data.length, (page, pageOff, dataOff, n) => {
      const d = this.durable.get(page);
      if (d === undefined) return;
      const buf = d ?? new Uint8Array(simPageBytes);
      buf.set(data.subarray(dataOff, dataOff + n), pageOff);
      this.durable.set(page, buf);
    });
    // Completed unflushed writes are older than the poke: patch their bytes too, so that no
    // power cut or flush can bring back what they held under the poked range.
    const end = offset + data.length;
    for (const entry of this.journal) {
      const from = Math.max(offset, entry.offset);
      const to = Math.min(end, entry.offset + entry.data.length);
      if (from < to) entry.data.set(data.subarray(from - offset, to - offset), from - entry.offset);
    }
  }

  /** Rejects and forgets every operation in flight on any handle. */
  abortAll(reason: string, name: string): void {
    for (const op of this.pending) {
      op.timer?.cancel();
      op.reject(ioError(name, reason));
    }
    this.pending.clear();
  }

  powerCut(options: SimPowerCutOptions, name: string): SimPowerCutReport {
    const wKeep = options.keep ?? 1;
    const wDrop = options.drop ?? 1;
    const wTear = options.tear ?? 1;
    const total = wKeep + wDrop + wTear;
    assert(total > 0 && wKeep >= 0 && wDrop >= 0 && wTear >= 0, 'sim disk: power-cut weights must be non-negative with a positive sum');

    // Candidates: completed unflushed writes in completion order, then writes still in
    // flight (which may have reached the medium although nobody was told).
    const candidates: { offset: number; data: Uint8Array }[] = [...this.journal];
    const inFlight = [...this.pending].flatMap((op) => (op.write === undefined ? [] : [op.write]));
    inFlight.sort((a, b) => a.seq - b.seq);
    candidates.push(...inFlight);

    // Start every touched page from its durable content.
    const pages = new Map<number, Uint8Array>();
    for (const c of candidates) {
      forEachPage(c.offset, c.data.length, (page) => {
        if (pages.has(page)) return;
        const base = this.durable.has(page) ? this.durable.get(page) : this.current.get(page);
        pages.set(page, base === undefined || base === null ? new Uint8Array(simPageBytes) : base.slice());
      });
    }

    const report: SimPowerCutReport = { kept: 0, dropped: 0, torn: 0 };
    const ss = this.sectorSize;
    for (const c of candidates) {
      const r = this.prng.float() * total;
      const sectors = c.data.length / ss;
      if (r < wKeep || (r >= wKeep + wDrop && sectors === 1)) {
        writeInto(pages, c.offset, c.data);
        report.kept++;
      } else if (r < wKeep + wDrop) {
        report.dropped++;
      } else {
        // Torn: each sector independently reached the medium or not (disks reorder sectors
        // within a request), but never part of a sector.
        for (let s = 0; s < sectors; s++) {
          if (this.prng.chance(0.5)) writeInto(pages, c.offset + s * ss, c.data.subarray(s * ss, (s + 1) * ss));
        }
        report.torn++;
      }
    }

    this.abortAll('power cut', name);
    for (const [page, buf] of pages) this.current.set(page, buf);
    this.durable.clear();
    this.pendingPerPage.clear();
    this.journal = [];
    this.stats.powerCuts++;
    return report;
  }
}

/**
 * A handle on a simulated disk. `new SimBlockDevice(options)` makes a new blank disk;
 * `attach()` opens another handle on the same disk (the partner blade, or the same blade
 * after a reboot). Fault injection (`powerCut`, `fail`, `injectError`, `poke`, ...) acts on
 * the disk, whichever handle it is called through; `setFenced` and `close` act on the handle.
 */
export class SimBlockDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly sectorSize: number;
  readonly readOnly: boolean;
  private readonly disk: SimDisk;
  private readonly timers: Timers;
  private closed = false;
  private fenced = false;
  private closing: Promise<void> | undefined;
  private readonly mine = new Set<Promise<unknown>>();

  /** Makes a new blank disk and a handle on it. (`disk` is internal: `attach()` passes it.) */
  constructor(options: SimBlockDeviceOptions, disk?: SimDisk) {
    const sizeBytes = options.sizeBytes ?? 64 * 1024 * 1024;
    const sectorSize = options.sectorSize ?? 4096;
    this.name = options.name ?? 'sim-disk';
    if (sectorSize !== 512 && sectorSize !== 4096) throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: sectorSize must be 512 or 4096`);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % sectorSize !== 0) {
      throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: sizeBytes must be a positive multiple of ${sectorSize}`);
    }
    const latency = { ...defaultSimBlockLatency, ...options.latency };
    for (const [k, v] of Object.entries(latency)) {
      if (!(typeof v === 'number' && v >= 0 && Number.isFinite(v))) throw new InvalidArgumentError(BlockErrorCode.outOfRange, `${this.name}: latency.${k} must be a non-negative number`);
    }
    this.disk = disk ?? new SimDisk(sizeBytes, sectorSize, options.timers, options.prng, latency);
    this.sizeBytes = this.disk.sizeBytes;
    this.sectorSize = this.disk.sectorSize;
    this.readOnly = options.readOnly ?? false;
    this.timers = options.timers;
  }

  /**
   * Another handle on the same disk (its own closed and fenced state). `timers` (default the
   * disk's) schedule this handle's completions: pass a blade's failure-domain timers so that
   * its operations die with it.
   */
  attach(options: { name?: string; readOnly?: boolean; timers?: Timers } = {}): SimBlockDevice {
    return new SimBlockDevice(
      { timers: options.timers ?? this.disk.timers, prng: this.disk.prng, name: options.name ?? this.name, readOnly: options.readOnly ?? false, sizeBytes: this.sizeBytes, sectorSize: this.sectorSize },
      this.disk,
    );
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    this.checkRange(offset, length);
    return this.schedule('read', offset, length, this.disk.latency.readMs, undefined, () => {
      this.disk.stats.reads++;
      this.disk.stats.bytesRead += length;
      return this.disk.readNow(offset, length);
    });
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: data must be a Uint8Array`);
    this.checkRange(offset, data.length);
    if (!this.closed && this.readOnly) return Promise.reject(new TwinbladeError(BlockErrorCode.readOnly, 'unsupported', `${this.name}: read-only`));
    if (!this.closed && this.fenced) return Promise.reject(new TwinbladeError(BlockErrorCode.fenced, 'fenced', `${this.name}: write refused: reservation held by another initiator`));
    // Copied now: the caller may reuse its buffer as soon as the promise settles, and a power
    // cut may still need these bytes while the write is in flight.
    const copy = data.slice();
    const write = { offset, data: copy, seq: ++this.disk.issuedSeq };
    return this.schedule('write', offset, data.length, this.disk.latency.writeMs, write, () => {
      this.disk.stats.writes++;
      this.disk.stats.bytesWritten += copy.length;
      if (copy.length > 0) this.disk.completeWrite(this.disk.misdirect(offset, copy.length), copy);
    });
  }

  flush(): Promise<void> {
    // Covers the writes completed before this call, whatever completes meanwhile.
    const upTo = this.disk.completedSeq;
    return this.schedule('flush', 0, 0, this.disk.latency.flushMs, undefined, () => {
      this.disk.stats.flushes++;
      this.disk.completeFlush(upTo);
    });
  }

  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    this.closing = Promise.allSettled([...this.mine]).then(() => undefined);
    return this.closing;
  }

  // ---- Fault injection and back door (act on the disk, not the handle) ----

  /**
   * Power cut of the disk: each write not covered by a completed flush (including writes
   * still in flight) is independently kept, dropped or torn at sector boundaries, chosen by
   * the prng with the given weights; operations in flight on every handle reject
   * `ERR_BLOCK_IO`. The disk is usable again at once (the power came back).
   */
  powerCut(options: SimPowerCutOptions = {}): SimPowerCutReport {
    return this.disk.powerCut(options, this.name);
  }

  /** Fails the whole disk: operations in flight and every later one reject `ERR_BLOCK_IO` until `heal()`. */
  fail(): void {
    this.disk.failed = true;
    this.disk.abortAll('disk failed', this.name);
  }

  /** Undoes `fail()`; the content is as it was (the disk was unplugged, not replaced). */
  heal(): void {
    this.disk.failed = false;
  }

  get failed(): boolean {
    return this.disk.failed;
  }

  /** Makes operations overlapping a byte range fail (a bad sector, a flaky path). */
  injectError(spec: SimBlockErrorSpec): SimBlockErrorHandle {
    const count = spec.count ?? Number.POSITIVE_INFINITY;
    if (!Number.isSafeInteger(spec.offset) || !Number.isSafeInteger(spec.length) || spec.offset < 0 || spec.length <= 0 || !(count > 0)) {
      throw new InvalidArgumentError(BlockErrorCode.outOfRange, `${this.name}: bad injected error range`);
    }
    const e: InjectedError = { offset: spec.offset, end: spec.offset + spec.length, op: spec.op ?? 'any', error: spec.error ?? 'io', remaining: count };
    this.disk.errors.add(e);
    return { remove: () => void this.disk.errors.delete(e) };
  }

  /**
   * Arms misdirected writes: the next `count` writes (through any handle) report success but
   * land at a random other sector-aligned offset, leaving their own range unchanged. Only a
   * format that records each block's own address (or checksums it with the address) notices.
   */
  misdirectWrites(count = 1): void {
    if (!Number.isSafeInteger(count) || count < 0) throw new InvalidArgumentError(BlockErrorCode.outOfRange, `${this.name}: count must be a non-negative integer`);
    this.disk.misdirectRemaining = count;
  }

  /** Changes the latency from the next operation on (a disk slowing down, a path failing over). */
  setLatency(latency: Partial<SimBlockLatency>): void {
    const next = { ...this.disk.latency, ...latency };
    for (const [k, v] of Object.entries(next)) {
      if (!(typeof v === 'number' && v >= 0 && Number.isFinite(v))) throw new InvalidArgumentError(BlockErrorCode.outOfRange, `${this.name}: latency.${k} must be a non-negative number`);
    }
    this.disk.latency = next;
  }

  /** Removes every injected error. */
  clearErrors(): void {
    this.disk.errors.clear();
  }

  /** While set, writes through this handle reject `ERR_BLOCK_FENCED` (another blade holds the reservation). */
  setFenced(fenced: boolean): void {
    this.fenced = fenced;
  }

  /** The content reads see now, without latency or faults. */
  peek(offset: number, length: number): Uint8Array {
    this.checkRangeBytes(offset, length);
    return this.disk.readNow(offset, length);
  }

  /** The content a power cut with `{ drop: 1, keep: 0, tear: 0 }` would leave. */
  peekDurable(offset: number, length: number): Uint8Array {
    this.checkRangeBytes(offset, length);
    return this.disk.readDurable(offset, length);
  }

  /** Writes bytes (any alignment) straight to the medium, durable at once: for corrupting sectors or seeding images. */
  poke(offset: number, data: Uint8Array): void {
    this.checkRangeBytes(offset, data.length);
    this.disk.poke(offset, data);
  }

  /** Overwrites a byte range with prng garbage (bit rot, a misdirected write's victim). */
  corrupt(offset: number, length: number): void {
    this.poke(offset, this.disk.prng.bytes(length));
  }

  /** Writes completed but not yet covered by a completed flush. */
  get unflushedWriteCount(): number {
    return this.disk.journal.length;
  }

  /** Pages holding a durable copy because of unflushed writes (memory held by the journal's model). */
  get unflushedPageCount(): number {
    return this.disk.durable.size;
  }

  get stats(): Readonly<SimBlockStats> {
    return this.disk.stats;
  }

  // ---- internals ----

  private schedule<T>(
    op: 'read' | 'write' | 'flush',
    offset: number,
    length: number,
    baseMs: number,
    write: { offset: number; data: Uint8Array; seq: number } | undefined,
    complete: () => T,
  ): Promise<T> {
    if (this.closed) return Promise.reject(new TwinbladeError(BlockErrorCode.closed, 'closed', `${this.name}: device is closed`));
    const p = new Promise<T>((resolve, reject) => {
      const pending: PendingOp = { timer: undefined, reject, write };
      this.disk.pending.add(pending);
      pending.timer = this.timers.after(this.disk.delayMs(baseMs), () => {
        if (!this.disk.pending.delete(pending)) return;
        if (this.disk.failed) {
          reject(ioError(this.name, 'disk failed'));
          return;
        }
        if (op !== 'flush') {
          const injected = this.disk.takeError(op, offset, length);
          if (injected !== undefined) {
            reject(
              injected.error === 'fenced'
                ? new TwinbladeError(BlockErrorCode.fenced, 'fenced', `${this.name}: ${op} ${offset}+${length} refused (injected reservation conflict)`)
                : ioError(this.name, `${op} ${offset}+${length}: injected I/O error`),
            );
            return;
          }
        }
        resolve(complete());
      });
    });
    this.mine.add(p);
    const done = (): void => {
      this.mine.delete(p);
    };
    p.then(done, done);
    return p;
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset % this.sectorSize !== 0 || length % this.sectorSize !== 0) {
      throw new InvalidArgumentError(BlockErrorCode.unaligned, `${this.name}: offset ${offset} / length ${length} not aligned to ${this.sectorSize}`);
    }
    if (offset + length > this.sizeBytes) {
      throw new TwinbladeError(BlockErrorCode.outOfRange, 'out-of-range', `${this.name}: range ${offset}+${length} beyond ${this.sizeBytes}`);
    }
  }

  private checkRangeBytes(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.sizeBytes) {
      throw new TwinbladeError(BlockErrorCode.outOfRange, 'out-of-range', `${this.name}: back-door range ${offset}+${length} outside the disk`);
    }
  }
}
