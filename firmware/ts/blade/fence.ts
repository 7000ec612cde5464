// Chooses the fence driver a board calls for: the rig's loop controller (reservations over
// the rig control channel) on the emulated rigs. Disk numbers follow diskNumbers(): set 0
// (blade a's disks) first, then set 1.
import type { Board } from '../board/schema.ts';
import { RigControlClient } from '../hal/rigctl/client.ts';
import { RigLoopFence } from '../ha/fence-rig.ts';
import type { Fence } from '../ha/fence.ts';
import { bladeIndex } from '../board/board.ts';

export async function openFence(board: Board, rig?: RigControlClient): Promise<Fence> {
  const me = bladeIndex(board);
  const set0 = me === 0 ? board.disks.own : board.disks.partner;
  const set1 = me === 0 ? board.disks.partner : board.disks.own;
  const names = [...set0, ...set1].map((d) => {
    const m = /^nbd:\/\/[^/]+\/(.+)$/.exec(d.uri);
    return m ? (m[1] as string) : d.id;
  });
  if (board.rigControl) {
    let client = rig;
    if (client === undefined) {
      client = new RigControlClient({ socketPath: board.rigControl.path, blade: board.identity.blade });
      await client.connect();
    }
    return new RigLoopFence({ client, disks: names });
  }
  throw new Error('this board names no fence: a pair needs one (rigControl for the emulated rigs; SCSI-3 reservations and GPIO MUX fences are configured per board)');
}
