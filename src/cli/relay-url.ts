/**
 * @module `--relay URL`: one address for the relay, from which an agent command derives the others:
 *   - the HTTP API (`--proxy-url`) is URL itself;
 *   - the gRPC address (`--server`) is asked of the relay, `GET URL/.well-known/nfltr` (no key): its
 *     `grpc_addr` when it has one (`nfltr relay --advertise-grpc`, a proxy in front), else the URL's
 *     host with the relay's `grpc_port`;
 *   - TLS (`--tls`) as the relay says of its own listener, or, with `grpc_addr`, when URL is https.
 * `--server`, `--proxy-url` or `--tls` given at a higher precedence (flag > env > saved login) than
 * `--relay` win over what it derives.
 */
import { type Command, Option } from 'commander';
import { type RelayDiscovery, WELL_KNOWN_PATH } from '../relay/http-api.js';
import { relayRequest } from '../util/relay-request.js';
import { tlsCaFrom } from './agent-options.js';
import { applySavedLogin } from './credentials.js';
import { die, parseUrl } from './options.js';

export interface RelayAddresses {
  server: string;
  proxyUrl: string;
  tls: boolean;
}

export const relayOption = () =>
  new Option(
    '--relay <url>',
    "the relay's HTTP address, e.g. https://relay.example.com; --server, --proxy-url and --tls are derived from it",
  )
    .argParser(parseUrl)
    .env('NFLTR_RELAY');

/** A failed ask; `retry` when nothing answered (the relay may be starting), not when it answered wrong. */
export class RelayUrlError extends Error {
  constructor(
    message: string,
    readonly retry: boolean,
  ) {
    super(message);
  }
}

/** Asks the relay at `url` once for its gRPC address; throws a {@link RelayUrlError} saying what is wrong. */
export async function discoverRelay(url: string, ca?: Buffer): Promise<RelayAddresses> {
  const where = `--relay ${url}`;
  const https = url.startsWith('https:');
  let res: Awaited<ReturnType<typeof relayRequest>>;
  try {
    res = await relayRequest(`${url}${WELL_KNOWN_PATH}`, { ca });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code ?? e.message;
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(why))
      throw new RelayUrlError(
        `${where}: the relay's certificate is not trusted here (${why}): pass --tls-ca FILE with the CA that signed it`,
        false,
      );
    if (https && /wrong version number|EPROTO/i.test(`${e.code} ${e.message}`))
      throw new RelayUrlError(
        `${where}: the relay does not speak TLS there: use ${url.replace(/^https:/, 'http:')}`,
        false,
      );
    if (e.code === 'ECONNREFUSED')
      throw new RelayUrlError(
        `${where}: nothing listens there: is \`nfltr relay\` running, and is this its HTTP address (--http-addr, 8080 by default)?`,
        true,
      );
    if (e.code === 'HPE_INVALID_CONSTANT')
      throw new RelayUrlError(
        `${where}: that is an HTTP/2-only server, likely the relay's gRPC port: give its HTTP address (--http-addr, 8080 by default)`,
        false,
      );
    if (!https && e.code === 'ECONNRESET')
      throw new RelayUrlError(
        `${where}: the server there closed a plain HTTP request; if the relay speaks TLS, use ${url.replace(/^http:/, 'https:')}`,
        false,
      );
    throw new RelayUrlError(`${where}: cannot reach the relay (${why})`, true);
  }
  let body: Partial<RelayDiscovery> = {};
  try {
    body = JSON.parse(res.text);
  } catch {}
  if (!res.ok || typeof body.grpc_port !== 'number')
    throw new RelayUrlError(
      `${where}: not an nfltr relay's HTTP address (GET ${WELL_KNOWN_PATH} answered ${res.status}); give the relay's HTTP API URL, or --server HOST:PORT and --proxy-url URL`,
      false,
    );
  if (typeof body.grpc_addr === 'string')
    return { server: body.grpc_addr, proxyUrl: url, tls: https || body.grpc_addr.endsWith(':443') };
  const host = new URL(url).hostname; // brackets kept for IPv6
  return { server: `${host}:${body.grpc_port}`, proxyUrl: url, tls: body.tls === true };
}

/**
 * Asks until the relay answers or `deadlineMs` passes (undefined: once; Infinity: until it answers),
 * a second apart.
 */
export async function resolveRelay(url: string, ca: Buffer | undefined, deadlineMs?: number) {
  const until = Date.now() + (deadlineMs ?? 0);
  for (;;) {
    try {
      return await discoverRelay(url, ca);
    } catch (err) {
      if (!(err instanceof RelayUrlError) || !err.retry || Date.now() + 1_000 > until) throw err;
    }
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

/** How strongly a value was given; an env var set to nothing counts as not given. */
function rank(cmd: Command, name: string): number {
  const source = cmd.getOptionValueSource(name);
  if (source === 'env' && !cmd.getOptionValue(name)) return 0;
  return { cli: 3, env: 2, config: 1 }[source as string] ?? 0;
}

/** Flags with which an agent command does something local and exits: the relay is not asked then. */
const LOCAL_ONLY = ['printSystemdUnit', 'writeMcpJson', 'acceptWorkerKey', 'acceptPlannerKey'];

/** Fills `--server`, `--proxy-url` and `--tls` from `--relay` where they were given less strongly. */
export async function applyRelay(cmd: Command): Promise<void> {
  const url = cmd.getOptionValue('relay') as string | undefined;
  if (!url || LOCAL_ONLY.some((name) => cmd.getOptionValue(name) !== undefined)) return;
  const strength = rank(cmd, 'relay');
  const has = (name: string) => cmd.options.some((o) => o.attributeName() === name);
  const wanted = (name: string) => has(name) && rank(cmd, name) < strength;
  // TLS goes with the gRPC address: never derived for a --server given more strongly.
  const derive = ['proxyUrl', 'server', 'tls'].filter(
    (name) => wanted(name) && !(name === 'tls' && has('server') && !wanted('server')),
  );
  // Asked even when only the HTTP address is derived: a wrong URL is diagnosed here, not by each call.
  if (derive.length === 0) return;
  const opts = cmd.opts() as { tlsCa?: string; connectTimeout?: number; wait?: boolean };
  const addrs = await resolveRelay(
    url,
    tlsCaFrom(opts),
    opts.wait ? Number.POSITIVE_INFINITY : opts.connectTimeout,
  );
  for (const name of derive) cmd.setOptionValueWithSource(name, addrs[name as keyof RelayAddresses], 'relay');
}

/**
 * The preAction hook of every command that reaches the relay: the saved login, then `--relay`. A bad
 * saved login exits 2; a relay that cannot be asked exits 1, or, with `keepGoing` (the planner, whose
 * tools report it), leaves `relayProblem` set on the options.
 */
export async function applyRelaySources(cmd: Command, keepGoing = false): Promise<void> {
  try {
    applySavedLogin(cmd);
  } catch (err) {
    die((err as Error).message, 2);
  }
  try {
    await applyRelay(cmd);
  } catch (err) {
    const message = (err as Error).message;
    if (!(err instanceof RelayUrlError)) die(message, 2); // an unreadable --tls-ca
    if (!keepGoing) die(message);
    cmd.setOptionValue('relayProblem', message);
  }
}
