/**
 * @module `nfltr ai`: one local command (an AI CLI by default) in a pseudo-terminal, mirrored to browsers
 * through the relay with end-to-end encryption; `nfltr ai revoke` ends a link. The PTY and the agent
 * are loaded only when the command runs.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { type Command, Option } from 'commander';
import { createLogger } from '../util/log.js';
import { relayRequest } from '../util/relay-request.js';
import { killSession, sessionPids } from '../util/terminal-session.js';
import {
  type AgentFlags,
  addAgentOptions,
  agentOptionsFrom,
  apiKeyFrom,
  defaultAgentId,
  tlsCaFrom,
} from './agent-options.js';
import { die, parseDuration } from './options.js';

interface AiFlags extends AgentFlags {
  proxyUrl?: string;
  readOnly?: boolean;
  expires: number;
  json?: boolean;
}

/** The AI CLIs tried, in order, when no command is given. */
export const DEFAULT_AI_COMMANDS = ['claude', 'copilot', 'codex'];

function onPath(name: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

/** COMMAND ARGS…, else the first AI CLI on PATH, else the user's shell. */
export function defaultCommand(args: string[]): string[] {
  if (args.length > 0) return args;
  const found = DEFAULT_AI_COMMANDS.find(onPath);
  return [found ?? process.env.SHELL ?? '/bin/sh'];
}

function parseUrl(value: string): string {
  if (!/^https?:\/\/[^/\s]+/.test(value))
    throw new Error(`--proxy-url: expected http(s)://host[:port], got ${JSON.stringify(value)}`);
  return value.replace(/\/+$/, '');
}

const proxyOption = () =>
  new Option('--proxy-url <url>', 'relay HTTP address, the base of the share link (required)').env(
    'NFLTR_PROXY_URL',
  );

export function register(program: Command): void {
  const ai = program
    .command('ai')
    .description(
      'Run COMMAND (default: claude, copilot or codex from PATH, else $SHELL) in a terminal shared with browsers, end-to-end encrypted',
    )
    .argument('[COMMAND...]', 'the command and its arguments, after --')
    .addOption(proxyOption())
    .option('--read-only', 'viewers watch only; nobody but the local terminal types')
    .addOption(
      new Option('--expires <duration>', 'the link stops working (and the session ends) after this')
        .argParser(parseDuration)
        .default(8 * 3_600_000, '8h'),
    )
    .addHelpText(
      'after',
      `
The share link carries the session key in its fragment (#k=…), which browsers never send to the relay:
the relay forwards ciphertext only. The first viewer types; others watch until they press "take control".
Ctrl-C in the local terminal goes to COMMAND; the session ends when COMMAND exits.

Examples:
  nfltr ai --relay https://relay.example.com --api-key-file ~/.nfltr/api-key
  nfltr ai --read-only --expires 1h -- bash
  nfltr ai revoke my-laptop-ai`,
    )
    .action(async (args: string[], flags: AiFlags) => {
      try {
        await runAi(defaultCommand(args), flags);
      } catch (err) {
        die((err as Error).message);
      }
    });
  addAgentOptions(ai);
  addAgentOptions(
    ai
      .command('revoke [id]')
      .description('End the link of your nfltr ai session ID (every session of the account when omitted)')
      .addOption(proxyOption())
      .option('--json', 'print {"revoked": [ids]} as JSON'),
  ).action(async (id: string | undefined, own: AiFlags, cmd: Command) => {
    // Flags given after `revoke` are its own; those before it were parsed by `ai`.
    const defined = (o: object) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
    const flags = { ...defined(cmd.parent?.opts() ?? {}), ...defined(own) } as AiFlags;
    try {
      await revoke(id, flags);
    } catch (err) {
      die((err as Error).message);
    }
  });
}

async function revoke(id: string | undefined, flags: AiFlags): Promise<void> {
  if (!flags.proxyUrl) throw new Error('no relay HTTP address: pass --proxy-url or set NFLTR_PROXY_URL');
  const apiKey = apiKeyFrom(flags);
  if (!apiKey) throw new Error('no API key: pass --api-key, set NFLTR_API_KEY, or pass --api-key-file');
  const path = id ? `/api/v1/ai/${encodeURIComponent(id)}/revoke` : '/api/v1/ai/revoke';
  const url = `${parseUrl(flags.proxyUrl)}${path}`;
  // relayRequest, not fetch: a relay with its own certificate is trusted through --tls-ca.
  const res = await relayRequest(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}` },
    ca: tlsCaFrom(flags),
  }).catch((err: Error) => {
    throw new Error(`cannot reach --proxy-url ${flags.proxyUrl}: ${err.message}`);
  });
  let body: { revoked?: string[]; error?: { message: string } };
  try {
    body = JSON.parse(res.text) as typeof body;
  } catch {
    throw new Error(
      `revoke: --proxy-url ${flags.proxyUrl} answered HTTP ${res.status}, not the relay's JSON`,
    );
  }
  if (!res.ok) throw new Error(`revoke: ${body.error?.message ?? `HTTP ${res.status}`}`);
  process.stdout.write(
    flags.json
      ? `${JSON.stringify({ revoked: body.revoked ?? [] })}\n`
      : `revoked: ${body.revoked?.join(', ') || '(no session)'}\n`,
  );
}

async function runAi(command: string[], flags: AiFlags): Promise<void> {
  if (!flags.proxyUrl) throw new Error('no relay HTTP address: pass --proxy-url or set NFLTR_PROXY_URL');
  const relayUrl = parseUrl(flags.proxyUrl);
  if (!(flags.expires > 0)) throw new Error('--expires: give a duration above zero, like 30m or 8h');
  const name = flags.name ?? defaultAgentId('tunnel').replace(/-tunnel$/, '-ai');
  const agentOpts = agentOptionsFrom({ ...flags, name }, 'tunnel');
  const [{ AgentClient }, { AiHost }, { newSessionKey, shareLink }, pty] = await Promise.all([
    import('../agent/client.js'),
    import('../agent/ai-session.js'),
    import('../protocol/ai-session.js'),
    import('node-pty'),
  ]);
  const logger = createLogger('ai');
  const client = new AgentClient({ ...agentOpts, logger, labels: { 'nfltr.ai': 'v1' } });
  client.on('status', (s) => {
    if (s.type === 'fatal') die(`relay refused this agent: ${s.message}`);
  });
  client.start();
  await client.waitConnected();

  const tty = process.stdin.isTTY && process.stdout.isTTY;
  const cols = (tty && process.stdout.columns) || 80;
  const rows = (tty && process.stdout.rows) || 24;
  let term: import('node-pty').IPty;
  try {
    term = pty.spawn(command[0]!, command.slice(1), {
      name: 'xterm-256color',
      cols,
      rows,
      cwd: process.cwd(),
      env: process.env as Record<string, string>,
    });
  } catch (err) {
    throw new Error(`cannot start ${JSON.stringify(command.join(' '))}: ${(err as Error).message}`);
  }
  const key = newSessionKey();
  let ending = false;
  const end = (why: string) => {
    if (ending) return;
    ending = true;
    process.stderr.write(`\r\nnfltr: ${why}; ending the session\r\n`);
    // SIGHUP is what a terminal closing sends; the group kill catches children that ignore it.
    killSession(term.pid, 'SIGHUP');
    setTimeout(() => killSession(term.pid, 'SIGKILL'), 2_000).unref();
  };
  const host = new AiHost({
    client,
    terminal: { write: (d) => term.write(d), resize: (c, r) => term.resize(c, r) },
    key,
    readOnly: !!flags.readOnly,
    expiresAt: Date.now() + flags.expires,
    logger,
    onRevoked: () => end('link revoked'),
  });
  host.resized(cols, rows);
  process.stdout.write(
    `nfltr ai: ${command.join(' ')} shared at\n${shareLink(relayUrl, client.agentId, key)}\n`,
  );
  setTimeout(() => end('link expired'), flags.expires).unref();

  term.onData((d) => {
    process.stdout.write(d);
    host.output(Buffer.from(d, 'utf8'));
  });
  if (tty) {
    process.stdin.setRawMode(true);
    process.stdin.on('data', (d) => term.write(d.toString('utf8')));
    process.stdout.on('resize', () => host.resized(process.stdout.columns, process.stdout.rows));
  }
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => end(`${sig} received`));

  const { exitCode, signal } = await new Promise<{ exitCode: number; signal?: number }>((resolve) =>
    term.onExit(resolve),
  );
  if (tty) process.stdin.setRawMode(false);
  process.stdin.pause();
  // What COMMAND left running in its terminal (background jobs) goes with it: SIGHUP, as a closing
  // terminal would send, then SIGKILL for what ignores it.
  killSession(term.pid, 'SIGHUP');
  const settled = Date.now() + 2_000;
  while (sessionPids(term.pid).length > 0 && Date.now() < settled)
    await new Promise((r) => setTimeout(r, 50));
  killSession(term.pid, 'SIGKILL');
  await host.exited(exitCode, signal);
  process.stderr.write(
    `nfltr ai: ${command[0]} exited with code ${exitCode}${signal ? ` (signal ${signal})` : ''}\n`,
  );
  // The exit frame must reach the relay before the stream closes.
  await Promise.race([client.whenWritable(0), new Promise((r) => setTimeout(r, 2_000).unref())]);
  await client.close();
  process.exit(exitCode);
}
