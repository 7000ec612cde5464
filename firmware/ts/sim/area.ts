// What a simulation area provides to the runner (`npm run sim -- --area NAME`).
// Each area lives in sim/areas/<name>.ts and exports `area`; the runner discovers them.

export type SimOutcome = { ok: true } | { ok: false; reason: string };

export interface SimArea {
  /** The --area name: demo, ha, nvlog, storage, pair. */
  readonly name: string;
  readonly description: string;
  /**
   * Runs one seed to completion under virtual time. Everything (schedule, faults, workload)
   * derives from `seed`, so the same seed gives byte-identical `log` lines. Safety checker
   * failures and thrown errors are failures; the runner prints the reproducing seed.
   */
  runSeed(seed: number, log: (line: string) => void): Promise<SimOutcome>;
}
