/**
 * A relay, a worker running the scripted executor and a planner (`nfltr mcp`, driven by the MCP client)
 * with its dashboard on: the real processes the Control Tower tests look at.
 */
import { join } from 'node:path';
import {
  createKey,
  eventually,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import {
  type Planner,
  scriptedExecutor,
  startPlanner,
  startWorker,
  type WorkerProcess,
} from '../planner/helpers.js';

export interface Tower {
  relay: RelayProcess;
  key: string;
  worker: WorkerProcess;
  planner: Planner;
  plannerId: string;
  stateDir: string;
  link: string;
  capture: string;
  stop: () => Promise<void>;
}

export async function startTower(name: string, plannerArgs: string[] = []): Promise<Tower> {
  const capture = join(tempDir('nfltr-dash-cap-'), 'capture.jsonl');
  const relay = await startRelayProcess({ args: ['--capture-envelopes', capture] });
  const key = await createKey(relay.dataDir, 'acme');
  const worker = await startWorker({
    server: relay.grpcAddr,
    apiKey: key,
    name: `${name}-w1`,
    stateDir: tempDir('nfltr-dash-w-'),
    mcpCommand: scriptedExecutor(),
    labels: 'repo=payments,zone=eu',
    maxTasks: 3,
  });
  const stateDir = tempDir('nfltr-dash-p-');
  const plannerId = `${name}-planner`;
  const planner = await startPlanner(
    [
      '--server',
      relay.grpcAddr,
      '--proxy-url',
      relay.httpUrl,
      '--name',
      plannerId,
      '--state-dir',
      stateDir,
      ...plannerArgs,
    ],
    key,
  );
  const link = await eventually(
    () => /dashboard: (http:\/\/\S+\/dashboard#k=[\w-]+)/.exec(planner.stderr())?.[1] ?? '',
    20_000,
    'the dashboard link on the planner stderr',
  );
  return {
    relay,
    key,
    worker,
    planner,
    plannerId,
    stateDir,
    link,
    capture,
    stop: async () => {
      await planner.close().catch(() => {});
      await worker.stop();
      await relay.stop();
    },
  };
}
