// The exports configuration: which file system is served under which path, to which
// clients (addresses, IPv4 networks, or everyone), read-only or read-write, and how the
// caller's identity is squashed. Pure: matching and squashing only.
import { InvalidArgumentError } from '../../core/errors.ts';
import type { Cred } from '../../fsapi/ops.ts';
import type { AuthSys } from './rpc.ts';

export interface ExportOptions {
  /** Clients allowed: "*", an address ("10.0.0.7", "::1"), or an IPv4 network ("10.0.0.0/8"). Default ["*"]. */
  clients?: readonly string[];
  readOnly?: boolean;
  /** Map uid 0 / gid 0 to the anonymous ids (default true, as Linux's root_squash). */
  rootSquash?: boolean;
  /** Map every caller to the anonymous ids. */
  allSquash?: boolean;
  anonUid?: number;
  anonGid?: number;
}

export const ANON_ID_DEFAULT = 65534;

/** Strips the IPv4-mapped IPv6 prefix node reports for IPv4 clients on a dual-stack socket. */
export function normalizeAddress(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

function ipv4ToInt(a: string): number | undefined {
  const parts = a.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return v;
}

type Matcher = (addr: string) => boolean;

function compileClient(pattern: string): Matcher {
  if (pattern === '*') return () => true;
  const slash = pattern.indexOf('/');
  if (slash >= 0) {
    const base = ipv4ToInt(pattern.slice(0, slash));
    const bits = Number(pattern.slice(slash + 1));
    if (base === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) {
      throw new InvalidArgumentError('ERR_EXPORT_CLIENT', `bad client network ${pattern}`);
    }
    const size = 2 ** (32 - bits);
    const lo = Math.floor(base / size) * size;
    return (addr) => {
      const v = ipv4ToInt(addr);
      return v !== undefined && v >= lo && v < lo + size;
    };
  }
  const want = normalizeAddress(pattern);
  return (addr) => addr === want;
}

/** Compiled client rules and identity squashing of one export. */
export class ExportPolicy {
  readonly clients: readonly string[];
  readonly readOnly: boolean;
  readonly rootSquash: boolean;
  readonly allSquash: boolean;
  readonly anonUid: number;
  readonly anonGid: number;
  private readonly matchers: Matcher[];
  private readonly cache = new Map<string, boolean>();

  constructor(o: ExportOptions) {
    this.clients = o.clients ?? ['*'];
    this.readOnly = o.readOnly ?? false;
    this.rootSquash = o.rootSquash ?? true;
    this.allSquash = o.allSquash ?? false;
    this.anonUid = o.anonUid ?? ANON_ID_DEFAULT;
    this.anonGid = o.anonGid ?? ANON_ID_DEFAULT;
    this.matchers = this.clients.map(compileClient);
  }

  allows(addr: string): boolean {
    const a = normalizeAddress(addr);
    let ok = this.cache.get(a);
    if (ok === undefined) {
      ok = this.matchers.some((m) => m(a));
      if (this.cache.size > 4096) this.cache.clear();
      this.cache.set(a, ok);
    }
    return ok;
  }

  /** The credentials a call acts with: AUTH_NONE is anonymous; root and all-squash apply. */
  cred(auth: AuthSys | undefined): Cred {
    if (auth === undefined || this.allSquash) return { uid: this.anonUid, gid: this.anonGid, gids: [] };
    // No closures: this runs for every call, and each closure made per call costs an
    // allocation (and a naming helper call under tsx, which showed in the profile).
    const squash = this.rootSquash;
    const gids: number[] = [];
    for (const g of auth.gids) gids.push(squash && g === 0 ? this.anonGid : g);
    return { uid: squash && auth.uid === 0 ? this.anonUid : auth.uid, gid: squash && auth.gid === 0 ? this.anonGid : auth.gid, gids };
  }
}
