/**
 * @module The client side of Codex's app-server protocol (JSON-RPC 2.0 over newline-delimited JSON on
 * the stdio of `codex app-server`; the schema is what `codex app-server generate-json-schema` prints)
 * for one task:
 *
 *   → initialize {clientInfo, capabilities}          ← {userAgent, codexHome}      → initialized
 *   → thread/start {cwd, approvalPolicy, sandbox, model?}   ← {thread: {id}, model, reasoningEffort}
 *   → turn/start {threadId, input: [{type: text}], effort?} ← {turn: {id, status: inProgress}}
 *       ← item/started, item/completed (agentMessage, commandExecution, fileChange, mcpToolCall, …)
 *       ← error {error, willRetry}, thread/tokenUsage/updated {tokenUsage: {total, last}}
 *       ← item/commandExecution/requestApproval, item/fileChange/requestApproval → {decision}
 *       ← item/permissions/requestApproval → {permissions, scope}
 *       ← item/tool/requestUserInput → {answers}
 *   → turn/interrupt {threadId, turnId}   (on cancellation or time limit)
 *       ← turn/completed {turn: {status: completed | interrupted | failed, error}}
 *
 * The same session, cut after initialize, answers the start-up and readiness checks (model/list,
 * config/read, account/read).
 */

import { VERSION } from '../../util/version.js';
import type { AgentRunContext, AgentRunResult, TaskUsage } from '../common/index.js';
import { JsonRpcPeer, METHOD_NOT_FOUND, RpcError } from '../copilot-mcp/index.js';
import { formatDuration } from '../shell-mcp/index.js';

/** Settings pinned at start, sent with every thread and turn. */
export interface CodexSettings {
  model?: string;
  reasoningEffort?: string;
  sandbox: string;
  approvalPolicy: string;
}

/** The thread/start parameters for the pinned settings. */
export function threadSettings(cwd: string, s: CodexSettings): Record<string, unknown> {
  return {
    cwd,
    approvalPolicy: s.approvalPolicy,
    sandbox: s.sandbox,
    ...(s.model ? { model: s.model } : {}),
  };
}

/** Agent message text is flushed to progress at this length even before the message ends. */
const FLUSH_CHARS = 300;

interface ThreadItem {
  type: string;
  id: string;
  text?: string;
  command?: string;
  exitCode?: number | null;
  status?: string;
  aggregatedOutput?: string | null;
  changes?: { path: string; kind?: unknown }[];
  server?: string;
  tool?: string;
  query?: string;
}
interface TurnError {
  message: string;
  /** A kind (`internalServerError`), or an object keyed by it (`{responseStreamDisconnected: …}`). */
  codexErrorInfo?: unknown;
  additionalDetails?: string | null;
}

interface Turn {
  id: string;
  status: 'completed' | 'interrupted' | 'failed' | 'inProgress';
  error: TurnError | null;
}
interface TokenBreakdown {
  totalTokens: number;
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  reasoningOutputTokens: number;
}

/** One decision put to the planner, as reported in structuredContent. */
interface ApprovalRecord {
  request: string;
  what: string;
  decision: 'accepted' | 'declined' | 'cancelled';
  reason: string;
}

/** Sends initialize and initialized; returns what the server said about itself. */
export async function initialize(peer: JsonRpcPeer): Promise<{ userAgent?: string; codexHome?: string }> {
  const r = await peer.request<{ userAgent?: string; codexHome?: string }>('initialize', {
    clientInfo: { name: 'nfltr-codex-mcp', title: 'nfltr codex-mcp', version: VERSION },
    capabilities: { experimentalApi: false, requestAttestation: false },
  });
  peer.notify('initialized', undefined);
  return r ?? {};
}

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

/** Codex's words for an error: its message, its kind, and the details (an HTTP body, a cause). */
function describeError(e: TurnError): string {
  const info = e.codexErrorInfo;
  const kind =
    typeof info === 'string' ? info : info && typeof info === 'object' ? Object.keys(info)[0] : undefined;
  return `${e.message}${kind ? ` [${kind}]` : ''}${e.additionalDetails ? ` (${clip(oneLine(e.additionalDetails), 500)})` : ''}`;
}

/** A short human description of a thread item for progress. */
export function describeItem(item: ThreadItem): string | undefined {
  switch (item.type) {
    case 'commandExecution':
      return `running \`${clip(oneLine(item.command ?? ''), 200)}\``;
    case 'fileChange':
      return `editing ${(item.changes ?? []).map((c) => c.path).join(', ') || 'files'}`;
    case 'mcpToolCall':
      return `calling ${item.server ?? 'mcp'}.${item.tool ?? 'tool'}`;
    case 'webSearch':
      return `searching the web${item.query ? `: ${item.query}` : ''}`;
    case 'contextCompaction':
      return 'compacting the context';
    case 'plan':
      return item.text ? `plan: ${oneLine(item.text)}` : undefined;
    default:
      return undefined; // userMessage, reasoning, agentMessage (reported when complete), future kinds
  }
}

/** Follows the thread's notifications: progress, the answer text, usage, the end of the turn. */
class TurnFollower {
  answer = '';
  /** Streamed text of the current agent message not yet reported, and how much of it was. */
  #pending = '';
  #reported = 0;
  total?: TokenBreakdown;
  modelResponses = 0;
  lastError?: TurnError;
  /** When Codex started reporting retries with nothing working since (the model API looks down). */
  failingSince?: number;
  #done: (t: Turn) => void = () => {};
  readonly done = new Promise<Turn>((r) => {
    this.#done = r;
  });

  constructor(private readonly report: (m: string) => void) {}

  flush(): void {
    if (this.#pending.trim()) this.report(`Codex: ${this.#pending}`);
    this.#reported += this.#pending.length;
    this.#pending = '';
  }

  notification(method: string, p: Record<string, unknown>): void {
    if (
      method === 'item/agentMessage/delta' ||
      method === 'item/started' ||
      method === 'thread/tokenUsage/updated'
    ) {
      this.failingSince = undefined; // the model answered
    }
    switch (method) {
      case 'item/agentMessage/delta': {
        if (typeof p.delta === 'string') this.#pending += p.delta;
        if (this.#pending.length >= FLUSH_CHARS) this.flush();
        return;
      }
      case 'item/started': {
        const d = describeItem(p.item as ThreadItem);
        if (d) {
          this.flush();
          this.report(d);
        }
        return;
      }
      case 'item/completed': {
        const item = p.item as ThreadItem;
        if (item.type === 'agentMessage') {
          // Report what the deltas did not already; the last message of the turn is the answer.
          const rest = (item.text ?? '').slice(this.#reported);
          if (rest.trim()) this.report(`Codex: ${rest}`);
          this.#pending = '';
          this.#reported = 0;
          if (item.text) this.answer = item.text;
        } else if (item.type === 'commandExecution') {
          const out = item.aggregatedOutput ? `: ${clip(oneLine(item.aggregatedOutput), 200)}` : '';
          this.report(
            `\`${clip(oneLine(item.command ?? ''), 120)}\` ${item.status === 'declined' ? 'declined' : `exited ${item.exitCode ?? '?'}`}${out}`,
          );
        } else if (item.type === 'fileChange') {
          this.report(`file change ${item.status ?? 'done'}`);
        }
        return;
      }
      case 'error': {
        const e = p.error as TurnError | undefined;
        if (!e) return;
        this.lastError = e;
        if (p.willRetry) this.failingSince ??= Date.now();
        this.flush();
        this.report(
          `Codex: ${e.message}${p.willRetry ? ' (retrying)' : ''}${e.additionalDetails ? ` — ${clip(oneLine(e.additionalDetails), 200)}` : ''}`,
        );
        return;
      }
      case 'thread/tokenUsage/updated': {
        const u = p.tokenUsage as { total?: TokenBreakdown } | undefined;
        if (u?.total) this.total = u.total;
        this.modelResponses += 1;
        return;
      }
      case 'turn/completed':
        this.flush();
        this.#done(p.turn as Turn);
        return;
      case 'warning':
        if (typeof p.message === 'string') this.report(`Codex warning: ${p.message}`);
        return;
      default:
        return; // thread/started, turn/started, deltas of commands, rate limits, warnings…
    }
  }
}

/** What the approval request is about, for the planner's question. */
function describeRequest(method: string, p: Record<string, unknown>): string {
  const reason = typeof p.reason === 'string' && p.reason ? ` (reason: ${p.reason})` : '';
  if (method === 'item/commandExecution/requestApproval') {
    return `to run \`${clip(String(p.command ?? '?'), 500)}\`${p.cwd ? ` in ${p.cwd}` : ''}${reason}`;
  }
  if (method === 'item/fileChange/requestApproval') {
    return `to change files${p.grantRoot ? ` under ${p.grantRoot}` : ''}${reason}`;
  }
  return `extra permissions ${clip(JSON.stringify(p.permissions ?? {}), 300)}${reason}`;
}

/** Puts one approval request to the planner; returns the answer in Codex's shape and records it. */
async function askApproval(
  ctx: AgentRunContext,
  method: string,
  p: Record<string, unknown>,
  record: ApprovalRecord[],
): Promise<unknown> {
  const what = describeRequest(method, p);
  const answer = (decision: ApprovalRecord['decision'], reason: string) => {
    record.push({ request: method, what, decision, reason });
    if (decision !== 'accepted') ctx.report(`approval ${decision}: ${what}`);
    if (method === 'item/permissions/requestApproval') {
      // A grant of nothing refuses; a grant of what was asked, for this turn only, accepts.
      return { permissions: decision === 'accepted' ? (p.permissions ?? {}) : {}, scope: 'turn' };
    }
    return { decision: decision === 'accepted' ? 'accept' : decision === 'declined' ? 'decline' : 'cancel' };
  };
  let reply: Awaited<ReturnType<AgentRunContext['ask']>>;
  try {
    reply = await ctx.ask({
      message: `Codex asks permission ${what} (task ${ctx.args.task_id}). Allow it? yes/no`,
      requestedSchema: {
        type: 'object',
        properties: {
          approve: {
            type: 'boolean',
            title: 'Allow this?',
            description: 'true lets Codex go ahead; false refuses (Codex is told and carries on without it)',
          },
        },
        required: ['approve'],
      },
    });
  } catch (err) {
    if (ctx.signal.aborted) return answer('cancelled', 'task stopped');
    return answer('declined', `asking failed: ${err instanceof Error ? err.message : err}`);
  }
  if (reply === undefined) return answer('declined', 'the MCP client cannot answer questions');
  if (reply.action === 'cancel') return answer('cancelled', 'the planner dismissed the question');
  if (reply.action === 'accept' && reply.content?.approve === true) {
    ctx.report(`planner allowed ${what}`);
    return answer('accepted', 'approved');
  }
  return answer('declined', reply.action === 'accept' ? 'refused by the planner' : reply.action);
}

/** Puts Codex's request_user_input questions to the planner, one form with a string per question. */
async function askUserInput(ctx: AgentRunContext, p: Record<string, unknown>): Promise<unknown> {
  const questions = (p.questions ?? []) as { id: string; header?: string; question: string }[];
  const properties: Record<string, { type: 'string'; title: string; description: string }> = {};
  for (const q of questions) {
    properties[q.id] = { type: 'string', title: q.header || q.id, description: q.question };
  }
  const reply = await ctx.ask({
    message: `Codex asks (task ${ctx.args.task_id}): ${questions.map((q) => q.question).join(' / ')}`,
    requestedSchema: { type: 'object', properties, required: questions.map((q) => q.id) },
  });
  const answers: Record<string, { answers: string[] }> = {};
  if (reply?.action === 'accept') {
    for (const q of questions) {
      const v = reply.content?.[q.id];
      if (v !== undefined) answers[q.id] = { answers: [String(v)] };
    }
  }
  return { answers };
}

const APPROVALS = new Set([
  'item/commandExecution/requestApproval',
  'item/fileChange/requestApproval',
  'item/permissions/requestApproval',
]);

/** What runCodexTurn needs besides the task context. */
export interface CodexIo {
  write(line: string): void;
  settings: CodexSettings;
  /** Stop the turn when Codex has only been retrying (model API unreachable or failing) for this long. */
  unreachableAfterMs: number;
  /** Given the peer once created, so that the caller can feed it stdout lines. */
  attach(peer: JsonRpcPeer): void;
  /** Resolves with what happened when codex exits (it may die mid-turn, with no turn/completed). */
  exited: Promise<string>;
}

/**
 * Runs one task as one thread with one turn. Resolves with the outcome; rejects when the connection
 * fails (the caller turns that into Codex's own words from its stderr).
 */
export async function runCodexTurn(
  ctx: AgentRunContext,
  io: CodexIo,
  started: number,
): Promise<AgentRunResult> {
  const follower = new TurnFollower(ctx.report);
  const approvals: ApprovalRecord[] = [];
  let threadId: string | undefined;
  const peer = new JsonRpcPeer(io.write, {
    notification(method, params) {
      const p = (params ?? {}) as Record<string, unknown>;
      if (threadId === undefined || p.threadId === undefined || p.threadId === threadId) {
        follower.notification(method, p);
      }
    },
    async request(method, params) {
      const p = (params ?? {}) as Record<string, unknown>;
      follower.flush();
      if (APPROVALS.has(method)) return askApproval(ctx, method, p, approvals);
      if (method === 'item/tool/requestUserInput') return askUserInput(ctx, p);
      throw new RpcError(METHOD_NOT_FOUND, `method not found: ${method} (nfltr codex-mcp does not serve it)`);
    },
    stray: (line) => ctx.log.debug('codex stdout (not JSON-RPC)', { line }),
  });
  io.attach(peer);

  await initialize(peer);
  const s = io.settings;
  const thread = await peer.request<{
    thread: { id: string };
    model?: string;
    reasoningEffort?: string | null;
  }>('thread/start', {
    cwd: ctx.cwd,
    approvalPolicy: s.approvalPolicy,
    sandbox: s.sandbox,
    ...(s.model ? { model: s.model } : {}),
  });
  threadId = thread.thread.id;
  ctx.report(`Codex thread ${threadId} started (model ${thread.model ?? '?'}, sandbox ${s.sandbox})`);
  const turn = await peer.request<{ turn: Turn }>('turn/start', {
    threadId,
    input: [{ type: 'text', text: ctx.prompt, text_elements: [] }],
    ...(s.reasoningEffort ? { effort: s.reasoningEffort } : {}),
  });
  const turnId = turn.turn.id;
  const interrupt = () => {
    peer.request('turn/interrupt', { threadId, turnId }).catch(() => {});
  };
  ctx.signal.addEventListener('abort', interrupt, { once: true });
  // Codex retries a model API it cannot reach for ever ("waiting for network"): give up after a while.
  let gaveUp: number | undefined;
  const watch = setInterval(() => {
    const since = follower.failingSince;
    if (gaveUp === undefined && since !== undefined && Date.now() - since >= io.unreachableAfterMs) {
      gaveUp = Date.now() - since;
      interrupt();
    }
  }, 250);
  let ended: Turn;
  try {
    ended = await Promise.race([
      follower.done,
      io.exited.then((why) => {
        throw new Error(`${why} before the turn ended`);
      }),
    ]);
  } finally {
    clearInterval(watch);
    ctx.signal.removeEventListener('abort', interrupt);
  }

  const usage: TaskUsage = { duration_ms: Date.now() - started };
  const t = follower.total;
  if (t) {
    usage.input_tokens = t.inputTokens;
    usage.output_tokens = t.outputTokens;
    usage.cache_read_tokens = t.cachedInputTokens;
    usage.reasoning_tokens = t.reasoningOutputTokens;
    usage.total_tokens = t.totalTokens;
  }
  if (follower.modelResponses > 0) usage.turns = follower.modelResponses;
  if (thread.model) usage.model = thread.model; // also here, so that usage alone says what it counts
  const refused = approvals.filter((a) => a.decision !== 'accepted');
  const details = {
    turn_status: ended.status,
    sandbox: s.sandbox,
    approval_policy: s.approvalPolicy,
    ...(approvals.length ? { approvals } : {}),
  };
  const base = { usage, session_id: threadId, details, ...(thread.model ? { model: thread.model } : {}) };
  const said = follower.answer.trim();
  if (ended.status === 'completed' && refused.length === 0) return { ok: true, text: said, ...base };
  if (ended.status === 'completed') {
    // Codex carried on without what was refused; its answer may read as success, so say plainly
    // that the work was not done as Codex meant to do it.
    return {
      ok: false,
      text: `the planner refused ${refused.map((r) => r.what).join('; ')}, and Codex finished without it${said ? `. Codex's final answer: ${said}` : ''}`,
      ...base,
    };
  }
  const err = ended.error ?? follower.lastError;
  const cause = err ? describeError(err) : '';
  const why =
    gaveUp !== undefined
      ? `Codex failed: the model API did not work for ${formatDuration(gaveUp)} (--unreachable-after), so the turn was stopped; Codex's last error: ${cause}`
      : ended.status === 'interrupted'
        ? 'Codex was interrupted'
        : `Codex failed${cause ? `: ${cause}` : ''}`;
  return { ok: false, text: `${why}${said ? `. Its last message: ${said}` : ''}`, ...base };
}
