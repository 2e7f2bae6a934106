/**
 * @module Whether Claude Code has credentials here, without calling the model: an API key or token in
 * the environment, a cloud provider switch (Bedrock, Vertex, Foundry; their own credentials are not
 * checked), an `apiKeyHelper` in the settings, or the files `claude login` writes (`.credentials.json` in
 * the config folder; on macOS the login keychain). Part of `check_ready`, see docs/executor-contract.md.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Readiness } from '../common/ready.js';

const KEY_VARS = ['ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'CLAUDE_CODE_OAUTH_TOKEN'];
const PROVIDER_VARS = ['CLAUDE_CODE_USE_BEDROCK', 'CLAUDE_CODE_USE_VERTEX', 'CLAUDE_CODE_USE_FOUNDRY'];

const readJson = (file: string): Record<string, unknown> | undefined => {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
};

const truthy = (v: string | undefined) => v !== undefined && v !== '' && v !== '0' && v !== 'false';

/** The keychain entry `claude login` writes on macOS (`security` answers in milliseconds). */
function inKeychain(): Promise<boolean> {
  if (process.platform !== 'darwin') return Promise.resolve(false);
  return new Promise((resolve) =>
    execFile(
      'security',
      ['find-generic-password', '-s', 'Claude Code-credentials'],
      { timeout: 3_000 },
      (err) => resolve(!err),
    ),
  );
}

/** Where Claude Code found credentials, or undefined. */
export async function findClaudeCredentials(
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  const key = KEY_VARS.find((k) => env[k]);
  if (key) return key;
  const provider = PROVIDER_VARS.find((k) => truthy(env[k]));
  if (provider) return provider;
  const home = env.HOME || homedir();
  const dir = env.CLAUDE_CONFIG_DIR || join(home, '.claude');
  const creds = readJson(join(dir, '.credentials.json'));
  if (creds && Object.keys(creds).length > 0) return join(dir, '.credentials.json');
  const state = readJson(env.CLAUDE_CONFIG_DIR ? join(dir, '.claude.json') : join(home, '.claude.json'));
  if (typeof state?.primaryApiKey === 'string') return 'primaryApiKey in .claude.json';
  if (typeof readJson(join(dir, 'settings.json'))?.apiKeyHelper === 'string')
    return 'apiKeyHelper in settings.json';
  if (await inKeychain()) return 'the macOS keychain';
  return undefined;
}

/** `check_ready` for Claude Code: credentials found, or the reason and the fix. */
export async function claudeReadiness(env: NodeJS.ProcessEnv = process.env): Promise<Readiness> {
  if (await findClaudeCredentials(env)) return { ready: true };
  const dir = env.CLAUDE_CONFIG_DIR || join(env.HOME || homedir(), '.claude');
  return {
    ready: false,
    reason: `Claude Code has no credentials here: none of ${KEY_VARS.join(', ')} is set in the executor's environment, and there is no \`claude login\` in ${dir}`,
    fix: `run \`claude login\` on this machine as the worker's user, or set ANTHROPIC_API_KEY and pass it to the executor with \`nfltr worker --executor-env ANTHROPIC_API_KEY\` (the worker passes no other secrets)`,
  };
}
