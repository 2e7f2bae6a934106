import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end files mostly wait on their child processes (the suite kept 0.8 of 2 cores busy with 2
    // forks), so 4 files run at once: six e2e files took 112-135 s with 4 forks against 146-175 s with 2,
    // on the same loaded 2-core machine.
    poolOptions: { forks: { maxForks: 4, minForks: 1 } },
    pool: 'forks',
  },
});
