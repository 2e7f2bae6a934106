import { defineConfig } from 'vitest/config';

/** `npm run soak`: the long chaos runs, kept out of `npm test`. */
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/durability/soak.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
