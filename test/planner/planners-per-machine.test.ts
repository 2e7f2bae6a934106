/**
 * Several planners on one machine, as when two MCP clients (or two projects of one client) each start
 * `nfltr mcp`: by default each working folder gets its own agent id and state folder; two forced onto
 * one state folder get an MCP error naming the holder, seen through the official MCP client.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKey,
  eventually,
  NFLTR_BIN,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { type Planner, startPlanner } from './helpers.js';

describe('planners per machine', () => {
  let relay: RelayProcess;
  let key: string;
  const planners: Planner[] = [];
  // A home of its own: the default state folders land under it.
  const home = tempDir('nfltr-home-');

  beforeAll(async () => {
    const dataDir = tempDir();
    key = await createKey(dataDir, 'acct');
    relay = await startRelayProcess({ dataDir });
  });
  afterAll(async () => {
    await Promise.all(planners.map((p) => p.close().catch(() => {})));
    await relay?.stop();
  });

  it('planners per machine - two folders, no --name or --state-dir: own agent ids and state folders, both on the relay', async () => {
    const keyFile = join(tempDir(), 'key');
    writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
    const args = ['--server', relay.grpcAddr, '--proxy-url', relay.httpUrl];
    for (const cwd of [tempDir('nfltr-project-a-'), tempDir('nfltr-project-b-')]) {
      // The second reads its key with --api-key-file, as a Claude Desktop entry does.
      const viaFile = planners.length === 1;
      planners.push(
        await startPlanner(viaFile ? [...args, '--api-key-file', keyFile] : args, viaFile ? '' : key, {
          cwd,
          env: { HOME: home },
        }),
      );
    }
    const planner = planners[0]!;
    const ids = (await eventually(
      async () => {
        const r = await planner.ok<{ peers: { agent_id: string; kind: string }[] }>('list_my_peers');
        const ids = r.peers.filter((p) => p.kind === 'planner').map((p) => p.agent_id);
        return ids.length === 2 ? ids.sort() : undefined;
      },
      15_000,
      'both planners on the relay',
    )) as string[];
    for (const id of ids) expect(id).toMatch(/-planner-[0-9a-f]{6}$/);
    expect(ids[0]).not.toBe(ids[1]);
    // ~/.nfltr/planner/<name>/<folder hash>/, each locked by its own planner.
    const root = join(home, '.nfltr', 'planner');
    expect(readdirSync(root).sort()).toEqual(ids);
    const pids = ids.map((id) => {
      const [folder, ...more] = readdirSync(join(root, id));
      expect(more).toEqual([]);
      expect(folder).toMatch(/^[0-9a-f]{12}$/);
      return Number(readFileSync(join(root, id, folder!, 'planner.lock'), 'utf8'));
    });
    expect(pids.sort()).toEqual(planners.map((p) => p.pid).sort());
  });

  it('planners per machine - a state folder in use: the second planner refuses initialize, naming the holder and the flags', async () => {
    const stateDir = tempDir('nfltr-shared-state-');
    const first = await startPlanner(
      ['--server', relay.grpcAddr, '--name', 'pm-first', '--state-dir', stateDir],
      key,
    );
    planners.push(first);
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [NFLTR_BIN, 'mcp', '--server', relay.grpcAddr, '--name', 'pm-second', '--state-dir', stateDir],
      env: { ...(process.env as Record<string, string>), NFLTR_API_KEY: key },
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const client = new Client({ name: 'second-client', version: '1.0.0' });
    const refused = await client.connect(transport).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(refused, 'initialize should be refused').toBeInstanceOf(Error);
    expect(refused!.message).toContain(
      `nfltr mcp cannot start: state dir ${stateDir} is in use by another nfltr mcp (pid ${first.pid}, lock ${join(stateDir, 'planner.lock')})`,
    );
    expect(refused!.message).toContain('give this one another --name or --state-dir');
    expect(refused!.message).not.toMatch(/Connection closed/);
    expect(stderr).toContain(`pid ${first.pid}`);
    await client.close();
    // The holder is untouched and still serves its client.
    expect(await first.toolNames()).toContain('get_task_status');
  });
});
