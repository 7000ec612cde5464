// HA scenario scripts with golden output (etcd/raft testdata style): each file in
// test/ha/testdata is a sequence of commands against a two-blade world and the output each
// produced. Run with REWRITE=1 to regenerate the goldens after an intended change.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatScript, parseScript, runScript } from '../../firmware/ts/ha/sim/script.ts';

const dir = join(import.meta.dirname, 'testdata');
const files = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort();
const rewrite = process.env['REWRITE'] === '1';

/** The SPEC behaviours each scenario proves, for the test names. */
const proves: Record<string, string> = {
  'partner-power-loss': 'HA-5 HA-6 HA-7 HA-9 HA-10',
  'serial-cut': 'HA-1 HA-3',
  'network-cut': 'HA-1 HA-3',
  'all-but-mailbox-cut': 'HA-1 HA-6',
  'mailbox-alive-interconnect-dead': 'HA-1 HA-6',
  'simultaneous-boot': 'HA-10 HA-11',
  'reboot-loop': 'HA-10 HA-11',
  'version-mismatch': 'HA-8',
  'giveback-not-ready': 'HA-9',
  'operator-disable': 'HA-8',
  'mailbox-corrupt': 'HA-1 HA-3',
  'mirror-degraded': 'HA-8',
  'operator-takeover': 'HA-6 HA-9 ST-4',
  'partition-everything': 'HA-6 ST-4',
  'takeover-damping': 'HA-11',
  'one-way-cut': 'HA-4 HA-6',
  'survivor-reboot': 'HA-4 HA-10',
  'nvram-lost': 'HA-2 HA-3 NV-7',
  'power-sense-cut': 'HA-5 HA-6 HA-9',
  'power-sense-lying-lost': 'HA-5 HA-6',
  'power-sense-stuck-good': 'HA-5 HA-6',
  'power-sense-hang': 'HA-5 HA-6',
};

describe('HA scenarios', () => {
  it('has a scenario for every required case', () => {
    for (const name of Object.keys(proves)) expect(files).toContain(`${name}.txt`);
  });
  for (const f of files) {
    const name = f.replace(/\.txt$/, '');
    it(`${proves[name] ?? 'HA'} scenario ${name}`, () => {
      const path = join(dir, f);
      const blocks = parseScript(readFileSync(path, 'utf8'));
      const outputs = runScript(blocks);
      const text = formatScript(blocks, outputs);
      if (rewrite) {
        writeFileSync(path, text);
        return;
      }
      expect(text).toBe(readFileSync(path, 'utf8'));
      // Every scenario ends with a clean bill from the checkers.
      expect(outputs.flat().some((l) => l.includes('VIOLATION'))).toBe(false);
    });
  }
});
