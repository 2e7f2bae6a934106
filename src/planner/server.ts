/**
 * @module The planner's MCP server: discovery tools always; `probe_worker` and the orchestration tools
 * once the A2A link is up (announced with `notifications/tools/list_changed`), removed again only when
 * the relay refuses this planner for good.
 */
import { McpServer, type RegisteredTool } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { AgentClient } from '../agent/index.js';
import { type Logger, silentLogger } from '../util/log.js';
import { VERSION } from '../version.js';
import type { PeerDirectory } from './peers.js';
import type { TaskManager } from './task-manager.js';
import { registerA2aTools, registerDiscoveryTools } from './tools.js';

const INSTRUCTIONS = `nfltr is a coordination transport between you (the planner) and remote worker machines.
Loop: list_worker_peers (optionally with a label selector) → probe_worker for live free slots →
orchestrate_task once per worker (fan-out) → poll get_task_status (pass last_seq as after_seq) →
answer waiting_input questions with respond_to_worker → read result and artifacts when completed, or
cancel_task to stop. list_active_tasks shows what is still running. Ranking, retries and combining
results are yours to decide.`;

export interface PlannerServerOptions {
  directory: PeerDirectory;
  /** With --server: the agent on the relay and the task manager on it. */
  agent?: AgentClient;
  manager?: TaskManager;
  logger?: Logger;
}

export function createPlannerServer(opts: PlannerServerOptions): McpServer {
  const log = opts.logger ?? silentLogger;
  const server = new McpServer(
    { name: 'nfltr', version: VERSION },
    { capabilities: { tools: { listChanged: true } }, instructions: INSTRUCTIONS },
  );
  const ctx = { directory: opts.directory, selfId: opts.agent?.agentId, logger: log };
  registerDiscoveryTools(server, ctx);

  const { agent, manager } = opts;
  if (agent && manager) {
    let handles: RegisteredTool[] | undefined;
    let initialized = false;
    let linkUp = agent.connected;
    let gone = false;
    // Tools appear only once the client finished initialising, so list_changed never precedes it.
    const sync = () => {
      if (!handles && linkUp && initialized && !gone) {
        handles = batchListChanged(server, () => registerA2aTools(server, { ...ctx, manager }));
        log.info('A2A link up; orchestration tools available');
      } else if (handles && gone) {
        const gone = handles;
        batchListChanged(server, () => {
          for (const h of gone) h.remove();
        });
        handles = undefined;
        log.warn('A2A link gone for good; orchestration tools removed');
      }
    };
    const previous = server.server.oninitialized;
    server.server.oninitialized = () => {
      previous?.();
      initialized = true;
      sync();
    };
    agent.on('status', (s) => {
      if (s.type === 'connected') linkUp = true;
      else if (s.type === 'fatal') gone = true;
      else return;
      sync();
    });
  }
  return server;
}

/** Runs `fn` (which registers or removes several tools) so that the client gets one list_changed. */
function batchListChanged<T>(server: McpServer, fn: () => T): T {
  const send = server.sendToolListChanged;
  server.sendToolListChanged = () => {};
  try {
    return fn();
  } finally {
    server.sendToolListChanged = send;
    server.sendToolListChanged();
  }
}
