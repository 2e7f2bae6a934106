import { defineConfig } from 'vitest/config';

/** `npm run soak`: the long chaos runs, kept out of `npm test`. */
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    // test/p2p/netns.test.ts at 1 GiB: direct between two namespaces, then through the relay.
    include: ['test/durability/soak.ts', 'test/p2p/netns.test.ts'],
    env: { NFLTR_P2P_MIB: '1024' },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/helpers/fixtures.ts'],
  },
});
