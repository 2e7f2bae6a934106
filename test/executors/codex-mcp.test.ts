/**
 * codex-mcp's app-server client without a process: runCodexTurn against a scripted app-server that
 * answers in the shapes of `codex app-server generate-json-schema` (0.171). The real CLI runs in
 * codex-worker.test.ts.
 */
import type { ElicitResult } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { codexError, describeItem, runCodexTurn } from '../../src/executors/codex-mcp/index.js';
import type { AgentRunContext } from '../../src/executors/common/index.js';
import type { JsonRpcPeer } from '../../src/executors/copilot-mcp/index.js';
import { silentLogger } from '../../src/util/log.js';
import { ProcessGroups } from '../../src/util/process-group.js';

type Msg = { id?: number | string; method?: string; params?: Record<string, unknown>; result?: unknown };

/**
 * A scripted app-server: answers initialize, thread/start and turn/start, then runs `turn(server)`,
 * which may send notifications and requests and read what the client sent.
 */
function scriptedServer(turn: (s: ScriptedServer) => Promise<void>) {
  let peer: JsonRpcPeer | undefined;
  let exit: (why: string) => void = () => {};
  const exited = new Promise<string>((r) => {
    exit = r;
  });
  const sent: Msg[] = [];
  const waiters: { match: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = [];
  const send = (m: Msg) => setImmediate(() => peer!.line(JSON.stringify(m))); // no `jsonrpc`, as codex
  const server: ScriptedServer = {
    notify: (method, params) => send({ method, params: { threadId: 'th1', turnId: 'tu1', ...params } }),
    request: async (id, method, params) => {
      send({ id, method, params: { threadId: 'th1', turnId: 'tu1', ...params } });
      return (await server.next((m) => m.id === id && m.method === undefined)).result;
    },
    next: (match) => {
      const hit = sent.find(match);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve) => waiters.push({ match, resolve }));
    },
    complete: (status, error = null) =>
      server.notify('turn/completed', { turn: { id: 'tu1', status, error } }),
    exit: (why) => exit(why),
  };
  const write = (line: string) => {
    const m = JSON.parse(line) as Msg;
    sent.push(m);
    for (const w of waiters.splice(0)) w.match(m) ? w.resolve(m) : waiters.push(w);
    if (m.method === 'initialize') send({ id: m.id, result: { userAgent: 'codex/0.171.0' } });
    if (m.method === 'thread/start') send({ id: m.id, result: { thread: { id: 'th1' }, model: 'gpt-test' } });
    if (m.method === 'turn/start') {
      send({ id: m.id, result: { turn: { id: 'tu1', status: 'inProgress', error: null } } });
      setImmediate(() => void turn(server));
    }
    if (m.method === 'turn/interrupt') send({ id: m.id, result: {} });
  };
  return {
    sent,
    io: (unreachableAfterMs = 60_000) => ({
      write,
      settings: { sandbox: 'workspace-write', approvalPolicy: 'untrusted' },
      unreachableAfterMs,
      exited,
      attach: (p: JsonRpcPeer) => {
        peer = p;
      },
    }),
  };
}

interface ScriptedServer {
  notify(method: string, params: Record<string, unknown>): void;
  request(id: number, method: string, params: Record<string, unknown>): Promise<unknown>;
  next(match: (m: Msg) => boolean): Promise<Msg>;
  complete(status: string, error?: unknown): void;
  /** The process exits (the caller's `exited` resolves with `why`). */
  exit(why: string): void;
}

function context(answer: (message: string) => ElicitResult | undefined) {
  const progress: string[] = [];
  const questions: string[] = [];
  const ctx: AgentRunContext = {
    args: { task_id: 't1', objective: 'x', input_dir: '/in', output_dir: '/out' },
    cwd: '/work',
    prompt: 'Write standin.txt',
    signal: new AbortController().signal,
    env: {},
    groups: new ProcessGroups(),
    trackCleanup: (fn) => fn,
    report: (m) => progress.push(m),
    ask: async (p) => {
      questions.push(p.message);
      return answer(p.message);
    },
    log: silentLogger,
  };
  return { ctx, progress, questions };
}

const command = 'echo standin > standin.txt';

/** A turn that asks approval for one command, runs it (or not), and answers. */
async function approvalTurn(s: ScriptedServer) {
  s.notify('item/started', { item: { type: 'commandExecution', id: 'c1', command } });
  const answer = (await s.request(0, 'item/commandExecution/requestApproval', {
    itemId: 'c1',
    command,
    cwd: '/work',
  })) as {
    decision: string;
  };
  const ran = answer.decision === 'accept';
  s.notify('item/completed', {
    item: {
      type: 'commandExecution',
      id: 'c1',
      command,
      status: ran ? 'completed' : 'declined',
      exitCode: ran ? 0 : null,
    },
  });
  s.notify('thread/tokenUsage/updated', {
    tokenUsage: {
      total: {
        totalTokens: 150,
        inputTokens: 120,
        cachedInputTokens: 20,
        outputTokens: 30,
        reasoningOutputTokens: 5,
      },
    },
  });
  s.notify('item/completed', {
    item: { type: 'agentMessage', id: 'm1', text: ran ? 'Done.' : 'I could not write it.' },
  });
  s.complete('completed');
}

describe('codex-mcp - app-server client', () => {
  it('puts an approval to the planner and answers {decision: accept}; usage and progress in the result', async () => {
    const server = scriptedServer(approvalTurn);
    const { ctx, progress, questions } = context(() => ({ action: 'accept', content: { approve: true } }));
    const r = await runCodexTurn(ctx, server.io(), Date.now());
    expect(questions[0]).toContain(`Codex asks permission to run \`${command}\` in /work (task t1)`);
    expect(server.sent.find((m) => m.id === 0)?.result).toEqual({ decision: 'accept' });
    expect(server.sent.find((m) => m.method === 'thread/start')?.params).toMatchObject({
      cwd: '/work',
      approvalPolicy: 'untrusted',
      sandbox: 'workspace-write',
    });
    expect(r).toMatchObject({
      ok: true,
      text: 'Done.',
      model: 'gpt-test',
      session_id: 'th1',
      usage: {
        input_tokens: 120,
        output_tokens: 30,
        cache_read_tokens: 20,
        reasoning_tokens: 5,
        total_tokens: 150,
        turns: 1,
      },
      details: { turn_status: 'completed', approvals: [{ decision: 'accepted' }] },
    });
    expect(progress).toEqual(
      expect.arrayContaining([`running \`${command}\``, `\`${command}\` exited 0`, 'Codex: Done.']),
    );
  });

  it('answers a refusal with {decision: decline} and fails the task with what was refused', async () => {
    const server = scriptedServer(approvalTurn);
    const { ctx } = context(() => ({ action: 'accept', content: { approve: false } }));
    const r = await runCodexTurn(ctx, server.io(), Date.now());
    expect(server.sent.find((m) => m.id === 0)?.result).toEqual({ decision: 'decline' });
    expect(r.ok).toBe(false);
    expect(r.text).toBe(
      `the planner refused to run \`${command}\` in /work, and Codex finished without it. Codex's final answer: I could not write it.`,
    );
  });

  it('answers a permissions request with what was asked, or nothing when refused', async () => {
    for (const approve of [true, false]) {
      let answer: unknown;
      const server = scriptedServer(async (s) => {
        answer = await s.request(0, 'item/permissions/requestApproval', {
          cwd: '/work',
          reason: 'needs the network',
          permissions: { network: { enabled: true }, fileSystem: null },
        });
        s.complete('completed');
      });
      const { ctx, questions } = context(() => ({ action: 'accept', content: { approve } }));
      await runCodexTurn(ctx, server.io(), Date.now());
      expect(questions[0]).toContain('(reason: needs the network)');
      expect(answer).toEqual({
        permissions: approve ? { network: { enabled: true }, fileSystem: null } : {},
        scope: 'turn',
      });
    }
  });

  it('stops a turn that only retries for --unreachable-after and says why, with codex’s last error', async () => {
    const server = scriptedServer(async (s) => {
      s.notify('error', {
        error: {
          message: 'Reconnecting... waiting for network',
          codexErrorInfo: { responseStreamDisconnected: { httpStatusCode: null } },
          additionalDetails: 'Connection failed: error sending request',
        },
        willRetry: true,
      });
      await s.next((m) => m.method === 'turn/interrupt');
      s.complete('interrupted');
    });
    const { ctx, progress } = context(() => undefined);
    const r = await runCodexTurn(ctx, server.io(300), Date.now());
    expect(progress).toContain(
      'Codex: Reconnecting... waiting for network (retrying) — Connection failed: error sending request',
    );
    expect(r.ok).toBe(false);
    expect(r.text).toMatch(
      /^Codex failed: the model API did not work for .* \(--unreachable-after\), so the turn was stopped; Codex's last error: Reconnecting\.\.\. waiting for network \[responseStreamDisconnected\] \(Connection failed: error sending request\)$/,
    );
  });

  it('reports a failed turn in codex’s words', async () => {
    const server = scriptedServer(async (s) =>
      s.complete('failed', {
        message: 'busy',
        codexErrorInfo: 'internalServerError',
        additionalDetails: null,
      }),
    );
    const r = await runCodexTurn(context(() => undefined).ctx, server.io(), Date.now());
    expect(r).toMatchObject({ ok: false, text: 'Codex failed: busy [internalServerError]' });
  });

  it('streams a long agent message as progress once, and answers with the whole of it', async () => {
    const text = `${'a'.repeat(310)} tail`;
    const server = scriptedServer(async (s) => {
      s.notify('item/agentMessage/delta', { itemId: 'm1', delta: text.slice(0, 310) });
      s.notify('item/agentMessage/delta', { itemId: 'm1', delta: text.slice(310) });
      s.notify('item/completed', { item: { type: 'agentMessage', id: 'm1', text } });
      s.complete('completed');
    });
    const { ctx, progress } = context(() => undefined);
    const r = await runCodexTurn(ctx, server.io(), Date.now());
    expect(r).toMatchObject({ ok: true, text });
    expect(progress.filter((p) => p.startsWith('Codex: '))).toEqual([
      `Codex: ${'a'.repeat(310)}`,
      'Codex:  tail',
    ]);
  });

  it('fails at once, in codex’s words, when codex dies mid-turn', async () => {
    const server = scriptedServer(async (s) => {
      s.notify('item/started', { item: { type: 'commandExecution', id: 'c1', command: 'ls' } });
      s.exit('codex was killed by SIGKILL');
    });
    await expect(runCodexTurn(context(() => undefined).ctx, server.io(), Date.now())).rejects.toThrow(
      'codex was killed by SIGKILL before the turn ended',
    );
  });
});

describe('codex-mcp - messages', () => {
  it('takes the Error paragraph of codex stderr, without the backtrace', () => {
    const stderr =
      'WARNING: proceeding, even though we could not create PATH aliases\nError: unknown variant `bogus`, expected one of `read-only`\nin `sandbox_mode`\n\n\nStack backtrace:\n   0: <unknown>\n';
    expect(codexError(stderr)).toBe(
      'Error: unknown variant `bogus`, expected one of `read-only` in `sandbox_mode`',
    );
    expect(codexError('some line\nlast words\n')).toBe('some line | last words');
  });

  it('describes the items codex starts', () => {
    expect(describeItem({ type: 'commandExecution', id: '1', command: 'ls -la' })).toBe('running `ls -la`');
    expect(describeItem({ type: 'fileChange', id: '2', changes: [{ path: 'a.ts' }, { path: 'b.ts' }] })).toBe(
      'editing a.ts, b.ts',
    );
    expect(describeItem({ type: 'mcpToolCall', id: '3', server: 'gh', tool: 'search' })).toBe(
      'calling gh.search',
    );
    expect(describeItem({ type: 'reasoning', id: '4' })).toBeUndefined();
  });
});
