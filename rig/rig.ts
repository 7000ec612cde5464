// The process rig: two blades as real processes on emulated hardware. It owns the disk
// images (served over NBD by the loop emulator on loops A and B), the NVRAM files, the
// serial relay between two pty pairs, the rig control channel (loop controller, GPIO,
// I2C battery gauge), the power relays, and the fault commands.
import fs from 'node:fs/promises';
import path from 'node:path';
import { LoopEmulator, type LoopId, type MuxState } from './loop/loop-emulator.ts';
import { RigControlServer } from './control/server.ts';
import { SerialRelay } from './serial/relay.ts';
import { BladeProcess } from './power/blade-process.ts';
import type { RigBladeId } from '../firmware/ts/hal/rigctl/protocol.ts';
import crypto from 'node:crypto';
import { loopbackPlan, writeRigBoard } from './boards.ts';
import { createTopology, destroyTopology, inNamespace, setBladePort, setBladePorts, setBladesIsolated, topology, type RigNet, type Topology } from './net/topology.ts';
import { namespacePlan } from './net/plan.ts';
import { RigHardware } from './hw/blade-hw.ts';
import { LoopReservations } from './hw/reservations.ts';

export interface RigOptions {
  /** Working directory of the rig (images, NVRAM files, configs, sockets, logs). */
  dir: string;
  /** Data disks per blade (plus one parity disk and one spare are added). */
  dataDisksPerBlade?: number;
  diskBytes?: number;
  nvramBytes?: number;
  /**
   * Builds the command that boots a blade from its config file. Default: the `blade` CLI
   * through tsx (`blade run --config FILE`).
   */
  bladeCommand?: (configPath: string) => string[];
  /** Writes the blade's board descriptor; the rig passes what it created. Default: writeRigBoard. */
  writeBladeConfig?: (ctx: BladeConfigContext) => Promise<string>;
  /** First of the ports the loopback rig uses (NFS and MOUNT per blade, interconnect). Default 12049. */
  portBase?: number;
  /**
   * `netns`: a network namespace per blade and one for clients, veth ports on net1/net2 and the
   * interconnect, the blades own their client addresses (needs root). `loopback` (default):
   * every blade on 127.0.0.1 with its own ports.
   */
  network?: 'loopback' | 'netns';
  /** Which of the rig network slots (0..60) a netns rig uses: names and subnets differ per slot. */
  netSlot?: number;
}

export interface BladeConfigContext {
  blade: RigBladeId;
  dir: string;
  nbd: { host: string; port: number };
  ownDisks: string[];
  partnerDisks: string[];
  spare: string;
  nvramPath: string;
  serialPath: string;
  controlSocket: string;
}

export const rigBladeIds: readonly RigBladeId[] = ['a', 'b'];

export interface RigStatus {
  dir: string;
  blades: Array<ReturnType<BladeProcess['status']>>;
  loop: ReturnType<LoopEmulator['status']>;
  serial: { faults: SerialRelay['faults']; stats: SerialRelay['stats'] };
  batteries: Record<RigBladeId, 'good' | 'failed'>;
  /** Levels of the emulated GPIO lines per blade (power-fail, partner-reset, LEDs). */
  gpio: ReturnType<RigHardware['status']> | null;
  network: { mode: 'loopback' } | { mode: 'netns'; id: string; namespaces: Topology['namespaces']; subnets: Topology['subnet']; storageSubnet: string; bladesIsolated: boolean };
}

export class Rig {
  readonly dir: string;
  private loop: LoopEmulator | undefined;
  private control: RigControlServer | undefined;
  private serial: SerialRelay | undefined;
  private hw: RigHardware | undefined;
  /** The namespace topology of a netns rig (undefined in loopback mode). */
  private net: Topology | undefined;
  private readonly blades = new Map<RigBladeId, BladeProcess>();
  private readonly battery: Record<RigBladeId, 'good' | 'failed'> = { a: 'good', b: 'good' };
  private readonly nvramPaths = new Map<RigBladeId, string>();
  private isolated = false;

  constructor(private readonly opts: RigOptions) {
    this.dir = path.resolve(opts.dir);
  }

  get controlSocketPath(): string {
    return path.join(this.dir, 'control.sock');
  }

  diskNames(blade: RigBladeId): { data: string[]; parity: string; spare: string } {
    const n = this.opts.dataDisksPerBlade ?? 3;
    return {
      data: Array.from({ length: n }, (_, i) => `${blade}${i}`),
      parity: `${blade}p`,
      spare: `${blade}s`,
    };
  }

  /** Creates the hardware (idempotent over an existing rig dir) and powers both blades on. */
  async up(options: { powerOn?: boolean } = {}): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    const diskBytes = this.opts.diskBytes ?? 256 * 1024 * 1024;
    const disks = [];
    for (const blade of rigBladeIds) {
      const names = this.diskNames(blade);
      for (const name of [...names.data, names.parity, names.spare]) {
        const p = path.join(this.dir, 'disks', `${name}.img`);
        await fs.mkdir(path.dirname(p), { recursive: true });
        const fh = await fs.open(p, 'a');
        if ((await fh.stat()).size < diskBytes) await fh.truncate(diskBytes);
        await fh.close();
        disks.push({ name, path: p, sizeBytes: diskBytes });
      }
    }
    let nbdHost = '127.0.0.1';
    if (this.opts.network === 'netns') {
      const t = topology(this.opts.netSlot ?? 0);
      await createTopology(t);
      this.net = t;
      // The storage loops reach the blades' namespaces over the storage network (not the
      // interconnect: a cut interconnect must leave the disks, and their mailboxes, shared).
      nbdHost = t.storage.hostAddress;
    }
    this.loop = new LoopEmulator({ disks, host: nbdHost });
    const ports = await this.loop.start();

    this.control = new RigControlServer(this.controlSocketPath);
    this.registerLoopController(this.control);
    this.hw = new RigHardware(this.control, {
      power: { cut: (b) => this.powerCut(b), restore: (b) => this.powerRestore(b) },
      onError: (e) => console.error(`rig: power relay action failed: ${(e as Error).message}`),
      // The blades are off until powered on below (powerRestored drives the sense lines).
      poweredAtStart: false,
    });
    await this.control.start();

    this.serial = new SerialRelay();
    const serialPaths = this.serial.start();

    for (const blade of rigBladeIds) {
      const bdir = path.join(this.dir, blade);
      await fs.mkdir(bdir, { recursive: true });
      const nvramPath = path.join(bdir, 'nvram.img');
      const fh = await fs.open(nvramPath, 'a');
      const nvramBytes = this.opts.nvramBytes ?? 32 * 1024 * 1024;
      if ((await fh.stat()).size < nvramBytes) await fh.truncate(nvramBytes);
      await fh.close();
      this.nvramPaths.set(blade, nvramPath);
      const partner: RigBladeId = blade === 'a' ? 'b' : 'a';
      const own = this.diskNames(blade);
      const theirs = this.diskNames(partner);
      const ctx: BladeConfigContext = {
        blade,
        dir: bdir,
        nbd: { host: nbdHost, port: ports[blade] },
        ownDisks: [...own.data, own.parity],
        partnerDisks: [...theirs.data, theirs.parity],
        spare: own.spare,
        nvramPath,
        serialPath: serialPaths[blade],
        controlSocket: this.controlSocketPath,
      };
      const configPath = this.opts.writeBladeConfig
        ? await this.opts.writeBladeConfig(ctx)
        : await writeRigBoard(ctx, this.net ? namespacePlan(this.net) : loopbackPlan(this.opts.portBase ?? 12049), await this.pairKey());
      const bare = this.opts.bladeCommand?.(configPath) ?? defaultBladeCommand(configPath);
      // In netns mode the blade runs inside its own namespace, as on its own board.
      const command = this.net ? inNamespace(this.net, blade, bare) : bare;
      this.blades.set(
        blade,
        new BladeProcess({ id: blade, command, cwd: process.cwd(), logPath: path.join(bdir, 'blade.log') }),
      );
    }
    if (options.powerOn !== false) {
      for (const [id, b] of this.blades) {
        // The relay's power-good signal reaches the partner's sense input (rig/hw/wiring.ts).
        this.hw.powerRestored(id);
        b.powerOn();
      }
    }
  }

  /** The pair's shared secret, created once per rig directory (owner-only). */
  private async pairKey(): Promise<string> {
    const p = path.join(this.dir, 'pair.key');
    try {
      return (await fs.readFile(p, 'utf8')).trim();
    } catch {
      const key = crypto.randomBytes(32).toString('hex');
      await fs.writeFile(p, `${key}\n`, { mode: 0o600 });
      return key;
    }
  }

  blade(id: RigBladeId): BladeProcess {
    const b = this.blades.get(id);
    if (!b) throw new Error(`rig: no blade ${id}`);
    return b;
  }

  loopEmulator(): LoopEmulator {
    if (!this.loop) throw new Error('rig is not up');
    return this.loop;
  }

  /** The emulated board hardware (GPIO lines, I2C gauges) of both blades. */
  hardware(): RigHardware {
    if (!this.hw) throw new Error('rig is not up');
    return this.hw;
  }

  serialRelay(): SerialRelay {
    if (!this.serial) throw new Error('rig is not up');
    return this.serial;
  }

  /** Cuts a blade's power: SIGKILL; with a failed battery its NVRAM content is lost too. */
  async powerCut(id: RigBladeId): Promise<void> {
    await this.blade(id).cut();
    this.control?.disconnect(id);
    this.serial?.setPowered(id, false);
    this.hw?.powerLost(id);
    // A powered-off NIC: no carrier, and no addresses when it comes back.
    if (this.net) await setBladePorts(this.net, id, false);
    if (this.battery[id] === 'failed') {
      const p = this.nvramPaths.get(id);
      if (p) {
        const st = await fs.stat(p);
        const fh = await fs.open(p, 'r+');
        // Battery-backed memory without a battery reads back as garbage-free zeroes here;
        // what matters is that nothing of the old content survives.
        await fh.truncate(0);
        await fh.truncate(st.size);
        await fh.close();
      }
    }
  }

  async powerRestore(id: RigBladeId): Promise<void> {
    if (this.net) await setBladePorts(this.net, id, true);
    this.serial?.setPowered(id, true);
    this.hw?.powerRestored(id);
    this.blade(id).powerOn();
  }

  setBattery(id: RigBladeId, state: 'good' | 'failed'): void {
    this.battery[id] = state;
    this.hw?.setBattery(id, state);
  }

  batteryState(id: RigBladeId): 'good' | 'failed' {
    return this.battery[id];
  }

  setLoop(loop: LoopId, state: MuxState): void {
    this.loopEmulator().setLoop(loop, state);
  }

  status(): RigStatus {
    return {
      dir: this.dir,
      blades: [...this.blades.values()].map((b) => b.status()),
      loop: this.loopEmulator().status(),
      serial: { faults: { ...this.serialRelay().faults }, stats: { ...this.serialRelay().stats } },
      batteries: { ...this.battery },
      gpio: this.hw?.status() ?? null,
      network: this.net ? { mode: 'netns', id: this.net.id, namespaces: this.net.namespaces, subnets: this.net.subnet, storageSubnet: this.net.storage.subnet, bladesIsolated: this.isolated } : { mode: 'loopback' },
    };
  }

  async down(): Promise<void> {
    await Promise.all([...this.blades.values()].map((b) => b.stop(3000)));
    this.serial?.close();
    this.hw?.close();
    await this.control?.close();
    await this.loop?.close();
    if (this.net) await destroyTopology(this.net);
  }

  /** The namespace topology (netns mode), for clients and tests. */
  topology(): Topology | undefined {
    return this.net;
  }

  /**
   * Partitions the blades on every network (netns mode): blade-to-blade traffic is dropped on
   * the client networks and the interconnect, while clients still reach both blades and both
   * keep their disks (the storage network is separate). With the serial link cut as well, only
   * the mailboxes on the shared disks still carry anything between the blades.
   */
  async setBladesIsolated(isolated: boolean): Promise<void> {
    if (!this.net) throw new Error('network partitions need the netns rig network');
    await setBladesIsolated(this.net, isolated);
    this.isolated = isolated;
  }

  /** Whether the blades are partitioned on the networks (setBladesIsolated). */
  bladesIsolated(): boolean {
    return this.isolated;
  }

  /** Fails or restores one network port of a blade (netns mode): the cable is pulled. */
  async setPort(id: RigBladeId, net: RigNet, up: boolean): Promise<void> {
    if (!this.net) throw new Error('port faults need the netns rig network');
    await setBladePort(this.net, id, net, up);
  }

  private registerLoopController(server: RigControlServer): void {
    // loop.register|reserve|release|preempt|holder, with SCSI-3 style registrations.
    new LoopReservations(() => this.loopEmulator()).registerOps(server);
    server.handle('battery.state', (blade) => this.battery[blade]);
  }
}

function defaultBladeCommand(configPath: string): string[] {
  return [process.execPath, '--import', 'tsx', path.resolve('firmware/ts/cli/blade.ts'), 'run', '--config', configPath];
}

