// A link transport over the simulator's message network (firmware/ts/sim/network.ts), so
// that whole-pair simulations run the real MultipathEndpoint under virtual time. A FIFO
// SimNetwork models the serial cable (a 'stream' path); a lossy, reordering one a UDP path.

import type { SimEndpoint } from '../../sim/network.ts';
import type { PathKind } from '../core/multipath.ts';
import type { PathTransport, TransportSink } from '../endpoint.ts';
import { InvalidArgumentError } from '../../core/errors.ts';

export class SimPathTransport implements PathTransport {
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  /**
   * @param endpoint this blade's attachment to the simulated network
   * @param peer the partner blade's endpoint name on that network
   */
  constructor(
    readonly name: string,
    readonly kind: PathKind,
    private readonly endpoint: SimEndpoint,
    private readonly peer: string,
  ) {}

  start(sink: TransportSink): void {
    if (this.unsubscribe !== undefined) throw new InvalidArgumentError('ERR_LINK_INVALID_ARGUMENT', `transport ${this.name} already started`);
    this.unsubscribe = this.endpoint.onMessage((from, data) => {
      // Only the partner's messages: on a shared simulated network others may talk too.
      if (!this.closed && from === this.peer) sink.data(data);
    });
  }

  write(bytes: Uint8Array): boolean {
    if (!this.closed) this.endpoint.send(this.peer, bytes);
    return true;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
  }
}
