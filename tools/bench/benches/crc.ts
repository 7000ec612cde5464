// CRC32C throughput: the portable TypeScript slicing-by-8 against the native addon's
// hardware path (SSE4.2 / ARMv8 CRC) when the addon is built. Every record checksum in the
// NVRAM log, the link and the disk formats goes through one of these.
import { parseArgs } from 'node:util';
import { crc32cPortable } from '../../../firmware/ts/core/crc32c.ts';
import type { Bench, BenchReport, BenchRow } from '../bench.ts';

type CrcFn = (data: Uint8Array, seed?: number) => number;

/** Runs `fn` over `data` repeatedly for about `budgetMs`; returns MB/s (10^6 bytes per second). */
function throughputMBps(fn: CrcFn, data: Uint8Array, budgetMs: number): number {
  // Warm up so the JIT (or the CPU's frequency) settles before timing.
  for (let i = 0; i < 50; i++) fn(data);
  let bytes = 0;
  let sink = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < budgetMs) {
    for (let i = 0; i < 16; i++) {
      sink = fn(data, sink);
      bytes += data.length;
    }
    elapsed = performance.now() - start;
  }
  // Chaining each CRC into the next keeps the work observable, so nothing is optimised away.
  if (sink < 0) throw new Error('crc bench: a CRC32C must be unsigned');
  return bytes / 1e6 / (elapsed / 1000);
}

export const bench: Bench = {
  name: 'crc',
  description: 'CRC32C MB/s: portable TypeScript vs the native addon (hardware CRC)',
  async run(args): Promise<BenchReport> {
    const { values } = parseArgs({ args: [...args], options: { ms: { type: 'string', default: '300' } }, strict: true });
    const budgetMs = Number(values.ms);
    if (!(budgetMs > 0)) throw new Error(`crc bench: --ms must be a positive number, got ${values.ms}`);
    const notes: string[] = [];
    let native: { fast: CrcFn; portableC: CrcFn | undefined; impl: string } | undefined;
    try {
      const mod = (await import('../../../firmware/ts/native/index.ts')) as Record<string, unknown>;
      if (typeof mod['crc32cNative'] === 'function') {
        native = {
          fast: mod['crc32cNative'] as CrcFn,
          portableC: typeof mod['crc32cNativePortable'] === 'function' ? (mod['crc32cNativePortable'] as CrcFn) : undefined,
          impl: typeof mod['crc32cImplementation'] === 'string' ? mod['crc32cImplementation'] : 'unknown',
        };
      } else notes.push('the native addon does not export crc32cNative: native column skipped');
    } catch (e) {
      notes.push(`native addon not available (${(e as Error).message.split('\n')[0] ?? ''}): native column skipped`);
    }
    const rows: BenchRow[] = [];
    const figures: BenchReport['figures'] = { budgetMs };
    for (const [label, size] of [['4 KiB', 4096], ['1 MiB', 1 << 20]] as const) {
      const data = new Uint8Array(size).map((_, i) => (i * 2654435761) >>> 24);
      const key = size === 4096 ? '4k' : '1m';
      if (native !== undefined && native.fast(data) !== crc32cPortable(data)) throw new Error('crc bench: native and portable CRC32C disagree');
      const portable = throughputMBps(crc32cPortable, data, budgetMs);
      rows.push({ metric: `portable TypeScript, ${label} buffers`, value: portable, unit: 'MB/s' });
      figures[`crcPortableMBps${key}`] = Math.round(portable);
      if (native !== undefined) {
        const fast = throughputMBps(native.fast, data, budgetMs);
        rows.push({ metric: `native ${native.impl}, ${label} buffers`, value: fast, unit: 'MB/s' });
        rows.push({ metric: `native speed-up, ${label} buffers`, value: fast / portable, unit: 'x' });
        figures[`crcNativeMBps${key}`] = Math.round(fast);
        if (native.portableC !== undefined) {
          const c = throughputMBps(native.portableC, data, budgetMs);
          rows.push({ metric: `native portable C, ${label} buffers`, value: c, unit: 'MB/s' });
          figures[`crcNativePortableCMBps${key}`] = Math.round(c);
        }
      }
    }
    figures['nativeImplementation'] = native?.impl ?? 'absent';
    return { rows, figures, notes };
  },
};
