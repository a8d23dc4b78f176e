import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Build dist/ first: workers and the CLI tests run the compiled code.
    globalSetup: ['test/build-first.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Network-namespace and worker tests share the machine's two cores; run files one at a time
    // where they say so, and keep the default pool otherwise.
    pool: 'forks',
  },
});
