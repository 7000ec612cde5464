// The rig's fault commands, one function per kind, shared by the `rig` CLI (through the
// rig's management socket) and the end-to-end tests (in process).
import type { Rig } from './rig.ts';
import type { LoopId } from './loop/loop-emulator.ts';
import { rigNets, type RigNet } from './net/topology.ts';

export const faultKinds = ['power-cut', 'power-fail', 'link', 'loop-fail', 'disk-fail', 'battery-fail', 'mux-bypass', 'port', 'partition', 'sense-wire'] as const;
export type FaultKind = (typeof faultKinds)[number];

export class FaultUsageError extends Error {
  readonly code = 'ERR_RIG_FAULT_USAGE';
}

function blade(arg: string | undefined): 'a' | 'b' {
  if (arg !== 'a' && arg !== 'b') throw new FaultUsageError(`expected a blade (a or b), got ${String(arg)}`);
  return arg;
}

/**
 * Injects (`heal` false) or heals a fault. Arguments by kind:
 * - power-cut a|b
 * - power-fail a|b   (the power-fail GPIO input rises, the power goes after the hold-up time)
 * - link cut | corrupt P | drop P | delay MS   (heal link: restores a clean link)
 * - loop-fail a|b
 * - disk-fail DISK   (heal: the same disk works again with its old contents; `blank`: a new blank disk)
 * - battery-fail a|b
 * - mux-bypass DISK a|b
 * - port a|b net1|net2|ic   (netns rig: the blade's cable on that network is pulled)
 * - partition   (netns rig: every path between the blades cut but the shared disks — the
 *   serial link, and blade-to-blade traffic on every network; clients still reach both)
 * - sense-wire a|b good|lost   (the partner-power input that blade reads is stuck at that
 *   level whatever the partner's power; heal sense-wire a|b: the wire follows the relay again)
 */
export async function applyFault(rig: Rig, kind: string, args: string[], heal: boolean): Promise<string> {
  switch (kind) {
    case 'power-cut': {
      const b = blade(args[0]);
      if (heal) await rig.powerRestore(b);
      else await rig.powerCut(b);
      return `blade ${b} power ${heal ? 'restored' : 'cut'}`;
    }
    case 'power-fail': {
      const b = blade(args[0]);
      if (heal) await rig.hardware().healPowerFail(b);
      else await rig.hardware().powerFail(b);
      return `blade ${b} ${heal ? 'supply restored' : 'supply failed (power-fail raised, power cut after the hold-up time)'}`;
    }
    case 'link': {
      const f = rig.serialRelay().faults;
      if (heal) {
        Object.assign(f, { cut: false, delayMs: 0, corruptProbability: 0, dropProbability: 0 });
        return 'serial link healed';
      }
      const mode = args[0] ?? 'cut';
      const value = Number(args[1]);
      if (mode === 'cut') f.cut = true;
      else if (mode === 'corrupt' && value >= 0 && value <= 1) f.corruptProbability = value;
      else if (mode === 'drop' && value >= 0 && value <= 1) f.dropProbability = value;
      else if (mode === 'delay' && value >= 0) f.delayMs = value;
      else throw new FaultUsageError('link fault: cut | corrupt P | drop P | delay MS');
      return `serial link ${mode}${Number.isFinite(value) ? ` ${value}` : ''}`;
    }
    case 'loop-fail': {
      const l = blade(args[0]) as LoopId;
      rig.setLoop(l, heal ? 'in' : 'failed');
      return `loop ${l} ${heal ? 'restored' : 'failed'}`;
    }
    case 'disk-fail': {
      const d = args[0];
      if (!d || (args[1] !== undefined && !(heal && args[1] === 'blank'))) throw new FaultUsageError('disk-fail DISK (heal: disk-fail DISK [blank])');
      if (heal && args[1] === 'blank') {
        await rig.loopEmulator().replaceDisk(d);
        return `disk ${d} replaced by a blank disk`;
      }
      rig.loopEmulator().setDiskFailed(d, !heal);
      return `disk ${d} ${heal ? 'working again (old contents)' : 'failed'}`;
    }
    case 'battery-fail': {
      const b = blade(args[0]);
      rig.setBattery(b, heal ? 'good' : 'failed');
      return `blade ${b} battery ${heal ? 'good' : 'failed'}`;
    }
    case 'mux-bypass': {
      const d = args[0];
      const l = blade(args[1]) as LoopId;
      if (!d) throw new FaultUsageError('mux-bypass DISK a|b');
      rig.loopEmulator().setMux(d, l, heal ? 'in' : 'bypassed');
      return `disk ${d} ${heal ? 'back in' : 'bypassed on'} loop ${l}`;
    }
    case 'port': {
      const b = blade(args[0]);
      const net = args[1] as RigNet;
      if (!rigNets.includes(net)) throw new FaultUsageError(`port a|b ${rigNets.join('|')}`);
      if (!rig.topology()) throw new FaultUsageError('port faults need the netns rig network (root; TWINBLADE_RIG_NET not loopback)');
      await rig.setPort(b, net, heal);
      return `blade ${b} port ${net} ${heal ? 'up' : 'down'}`;
    }
    case 'partition': {
      if (!rig.topology()) throw new FaultUsageError('a partition needs the netns rig network (root; TWINBLADE_RIG_NET not loopback)');
      await rig.setBladesIsolated(!heal);
      rig.serialRelay().faults.cut = !heal;
      return heal ? 'partition healed (serial link and networks between the blades back)' : 'blades partitioned: serial link cut, no traffic between them on any network; disks still shared';
    }
    case 'sense-wire': {
      const b = blade(args[0]);
      if (heal) {
        rig.hardware().setSenseWire(b, undefined);
        return `blade ${b} partner-power sense wire mended`;
      }
      const stuck = args[1];
      if (stuck !== 'good' && stuck !== 'lost') throw new FaultUsageError('sense-wire a|b good|lost');
      rig.hardware().setSenseWire(b, stuck);
      return `blade ${b} partner-power sense wire stuck at ${stuck}`;
    }
    default:
      throw new FaultUsageError(`unknown fault ${kind}; kinds: ${faultKinds.join(', ')}`);
  }
}
