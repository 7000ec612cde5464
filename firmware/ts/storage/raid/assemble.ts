// Assembly: which of the disks offered belong to the volume, at which positions, and
// whether the volume can run. A pure decision over the labels read from the disks, so
// that every case (foreign, stale, conflicting, missing) is a table-driven unit test.
//
// The rule: among the disks whose label names this pair and volume, the label with the
// highest generation carries the authoritative member table (every label carries the whole
// table, so any one written at a generation is a consistent reference). A disk is a current
// member only if that table lists its uuid, at its position, as ok or rebuilding; a disk
// the table lists as failed, or does not list, is stale and never used as a member.

import type { DiskLabel, LabelReadResult, MemberState } from '../label.ts';
import { RaidError, RaidErrorCode } from './errors.ts';
import type { DiskVerdict } from './errors.ts';

export interface AssemblyInput {
  name: string;
  read: LabelReadResult;
}

export interface AssembledMember {
  /** Index into the input array. */
  disk: number;
  uuid: string;
  state: 'ok' | 'rebuilding';
  /** For a rebuilding member: the first stripe not known rebuilt. */
  rebuildCursorStripe: number;
}

export interface AssemblyPlan {
  /** The authoritative label (generation, geometry, member table). */
  reference: DiskLabel;
  /** Per position: the disk assembled there, or undefined (failed or missing). */
  members: Array<AssembledMember | undefined>;
  /** Per position: the state the reference table records. */
  tableStates: MemberState[];
  /** Input indexes of spares of this volume, with their uuids. */
  spares: Array<{ disk: number; uuid: string }>;
  verdicts: DiskVerdict[];
}

export function planAssembly(inputs: readonly AssemblyInput[], pairId: string, volumeId: string): AssemblyPlan {
  const verdicts: DiskVerdict[] = inputs.map((i) => ({ name: i.name, use: 'rejected' }));
  const reject = (i: number, code: string, message: string): void => {
    verdicts[i] = { name: (inputs[i] as AssemblyInput).name, use: 'rejected', code, message };
  };
  const candidates: Array<{ index: number; label: DiskLabel }> = [];
  inputs.forEach((input, i) => {
    const r = input.read;
    switch (r.kind) {
      case 'unreadable':
      case 'invalid':
        reject(i, r.code, r.message);
        break;
      case 'blank':
        reject(i, RaidErrorCode.noLabel, 'blank disk: no label');
        break;
      case 'label':
        if (r.label.pairId !== pairId || r.label.volumeId !== volumeId) {
          reject(i, RaidErrorCode.foreignDisk, `label names pair "${r.label.pairId}" volume "${r.label.volumeId}", not pair "${pairId}" volume "${volumeId}"`);
        } else {
          candidates.push({ index: i, label: r.label });
        }
        break;
    }
  });
  const fail = (code: string, message: string): never => {
    throw new RaidError(code, code === RaidErrorCode.membersMissing ? 'io' : 'corrupt', `assemble ${pairId}/${volumeId}: ${message}`, verdicts);
  };
  if (candidates.length === 0) return fail(RaidErrorCode.membersMissing, 'no disk of this volume');

  // Two disks with one uuid (a cloned image, a disk seen twice through two paths) are
  // ambiguous: refuse rather than guess which one holds the current data.
  const seen = new Map<string, number>();
  for (const c of candidates) {
    const other = seen.get(c.label.diskUuid);
    if (other !== undefined) fail(RaidErrorCode.labelConflict, `disks "${(inputs[other] as AssemblyInput).name}" and "${(inputs[c.index] as AssemblyInput).name}" have the same uuid ${c.label.diskUuid}`);
    seen.set(c.label.diskUuid, c.index);
  }

  const generation = Math.max(...candidates.map((c) => c.label.generation));
  const refs = candidates.filter((c) => c.label.generation === generation);
  const reference = (refs[0] as { label: DiskLabel }).label;
  for (const r of refs) {
    if (!sameTable(r.label, reference)) {
      fail(RaidErrorCode.labelConflict, `labels of generation ${generation} disagree ("${(inputs[r.index] as AssemblyInput).name}")`);
    }
  }

  const members: Array<AssembledMember | undefined> = new Array<AssembledMember | undefined>(reference.memberCount).fill(undefined);
  const spares: Array<{ disk: number; uuid: string }> = [];
  for (const c of candidates) {
    const l = c.label;
    if (!sameGeometry(l, reference)) {
      reject(c.index, RaidErrorCode.labelConflict, `geometry differs from generation ${generation}`);
      continue;
    }
    const position = reference.members.findIndex((m) => m.uuid === l.diskUuid);
    const entry = reference.members[position];
    if (entry === undefined) {
      if (l.role === 'spare') {
        spares.push({ disk: c.index, uuid: l.diskUuid });
        verdicts[c.index] = { name: (inputs[c.index] as AssemblyInput).name, use: 'spare' };
      } else {
        reject(c.index, RaidErrorCode.staleMember, `was position ${l.position} at generation ${l.generation}; generation ${generation} has another disk there`);
      }
      continue;
    }
    if (entry.state === 'failed') {
      reject(c.index, RaidErrorCode.staleMember, `failed out of position ${position} (generation ${generation}); its data is stale`);
      continue;
    }
    if (l.role !== 'spare' && l.position !== position) {
      reject(c.index, RaidErrorCode.labelConflict, `label says position ${l.position}, member table says ${position}`);
      continue;
    }
    if (entry.state === 'ok' && l.role === 'spare') {
      reject(c.index, RaidErrorCode.labelConflict, `spare label, but the member table lists it as current at position ${position}`);
      continue;
    }
    // A rebuild checkpoint is only trusted from the disk's own member label of the current
    // generation; a spare label (the rebuild had not reached the disk) restarts at 0.
    const cursor = entry.state === 'rebuilding' && l.role !== 'spare' && l.generation === generation ? l.rebuildCursorStripe : 0;
    members[position] = { disk: c.index, uuid: l.diskUuid, state: entry.state, rebuildCursorStripe: cursor };
    verdicts[c.index] = { name: (inputs[c.index] as AssemblyInput).name, use: 'member', position };
  }

  const tableStates = reference.members.map((m) => m.state);
  const unavailable = members.filter((m) => m === undefined || m.state !== 'ok').length;
  if (unavailable > 1) {
    const absent = members.flatMap((m, p) => (m === undefined || m.state !== 'ok' ? [p] : []));
    fail(RaidErrorCode.membersMissing, `positions ${absent.join(', ')} unavailable; single parity covers one`);
  }
  return { reference, members, tableStates, spares, verdicts };
}

function sameGeometry(a: DiskLabel, b: DiskLabel): boolean {
  return a.memberCount === b.memberCount && a.stripeUnitBytes === b.stripeUnitBytes && a.stripeCount === b.stripeCount;
}

function sameTable(a: DiskLabel, b: DiskLabel): boolean {
  return sameGeometry(a, b) && a.members.every((m, i) => m.uuid === b.members[i]?.uuid && m.state === b.members[i]?.state);
}
