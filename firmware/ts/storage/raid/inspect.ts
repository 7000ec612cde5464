// Read-only inspection of disks for tools and the `blade` CLI: what each disk's label says,
// and what assembling a volume from them would do, without writing anything.

import type { BlockDevice } from '../../hal/block/block-device.ts';
import { readLabel } from '../label.ts';
import type { DiskLabel } from '../label.ts';
import { planAssembly } from './assemble.ts';
import { RaidError } from './errors.ts';
import type { DiskVerdict } from './errors.ts';

export interface DiskInspection {
  name: string;
  sizeBytes: number;
  kind: 'label' | 'blank' | 'invalid' | 'unreadable';
  label?: DiskLabel;
  /** Why the label slot is not a label (kind invalid / unreadable). */
  code?: string;
  /** One line for humans. */
  summary: string;
}

/** Reads every disk's label slot. Never writes; never throws for disk errors or bad bytes. */
export async function inspectDisks(disks: readonly BlockDevice[]): Promise<DiskInspection[]> {
  return Promise.all(
    disks.map(async (d): Promise<DiskInspection> => {
      const r = await readLabel(d);
      const base = { name: d.name, sizeBytes: d.sizeBytes };
      switch (r.kind) {
        case 'blank':
          return { ...base, kind: 'blank', summary: `${d.name}: blank (no label)` };
        case 'invalid':
        case 'unreadable':
          return { ...base, kind: r.kind, code: r.code, summary: `${d.name}: ${r.kind}: ${r.code} (${r.message})` };
        case 'label': {
          const l = r.label;
          const where = l.role === 'spare' ? 'spare' : `${l.role} position ${l.position}`;
          const self = l.members.find((m) => m.uuid === l.diskUuid);
          const rebuild = self?.state === 'rebuilding' ? `, rebuilding from stripe ${l.rebuildCursorStripe}` : '';
          return {
            ...base,
            kind: 'label',
            label: l,
            summary:
              `${d.name}: ${l.pairId}/${l.volumeId} ${where} of ${l.memberCount}, generation ${l.generation}, ` +
              `unit ${l.stripeUnitBytes / 1024} KiB x ${l.stripeCount} stripes, uuid ${l.diskUuid}${rebuild}`,
          };
        }
      }
    }),
  );
}

export type AssemblyPreview =
  | {
      ok: true;
      /** The state the volume would open in (before any rebuild starts). */
      state: 'normal' | 'degraded' | 'rebuilding';
      generation: number;
      disks: DiskVerdict[];
    }
  | { ok: false; code: string; message: string; disks: readonly DiskVerdict[] };

/**
 * What `openVolume` would decide for these disks (all but its check of member sizes),
 * without opening or writing anything.
 */
export async function previewAssembly(disks: readonly BlockDevice[], pairId: string, volumeId: string): Promise<AssemblyPreview> {
  const reads = await Promise.all(disks.map(async (d) => ({ name: d.name, read: await readLabel(d) })));
  try {
    const plan = planAssembly(reads, pairId, volumeId);
    const lost = plan.members.filter((m) => m === undefined || m.state !== 'ok');
    const state = lost.length === 0 ? 'normal' : lost.some((m) => m?.state === 'rebuilding') ? 'rebuilding' : 'degraded';
    return { ok: true, state, generation: plan.reference.generation, disks: plan.verdicts };
  } catch (e) {
    if (e instanceof RaidError) return { ok: false, code: e.code, message: e.message, disks: e.disks };
    throw e;
  }
}
