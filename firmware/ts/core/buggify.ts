// FoundationDB-style buggify(): in simulation it sometimes returns true so that rare
// schedules (a slow path, an early retransmit, a short read) are exercised; outside the
// simulator it is always false and costs one comparison.

type BuggifyHook = (site: string, probability: number) => boolean;
let hook: BuggifyHook | undefined;

/** True (in simulation only) with the given probability at this call site. */
export function buggify(site: string, probability = 0.05): boolean {
  return hook !== undefined && hook(site, probability);
}

/** Installed by the simulation kernel for the duration of a run; pass undefined to remove. */
export function setBuggifyHook(h: BuggifyHook | undefined): void {
  hook = h;
}
