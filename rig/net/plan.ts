// The network plan of a rig in namespace mode: each blade's client addresses on net1 and net2
// (added by the firmware while it owns them), its interconnect address on ic, and the NFS
// service bound to the owner's address on the standard ports — so that after a takeover the
// survivor serves its partner's export at the partner's own address (CF-5).
import type { RigNetworkPlan } from '../boards.ts';
import type { Topology } from './topology.ts';

export const nfsStandardPorts = { nfs: 2049, mount: 20048 } as const;
export const interconnectPort = 7400;

export function namespacePlan(t: Topology): RigNetworkPlan {
  return {
    nfsBind: (b) => t.bladeAddress(b, 'net1'),
    nfsPorts: () => ({ ...nfsStandardPorts }),
    clientAddresses: (b) => [
      { interface: t.ifname.net1, address: `${t.bladeAddress(b, 'net1')}/24` },
      { interface: t.ifname.net2, address: `${t.bladeAddress(b, 'net2')}/24` },
    ],
    interconnect: (b) => ({
      self: t.bladeAddress(b, 'ic'),
      partner: t.bladeAddress(b === 'a' ? 'b' : 'a', 'ic'),
      port: interconnectPort,
      interface: t.ifname.ic,
    }),
    manageAddresses: true,
  };
}
