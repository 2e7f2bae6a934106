/**
 * @module The planner's MCP server over stdio, for both protocol eras. The opening message picks the
 * era, as SDK v2's own stdio entry decides it: `initialize` (or any message without a 2026-07-28
 * `_meta` claim) is a 2025-era client, served by SDK v1 with the 2025-11-25 experimental tasks
 * ({@link ./legacy.ts}); a claimed message (`server/discover`, a stateless call) is a 2026-07-28
 * client, handed whole to SDK v2's `serveStdio` with the Tasks extension ({@link ./modern.ts}). Both
 * list the same tools from the same {@link ToolSurface}, whatever the state of the A2A link. Only the
 * chosen era's SDK is loaded: SDK v2 is ~1 MB of code a 2025-era client never needs (~40 ms at start).
 */
import type { Readable, Writable } from 'node:stream';
import type { AgentClient } from '../agent/index.js';
import { type Logger, silentLogger } from '../util/log.js';
import type { PeerDirectory } from './peers.js';
import { LineLimit, MAX_MCP_MESSAGE_BYTES, oversizeError } from './stdio-guard.js';
import { ToolSurface } from './surface.js';
import type { TaskManager } from './task-manager.js';
import { plannerTools } from './tools.js';

export const INSTRUCTIONS = `nfltr is a coordination transport between you (the planner) and remote worker machines.
Loop: list_worker_peers (optionally with a label selector) → probe_worker for live free slots →
orchestrate_task once per worker (fan-out) → wait_for_tasks (it blocks until a task needs an answer or
ends, and reports each event once) → answer waiting_input questions with respond_to_worker (content
shaped by the question's schema, or action decline) → read result and artifacts of completed tasks →
wait_for_tasks again while open_tasks > 0. Never poll. cancel_task stops a task; get_task_status and
list_active_tasks show details. Ranking, retries and combining results are yours to decide. A tool that
cannot run now (no --server, API key refused, relay unreachable) says why and what to fix.`;

/** Opening lines longer than this are not worth buffering to classify: the guard refuses them anyway. */
const MAX_OPENING_BYTES = 4 * 1024 * 1024;

export interface PlannerServerOptions {
  directory: PeerDirectory;
  /** With --server: the agent on the relay and the task manager on it. */
  agent?: AgentClient;
  manager?: TaskManager;
  /** Why the API key cannot be used (empty, an unexpanded placeholder); every tool answers with it. */
  keyProblem?: string;
  /** Why there is no link (`--relay` could not be asked); the A2A tools answer with it. */
  linkProblem?: string;
  logger?: Logger;
  stdin?: Readable;
  stdout?: Writable;
}

export interface PlannerServer {
  close(): Promise<void>;
}

/** Why a tool cannot run now, from the start flags and the link state; undefined when it can. */
function availability(opts: PlannerServerOptions) {
  let refused: string | undefined;
  opts.agent?.on('status', (s) => {
    if (s.type === 'fatal') refused = s.message;
    else if (s.type === 'connected') refused = undefined;
  });
  return (needs: 'discovery' | 'a2a'): string | undefined => {
    if (opts.keyProblem) return opts.keyProblem;
    if (needs === 'discovery') return undefined; // the directory names a missing --proxy-url itself
    if (!opts.manager) {
      if (opts.linkProblem) return `${opts.linkProblem}; then restart nfltr mcp`;
      return (
        'no relay control address: start nfltr mcp with --server HOST:PORT (or set NFLTR_SERVER) to probe ' +
        'workers and run tasks; discovery works with --proxy-url alone'
      );
    }
    if (refused) {
      return (
        `the relay refused this planner (${refused}); fix the API key (--api-key or NFLTR_API_KEY in the ` +
        "MCP client's configuration) and restart nfltr mcp"
      );
    }
    return undefined; // a link that is down is reported by the call itself, with the address redialled
  };
}

/**
 * The `_meta` key of a 2026-07-28 request's protocol version (SDK v2's `PROTOCOL_VERSION_META_KEY`;
 * test/planner/eras.test.ts checks they agree). Spelled here so that telling the eras apart loads neither.
 */
export const PROTOCOL_VERSION_META_KEY = 'io.modelcontextprotocol/protocolVersion';

/** Whether the opening message claims the 2026-07-28 era (a `_meta` protocol version, not initialize). */
function claimsModernEra(line: Buffer): boolean {
  try {
    const msg = JSON.parse(line.toString('utf8')) as { method?: string; params?: { _meta?: object } };
    const meta = msg.params?._meta as Record<string, unknown> | undefined;
    return msg.method !== 'initialize' && typeof meta?.[PROTOCOL_VERSION_META_KEY] === 'string';
  } catch {
    return false; // the SDK answers a parse error
  }
}

/**
 * Serves the planner on stdio. Resolves once the era is chosen and the server is connected; every
 * byte read while choosing is passed on to it.
 */
export function servePlanner(opts: PlannerServerOptions): Promise<PlannerServer> {
  const log = opts.logger ?? silentLogger;
  const stdin = opts.stdin ?? process.stdin;
  const stdout = opts.stdout ?? process.stdout;
  const surface = new ToolSurface({
    tools: plannerTools({ directory: opts.directory, manager: opts.manager, selfId: opts.agent?.agentId }),
    unavailable: availability(opts),
    logger: log,
  });
  return new Promise((resolve, reject) => {
    let opening = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      opening = Buffer.concat([opening, chunk]);
      const nl = opening.indexOf(10);
      if (nl < 0 && opening.length < MAX_OPENING_BYTES) return;
      stdin.off('data', onData);
      stdin.pause();
      const input = new LineLimit({
        maxBytes: MAX_MCP_MESSAGE_BYTES,
        onOversize: (head, bytes) => {
          log.warn('oversized MCP message dropped', { bytes, limit: MAX_MCP_MESSAGE_BYTES });
          stdout.write(oversizeError(head, bytes, MAX_MCP_MESSAGE_BYTES));
        },
      });
      input.write(opening);
      stdin.pipe(input);
      const modern = claimsModernEra(opening.subarray(0, nl < 0 ? opening.length : nl));
      log.info('MCP client connected', { era: modern ? '2026-07-28' : '2025' });
      (modern ? serveModern : serveLegacy)(surface, input, stdout, log).then(resolve, reject);
    };
    stdin.on('data', onData);
  });
}

/** A 2026-07-28 client: SDK v2's stdio entry with the Tasks extension. */
async function serveModern(surface: ToolSurface, input: Readable, stdout: Writable, log: Logger) {
  const [{ StdioServerTransport, serveStdio }, { createModernServer }] = await Promise.all([
    import('@modelcontextprotocol/server/stdio'),
    import('./modern.js'),
  ]);
  const handle = serveStdio(({ era }) => createModernServer(surface, INSTRUCTIONS, era), {
    transport: new StdioServerTransport(input, stdout),
    onerror: (err) => log.warn('MCP stdio error', { error: err.message }),
  });
  return { close: () => handle.close() };
}

/** A 2025-era client: SDK v1 with the 2025-11-25 experimental tasks. */
async function serveLegacy(surface: ToolSurface, input: Readable, stdout: Writable) {
  const [{ StdioServerTransport }, { createLegacyServer }] = await Promise.all([
    import('@modelcontextprotocol/sdk/server/stdio.js'),
    import('./legacy.js'),
  ]);
  const server = createLegacyServer(surface, INSTRUCTIONS);
  await server.connect(new StdioServerTransport(input, stdout));
  return { close: () => server.close() };
}
