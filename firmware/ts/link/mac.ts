// The link authenticator: HMAC-SHA256 truncated to 16 bytes, keyed with the per-pair key
// from the board configuration. Lives outside core/ because it uses node:crypto.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../core/errors.ts';
import { fromHex } from '../core/bytes.ts';
import type { Mac } from './core/frame.ts';

/** Bytes of the truncated tag: 128 bits, far beyond what an online forger can guess. */
export const linkMacTagBytes = 16;
/** The shortest pair key accepted: 128 bits. Provision 32 random bytes. */
export const linkKeyBytesMin = 16;

/** An HMAC-SHA256 Mac over `key`, tags truncated to `tagBytes` (default 16). */
export function hmacSha256Mac(key: Uint8Array, tagBytes = linkMacTagBytes): Mac {
  if (key.length < linkKeyBytesMin) {
    throw new InvalidArgumentError('ERR_LINK_KEY', `the link key must be at least ${linkKeyBytesMin} bytes, got ${key.length}`);
  }
  if (!Number.isInteger(tagBytes) || tagBytes < 8 || tagBytes > 32) {
    throw new InvalidArgumentError('ERR_LINK_KEY', `tagBytes ${tagBytes} is not 8..32`);
  }
  const k = Buffer.from(key);
  const sign = (parts: readonly Uint8Array[]): Uint8Array => {
    const h = createHmac('sha256', k);
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest().subarray(0, tagBytes));
  };
  return {
    tagBytes,
    sign,
    verify(parts, tag) {
      if (tag.length !== tagBytes) return false;
      return timingSafeEqual(sign(parts), tag);
    },
  };
}

/** Parses the pair key as written in the board configuration (hex, at least 32 digits). */
export function linkKeyFromHex(hex: string): Uint8Array {
  let key: Uint8Array;
  try {
    key = fromHex(hex.trim());
  } catch {
    throw new InvalidArgumentError('ERR_LINK_KEY', 'the link key is not a hex string');
  }
  if (key.length < linkKeyBytesMin) {
    throw new InvalidArgumentError('ERR_LINK_KEY', `the link key must be at least ${linkKeyBytesMin} bytes`);
  }
  return key;
}
