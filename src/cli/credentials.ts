/**
 * @module The saved login (`nfltr login`): relay addresses and API key in one 0600 JSON file under the
 * user's config folder, read by agent commands for whatever neither a flag nor an env var gave.
 * Precedence: flag > environment variable > this file.
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';

export interface Credentials {
  relay?: string;
  server?: string;
  proxyUrl?: string;
  apiKey?: string;
  tls?: boolean;
  tlsCa?: string;
}

/** `$XDG_CONFIG_HOME/nfltr/credentials.json`, `~/.config/…` when unset; `NFLTR_CREDENTIALS` overrides. */
export function credentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NFLTR_CREDENTIALS) return env.NFLTR_CREDENTIALS;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'nfltr', 'credentials.json');
}

/** The saved login, or undefined when there is none; throws naming the file when it is unreadable. */
export function readCredentials(path = credentialsPath()): Credentials | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new Error(`${path}: cannot read the saved login (${code}); \`nfltr logout\` removes it`);
  }
  try {
    return JSON.parse(text) as Credentials;
  } catch {
    throw new Error(`${path}: the saved login is not JSON; run \`nfltr login\` again`);
  }
}

/** Writes the login readable by this user only (the folder too). */
export function writeCredentials(creds: Credentials, path = credentialsPath()): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600); // an existing file keeps its mode through writeFileSync
}

/** Removes the saved login; false when there was none. */
export function removeCredentials(path = credentialsPath()): boolean {
  try {
    readFileSync(path);
  } catch {
    return false;
  }
  rmSync(path, { force: true });
  return true;
}

/**
 * Before the action runs, fills the options of `cmd` that neither a flag nor an env var set from the
 * saved login. The key is taken only when no `--api-key-file` was given either.
 */
export function applySavedLogin(cmd: Command): void {
  const unset = (name: string) => {
    const source = cmd.getOptionValueSource(name);
    // An env var set to nothing (`NFLTR_SERVER=`) counts as unset.
    return source === undefined || source === 'default' || (source === 'env' && !cmd.getOptionValue(name));
  };
  const creds = readCredentials();
  if (!creds) return;
  const has = (name: string) => cmd.options.some((o) => o.attributeName() === name);
  for (const name of ['relay', 'server', 'proxyUrl', 'tls', 'tlsCa'] as const) {
    if (creds[name] !== undefined && has(name) && unset(name))
      cmd.setOptionValueWithSource(name, creds[name], 'config');
  }
  if (creds.apiKey && unset('apiKey') && unset('apiKeyFile'))
    cmd.setOptionValueWithSource('apiKey', creds.apiKey, 'config');
}
