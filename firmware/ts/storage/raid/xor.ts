// XOR of equal-length buffers, the whole of single-parity arithmetic, and the split of whole
// stripes into per-member runs fused with their parity. Portable TypeScript here; the native
// addon installs faster kernels (installXorKernels) with identical results.

/** dst ^= src, element-wise. Both must have the same length. */
export function xorIntoPortable(dst: Uint8Array, src: Uint8Array): void {
  if (dst.length !== src.length) throw new RangeError(`xorInto: lengths differ (${dst.length} vs ${src.length})`);
  const n = dst.length;
  if (dst.byteOffset % 4 === 0 && src.byteOffset % 4 === 0) {
    // Int32 rather than Uint32 views: XOR yields int32, and V8 keeps int32 lanes unboxed
    // (Uint32 values above 2^31 are not), roughly 1.5x faster; unrolled by four.
    const words = n >>> 2;
    const d = new Int32Array(dst.buffer, dst.byteOffset, words);
    const s = new Int32Array(src.buffer, src.byteOffset, words);
    let i = 0;
    for (; i + 4 <= words; i += 4) {
      d[i] = (d[i] as number) ^ (s[i] as number);
      d[i + 1] = (d[i + 1] as number) ^ (s[i + 1] as number);
      d[i + 2] = (d[i + 2] as number) ^ (s[i + 2] as number);
      d[i + 3] = (d[i + 3] as number) ^ (s[i + 3] as number);
    }
    for (; i < words; i++) d[i] = (d[i] as number) ^ (s[i] as number);
    for (let j = words << 2; j < n; j++) dst[j] = (dst[j] as number) ^ (src[j] as number);
    return;
  }
  for (let i = 0; i < n; i++) dst[i] = (dst[i] as number) ^ (src[i] as number);
}

/** out = XOR of `parts` (each as long as out). */
export function xorAllPortable(out: Uint8Array, parts: readonly Uint8Array[]): void {
  out.set(parts[0] as Uint8Array);
  for (let i = 1; i < parts.length; i++) xorIntoPortable(out, parts[i] as Uint8Array);
}

/**
 * `data` holds whole stripes of `members.length` units of `unitBytes`: copies unit m of
 * every stripe, consecutively, into `members[m]`, and XORs each stripe's units into
 * `parity` (when given, one unit per stripe).
 */
export function splitStripesPortable(data: Uint8Array, unitBytes: number, members: readonly Uint8Array[], parity: Uint8Array | null): void {
  const m = members.length;
  const stripes = data.length / (unitBytes * m);
  for (let s = 0; s < stripes; s++) {
    const p = parity?.subarray(s * unitBytes, (s + 1) * unitBytes);
    for (let k = 0; k < m; k++) {
      const from = (s * m + k) * unitBytes;
      const unit = data.subarray(from, from + unitBytes);
      (members[k] as Uint8Array).set(unit, s * unitBytes);
      if (p === undefined) continue;
      if (k === 0) p.set(unit);
      else xorIntoPortable(p, unit);
    }
  }
}

/**
 * Like splitStripesPortable, with the data as separate equal-sized `blocks`: block i is
 * block (i mod unitBlocks) of unit ((i / unitBlocks) mod members.length) of stripe
 * i / (unitBlocks * members.length).
 */
export function gatherStripesPortable(blocks: readonly Uint8Array[], unitBlocks: number, members: readonly Uint8Array[], parity: Uint8Array | null): void {
  const m = members.length;
  const bs = (blocks[0] as Uint8Array).length;
  const stripes = blocks.length / (unitBlocks * m);
  for (let s = 0; s < stripes; s++) {
    for (let o = 0; o < unitBlocks; o++) {
      const at = (s * unitBlocks + o) * bs;
      const p = parity?.subarray(at, at + bs);
      for (let k = 0; k < m; k++) {
        const src = blocks[(s * m + k) * unitBlocks + o] as Uint8Array;
        (members[k] as Uint8Array).set(src, at);
        if (p === undefined) continue;
        if (k === 0) p.set(src);
        else xorIntoPortable(p, src);
      }
    }
  }
}

/**
 * out = XOR over `members` of the concatenation of each member's parts (each concatenation as
 * long as `out`; parts of any lengths): the parity of a write whose data stays where it is.
 */
export function xorConcatPortable(out: Uint8Array, members: ReadonlyArray<readonly Uint8Array[]>): void {
  members.forEach((parts, m) => {
    let at = 0;
    for (const p of parts) {
      const dst = out.subarray(at, at + p.length);
      if (m === 0) dst.set(p);
      else xorIntoPortable(dst, p);
      at += p.length;
    }
  });
}

/** The kernels the RAID layer calls; arguments are checked here, before either implementation. */
export interface XorKernels {
  xorInto(dst: Uint8Array, src: Uint8Array): void;
  xorAll(out: Uint8Array, parts: readonly Uint8Array[]): void;
  splitStripes(data: Uint8Array, unitBytes: number, members: readonly Uint8Array[], parity: Uint8Array | null): void;
  gatherStripes(blocks: readonly Uint8Array[], unitBlocks: number, members: readonly Uint8Array[], parity: Uint8Array | null): void;
  xorConcat(out: Uint8Array, members: ReadonlyArray<readonly Uint8Array[]>): void;
  /** For figures and logs: 'portable', or what the installer says. */
  name: string;
}

export const portableXorKernels: XorKernels = {
  xorInto: xorIntoPortable,
  xorAll: xorAllPortable,
  splitStripes: splitStripesPortable,
  gatherStripes: gatherStripesPortable,
  xorConcat: xorConcatPortable,
  name: 'portable',
};

let kernels: XorKernels = portableXorKernels;

/**
 * Replaces the kernels (the native addon does so at import). The new ones are checked
 * against the portable ones on a sample first, so a broken build cannot corrupt parity.
 */
export function installXorKernels(k: XorKernels): void {
  const a = new Uint8Array(3 * 4096 + 64).map((_, i) => (i * 131 + 7) & 0xff);
  const unit = 4096 + 32;
  const want = [new Uint8Array(2 * unit), new Uint8Array(2 * unit), new Uint8Array(2 * unit)];
  const got = [new Uint8Array(2 * unit), new Uint8Array(2 * unit), new Uint8Array(2 * unit)];
  const data = new Uint8Array(4 * unit).map((_, i) => (i * 29 + 3) & 0xff);
  splitStripesPortable(data, unit, want.slice(0, 2), want[2] as Uint8Array);
  k.splitStripes(data, unit, got.slice(0, 2), got[2] as Uint8Array);
  const x1 = a.slice(1, 4097);
  const x2 = a.slice(1, 4097);
  xorIntoPortable(x1, a.subarray(4100, 8196));
  k.xorInto(x2, a.subarray(4100, 8196));
  const y1 = new Uint8Array(4000);
  const y2 = new Uint8Array(4000);
  const parts = [a.subarray(0, 4000), a.subarray(5, 4005), a.subarray(8000, 12000)];
  xorAllPortable(y1, parts);
  k.xorAll(y2, parts);
  const blocks = Array.from({ length: 12 }, (_, i) => a.subarray(i * 64, i * 64 + 96));
  const gWant = [new Uint8Array(4 * 96), new Uint8Array(4 * 96), new Uint8Array(4 * 96), new Uint8Array(4 * 96)];
  const gGot = [new Uint8Array(4 * 96), new Uint8Array(4 * 96), new Uint8Array(4 * 96), new Uint8Array(4 * 96)];
  gatherStripesPortable(blocks, 2, gWant.slice(0, 3), gWant[3] as Uint8Array);
  k.gatherStripes(blocks, 2, gGot.slice(0, 3), gGot[3] as Uint8Array);
  // Parity of three members whose 384 bytes come in differently cut parts (one zero-length).
  const cWant = new Uint8Array(384);
  const cGot = new Uint8Array(384);
  const cuts = [[a.subarray(0, 384)], [a.subarray(500, 600), a.subarray(0, 0), a.subarray(700, 984)], [a.subarray(1000, 1001), a.subarray(2000, 2383)]];
  xorConcatPortable(cWant, cuts);
  k.xorConcat(cGot, cuts);
  const same = (p: Uint8Array, q: Uint8Array): boolean => p.length === q.length && p.every((v, i) => v === q[i]);
  if (!want.every((w, i) => same(w, got[i] as Uint8Array)) || !gWant.every((w, i) => same(w, gGot[i] as Uint8Array)) || !same(cWant, cGot) || !same(x1, x2) || !same(y1, y2)) {
    throw new Error(`installXorKernels: ${k.name} disagrees with the portable kernels`);
  }
  kernels = k;
}

/** The kernels in use ('portable' unless the native addon is loaded). */
export function xorKernelName(): string {
  return kernels.name;
}

/** dst ^= src, element-wise. Both must have the same length. */
export function xorInto(dst: Uint8Array, src: Uint8Array): void {
  if (dst.length !== src.length) throw new RangeError(`xorInto: lengths differ (${dst.length} vs ${src.length})`);
  kernels.xorInto(dst, src);
}

/** The XOR of all `parts` (at least one), in `out` if given (same length), else in a new buffer. */
export function xorAll(parts: readonly Uint8Array[], out?: Uint8Array): Uint8Array {
  const first = parts[0];
  if (first === undefined) throw new RangeError('xorAll: no buffers');
  if (out === undefined) out = new Uint8Array(first.length);
  else if (out.length !== first.length) throw new RangeError(`xorAll: out has ${out.length} bytes, parts ${first.length}`);
  for (const p of parts) if (p.length !== first.length) throw new RangeError(`xorAll: parts differ in length (${p.length} vs ${first.length})`);
  kernels.xorAll(out, parts);
  return out;
}

/**
 * Splits whole stripes (`members.length` units of `unitBytes` each) into per-member runs,
 * and computes their parity into `parity` when given. See splitStripesPortable.
 */
export function splitStripes(data: Uint8Array, unitBytes: number, members: readonly Uint8Array[], parity: Uint8Array | null): void {
  const m = members.length;
  if (!Number.isInteger(unitBytes) || unitBytes <= 0 || m === 0 || data.length % (unitBytes * m) !== 0) {
    throw new RangeError(`splitStripes: ${data.length} bytes are not whole stripes of ${m} units of ${unitBytes}`);
  }
  const runBytes = (data.length / (unitBytes * m)) * unitBytes;
  for (const b of members) if (b.length !== runBytes) throw new RangeError(`splitStripes: a member buffer has ${b.length} bytes, need ${runBytes}`);
  if (parity !== null && parity.length !== runBytes) throw new RangeError(`splitStripes: parity has ${parity.length} bytes, need ${runBytes}`);
  kernels.splitStripes(data, unitBytes, members, parity);
}

/**
 * Gathers whole stripes given as separate blocks (all of one size) into per-member runs, and
 * their parity when given. See gatherStripesPortable for the order of the blocks.
 */
export function gatherStripes(blocks: readonly Uint8Array[], unitBlocks: number, members: readonly Uint8Array[], parity: Uint8Array | null): void {
  const m = members.length;
  const bs = blocks[0]?.length ?? 0;
  if (!Number.isInteger(unitBlocks) || unitBlocks <= 0 || m === 0 || bs === 0 || blocks.length % (unitBlocks * m) !== 0) {
    throw new RangeError(`gatherStripes: ${blocks.length} blocks are not whole stripes of ${m} units of ${unitBlocks} blocks`);
  }
  for (const b of blocks) if (b.length !== bs) throw new RangeError(`gatherStripes: blocks differ in size (${b.length} vs ${bs})`);
  const runBytes = (blocks.length / m) * bs;
  for (const b of members) if (b.length !== runBytes) throw new RangeError(`gatherStripes: a member buffer has ${b.length} bytes, need ${runBytes}`);
  if (parity !== null && parity.length !== runBytes) throw new RangeError(`gatherStripes: parity has ${parity.length} bytes, need ${runBytes}`);
  kernels.gatherStripes(blocks, unitBlocks, members, parity);
}

/**
 * out = XOR over `members` of the concatenation of each member's parts (each concatenation as
 * long as `out`): the parity of a full-stripe write whose data members write their blocks in
 * place (see xorConcatPortable).
 */
export function xorConcat(out: Uint8Array, members: ReadonlyArray<readonly Uint8Array[]>): void {
  if (members.length === 0) throw new RangeError('xorConcat: no members');
  for (const parts of members) {
    let total = 0;
    for (const p of parts) total += p.length;
    if (total !== out.length) throw new RangeError(`xorConcat: a member's parts make ${total} bytes, out has ${out.length}`);
  }
  kernels.xorConcat(out, members);
}

/**
 * `parts` with every run of views that lie end to end in one ArrayBuffer merged into one view
 * (a CP's consecutive pages carved from one slab): fewer iovecs and fewer addon calls per block.
 */
export function coalesceViews(parts: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let buf: ArrayBufferLike | undefined;
  let start = 0;
  let end = 0;
  let single: Uint8Array | undefined;
  for (const p of parts) {
    if (p.buffer === buf && p.byteOffset === end) {
      end += p.length;
      single = undefined;
      continue;
    }
    if (buf !== undefined) out.push(single ?? new Uint8Array(buf, start, end - start));
    buf = p.buffer;
    start = p.byteOffset;
    end = start + p.length;
    single = p;
  }
  if (buf !== undefined) out.push(single ?? new Uint8Array(buf, start, end - start));
  return out;
}

/** A gather that runs off the main thread and settles once the runs and parity are filled. */
export type GatherStripesAsync = (blocks: readonly Uint8Array[], unitBlocks: number, members: readonly Uint8Array[], parity: Uint8Array | null) => Promise<void>;

let gatherAsync: GatherStripesAsync | undefined;

/**
 * Opts in to gathering CP writes off the main thread (the native addon's
 * gatherStripesNativeAsync): the main thread then freezes and issues the next write while
 * the thread pool copies this one's blocks and computes its parity. Checked against the
 * portable gather on a sample first. Opt-in, not installed with the addon: a simulation's
 * writes must settle on its own schedule, never on a thread's. `undefined` uninstalls.
 */
export async function installGatherStripesAsync(fn: GatherStripesAsync | undefined): Promise<void> {
  if (fn === undefined) {
    gatherAsync = undefined;
    return;
  }
  const blocks = Array.from({ length: 12 }, (_, i) => new Uint8Array(96).map((_, j) => (i * 61 + j * 7 + 3) & 0xff));
  const want = [new Uint8Array(4 * 96), new Uint8Array(4 * 96), new Uint8Array(4 * 96), new Uint8Array(4 * 96)];
  const got = [new Uint8Array(4 * 96), new Uint8Array(4 * 96), new Uint8Array(4 * 96), new Uint8Array(4 * 96)];
  gatherStripesPortable(blocks, 2, want.slice(0, 3), want[3] as Uint8Array);
  await fn(blocks, 2, got.slice(0, 3), got[3] as Uint8Array);
  if (!want.every((w, i) => w.every((v, j) => v === (got[i] as Uint8Array)[j]))) throw new Error('installGatherStripesAsync: the gather disagrees with the portable one');
  gatherAsync = fn;
}

/** True when gatherStripesAsync runs off the main thread (for figures and logs). */
export function gatherStripesAsyncInstalled(): boolean {
  return gatherAsync !== undefined;
}

/**
 * gatherStripes off the main thread when a gather was installed with
 * installGatherStripesAsync (the promise settles once it is done; the caller must not change
 * `blocks`, `members` or `parity` before then); otherwise gatherStripes in place, returning
 * undefined, so a synchronous caller (a simulation) takes no extra turn.
 */
export function gatherStripesOffThread(blocks: readonly Uint8Array[], unitBlocks: number, members: readonly Uint8Array[], parity: Uint8Array | null): Promise<void> | undefined {
  if (gatherAsync === undefined) {
    gatherStripes(blocks, unitBlocks, members, parity);
    return undefined;
  }
  const m = members.length;
  const bs = blocks[0]?.length ?? 0;
  if (!Number.isInteger(unitBlocks) || unitBlocks <= 0 || m === 0 || bs === 0 || blocks.length % (unitBlocks * m) !== 0) {
    throw new RangeError(`gatherStripes: ${blocks.length} blocks are not whole stripes of ${m} units of ${unitBlocks} blocks`);
  }
  const runBytes = (blocks.length / m) * bs;
  for (const b of members) if (b.length !== runBytes) throw new RangeError(`gatherStripes: a member buffer has ${b.length} bytes, need ${runBytes}`);
  if (parity !== null && parity.length !== runBytes) throw new RangeError(`gatherStripes: parity has ${parity.length} bytes, need ${runBytes}`);
  // Block sizes are checked by the installed gather (the addon: one pass over the array, not two).
  return gatherAsync(blocks, unitBlocks, members, parity);
}
