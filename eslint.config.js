// Lint configuration. Besides typescript-eslint's recommended rules it keeps the pure-core
// folders (core/ anywhere under firmware/ts) free of I/O, real time and real randomness:
// those must be injected so that the simulator can drive the same code deterministically.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const pureCoreFiles = ['firmware/ts/core/**/*.ts', 'firmware/ts/*/core/**/*.ts'];

const nodeBuiltins = [
  'assert', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events', 'fs',
  'fs/promises', 'http', 'https', 'net', 'os', 'path', 'perf_hooks', 'process', 'readline',
  'stream', 'timers', 'timers/promises', 'tls', 'tty', 'url', 'util', 'worker_threads', 'zlib',
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'firmware/native/build/**', '.rig/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        console: 'readonly', process: 'readonly', Buffer: 'readonly', setTimeout: 'readonly',
        clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly',
        setImmediate: 'readonly', clearImmediate: 'readonly', queueMicrotask: 'readonly',
        TextEncoder: 'readonly', TextDecoder: 'readonly', URL: 'readonly', performance: 'readonly',
        AbortController: 'readonly', AbortSignal: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: pureCoreFiles,
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{
          group: ['node:*'],
          message: 'Pure-core code does no I/O: take what you need as an injected port (Clock, Timers, Prng, a driver interface) from the caller.',
        }],
        paths: nodeBuiltins.map((name) => ({
          name,
          message: 'Pure-core code does no I/O: take what you need as an injected port (Clock, Timers, Prng, a driver interface) from the caller.',
        })),
      }],
      'no-restricted-globals': ['error',
        { name: 'Date', message: 'Pure-core code never reads the clock: use the injected Clock (clock.nowMs()/clock.wallNs()) passed in by the caller.' },
        { name: 'setTimeout', message: 'Pure-core code keeps no timers: take tick(nowMs) events or use the injected Timers.' },
        { name: 'setInterval', message: 'Pure-core code keeps no timers: take tick(nowMs) events or use the injected Timers.' },
        { name: 'setImmediate', message: 'Pure-core code keeps no timers: return actions and let the driver schedule them.' },
        { name: 'performance', message: 'Pure-core code never reads the clock: use the injected Clock.' },
        { name: 'process', message: 'Pure-core code does not touch the process: use the injected Clock (instead of process.hrtime) or a port.' },
        { name: 'Buffer', message: 'Pure-core code uses Uint8Array/DataView (see core/bytes.ts), not node Buffer.' },
      ],
      'no-restricted-properties': ['error',
        { object: 'Math', property: 'random', message: 'Pure-core code uses the injected seeded Prng (core/prng.ts), never Math.random.' },
        { object: 'process', property: 'hrtime', message: 'Pure-core code uses the injected Clock (clock.nowMs()), never process.hrtime.' },
        { object: 'Date', property: 'now', message: 'Pure-core code never reads the clock: use the injected Clock (clock.nowMs()).' },
      ],
    },
  },
);
