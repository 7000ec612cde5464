// The board descriptor: one document naming every device of one blade (disks, NVRAM, serial
// link, GPIO lines, I2C gauge, network ports, NFS service). Portable code never names a board;
// the composition root reads this and builds the drivers (embedded-hal / Zephyr style).
import { z } from 'zod';

const name = z.string().min(1).max(64).regex(/^[a-z0-9][a-z0-9_-]*$/i, 'letters, digits, - and _ only');
const absolutePath = z.string().startsWith('/', 'must be an absolute path');
const port = z.number().int().min(1).max(65535);
const ipv4 = z.string().regex(/^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/, 'must be an IPv4 address');
const ipv4Cidr = z.string().regex(/^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/([12]?\d|3[0-2])$/, 'must be an IPv4 address with a prefix length, e.g. 10.0.1.10/24');
const i2cAddress = z.number().int().min(0x03, 'I2C addresses are 7-bit, 0x03..0x77').max(0x77, 'I2C addresses are 7-bit, 0x03..0x77');

/**
 * Where a disk is: an absolute path (an image file or /dev/sdX, /dev/disk/by-id/...), or an
 * NBD export `nbd://host:port/export` (the rig's loop emulator, or any NBD server).
 */
export const diskUri = z.string().refine((s) => s.startsWith('/') || /^nbd:\/\/[^/:]+:\d{1,5}\/[^/\s]+$/.test(s), {
  message: 'must be an absolute path (/dev/sdb, /var/lib/twinblade/disk0.img) or nbd://host:port/export',
});

export const diskSchema = z.strictObject({
  /** Stable id used in logs, MUX lines and RAID labels. */
  id: name,
  uri: diskUri,
  /** `member` disks carry RAID data (and the HA mailbox region); a `spare` waits for a rebuild. */
  role: z.enum(['member', 'spare']),
});

export const gpioLineSchema = z.strictObject({
  /** Chip name (gpiochip0), label (pinctrl-bcm2711) or base number. */
  chip: z.union([z.string().min(1), z.number().int().min(0)]),
  line: z.number().int().min(0),
  activeLow: z.boolean().default(false),
});

export const nvramSchema = z.discriminatedUnion('driver', [
  z.strictObject({
    /** A file or /dev/pmem0 mapped into memory through the native addon. */
    driver: z.literal('mmap'),
    path: absolutePath,
    sizeBytes: z.number().int().min(64 * 1024),
    /** msync on persist: only for a file on a host that may itself crash (slow). */
    msync: z.boolean().default(false),
  }),
  z.strictObject({
    /** An FRAM chip on an I2C bus (FM24CL64 style, 2-byte addressing). */
    driver: z.literal('fram-i2c'),
    bus: z.number().int().min(0),
    address: i2cAddress,
    sizeBytes: z.number().int().min(1024).max(65536),
  }),
]);

export const boardSchema = z
  .strictObject({
    /** Format version of this document. */
    version: z.literal(1),
    identity: z.strictObject({
      /** The pair this blade belongs to; both blades of a pair have the same one. */
      pairId: name,
      blade: z.enum(['a', 'b']),
      /** The system id carried in every status message (HA-2): identical on both blades. */
      systemId: z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits'),
      hostname: name.optional(),
    }),
    disks: z.strictObject({
      /** The set this blade is primary for (ST-1). */
      own: z.array(diskSchema).min(1, 'a blade needs at least one disk of its own'),
      /** The partner's set, which this blade takes over. */
      partner: z.array(diskSchema),
      spare: z.array(diskSchema).default([]),
    }),
    nvram: nvramSchema,
    serial: z.strictObject({
      /** The blade interconnect UART (or the rig's pty). */
      path: absolutePath,
      baud: z.number().int().refine((b) => [9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000, 1500000, 3000000].includes(b), 'must be a standard baud rate'),
    }),
    gpio: z.strictObject({
      /** linux: sysfs lines through onoff; rig: the rig control channel; none: no GPIO on this board. */
      driver: z.enum(['linux', 'rig', 'none']),
      /** Input: the power supply is about to fail (save state now, ST-5). */
      powerFail: gpioLineSchema.optional(),
      /** Output: hold the partner in reset (a hard fence). */
      partnerReset: gpioLineSchema.optional(),
      /**
       * Input: the partner's power is good (its power-good rail, or its BMC's signal; logical
       * 1 = good). Lets the HA layer take a powered-off partner over without waiting for the
       * mailbox timeout (docs/ha.md "Partner power sense").
       */
      partnerPower: gpioLineSchema.optional(),
      leds: z.record(name, gpioLineSchema).default({}),
      /** Output per disk id: selects which blade's path the disk's 2:1 SATA MUX connects. */
      muxSelect: z.record(name, gpioLineSchema).default({}),
    }),
    i2c: z.strictObject({
      driver: z.enum(['linux', 'rig', 'none']),
      bus: z.number().int().min(0).optional(),
      gauge: z.strictObject({ model: z.enum(['max17048', 'bq27441']), address: i2cAddress }).optional(),
    }),
    /** The rig control channel (GPIO, I2C gauge, loop controller) when drivers are 'rig': a Unix socket or a VM's virtio-serial port. */
    rigControl: z.strictObject({ path: absolutePath }).optional(),
    network: z.strictObject({
      /** Client-facing ports (CF-1): the same networks on both blades. */
      ports: z
        .array(
          z.strictObject({
            name,
            interface: z.string().min(1).max(15, 'Linux interface names have at most 15 characters'),
            /** This blade's client address on the network (taken over by the partner on failure). */
            address: ipv4Cidr,
          }),
        )
        .min(1),
      /** Inter-blade traffic over Ethernet (status, mirroring, pass-through) besides the serial link. */
      interconnect: z.strictObject({
        interface: z.string().min(1).max(15).optional(),
        self: ipv4,
        partner: ipv4,
        port,
      }),
    }),
    /** How the firmware runs on this board: where its control socket lives, its secrets, its cadence. */
    service: z
      .strictObject({
        /** Directory for the control socket (blade.sock, owner-only) and run-time state. */
        runDir: absolutePath,
        /** The pair's shared secret (32 bytes, hex): authenticates interconnect frames and MACs file handles. */
        pairKeyHex: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
        /** Read-only Prometheus metrics endpoint; port 0 picks a free one. */
        metrics: z.strictObject({ host: ipv4.default('127.0.0.1'), port: z.number().int().min(0).max(65535) }).optional(),
        logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
        /** Consistency point interval (ms). */
        cpIntervalMs: z.number().int().min(100).default(10_000),
        /**
         * Bytes of clean file data one disk set may keep in memory for reads (the file system's
         * block cache, docs/filesystem.md). Default: an eighth of the board's RAM, at least 64 MiB
         * and at most 2 GiB (storage-set.ts `readCacheBytesFor`); 0 turns caching and read-ahead off.
         */
        readCacheBytes: z.number().int().min(0).optional(),
        /** The blade adds and removes its client addresses itself (in its own network namespace or host); off in the loopback rig. */
        manageAddresses: z.boolean().default(false),
      })
      .optional(),
    /** What this blade must know of its partner to serve the partner's clients after a takeover. */
    partner: z
      .strictObject({
        nfs: z.strictObject({ bindAddress: ipv4, ports: z.strictObject({ nfs: port, mount: port }) }),
        /** The partner's client addresses (taken over with its exports, CF-5). */
        addresses: z.array(z.strictObject({ interface: z.string().min(1).max(15), address: ipv4Cidr })).default([]),
        exports: z.array(z.strictObject({ path: absolutePath, clients: z.array(z.union([ipv4, ipv4Cidr, z.literal('*')])).min(1), readOnly: z.boolean().default(false) })).default([]),
        /** The partner's management socket, when both blades share a host (the process rig). */
        controlSocket: absolutePath.optional(),
      })
      .optional(),
    nfs: z.strictObject({
      bindAddress: ipv4.default('0.0.0.0'),
      ports: z.strictObject({ nfs: port.default(2049), mount: port.default(20048), portmapper: port.default(111) }),
      exports: z
        .array(
          z.strictObject({
            path: absolutePath,
            /** Which disk set holds the file system. */
            set: z.enum(['own', 'partner']),
            clients: z.array(z.union([ipv4, ipv4Cidr, z.literal('*')])).min(1),
            readOnly: z.boolean().default(false),
          }),
        )
        .default([]),
    }),
  })
  .superRefine((b, ctx) => {
    const seen = new Map<string, string>();
    for (const set of ['own', 'partner', 'spare'] as const) {
      b.disks[set].forEach((d, i) => {
        const prev = seen.get(d.id);
        if (prev !== undefined) ctx.addIssue({ code: 'custom', path: ['disks', set, i, 'id'], message: `disk id ${d.id} is already used by disks.${prev}` });
        seen.set(d.id, `${set}[${i}]`);
        if (set === 'spare' && d.role !== 'spare') ctx.addIssue({ code: 'custom', path: ['disks', set, i, 'role'], message: 'disks under spare must have role spare' });
        if (set !== 'spare' && d.role === 'spare') ctx.addIssue({ code: 'custom', path: ['disks', set, i, 'role'], message: `a spare belongs under disks.spare, not disks.${set}` });
      });
    }
    const lines = new Map<string, string>();
    const claim = (line: { chip: string | number; line: number } | undefined, path: (string | number)[]): void => {
      if (line === undefined) return;
      const key = `${line.chip}:${line.line}`;
      const prev = lines.get(key);
      if (prev !== undefined) ctx.addIssue({ code: 'custom', path, message: `GPIO ${key} is already used by gpio.${prev}` });
      lines.set(key, path.slice(1).join('.'));
    };
    claim(b.gpio.powerFail, ['gpio', 'powerFail']);
    claim(b.gpio.partnerReset, ['gpio', 'partnerReset']);
    claim(b.gpio.partnerPower, ['gpio', 'partnerPower']);
    for (const [k, v] of Object.entries(b.gpio.leds)) claim(v, ['gpio', 'leds', k]);
    for (const [k, v] of Object.entries(b.gpio.muxSelect)) {
      claim(v, ['gpio', 'muxSelect', k]);
      if (!seen.has(k)) ctx.addIssue({ code: 'custom', path: ['gpio', 'muxSelect', k], message: `no disk with id ${k}` });
    }
    const usesGpio = b.gpio.powerFail !== undefined || b.gpio.partnerReset !== undefined || b.gpio.partnerPower !== undefined || Object.keys(b.gpio.leds).length > 0 || Object.keys(b.gpio.muxSelect).length > 0;
    if (b.gpio.driver === 'none' && usesGpio) ctx.addIssue({ code: 'custom', path: ['gpio', 'driver'], message: "driver 'none' cannot have GPIO lines" });
    if (b.i2c.driver === 'linux' && b.i2c.bus === undefined) ctx.addIssue({ code: 'custom', path: ['i2c', 'bus'], message: "the linux I2C driver needs a bus number" });
    if (b.i2c.driver === 'none' && b.i2c.gauge !== undefined) ctx.addIssue({ code: 'custom', path: ['i2c', 'gauge'], message: "driver 'none' cannot have a gauge" });
    if ((b.gpio.driver === 'rig' || b.i2c.driver === 'rig') && b.rigControl === undefined) {
      ctx.addIssue({ code: 'custom', path: ['rigControl'], message: 'the rig GPIO/I2C drivers need rigControl.path' });
    }
    if (b.nvram.driver === 'fram-i2c' && b.i2c.driver !== 'linux') ctx.addIssue({ code: 'custom', path: ['nvram', 'driver'], message: 'an I2C FRAM needs the linux I2C driver' });
    if (b.nvram.driver === 'fram-i2c' && b.i2c.gauge !== undefined && b.i2c.bus === b.nvram.bus && b.i2c.gauge.address === b.nvram.address) {
      ctx.addIssue({ code: 'custom', path: ['nvram', 'address'], message: 'the FRAM and the gauge share an I2C address' });
    }
    const names = new Set<string>();
    b.network.ports.forEach((p, i) => {
      if (names.has(p.name)) ctx.addIssue({ code: 'custom', path: ['network', 'ports', i, 'name'], message: `port name ${p.name} is used twice` });
      names.add(p.name);
    });
    if (b.network.interconnect.self === b.network.interconnect.partner) ctx.addIssue({ code: 'custom', path: ['network', 'interconnect', 'partner'], message: 'partner address equals self' });
    const { nfs, mount, portmapper } = b.nfs.ports;
    if (new Set([nfs, mount, portmapper]).size !== 3) ctx.addIssue({ code: 'custom', path: ['nfs', 'ports'], message: 'nfs, mount and portmapper ports must differ' });
    const exportPaths = new Set<string>();
    b.nfs.exports.forEach((e, i) => {
      if (exportPaths.has(e.path)) ctx.addIssue({ code: 'custom', path: ['nfs', 'exports', i, 'path'], message: `export ${e.path} is listed twice` });
      exportPaths.add(e.path);
    });
  });

export type Board = z.output<typeof boardSchema>;
export type BoardInput = z.input<typeof boardSchema>;
export type DiskSpec = z.output<typeof diskSchema>;
export type GpioLineSpec = z.output<typeof gpioLineSchema>;
export type NvramSpec = z.output<typeof nvramSchema>;
