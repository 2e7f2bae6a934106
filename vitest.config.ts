import { relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Seconds each of the longest files took in a whole `npm test` on the 2-core CI machine (the rest took
 * under 15 s). Only a cold cache uses them: CI's clean clone has no durations from a last run, and by size
 * vitest would start thin files that run long shared suites (result-files-restart.test.ts runs
 * result-kill.ts, 28 s) last, ending the run with one file alone.
 */
const MEASURED_S: Record<string, number> = {
  'test/http/http-proxy.test.ts': 42,
  'test/worker/hardening.test.ts': 29,
  'test/dashboard/orch.test.ts': 28,
  'test/durability/result-files-restart.test.ts': 28,
  'test/planner/mcp.test.ts': 26,
  'test/durability/worker-restart.test.ts': 24,
  'test/executors/claude-real.test.ts': 22,
  'test/relay/relay.test.ts': 22,
  'test/worker/start.test.ts': 20,
  'test/executors/codex-worker.test.ts': 20,
  'test/dashboard/dashboard-browser.test.ts': 20,
  'test/p2p/netns.test.ts': 18,
  'test/durability/dispatch-timeout.test.ts': 16,
  'test/abuse/relay-abuse.test.ts': 15,
  'test/artifacts/e2e.test.ts': 14,
};

/**
 * Longest first, so that no long file ends the run alone: by the durations vitest cached from the last
 * run, else by {@link MEASURED_S} and then vitest's order (larger files first). The packaging test (npm
 * pack, a global install that compiles node-pty, the demo: over a minute beside the others) starts first
 * in either case.
 */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const path = (f: TestSpecification) => relative(this.ctx.config.root, f.moduleId);
    const warm = files.every((f) => this.ctx.cache.getFileTestResults(`${f.project.name}:${path(f)}`));
    const sorted = await super.sort(files);
    const measured = (f: TestSpecification) => (warm ? 0 : (MEASURED_S[path(f)] ?? 0));
    const first = (f: TestSpecification) => (path(f) === 'test/packaging/install.test.ts' ? 1 : 0);
    // Array.prototype.sort is stable: within equal keys vitest's order stays.
    return sorted.sort((a, b) => first(b) - first(a) || measured(b) - measured(a));
  }
}

// Every Node process parses the bundle NODE_EXTRA_CA_CERTS names when it starts: with the system bundle
// (as this machine sets it) that is ~60 ms of CPU and ~0.2 s of wall time, times the ~900 Node processes
// the suite starts. Its processes talk only to each other on loopback, with certificates the tests make
// and pass explicitly, and npm reads its own `cafile`; so the suite runs without it.
delete process.env.NODE_EXTRA_CA_CERTS;

/**
 * Files that run in this process only (no child process, no port of their own beyond loopback services):
 * they share one worker thread and its loaded modules, where a fork per file would spend ~0.8 s of CPU
 * loading vitest and the sources again. The rest run isolated, one fork per file: their processes and
 * clients must not outlive the file.
 */
const IN_PROCESS = [
  'test/agent/{a2a-pinning,a2a,client,memory-relay}.test.ts',
  'test/ai/ai-crypto.test.ts',
  'test/artifacts/{receive-ledger,receiver,send-window}.test.ts',
  'test/cluster/agent-options.test.ts',
  'test/e2ee/handshake-ix.test.ts',
  'test/executors/{codex-mcp,shell-mcp-allow}.test.ts',
  'test/http/units.test.ts',
  'test/p2p/transfer.test.ts',
  'test/planner/{dashboard,step,store,task-manager}.test.ts',
  'test/protocol/*.test.ts',
  'test/relay/{bus,limits,store}.test.ts',
  'test/worker/{message-router,recovery-ledger,replay-pacer}.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    poolOptions: {
      threads: { isolate: false, maxThreads: 1, minThreads: 1 },
      // End-to-end files mostly wait on their child processes (the suite kept 0.8 of 2 cores busy with 2
      // forks), so several files run at once: six e2e files took 112-135 s with 4 forks against 146-175 s
      // with 2, and eight took 109 s with 8 forks against 149 s with 4 (using one core of the two), on the
      // same loaded 2-core machine. 6 leaves room for the cases that time the product on a loaded machine.
      forks: { maxForks: 6, minForks: 1 },
    },
    sequence: { sequencer: LongestFirst },
    globalSetup: ['test/helpers/fixtures.ts'],
    projects: [
      { extends: true, test: { name: 'in-process', include: IN_PROCESS, pool: 'threads' } },
      {
        extends: true,
        test: { name: 'processes', include: ['test/**/*.test.ts'], exclude: IN_PROCESS, pool: 'forks' },
      },
    ],
  },
});
