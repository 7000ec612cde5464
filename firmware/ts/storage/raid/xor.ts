// XOR of equal-length buffers, the whole of single-parity arithmetic. Works a 32-bit word
// at a time when the buffers are aligned (they are when the RAID layer allocated them).

/** dst ^= src, element-wise. Both must have the same length. */
export function xorInto(dst: Uint8Array, src: Uint8Array): void {
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

/** The XOR of all `parts` (at least one), in `out` if given (same length), else in a new buffer. */
export function xorAll(parts: readonly Uint8Array[], out?: Uint8Array): Uint8Array {
  const first = parts[0];
  if (first === undefined) throw new RangeError('xorAll: no buffers');
  if (out === undefined) out = new Uint8Array(first.length);
  else if (out.length !== first.length) throw new RangeError(`xorAll: out has ${out.length} bytes, parts ${first.length}`);
  out.set(first);
  for (let i = 1; i < parts.length; i++) xorInto(out, parts[i] as Uint8Array);
  return out;
}
