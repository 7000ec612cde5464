// NFSv3 file handles (SPEC FS-2): fsid + inode number + generation, sealed with a MAC keyed
// by the blade pair's shared secret, so a handle minted by either blade is valid on both,
// across takeover, giveback and reboot, and a forged or altered handle is rejected.
import { createHmac } from 'node:crypto';
import { FsError, FsStatus, type InodeRef } from '../fsapi/ops.ts';
import { InvalidArgumentError } from '../core/errors.ts';

export const FH_MAGIC = 0x5442; // "TB"
export const FH_VERSION = 1;
export const FH_BYTES = 40;
const SEALED_BYTES = 24;
const MAC_BYTES = 16;

export interface FileHandleRef extends InodeRef {
  fsid: bigint;
}

/**
 * Mints and checks file handles. Layout (big-endian): magic u16, version u8, length u8,
 * fsid u64, ino u64, gen u32, then the first 16 bytes of HMAC-SHA256(key, bytes 0..23).
 */
export class FileHandleCodec {
  private readonly key: Uint8Array;
  /** Handles already verified (binary string → ref): most calls repeat recent handles. */
  private readonly verified = new Map<string, FileHandleRef>();
  private static readonly verifiedMax = 16384;

  constructor(key: Uint8Array) {
    if (key.length < 16) throw new InvalidArgumentError('ERR_FH_KEY', 'file-handle key must be at least 16 bytes');
    this.key = key.slice();
  }

  encode(ref: FileHandleRef): Uint8Array {
    const b = new Uint8Array(FH_BYTES);
    const v = new DataView(b.buffer);
    v.setUint16(0, FH_MAGIC);
    v.setUint8(2, FH_VERSION);
    v.setUint8(3, FH_BYTES);
    v.setBigUint64(4, BigInt.asUintN(64, ref.fsid));
    v.setBigUint64(12, BigInt(ref.ino));
    v.setUint32(20, ref.gen >>> 0);
    b.set(this.mac(b.subarray(0, SEALED_BYTES)), SEALED_BYTES);
    return b;
  }

  /** Decodes and authenticates a handle; anything malformed or forged is BADHANDLE. */
  decode(b: Uint8Array): FileHandleRef {
    const s = Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
    const hit = this.verified.get(s);
    if (hit !== undefined) return hit;
    if (b.length !== FH_BYTES) throw new FsError(FsStatus.BADHANDLE, `file handle of ${b.length} bytes`);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (v.getUint16(0) !== FH_MAGIC || v.getUint8(2) !== FH_VERSION || v.getUint8(3) !== FH_BYTES) {
      throw new FsError(FsStatus.BADHANDLE, 'file handle magic, version or length');
    }
    const want = this.mac(b.subarray(0, SEALED_BYTES));
    let diff = 0;
    for (let i = 0; i < MAC_BYTES; i++) diff |= (want[i] as number) ^ (b[SEALED_BYTES + i] as number);
    if (diff !== 0) throw new FsError(FsStatus.BADHANDLE, 'file handle MAC mismatch');
    const ref = { fsid: v.getBigUint64(4), ino: Number(v.getBigUint64(12)), gen: v.getUint32(20) };
    if (this.verified.size >= FileHandleCodec.verifiedMax) this.verified.clear();
    this.verified.set(s, ref);
    return ref;
  }

  private mac(sealed: Uint8Array): Uint8Array {
    return createHmac('sha256', this.key).update(sealed).digest().subarray(0, MAC_BYTES);
  }
}

/**
 * The 8-byte WRITE/COMMIT verifier of a blade pair: HMAC-SHA256(pair key, "twinblade
 * write verifier" || epoch), truncated. Both blades derive the same value from the shared key
 * and the pair's boot epoch (raised only when acknowledged unstable data could have been
 * lost), and the key itself never appears on the wire.
 */
export function deriveWriteVerifier(pairKey: Uint8Array, epoch: bigint): Uint8Array {
  const e = new Uint8Array(8);
  new DataView(e.buffer).setBigUint64(0, BigInt.asUintN(64, epoch));
  return new Uint8Array(createHmac('sha256', pairKey).update('twinblade write verifier').update(e).digest().subarray(0, 8));
}
