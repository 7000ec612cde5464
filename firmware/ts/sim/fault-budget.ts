// A fault budget (TigerBeetle's VOPR idea): the simulator may only inject faults the design
// promises to survive, e.g. at most one blade down at a time. Areas ask for a grant before
// injecting a fault and release it when they heal it.

export interface FaultBudgetLimits {
  /** Per fault kind, how many may be active at once (a kind not listed is refused). */
  concurrentMax: Readonly<Record<string, number>>;
  /** How many faults of any kind may be active at once (default: no overall limit). */
  totalConcurrentMax?: number;
  /** How many faults may be granted over the whole run (default: no limit). */
  lifetimeMax?: number;
  /**
   * Kinds that must not be active together, e.g. ['blade-down', 'link-cut'] when a design
   * only survives one of them at a time. Each pair is symmetric.
   */
  exclusive?: readonly (readonly [string, string])[];
}

/** A granted fault; `release()` returns it to the budget (idempotent). */
export interface FaultGrant {
  readonly kind: string;
  readonly target: string;
  release(): void;
}

export class FaultBudget {
  private readonly active = new Map<string, Set<string>>();
  private activeCount = 0;
  private grantedCount = 0;
  private refusedCount = 0;

  constructor(private readonly limits: FaultBudgetLimits) {}

  /** Grants a fault of `kind` on `target` if the budget allows it, else returns undefined. */
  tryGrant(kind: string, target: string): FaultGrant | undefined {
    if (!this.allows(kind, target)) {
      this.refusedCount++;
      return undefined;
    }
    let set = this.active.get(kind);
    if (set === undefined) {
      set = new Set();
      this.active.set(kind, set);
    }
    set.add(target);
    this.activeCount++;
    this.grantedCount++;
    let released = false;
    return {
      kind,
      target,
      release: () => {
        if (released) return;
        released = true;
        this.active.get(kind)?.delete(target);
        this.activeCount--;
      },
    };
  }

  /** Whether `tryGrant(kind, target)` would succeed now. */
  allows(kind: string, target: string): boolean {
    const max = this.limits.concurrentMax[kind] ?? 0;
    const set = this.active.get(kind);
    if (set?.has(target) === true) return false; // the same fault twice on one target is meaningless
    if ((set?.size ?? 0) >= max) return false;
    if (this.limits.totalConcurrentMax !== undefined && this.activeCount >= this.limits.totalConcurrentMax) return false;
    if (this.limits.lifetimeMax !== undefined && this.grantedCount >= this.limits.lifetimeMax) return false;
    for (const [a, b] of this.limits.exclusive ?? []) {
      const other = kind === a ? b : kind === b ? a : undefined;
      if (other !== undefined && (this.active.get(other)?.size ?? 0) > 0) return false;
    }
    return true;
  }

  /** Active targets of one kind (sorted). */
  activeTargets(kind: string): string[] {
    return [...(this.active.get(kind) ?? [])].sort();
  }

  get activeTotal(): number {
    return this.activeCount;
  }
  get granted(): number {
    return this.grantedCount;
  }
  get refused(): number {
    return this.refusedCount;
  }
}
