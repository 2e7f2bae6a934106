/**
 * @module The client side of the Agent Client Protocol (ACP, https://agentclientprotocol.com, protocol
 * version 1) for one task, as GitHub Copilot CLI serves it with `copilot --acp --stdio`:
 *
 *   → initialize {protocolVersion: 1, clientCapabilities}       ← {protocolVersion, agentCapabilities}
 *   → session/new {cwd, mcpServers: []}                         ← {sessionId, modes?, configOptions?}
 *   → session/set_mode | session/set_config_option (pinned --mode/--model/--reasoning-effort, when offered)
 *   → session/prompt {sessionId, prompt: [{type: text}]}        ← {stopReason, usage?}
 *       ← session/update notifications (agent_message_chunk, tool_call, tool_call_update, plan, usage_update…)
 *       ← session/request_permission {toolCall, options}        → {outcome: selected optionId | cancelled}
 *   → session/cancel {sessionId}  (on cancellation or time limit)
 *
 * The client advertises no file-system or terminal capability, so Copilot uses its own tools in the
 * session's cwd; any `fs/*` or `terminal/*` request is answered "method not found".
 */

import { VERSION } from '../../util/version.js';
import { describeToolUse } from '../claude-mcp/index.js';
import type { AgentRunContext, AgentRunResult, TaskUsage } from '../common/index.js';
import { JsonRpcPeer, METHOD_NOT_FOUND, RpcError } from './json-rpc.js';

export const ACP_PROTOCOL_VERSION = 1;

/** A message chunk that is Copilot's own status line rather than the model's text. */
const STATUS_CHUNK = /^(Info|Warning|Error): \S/;

/** Reported message text is flushed at this length even before the message ends. */
const FLUSH_CHARS = 300;

/** Settings pinned at start that the session may offer as modes or config options. */
export interface SessionSettings {
  mode?: string;
  model?: string;
  reasoningEffort?: string;
}

interface SelectValue {
  value: string;
  name?: string;
}
interface ConfigOption {
  id: string;
  name?: string;
  category?: string;
  type?: string;
  currentValue?: string;
  options?: (SelectValue | { group?: string; options?: SelectValue[] })[];
}
interface NewSessionResponse {
  sessionId: string;
  modes?: { currentModeId: string; availableModes: { id: string; name?: string }[] } | null;
  models?: { currentModelId: string; availableModels: { modelId: string; name?: string }[] } | null;
  configOptions?: ConfigOption[] | null;
}
interface PermissionOption {
  optionId: string;
  name?: string;
  kind?: string;
}

/** ACP's error code for "authentication required" (session/new before the agent has credentials). */
export const AUTH_REQUIRED = -32000;

/** The env vars Copilot CLI reads credentials from (its `copilot help environment`). */
export const COPILOT_TOKEN_ENV = ['COPILOT_GITHUB_TOKEN', 'GH_TOKEN', 'GITHUB_TOKEN'] as const;

/** What the fix for missing Copilot credentials is, on a worker. */
export const COPILOT_AUTH_FIX = `run \`copilot login\` as the worker's user, or set a token in ${COPILOT_TOKEN_ENV.join(' / ')} (or your own model provider in COPILOT_PROVIDER_BASE_URL, COPILOT_PROVIDER_API_KEY, COPILOT_MODEL) and pass it to the executor with \`nfltr worker --executor-env NAME\` (the worker passes only PATH, HOME, locale and NFLTR_* unless told)`;

export interface InitializeResponse {
  protocolVersion?: number;
  authMethods?: { id?: string; name?: string; description?: string }[];
}

/** Copilot's refusal of session/new for lack of credentials, with its own advice (from initialize). */
export function authRequiredText(err: RpcError, init: InitializeResponse | undefined): string {
  const advice = (init?.authMethods ?? [])
    .map((m) => [m.name, m.description].filter(Boolean).join(': '))
    .filter(Boolean);
  return `copilot refused to start a session: ${err.describe()}${advice.length ? `. Copilot says: ${advice.join('; ')}` : ''}`;
}

/** True when an offered id/name means `wanted` (`plan` matches id `…#plan` or name `Plan`). */
export function offerMatches(wanted: string, id: string, name?: string): boolean {
  const w = wanted.toLowerCase();
  const alias = w === 'interactive' ? 'agent' : w === 'agent' ? 'interactive' : w;
  const i = id.toLowerCase();
  const n = name?.toLowerCase();
  return [w, alias].some((x) => i === x || i.endsWith(`#${x}`) || i.endsWith(`/${x}`) || n === x);
}

const flatValues = (o: ConfigOption): SelectValue[] =>
  (o.options ?? []).flatMap((v) =>
    'value' in v ? [v as SelectValue] : ((v as { options?: SelectValue[] }).options ?? []),
  );

/** One change to make after session/new so that the session uses a pinned setting. */
type SettingChange = { method: string; params: Record<string, unknown>; what: string };

/**
 * Works out how to apply the pinned settings to a new session. A setting the session does not offer at
 * all is left to the command-line flag it was also given; one it offers without the wanted value is an
 * error naming what it offers.
 */
export function planSettings(s: SessionSettings, session: NewSessionResponse): SettingChange[] | string {
  const changes: SettingChange[] = [];
  const sessionId = session.sessionId;
  const config = session.configOptions ?? [];
  /** A change, an error, null when already set, undefined when the session has no such option. */
  const viaConfig = (
    category: string,
    wanted: string,
    flag: string,
  ): SettingChange | string | null | undefined => {
    const opt = config.find((o) => o.category === category || o.id === category);
    if (!opt) return undefined;
    const values = flatValues(opt);
    const hit = values.find((v) => offerMatches(wanted, v.value, v.name));
    if (!hit) {
      return `${flag} ${wanted} is not offered by this Copilot CLI session; it offers: ${values.map((v) => v.value).join(', ') || '(nothing)'}`;
    }
    if (opt.currentValue === hit.value) return null;
    return {
      method: 'session/set_config_option',
      params: { sessionId, configId: opt.id, value: hit.value },
      what: `${flag} ${hit.value}`,
    };
  };
  const push = (c: SettingChange | string | null | undefined): string | undefined => {
    if (typeof c === 'string') return c;
    if (c) changes.push(c);
    return undefined;
  };
  if (s.mode) {
    const modes = session.modes;
    if (modes && modes.availableModes.length > 0) {
      const hit = modes.availableModes.find((m) => offerMatches(s.mode!, m.id, m.name));
      if (!hit) {
        return `--mode ${s.mode} is not offered by this Copilot CLI session; it offers: ${modes.availableModes.map((m) => m.name ?? m.id).join(', ')}`;
      }
      if (hit.id !== modes.currentModeId) {
        changes.push({
          method: 'session/set_mode',
          params: { sessionId, modeId: hit.id },
          what: `--mode ${hit.id}`,
        });
      }
    } else {
      const err = push(viaConfig('mode', s.mode, '--mode'));
      if (err) return err;
    }
  }
  if (s.model) {
    const err = push(viaConfig('model', s.model, '--model'));
    if (err) return err;
    const models = session.models;
    if (
      !config.some((o) => o.category === 'model' || o.id === 'model') &&
      models &&
      models.availableModels.length > 0
    ) {
      const hit = models.availableModels.find((m) => offerMatches(s.model!, m.modelId, m.name));
      if (!hit) {
        return `--model ${s.model} is not offered by this Copilot CLI session; it offers: ${models.availableModels.map((m) => m.modelId).join(', ')}`;
      }
      if (hit.modelId !== models.currentModelId) {
        changes.push({
          method: 'session/set_model',
          params: { sessionId, modelId: hit.modelId },
          what: `--model ${hit.modelId}`,
        });
      }
    }
  }
  if (s.reasoningEffort) {
    const err = push(viaConfig('thought_level', s.reasoningEffort, '--reasoning-effort'));
    if (err) return err;
  }
  return changes;
}

/** Picks the permission option for the planner's answer: the narrowest allow, or the narrowest reject. */
export function pickOption(
  options: readonly PermissionOption[],
  allow: boolean,
): PermissionOption | undefined {
  const order = allow ? ['allow_once', 'allow_always'] : ['reject_once', 'reject_always'];
  for (const kind of order) {
    const o = options.find((x) => x.kind === kind);
    if (o) return o;
  }
  return undefined;
}

/** Follows the session's updates: progress, the answer text, usage. */
class SessionUpdates {
  answer = '';
  /** The last `Error: …` status line Copilot sent as a message chunk (e.g. its model provider is down). */
  statusError?: string;
  #pendingText = '';
  readonly #titles = new Map<string, string>();
  cost?: { amount: number; currency: string };
  contextUsed?: number;
  mode?: string;

  constructor(private readonly report: (m: string) => void) {}

  flush(): void {
    if (this.#pendingText.trim()) this.report(`Copilot: ${this.#pendingText}`);
    this.#pendingText = '';
  }

  update(u: Record<string, unknown>): void {
    const kind = u.sessionUpdate;
    if (kind === 'agent_message_chunk') {
      const c = u.content as { type?: string; text?: string } | undefined;
      if (c?.type === 'text' && typeof c.text === 'string') {
        // Copilot sends its own status ("Info: … Retrying...", "Error: Could not connect …") as whole
        // message chunks: progress, not part of the answer.
        if (STATUS_CHUNK.test(c.text)) {
          this.flush();
          this.report(`Copilot ${c.text.trim()}`);
          if (c.text.startsWith('Error: ')) this.statusError = c.text.slice('Error: '.length).trim();
          return;
        }
        this.answer += c.text;
        this.#pendingText += c.text;
        if (this.#pendingText.length >= FLUSH_CHARS) this.flush();
      }
      return;
    }
    if (kind === 'agent_thought_chunk' || kind === 'user_message_chunk') return;
    this.flush();
    switch (kind) {
      case 'tool_call': {
        const id = String(u.toolCallId ?? '');
        const title =
          typeof u.title === 'string' && u.title
            ? u.title
            : describeToolUse(String(u.kind ?? 'tool'), u.rawInput);
        this.#titles.set(id, title);
        this.report(`${title}${typeof u.kind === 'string' && u.kind !== 'other' ? ` (${u.kind})` : ''}`);
        if (u.status === 'completed' || u.status === 'failed') this.report(`${title} ${u.status}`);
        break;
      }
      case 'tool_call_update': {
        const id = String(u.toolCallId ?? '');
        if (typeof u.title === 'string' && u.title) this.#titles.set(id, u.title);
        const title = this.#titles.get(id) ?? 'tool call';
        if (u.status === 'completed') this.report(`${title} done`);
        else if (u.status === 'failed') this.report(`${title} failed${failureText(u.content)}`);
        break;
      }
      case 'plan': {
        const entries = Array.isArray(u.entries)
          ? (u.entries as { content?: string; status?: string }[])
          : [];
        const mark = (s?: string) => (s === 'completed' ? '[x]' : s === 'in_progress' ? '[~]' : '[ ]');
        this.report(`plan: ${entries.map((e) => `${mark(e.status)} ${e.content ?? ''}`).join('; ')}`);
        break;
      }
      case 'usage_update': {
        const cost = u.cost as { amount?: unknown; currency?: unknown } | undefined;
        if (cost && typeof cost.amount === 'number' && typeof cost.currency === 'string') {
          this.cost = { amount: cost.amount, currency: cost.currency };
        }
        if (typeof u.used === 'number') this.contextUsed = u.used;
        break;
      }
      case 'current_mode_update':
        if (typeof u.currentModeId === 'string') this.mode = u.currentModeId;
        break;
      default:
        break; // available_commands_update, config_option_update, future kinds
    }
  }
}

function failureText(content: unknown): string {
  if (!Array.isArray(content)) return '';
  for (const c of content as { type?: string; content?: { type?: string; text?: string } }[]) {
    if (c.type === 'content' && c.content?.type === 'text' && c.content.text)
      return `: ${c.content.text.split('\n')[0]}`;
  }
  return '';
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** What runAcpTask needs besides the task context. */
export interface AcpIo {
  /** Writes one line to the agent's stdin. */
  write(line: string): void;
  /** Closes the agent's stdin (ends the ACP connection). */
  end(): void;
  settings: SessionSettings;
  /** Filled by the caller with the peer, so that it can feed stdout lines to it. */
  attach(peer: JsonRpcPeer): void;
}

/**
 * Runs one prompt turn over an ACP connection. Resolves with the outcome; rejects when the connection
 * fails (the caller turns that into the CLI's error text).
 */
export async function runAcpTask(ctx: AgentRunContext, io: AcpIo, started: number): Promise<AgentRunResult> {
  const updates = new SessionUpdates(ctx.report);
  const permissions: unknown[] = [];
  let sessionId: string | undefined;

  const peer = new JsonRpcPeer(io.write, {
    notification(method, params) {
      const p = params as { sessionId?: string; update?: Record<string, unknown> } | undefined;
      if (
        method === 'session/update' &&
        p?.update &&
        (sessionId === undefined || p.sessionId === sessionId)
      ) {
        updates.update(p.update);
      }
    },
    async request(method, params) {
      if (method === 'session/request_permission') {
        updates.flush();
        return askPermission(ctx, params as PermissionParams, permissions);
      }
      throw new RpcError(
        METHOD_NOT_FOUND,
        `method not found: ${method} (nfltr advertises no such capability)`,
      );
    },
    stray: (line) => ctx.log.debug('copilot stdout (not ACP)', { line }),
  });
  io.attach(peer);

  const init = await peer.request<InitializeResponse>('initialize', {
    protocolVersion: ACP_PROTOCOL_VERSION,
    clientCapabilities: { fs: { readTextFile: false, writeTextFile: false }, terminal: false },
    clientInfo: { name: 'nfltr-copilot-mcp', title: 'nfltr copilot-mcp', version: VERSION },
  });
  if (init?.protocolVersion !== ACP_PROTOCOL_VERSION) {
    throw new Error(
      `copilot speaks ACP protocol version ${init?.protocolVersion ?? '(none)'} and nfltr speaks ${ACP_PROTOCOL_VERSION}; install a matching Copilot CLI`,
    );
  }
  let session: NewSessionResponse;
  try {
    session = await peer.request<NewSessionResponse>('session/new', { cwd: ctx.cwd, mcpServers: [] });
  } catch (err) {
    if (err instanceof RpcError && err.code === AUTH_REQUIRED) {
      throw new Error(`${authRequiredText(err, init)}. On a worker: ${COPILOT_AUTH_FIX}`);
    }
    throw err;
  }
  if (!session || typeof session.sessionId !== 'string')
    throw new Error('copilot answered session/new without a sessionId');
  sessionId = session.sessionId;
  updates.mode = session.modes?.currentModeId;

  const plan = planSettings(io.settings, session);
  if (typeof plan === 'string') {
    return { ok: false, text: plan, usage: { duration_ms: Date.now() - started }, session_id: sessionId };
  }
  for (const change of plan) {
    await peer.request(change.method, change.params);
    if (change.method === 'session/set_mode') updates.mode = String(change.params.modeId);
    ctx.report(`session set to ${change.what}`);
  }
  ctx.report(`Copilot session ${sessionId} started${updates.mode ? ` (mode ${updates.mode})` : ''}`);

  const onAbort = () => peer.notify('session/cancel', { sessionId });
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  let response: { stopReason?: string; usage?: Record<string, unknown> };
  try {
    response = await peer.request('session/prompt', {
      sessionId,
      prompt: [{ type: 'text', text: ctx.prompt }],
    });
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    updates.flush();
  }
  io.end();

  const u = response?.usage ?? {};
  const usage: TaskUsage = { duration_ms: Date.now() - started };
  const set = (k: keyof TaskUsage, v: unknown) => {
    const n = num(v);
    if (n !== undefined) usage[k] = n;
  };
  set('input_tokens', u.inputTokens);
  set('output_tokens', u.outputTokens);
  set('total_tokens', u.totalTokens);
  set('reasoning_tokens', u.thoughtTokens);
  set('cache_read_tokens', u.cachedReadTokens);
  set('cache_write_tokens', u.cachedWriteTokens);
  if (updates.cost) {
    if (updates.cost.currency === 'USD') usage.cost_usd = updates.cost.amount;
    else usage.cost = updates.cost;
  }
  const stop = response?.stopReason ?? 'unknown';
  const details = {
    stop_reason: stop,
    ...(updates.mode ? { mode: updates.mode } : {}),
    ...(updates.contextUsed !== undefined ? { context_tokens: updates.contextUsed } : {}),
    ...(permissions.length ? { permission_requests: permissions } : {}),
  };
  const base = { usage, session_id: sessionId, details };
  if (stop === 'end_turn' && updates.statusError && updates.answer.trim() === '') {
    // Copilot ends the turn "normally" when it gave up on its model provider; that is no answer.
    return {
      ok: false,
      text: `Copilot could not get an answer: ${updates.statusError.replace(/\s+/g, ' ')}`,
      ...base,
    };
  }
  if (stop === 'end_turn') return { ok: true, text: updates.answer.trim(), ...base };
  const why: Record<string, string> = {
    cancelled: 'Copilot cancelled the turn',
    refusal: 'Copilot refused to continue',
    max_tokens: 'Copilot reached its maximum number of tokens before finishing',
    max_turn_requests: 'Copilot reached its maximum number of model requests before finishing',
  };
  const said = updates.answer.trim();
  return {
    ok: false,
    text: `${why[stop] ?? `Copilot stopped (${stop})`}${said ? `: ${said}` : ''}`,
    ...base,
  };
}

interface PermissionParams {
  sessionId?: string;
  toolCall?: { toolCallId?: string; title?: string; kind?: string; rawInput?: unknown };
  options?: PermissionOption[];
}

/** Puts one `session/request_permission` to the planner; the answer picks the option. */
async function askPermission(
  ctx: AgentRunContext,
  params: PermissionParams,
  record: unknown[],
): Promise<{ outcome: { outcome: 'cancelled' } | { outcome: 'selected'; optionId: string } }> {
  const options = params.options ?? [];
  const tc = params.toolCall ?? {};
  const what = tc.title || describeToolUse(tc.kind ?? 'tool', tc.rawInput);
  const input = tc.rawInput !== undefined && tc.title ? ` ${JSON.stringify(tc.rawInput).slice(0, 300)}` : '';
  const choose = (allow: boolean, reason: string) => {
    const o = pickOption(options, allow);
    record.push({ tool: what, decision: allow && o ? 'allowed' : 'denied', reason });
    return o
      ? { outcome: { outcome: 'selected' as const, optionId: o.optionId } }
      : { outcome: { outcome: 'cancelled' as const } };
  };
  let answer: Awaited<ReturnType<AgentRunContext['ask']>>;
  try {
    answer = await ctx.ask({
      message: `Copilot asks permission for ${what}${input} (task ${ctx.args.task_id}). Allow it? yes/no`,
      requestedSchema: {
        type: 'object',
        properties: {
          approve: {
            type: 'boolean',
            title: 'Allow this tool call?',
            description: 'true lets Copilot run it; false refuses',
          },
        },
        required: ['approve'],
      },
    });
  } catch (err) {
    if (ctx.signal.aborted) return { outcome: { outcome: 'cancelled' } };
    return choose(false, `asking failed: ${err}`);
  }
  if (answer === undefined)
    return choose(false, 'the MCP client cannot answer questions (no elicitation support)');
  if (answer.action === 'cancel') {
    record.push({ tool: what, decision: 'denied', reason: 'cancel' });
    return { outcome: { outcome: 'cancelled' } };
  }
  const allow = answer.action === 'accept' && answer.content?.approve === true;
  ctx.report(`planner ${allow ? 'allowed' : 'refused'} ${what}`);
  return choose(allow, allow ? 'approved' : answer.action === 'accept' ? 'refused' : answer.action);
}
