import { defineConfig } from 'vitest/config';

/** `npm run abuse`: the abuse suite at size, kept out of `npm test` (which runs its cases small). */
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/abuse/suite.ts'],
    testTimeout: 180_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/helpers/fixtures.ts'],
  },
});
