// What a benchmark provides to the runner (`npm run bench -- NAME [--json FILE]`).
// Each benchmark lives in tools/bench/benches/<name>.ts and exports `bench`.
// Benchmarks report timings; they never assert them, and they are not part of `npm test`.

export interface BenchRow {
  /** What was measured, e.g. "4 KiB FILE_SYNC write (ours)". */
  metric: string;
  value: number;
  unit: string;
}

export interface BenchReport {
  rows: BenchRow[];
  /** The named JSON figures the issue asks for (e.g. `tcpAckLatencyMsP50`), plus raw numbers. */
  figures: Record<string, number | string | boolean>;
  notes?: string[];
}

export interface Bench {
  readonly name: string;
  readonly description: string;
  run(args: readonly string[]): Promise<BenchReport>;
}
