/**
 * @module The planner's one tool surface, shared by both protocol eras: the listing (JSON Schema, every
 * tool from the first `tools/list`, whatever the link state) and the call (strict argument parsing, then
 * either the tool or an `isError` result saying why it cannot run now and what to fix). Nothing here
 * knows which MCP SDK carries it.
 */
import { toJsonSchemaCompat } from '@modelcontextprotocol/sdk/server/zod-json-schema-compat.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { type ZodIssue, z } from 'zod';
import { type Logger, silentLogger } from '../util/log.js';
import { PlannerError } from './errors.js';
import type { PlannerTool, RunContext } from './tools.js';

/** One `tools/list` entry as both eras carry it (the legacy era adds `execution`). */
export interface ListedTool {
  name: string;
  title: string;
  description: string;
  inputSchema: { type: 'object'; [k: string]: unknown };
  outputSchema: { type: 'object'; [k: string]: unknown };
  annotations: PlannerTool['annotations'];
  execution?: { taskSupport: 'optional' | 'forbidden' };
}

export interface ToolSurfaceOptions {
  tools: PlannerTool[];
  /** Why a tool with these needs cannot run now (no flag, bad key, link down), or undefined when it can. */
  unavailable: (needs: PlannerTool['needs']) => string | undefined;
  logger?: Logger;
}

const textResult = (text: string, isError = false): CallToolResult => ({
  content: [{ type: 'text', text }],
  ...(isError ? { isError: true } : {}),
});

const okResult = (out: Record<string, unknown>): CallToolResult => ({
  content: [{ type: 'text', text: JSON.stringify(out, null, 2) }],
  structuredContent: out,
});

/** One zod issue as a sentence naming the argument; custom messages already name it. */
function issueText(tool: PlannerTool, issue: ZodIssue): string {
  const path = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') {
    const known = Object.keys(tool.input.shape);
    return (
      `unknown argument${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}` +
      `: ${tool.name} takes ${known.length ? known.join(', ') : 'no arguments'}`
    );
  }
  if (issue.message.startsWith(`${path} `) || issue.message.startsWith(String(issue.path[0]))) {
    return issue.message;
  }
  if (issue.code === 'invalid_type' && issue.received === 'undefined') return `${path} is required`;
  if (issue.code === 'invalid_type') return `${path} must be ${issue.expected}, got ${issue.received}`;
  return `${path || 'arguments'}: ${issue.message}`;
}

export class ToolSurface {
  readonly #tools: Map<string, PlannerTool>;
  readonly #listed: ListedTool[];
  readonly #opts: ToolSurfaceOptions;
  readonly #log: Logger;

  constructor(opts: ToolSurfaceOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
    this.#tools = new Map(opts.tools.map((t) => [t.name, t]));
    this.#listed = opts.tools.map((t) => ({
      name: t.name,
      title: t.title,
      description: t.description,
      inputSchema: toJsonSchemaCompat(t.input) as ListedTool['inputSchema'],
      outputSchema: toJsonSchemaCompat(z.object(t.output)) as ListedTool['outputSchema'],
      annotations: t.annotations,
    }));
  }

  /** Every tool; `legacy` marks the long ones as accepting 2025-11-25 task-augmented calls. */
  list(era: 'legacy' | 'modern'): ListedTool[] {
    if (era === 'modern') return this.#listed;
    return this.#listed.map((t) => ({
      ...t,
      execution: { taskSupport: this.#tools.get(t.name)?.long ? 'optional' : 'forbidden' },
    }));
  }

  /** Whether `name` may run as an MCP task. */
  long(name: string): boolean {
    return this.#tools.get(name)?.long === true;
  }

  /**
   * Runs one call. Arguments are checked first (an unknown one is refused), then whether the tool can
   * run now; every failure is an `isError` result whose text says what to fix.
   */
  async call(name: string, args: unknown, ctx: RunContext): Promise<CallToolResult> {
    const tool = this.#tools.get(name);
    if (!tool) {
      return textResult(
        `unknown tool ${JSON.stringify(name)}: nfltr mcp has ${[...this.#tools.keys()].join(', ')}`,
        true,
      );
    }
    const parsed = tool.input.safeParse(args ?? {});
    if (!parsed.success) {
      return textResult(
        `invalid arguments for ${name}: ${parsed.error.issues.map((i) => issueText(tool, i)).join('; ')}`,
        true,
      );
    }
    const why = this.#opts.unavailable(tool.needs);
    if (why) return textResult(`${name} cannot run now: ${why}`, true);
    try {
      return okResult(await tool.run(parsed.data as never, ctx));
    } catch (err) {
      const e = err as Error;
      if (!(e instanceof PlannerError)) {
        this.#log.error('tool failed unexpectedly', { tool: name, error: e.stack ?? e.message });
      }
      return textResult(e.message, true);
    }
  }
}
