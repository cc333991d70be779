import { defineConfig } from 'vitest/config';

// Tests run against real iroh endpoints and child processes, so they get generous
// deadlines; nothing waits on wall-clock sleeps (see STYLE.md).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', 'json'],
    outputFile: { json: 'dist/test-results.json' },
  },
});
