import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { waitState } from '../durability/helpers.js';
import { createKey, eventually, startRelayProcess, tempDir } from '../helpers/processes.js';
import { scriptedExecutor, startPlanner, startWorker } from '../planner/helpers.js';

// Distinctive strings that must never cross the relay in clear.
const SECRETS = {
  objective: 'OBJECTIVE-4c1e-rotate-the-payments-keys',
  question: 'QUESTION-4c1e-which-region-first',
  answer: 'ANSWER-4c1e-eu-west-then-us',
  context: 'CONTEXT-4c1e-branch-release-2026',
  input: 'INPUTFILE-4c1e-build-log-contents',
  output: 'OUTPUTFILE-4c1e-generated-artifact',
};

describe('e2ee - what the relay sees', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it('capture - a full task with question, answer, result and artifacts leaves nothing readable at the relay', async () => {
    const dir = tempDir();
    const capture = join(dir, 'capture.jsonl');
    const key = await createKey(dir, 'acct');
    const relay = await startRelayProcess({ dataDir: dir, args: ['--capture-envelopes', capture] });
    cleanup.push(() => relay.stop());
    const worker = await startWorker({
      server: relay.grpcAddr,
      apiKey: key,
      name: 'w-secret',
      stateDir: tempDir(),
      mcpCommand: scriptedExecutor(),
    });
    cleanup.push(() => worker.stop());
    const planner = await startPlanner(
      [
        '--proxy-url',
        relay.httpUrl,
        '--server',
        relay.grpcAddr,
        '--name',
        'p-secret',
        '--state-dir',
        tempDir(),
      ],
      key,
    );
    cleanup.push(() => planner.close());
    await eventually(async () => (await planner.toolNames()).includes('orchestrate_task'), 15_000);

    const input = join(tempDir(), 'build.log');
    writeFileSync(input, `${SECRETS.input}\n`);
    await planner.ok('probe_worker', { agent_id: 'w-secret' });
    await planner.ok('orchestrate_task', {
      agent_id: 'w-secret',
      task_id: 'capture-1',
      objective: SECRETS.objective,
      context: { note: SECRETS.context },
      constraints: { ask: true, question: SECRETS.question, files: { 'out/gen.txt': SECRETS.output } },
      artifact_files: [input],
      timeout_ms: 60_000,
    });
    await waitState(planner, 'capture-1', ['waiting_input']);
    await planner.ok('respond_to_worker', { task_id: 'capture-1', content: { answer: SECRETS.answer } });
    const done = await waitState(planner, 'capture-1', ['completed']);
    // The task really carried the secrets end to end …
    expect(done!.result?.text).toContain(SECRETS.answer);
    const artifacts = done!.artifacts!.map((a) => readFileSync(a.path, 'utf8')).join('\n');
    expect(artifacts).toContain(SECRETS.output);
    expect(artifacts).toContain(SECRETS.objective);

    // … and the relay saw none of them, in any envelope header or payload.
    const recorded = readFileSync(capture, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(recorded.length).toBeGreaterThan(5);
    const kinds = new Set(recorded.map((e: { kind: string }) => e.kind));
    expect([...kinds].sort()).toEqual(['a2a.hs1', 'a2a.hs2', 'a2a.sealed']);
    const seen = recorded
      .map(
        (e: { payload: string }) =>
          `${JSON.stringify(e)}\n${Buffer.from(e.payload, 'base64').toString('latin1')}`,
      )
      .join('\n');
    for (const [what, secret] of Object.entries(SECRETS)) {
      expect(seen.includes(secret), `${what} visible to the relay`).toBe(false);
      // Not even a fragment of it.
      expect(seen.includes(secret.slice(0, 12)), `${what} fragment visible to the relay`).toBe(false);
    }
  });
});
