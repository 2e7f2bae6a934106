import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The packaging test (npm pack, a global install that compiles node-pty, the demo) runs for 15 s alone and
 * over a minute beside the others: started first, it overlaps every other file instead of ending the run
 * alone. The rest keep vitest's order (longest first by the cached durations, else largest file first).
 */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const first = (f: TestSpecification) => (f.moduleId.includes('/test/packaging/') ? 0 : 1);
    return sorted.sort((a, b) => first(a) - first(b));
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end files mostly wait on their child processes (the suite kept 0.8 of 2 cores busy with 2
    // forks), so several files run at once: six e2e files took 112-135 s with 4 forks against 146-175 s
    // with 2, and eight took 109 s with 8 forks against 149 s with 4 (using one core of the two), on the
    // same loaded 2-core machine. 6 leaves room for the cases that time the product on a loaded machine.
    poolOptions: { forks: { maxForks: 6, minForks: 1 } },
    pool: 'forks',
    sequence: { sequencer: LongestFirst },
  },
});
