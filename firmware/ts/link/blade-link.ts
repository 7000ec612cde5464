// Builds a blade's interconnect endpoint from its board description: a UDP path between the
// interconnect addresses (path 0, preferred for reliable traffic) and the serial UART (path 1),
// authenticated with a key derived from the pair's shared secret. The composition root calls it.

import { createHmac } from 'node:crypto';
import type { Clock, Timers } from '../core/clock.ts';
import { utf8Encode } from '../core/bytes.ts';
import { InvalidArgumentError } from '../core/errors.ts';
import type { SerialPort } from '../hal/serial/serial-port.ts';
import type { Board } from '../board/schema.ts';
import { uartPathLimits } from './endpoint.ts';
import { hmacSha256Mac, linkKeyFromHex } from './mac.ts';
import type { Mac } from './core/frame.ts';
import { MultipathEndpoint } from './multipath.ts';
import { ReopeningStreamPathTransport, StreamPathTransport } from './stream-path.ts';
import { UdpPathTransport } from './udp-path.ts';

/** Line speeds at or above this are treated as fast (no UART limits). */
export const uartFastBaudMin = 1_000_000;

/**
 * The link's own key: HMAC-SHA256(pair key, label). The pair key also MACs NFS file handles;
 * deriving a separate key keeps a tag from one use from ever being valid in the other.
 */
export function linkMacFromPairKey(pairKeyHex: string): Mac {
  const pairKey = linkKeyFromHex(pairKeyHex);
  const linkKey = createHmac('sha256', pairKey).update(utf8Encode('twinblade link frame v1')).digest();
  return hmacSha256Mac(new Uint8Array(linkKey));
}

export interface BladeLinkOptions {
  board: Pick<Board, 'identity' | 'serial' | 'network' | 'service'>;
  /** This boot's generation (persistent boot counter, SPEC HA-2). */
  generation: number;
  /**
   * The interconnect UART: either a port already opened with the board's driver, or a
   * function that opens a fresh one (then the path reopens it whenever the device goes away,
   * e.g. a USB serial adapter unplugged and plugged back).
   */
  serialPort: SerialPort | (() => Promise<SerialPort>);
  clock: Clock;
  timers: Timers;
}

/** Opens the blade's link endpoint; resolves once the UDP socket is bound. */
export async function openBladeLink(o: BladeLinkOptions): Promise<MultipathEndpoint> {
  const ic = o.board.network.interconnect;
  const service = o.board.service;
  if (service === undefined) {
    // Without the pair secret the link cannot authenticate anything; refusing beats running open.
    throw new InvalidArgumentError('ERR_LINK_KEY', 'the board description has no service.pairKeyHex for the interconnect');
  }
  const udp = new UdpPathTransport({ name: 'interconnect-udp', localHost: ic.self, localPort: ic.port, remoteHost: ic.partner, remotePort: ic.port });
  const serial =
    typeof o.serialPort === 'function'
      ? new ReopeningStreamPathTransport({ name: 'serial', open: o.serialPort, timers: o.timers })
      : new StreamPathTransport('serial', o.serialPort);
  const endpoint = new MultipathEndpoint({
    localGeneration: o.generation,
    role: o.board.identity.blade,
    mac: linkMacFromPairKey(service.pairKeyHex),
    // Reliable traffic (the NVRAM mirror: up to 1 MiB per write) prefers the network path, which
    // is orders of magnitude faster than a UART; the serial link carries it when the network
    // path is down, and status datagrams go out on both either way (HA-1).
    transports: [udp, serial],
    pathLimits: [undefined, o.board.serial.baud < uartFastBaudMin ? uartPathLimits : undefined],
    clock: o.clock,
    timers: o.timers,
  });
  try {
    await udp.whenBound();
  } catch (e) {
    await endpoint.close();
    throw e;
  }
  return endpoint;
}
