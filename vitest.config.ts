// Test runner configuration: every suite under test/, run in forked processes so that a
// crashing native call or a leaked handle cannot take other suites with it.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
