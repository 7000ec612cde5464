// The simulator's buggify() policy, FoundationDB style: each call site is switched on for a
// whole run with `activationProbability` (decided the first time the site is reached), and an
// active site then fires with the probability it passes to buggify().
import type { Prng } from '../core/prng.ts';

export interface BuggifyOptions {
  /** Chance that a given site is active for this run (default 0.25). 0 switches buggify off. */
  activationProbability?: number;
}

export class BuggifyPolicy {
  private readonly sites = new Map<string, boolean>();
  private readonly fired = new Map<string, number>();
  private readonly activationProbability: number;

  constructor(
    private readonly prng: Prng,
    options: BuggifyOptions = {},
  ) {
    this.activationProbability = options.activationProbability ?? 0.25;
  }

  /** The hook installed through core/buggify.ts setBuggifyHook. */
  readonly hook = (site: string, probability: number): boolean => {
    let active = this.sites.get(site);
    if (active === undefined) {
      active = this.activationProbability > 0 && this.prng.chance(this.activationProbability);
      this.sites.set(site, active);
    }
    if (!active || !this.prng.chance(probability)) return false;
    this.fired.set(site, (this.fired.get(site) ?? 0) + 1);
    return true;
  };

  /** Sites reached so far with their activation, sorted by name (for reproducible logs). */
  siteReport(): { site: string; active: boolean; fired: number }[] {
    return [...this.sites.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([site, active]) => ({ site, active, fired: this.fired.get(site) ?? 0 }));
  }
}
