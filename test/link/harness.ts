// A tiny deterministic driver for the pure link cores: virtual time, one seeded Prng, and
// per-direction pipes that lose, duplicate, reorder, corrupt, tear or cut what they carry.
// One seed reproduces a whole run, so a failing property prints the seed to replay.

import { Prng } from '../../firmware/ts/core/prng.ts';
import { concatBytes } from '../../firmware/ts/core/bytes.ts';
import { MultipathLink } from '../../firmware/ts/link/core/multipath.ts';
import type { MultipathEvent, PathKind, ReliableMessage, DatagramMessage } from '../../firmware/ts/link/core/multipath.ts';
import type { ChannelLimits } from '../../firmware/ts/link/core/reliable.ts';
import type { Mac } from '../../firmware/ts/link/core/frame.ts';
import { hmacSha256Mac } from '../../firmware/ts/link/mac.ts';

export const testKey = new Uint8Array(32).map((_, i) => i + 1);
export const testMac: Mac = hmacSha256Mac(testKey);

export interface PipeProfile {
  latencyMs: number;
  jitterMs: number;
  /** Datagram paths: chance a frame is lost / duplicated. Stream paths: chance a chunk is lost (a torn stretch of bytes). */
  loss: number;
  duplicate: number;
  /** Stream paths: chance a chunk gets one byte flipped, or garbage inserted before it. */
  corrupt: number;
  garbage: number;
}

export const cleanPipe: PipeProfile = { latencyMs: 1, jitterMs: 0, loss: 0, duplicate: 0, corrupt: 0, garbage: 0 };

interface Event {
  at: number;
  order: number;
  run: () => void;
}

export class Pipe {
  cut = false;
  /** Every unit put on the wire (for replay attacks in tests). */
  readonly sent: Uint8Array[] = [];
  private lastStreamDeliveryMs = 0;
  constructor(
    private readonly sim: LinkSim,
    readonly kind: PathKind,
    public profile: PipeProfile,
    private readonly deliver: (bytes: Uint8Array) => void,
  ) {}

  send(frames: Uint8Array[]): void {
    const rng = this.sim.rng;
    const p = this.profile;
    if (this.kind === 'datagram') {
      for (const f of frames) {
        this.sent.push(f);
        if (this.cut || rng.chance(p.loss)) continue;
        const copies = rng.chance(p.duplicate) ? 2 : 1;
        for (let c = 0; c < copies; c++) this.sim.at(this.sim.now + p.latencyMs + rng.float() * p.jitterMs, () => this.deliver(f));
      }
      return;
    }
    let bytes = concatBytes(frames);
    this.sent.push(bytes);
    if (this.cut) return;
    // A byte stream keeps its order; it may re-chunk, lose a stretch, flip bits, or add noise.
    while (bytes.length > 0) {
      const n = Math.min(bytes.length, 1 + rng.int(Math.max(1, Math.min(bytes.length, 3000))));
      let chunk: Uint8Array = bytes.slice(0, n);
      bytes = bytes.subarray(n);
      if (rng.chance(p.loss)) continue;
      if (rng.chance(p.corrupt)) {
        const i = rng.int(chunk.length);
        chunk[i] = (chunk[i] as number) ^ (1 << rng.int(8));
      }
      if (rng.chance(p.garbage)) chunk = concatBytes([rng.bytes(1 + rng.int(40)), chunk]);
      const at = Math.max(this.sim.now + p.latencyMs + rng.float() * p.jitterMs, this.lastStreamDeliveryMs);
      this.lastStreamDeliveryMs = at;
      const c = chunk;
      this.sim.at(at, () => this.deliver(c));
    }
  }

  /** Injects raw bytes (an attacker on the line). */
  inject(bytes: Uint8Array): void {
    this.sim.at(this.sim.now + this.profile.latencyMs, () => this.deliver(bytes));
  }
}

export interface PathSetup {
  kind: PathKind;
  profile?: PipeProfile;
  limits?: Partial<ChannelLimits>;
}

export interface Side {
  name: 'a' | 'b';
  link: MultipathLink;
  generation: number;
  messages: ReliableMessage[];
  datagrams: DatagramMessage[];
  events: MultipathEvent[];
  /** Pipes carrying what this side sends, per path. */
  out: Pipe[];
  down: boolean;
}

export interface LinkSimOptions {
  seed: number;
  paths: PathSetup[];
  tickMs?: number;
  generations?: { a: number; b: number };
  macA?: Mac;
  macB?: Mac;
}

export class LinkSim {
  now = 0;
  readonly rng: Prng;
  readonly a: Side;
  readonly b: Side;
  private readonly queue: Event[] = [];
  private order = 0;
  private readonly tickMs: number;
  private readonly opts: LinkSimOptions;

  constructor(opts: LinkSimOptions) {
    this.opts = opts;
    this.rng = new Prng(opts.seed);
    this.tickMs = opts.tickMs ?? 5;
    this.a = this.makeSide('a', opts.generations?.a ?? 7, opts.macA ?? testMac);
    this.b = this.makeSide('b', opts.generations?.b ?? 3, opts.macB ?? testMac);
    for (const s of [this.a, this.b]) {
      const peer = s === this.a ? this.b : this.a;
      s.out = opts.paths.map((p, i) => new Pipe(this, p.kind, p.profile ?? cleanPipe, (bytes) => {
        if (peer.down) return;
        peer.link.receive(i, bytes, this.now);
        this.flush(peer);
      }));
    }
    this.at(0, () => this.tickAll());
  }

  private makeSide(name: 'a' | 'b', generation: number, mac: Mac): Side {
    return {
      name,
      generation,
      link: this.makeLink(name, generation, mac),
      messages: [],
      datagrams: [],
      events: [],
      out: [],
      down: false,
    };
  }

  private makeLink(name: 'a' | 'b', generation: number, mac: Mac): MultipathLink {
    return new MultipathLink({
      localGeneration: generation,
      role: name,
      mac,
      paths: this.opts.paths.map((p, i) => (p.limits === undefined ? { name: `p${i}`, kind: p.kind } : { name: `p${i}`, kind: p.kind, limits: p.limits })),
    });
  }

  /** Simulates a crash and reboot of `side` with a greater generation: all volatile state is lost. */
  restart(side: Side, generation = side.generation + 1): void {
    side.generation = generation;
    side.link = this.makeLink(side.name, generation, side === this.a ? (this.opts.macA ?? testMac) : (this.opts.macB ?? testMac));
    side.down = false;
  }

  at(time: number, run: () => void): void {
    const e = { at: time, order: this.order++, run };
    // Insertion keeps the queue sorted by (time, order); the queues here stay small.
    let i = this.queue.length;
    while (i > 0 && ((this.queue[i - 1] as Event).at > e.at)) i--;
    this.queue.splice(i, 0, e);
  }

  private tickAll(): void {
    for (const s of [this.a, this.b]) {
      if (s.down) continue;
      s.link.tick(this.now);
      this.flush(s);
    }
    this.at(this.now + this.tickMs, () => this.tickAll());
  }

  flush(s: Side): void {
    if (s.down) return;
    const r = s.link.ready();
    for (const t of r.transmit) (s.out[t.path] as Pipe).send(t.frames);
    s.messages.push(...r.messages);
    s.datagrams.push(...r.datagrams);
    s.events.push(...r.events);
  }

  /** Runs virtual time forward by `ms`. */
  run(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const e = this.queue[0];
      if (e === undefined || e.at > end) break;
      this.queue.shift();
      this.now = Math.max(this.now, e.at);
      e.run();
    }
    this.now = end;
  }

  /** Runs until `done()` or `limitMs` of virtual time passed; returns whether done. */
  runUntil(done: () => boolean, limitMs: number, stepMs = 5): boolean {
    const end = this.now + limitMs;
    while (this.now < end) {
      if (done()) return true;
      this.run(stepMs);
    }
    return done();
  }
}

export function payloadOf(n: number, size = 8): Uint8Array {
  const b = new Uint8Array(Math.max(4, size));
  new DataView(b.buffer).setUint32(0, n);
  for (let i = 4; i < b.length; i++) b[i] = (n * 31 + i) & 0xff;
  return b;
}

export function numberOf(p: Uint8Array): number {
  return new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0);
}
