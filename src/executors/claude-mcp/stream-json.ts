/**
 * @module Reading Claude Code's `--output-format stream-json` output: one JSON object per line, `system`
 * (`init` first, with the session id and model), `assistant` messages whose content blocks are `text`,
 * `thinking` or `tool_use`, `user` messages carrying `tool_result` blocks, and one final `result`
 * (`subtype` `success`, `error_max_turns` or `error_during_execution`; `is_error`, `result`,
 * `total_cost_usd`, `num_turns`, `duration_ms`, `duration_api_ms`, `usage`, `session_id`,
 * `permission_denials`).
 */
import type { AgentRunResult, TaskUsage } from '../common/task.js';

/** The final `result` message, as far as we read it. */
export interface ClaudeResultMessage {
  type: 'result';
  subtype?: string;
  is_error?: boolean;
  result?: string;
  errors?: unknown[];
  session_id?: string;
  total_cost_usd?: number;
  num_turns?: number;
  duration_ms?: number;
  duration_api_ms?: number;
  usage?: Record<string, unknown>;
  modelUsage?: Record<string, unknown>;
  permission_denials?: { tool_name?: string; tool_use_id?: string }[];
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** A short description of a tool use for progress (`Bash: npm test`, `Edit: src/a.ts`). */
export function describeToolUse(name: string, input: unknown): string {
  const i = (input && typeof input === 'object' ? input : {}) as Record<string, unknown>;
  const pick = ['command', 'file_path', 'notebook_path', 'path', 'pattern', 'url', 'query', 'description']
    .map((k) => i[k])
    .find((v) => typeof v === 'string' && v !== '');
  if (typeof pick === 'string') return `${name}: ${pick}`;
  if (Array.isArray(i.todos)) return `${name}: ${i.todos.length} item(s)`;
  const json = JSON.stringify(i);
  return json === '{}' ? name : `${name}: ${json}`;
}

/** Follows one claude run's stream, turning events into progress and keeping what the result needs. */
export class ClaudeStream {
  sessionId?: string;
  model?: string;
  result?: ClaudeResultMessage;
  /** The last assistant text, used when the result message carries none. */
  lastText = '';
  /** Lines that were not stream-json (a CLI too old for it prints plain text, or an error). */
  readonly strayLines: string[] = [];
  /** The bridge server's status in the init message, when not `connected`. */
  bridgeProblem?: string;
  readonly #toolNames = new Map<string, string>();

  constructor(
    private readonly report: (message: string) => void,
    private readonly bridgeName?: string,
  ) {}

  /** Handles one stdout line. */
  line(line: string): void {
    if (line.trim() === '') return;
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.strayLines.push(line);
      if (this.strayLines.length > 20) this.strayLines.shift();
      return;
    }
    if (typeof msg.session_id === 'string') this.sessionId ??= msg.session_id;
    switch (msg.type) {
      case 'system':
        if (msg.subtype === 'init') this.#init(msg);
        else this.#system(msg);
        break;
      case 'assistant':
        this.#assistant(msg);
        break;
      case 'user':
        this.#toolResults(msg);
        break;
      case 'result':
        this.result = msg as unknown as ClaudeResultMessage;
        break;
      default:
        // stream_event, control messages, future types: nothing to report.
        break;
    }
  }

  #init(msg: Record<string, unknown>): void {
    if (typeof msg.model === 'string') this.model = msg.model;
    const servers = Array.isArray(msg.mcp_servers)
      ? (msg.mcp_servers as { name?: string; status?: string }[])
      : [];
    const bridge = servers.find((s) => s.name === this.bridgeName);
    // `pending` is normal here: Claude connects its MCP servers while the session starts.
    if (this.bridgeName && bridge?.status === 'failed') this.bridgeProblem = bridge.status;
    this.report(
      `Claude Code started${this.model ? ` (model ${this.model}` : ' ('}${typeof msg.permissionMode === 'string' ? `, permission mode ${msg.permissionMode}` : ''})`,
    );
  }

  /**
   * Claude's own status lines: `api_retry` (attempt, max_retries, retry_delay_ms, error_status, error)
   * while the model API fails, `permission_denied`, and whatever later versions add, named by subtype.
   */
  #system(msg: Record<string, unknown>): void {
    if (msg.subtype === 'api_retry') {
      const status = typeof msg.error_status === 'number' ? `HTTP ${msg.error_status}` : '';
      const error = typeof msg.error === 'string' && msg.error !== 'unknown' ? msg.error : '';
      const why = [status, error].filter(Boolean).join(' ') || 'no answer (connection failed)';
      const delay = num(msg.retry_delay_ms);
      this.report(
        `Claude Code: the model API failed (${why}); retry ${msg.attempt ?? '?'} of ${msg.max_retries ?? '?'}${delay !== undefined ? ` in ${(delay / 1000).toFixed(1)} s` : ''}`,
      );
    } else if (msg.subtype === 'permission_denied') {
      this.report(
        `Claude Code refused ${msg.tool_name ?? 'a tool'}: ${String(msg.message ?? '').split('\n')[0]}`,
      );
    } else if (typeof msg.subtype === 'string') {
      this.report(`Claude Code: ${msg.subtype.replace(/_/g, ' ')}`);
    }
  }

  #assistant(msg: Record<string, unknown>): void {
    const content = (msg.message as { content?: unknown } | undefined)?.content;
    if (!Array.isArray(content)) return;
    for (const block of content as Record<string, unknown>[]) {
      if (block.type === 'text' && typeof block.text === 'string' && block.text.trim() !== '') {
        this.lastText = block.text;
        this.report(`Claude: ${block.text}`);
      } else if (block.type === 'tool_use' && typeof block.name === 'string') {
        if (typeof block.id === 'string') this.#toolNames.set(block.id, block.name);
        this.report(describeToolUse(block.name, block.input));
      }
    }
  }

  #toolResults(msg: Record<string, unknown>): void {
    const content = (msg.message as { content?: unknown } | undefined)?.content;
    if (!Array.isArray(content)) return;
    for (const block of content as Record<string, unknown>[]) {
      if (block.type !== 'tool_result') continue;
      const name =
        (typeof block.tool_use_id === 'string' && this.#toolNames.get(block.tool_use_id)) || 'tool';
      if (block.is_error === true) {
        const text = typeof block.content === 'string' ? block.content : JSON.stringify(block.content ?? '');
        this.report(`${name} failed: ${text.split('\n')[0]}`);
      } else {
        this.report(`${name} done`);
      }
    }
  }

  /** Usage from the result message; `wallMs` fills in the duration when the CLI gave none. */
  usage(wallMs: number): TaskUsage {
    const r = this.result;
    const u = r?.usage ?? {};
    const usage: TaskUsage = {
      ...(this.model ? { model: this.model } : {}),
      duration_ms: num(r?.duration_ms) ?? wallMs,
    };
    const set = (k: keyof TaskUsage, v: unknown) => {
      const n = num(v);
      if (n !== undefined) usage[k] = n;
    };
    set('input_tokens', u.input_tokens);
    set('output_tokens', u.output_tokens);
    set('cache_read_tokens', u.cache_read_input_tokens);
    set('cache_write_tokens', u.cache_creation_input_tokens);
    set('cost_usd', r?.total_cost_usd);
    set('turns', r?.num_turns);
    set('api_duration_ms', r?.duration_api_ms);
    return usage;
  }

  /**
   * The run's outcome once the CLI has exited. Without a result message the run failed, and the best
   * explanation is the CLI's stderr (or its non-JSON output).
   */
  outcome(
    exit: { code: number | null; signal: string | null; spawnError?: string },
    stderr: string,
    wallMs: number,
  ) {
    const r = this.result;
    const base = {
      usage: this.usage(wallMs),
      ...(this.sessionId ? { session_id: this.sessionId } : {}),
      ...(this.model ? { model: this.model } : {}),
    };
    const denials = (r?.permission_denials ?? []).map((d) => d.tool_name ?? 'unknown');
    const details = {
      ...(r?.subtype ? { result_subtype: r.subtype } : {}),
      ...(denials.length ? { permission_denials: denials } : {}),
      exit_code: exit.code,
    };
    if (r) {
      const ok = r.subtype === 'success' && r.is_error !== true;
      const errors = (r.errors ?? []).filter((e) => typeof e === 'string') as string[];
      const text = ok
        ? (r.result ?? this.lastText)
        : r.subtype === 'error_max_turns'
          ? `Claude stopped after ${r.num_turns ?? '?'} turns without finishing (error_max_turns)`
          : r.result || errors.join('; ') || `claude ended with ${r.subtype ?? 'an error'}`;
      return { ok, text, details, ...base } satisfies AgentRunResult;
    }
    const why = exit.spawnError
      ? `could not be started: ${exit.spawnError}`
      : exit.code !== null
        ? `exited with code ${exit.code} before its result`
        : `was killed by ${exit.signal} before its result`;
    const said = stderr || this.strayLines.join('\n');
    return {
      ok: false,
      text: `claude ${why}${said ? `: ${said}` : ''}`,
      details,
      ...base,
    } satisfies AgentRunResult;
  }
}
