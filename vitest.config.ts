// Test runner configuration: every *.test.ts beside its source and under test/, with the
// skip-policy reporter that fails CI when a test skipped for any reason but a missing kernel feature.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['runtime/**/*.test.ts', 'cni/**/*.test.ts', 'deploy/**/*.test.ts', 'sdk/**/*.test.ts', 'plugins/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'dist/**', '**/assembly/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './test/helpers/skip-policy-reporter.ts'],
  },
});
