import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
import { freshNatsUrl, freshSchema, serviceSkipReason } from '../relay/services.js';

const skip = (await serviceSkipReason('PostgreSQL')) ?? (await serviceSkipReason('NATS'));

interface Status {
  task_id: string;
  state: string;
  last_seq: number;
  events: { seq: number; state: string; message?: string }[];
  result?: { text: string };
  reason?: string;
  message?: string;
}

describe.skipIf(skip !== undefined)(
  'cluster: a planner on replica 1 runs a task on a worker on replica 3',
  () => {
    let schema: Awaited<ReturnType<typeof freshSchema>>;
    const relays: RelayProcess[] = [];
    let planner: Planner | undefined;
    let worker: WorkerProcess | undefined;
    let workerDir: string;
    let key: string;

    beforeAll(async () => {
      schema = await freshSchema();
      const bus = freshNatsUrl();
      const args = [
        '--store',
        schema.url,
        '--bus',
        bus,
        '--presence-heartbeat',
        '500ms',
        '--presence-ttl',
        '2s',
        '--hold-window',
        '5s',
      ];
      relays.push(await startRelayProcess({ args }));
      relays.push(...(await Promise.all([startRelayProcess({ args }), startRelayProcess({ args })])));
      key = await createKey('', 'acct', { store: schema.url });
      workerDir = tempDir('nfltr-worker-');
      [worker, planner] = await Promise.all([
        startWorker({
          server: `${relays[2]!.grpcAddr},${relays[0]!.grpcAddr}`,
          apiKey: key,
          name: 'w-far',
          maxTasks: 1,
          stateDir: workerDir,
          mcpCommand: scriptedExecutor(),
        }),
        startPlanner(
          [
            '--proxy-url',
            relays[0]!.httpUrl,
            '--server',
            relays[0]!.grpcAddr,
            '--name',
            'p-near',
            '--state-dir',
            tempDir('nfltr-planner-'),
          ],
          key,
        ),
      ]);
    });

    afterAll(async () => {
      await planner?.close();
      await worker?.stop();
      await Promise.all(relays.map((r) => r.stop()));
      await schema?.drop();
    });

    const status = (taskId: string) => planner!.ok<Status>('get_task_status', { task_id: taskId });

    it('failover - the worker’s replica dies mid-task; the task still completes, exactly once', async () => {
      await eventually(
        async () => (await planner!.toolNames()).includes('orchestrate_task'),
        20_000,
        'A2A tools',
      );
      const peers = await planner!.ok<{ peers: { agent_id: string; relay_id?: string }[] }>('list_my_peers');
      expect(peers.peers.map((p) => p.agent_id)).toContain('w-far');

      await planner!.ok('orchestrate_task', {
        agent_id: 'w-far',
        task_id: 'far-task',
        objective: 'work across replicas',
        constraints: { progress: 3, sleep_ms: 3_000 },
      });
      await eventually(async () => (await status('far-task')).state === 'running', 15_000, 'running');
      expect(await relays[2]!.stop('SIGKILL')).toBe(null);

      const done = (await eventually(
        async () => {
          const s = await status('far-task');
          return ['completed', 'failed', 'cancelled'].includes(s.state) ? s : undefined;
        },
        40_000,
        'the task to end',
      )) as Status;
      expect(done.state, `${done.reason} ${done.message} ${worker!.stderr()}`).toBe('completed');
      expect(done.result?.text).toMatch(/work across replicas/);
      expect(done.events.map((e) => e.seq)).toEqual(done.events.map((_, i) => i + 1));
      expect(done.events.filter((e) => e.state === 'accepted')).toHaveLength(1);
      expect(done.events.filter((e) => e.state === 'completed')).toHaveLength(1);
      // And it is now held by replica 1, listed once on every surviving replica.
      const r1 = (
        (await (await fetch(`${relays[0]!.httpUrl}/healthz`, { headers: { 'x-api-key': key } })).json()) as {
          relay_id: string;
        }
      ).relay_id;
      for (const r of relays.slice(0, 2)) {
        const res = await fetch(`${r.httpUrl}/api/v1/peers`, { headers: { authorization: `ApiKey ${key}` } });
        const list = ((await res.json()) as { peers: { agent_id: string; relay_id: string }[] }).peers;
        expect(list.filter((p) => p.agent_id === 'w-far').map((p) => p.relay_id)).toEqual([r1]);
      }
    });
  },
);
