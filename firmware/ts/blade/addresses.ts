// Client addresses belong to the firmware (SPEC CF-5): a blade configures its own addresses
// while it serves its own set, adds its partner's on takeover and announces them with
// gratuitous ARP so that clients and switches learn the new owner at once, and removes them on
// giveback. Uses iproute2 and arping inside the blade's own network namespace or host.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from 'pino';

const run = promisify(execFile);

/** How long one `ip` or `arping` invocation may take before it is abandoned. */
const commandTimeoutMs = 3000;
/** Gratuitous ARP packets sent per address on takeover. */
const gratuitousArpCount = 2;

export interface ClientAddress {
  interface: string;
  /** CIDR, e.g. 198.18.1.1/24. */
  address: string;
}

export class AddressManager {
  constructor(
    private readonly log: Logger,
    private readonly enabled: boolean,
  ) {}

  /**
   * Adds the addresses (an address already present is fine) and announces each. All at once:
   * each `ip` is a process start (100+ ms on a busy board), and a takeover waits for them.
   */
  async claim(addresses: readonly ClientAddress[]): Promise<void> {
    if (!this.enabled) return;
    await Promise.all(
      addresses.map(async (a) => {
        try {
          await run('ip', ['addr', 'add', a.address, 'dev', a.interface], { timeout: commandTimeoutMs });
        } catch (e) {
          const msg = String((e as { stderr?: string }).stderr ?? (e as Error).message);
          if (!/File exists/.test(msg)) {
            this.log.error({ address: a.address, interface: a.interface, err: msg.trim() }, 'cannot add client address');
            throw e;
          }
        }
        this.log.info({ address: a.address, interface: a.interface }, 'client address up');
        void this.announce(a);
      }),
    );
  }

  /** Removes the addresses (an address already gone is fine). */
  async release(addresses: readonly ClientAddress[]): Promise<void> {
    if (!this.enabled) return;
    for (const a of addresses) {
      await run('ip', ['addr', 'del', a.address, 'dev', a.interface], { timeout: commandTimeoutMs }).then(
        () => this.log.info({ address: a.address, interface: a.interface }, 'client address down'),
        () => undefined,
      );
    }
  }

  /** Gratuitous ARP: unsolicited replies naming our MAC for the address. */
  private async announce(a: ClientAddress): Promise<void> {
    const ip = a.address.split('/')[0] as string;
    try {
      await run('arping', ['-q', '-U', '-P', '-c', String(gratuitousArpCount), '-i', a.interface, '-S', ip, ip], { timeout: commandTimeoutMs });
    } catch (e) {
      // arping exits non-zero when nobody answers an unsolicited reply, which is normal.
      const code = (e as { code?: unknown }).code;
      if (code === 'ENOENT') this.log.warn('arping is not installed: takeover is not announced (clients relearn on ARP timeout)');
    }
  }
}
