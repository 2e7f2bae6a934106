/**
 * @module `nfltr login` and `nfltr logout`: save the relay and API key once (like `gh auth login`), so
 * worker and planner commands need neither flags nor environment for them.
 */
import { type Command, Option } from 'commander';
import { apiKeyFrom, tlsCaFrom } from './agent-options.js';
import { type Credentials, credentialsPath, removeCredentials, writeCredentials } from './credentials.js';
import { die, parseUrl } from './options.js';
import { RelayUrlError, relayOption, resolveRelay } from './relay-url.js';

interface LoginFlags {
  relay?: string;
  server?: string;
  proxyUrl?: string;
  apiKey?: string;
  apiKeyFile?: string;
  tls?: boolean;
  tlsCa?: string;
  withKey?: boolean;
  json?: boolean;
}

/** The first line of stdin (`--with-key`, as `gh auth login --with-token`). */
async function keyFromStdin(): Promise<string | undefined> {
  let text = '';
  for await (const chunk of process.stdin.setEncoding('utf8')) text += chunk;
  return text.split(/\r?\n/, 1)[0]?.trim() || undefined;
}

export function register(program: Command): void {
  program
    .command('login')
    .description('Save the relay address and API key for worker and planner commands (a 0600 file)')
    .addOption(relayOption())
    .addOption(
      new Option('--server <host:port[,host:port…]>', 'relay control address(es)').env('NFLTR_SERVER'),
    )
    .addOption(
      new Option('--proxy-url <url>', "relay HTTP API address (the planner's discovery)")
        .argParser(parseUrl)
        .env('NFLTR_PROXY_URL'),
    )
    .addOption(
      new Option('--api-key-file <file>', 'read the API key from this file').env('NFLTR_API_KEY_FILE'),
    )
    .option('--with-key', 'read the API key from stdin (its first line)')
    .option('--json', 'print what was saved (never the key) as JSON on stdout')
    .addOption(new Option('--tls', 'dial the relay with TLS').env('NFLTR_TLS'))
    .addOption(new Option('--tls-ca <file>', 'PEM CA certificate to trust for the relay').env('NFLTR_TLS_CA'))
    .addHelpText(
      'after',
      `
The API key is read from stdin with --with-key, else --api-key-file, else NFLTR_API_KEY
(never from argv, where every user of the machine sees it). It is not checked here: the first
worker or planner started says whether the relay accepts it.
Saved to ${credentialsPath()} (XDG_CONFIG_HOME, or NFLTR_CREDENTIALS, moves it).
Precedence for every agent command: flag > environment variable > this file.

With --relay, the relay is asked for its gRPC address now (so a typo fails here) and at every start.

Examples:
  nfltr login --relay https://relay.example.com --with-key < ~/key.txt
  nfltr login --server relay.example:443 --proxy-url https://relay.example --with-key < ~/key.txt
  NFLTR_API_KEY=… nfltr login --server 127.0.0.1:9090 --proxy-url http://127.0.0.1:8080
`,
    )
    .action(async (o: LoginFlags) => {
      let apiKey: string | undefined;
      try {
        apiKey = o.withKey
          ? await keyFromStdin()
          : apiKeyFrom({ apiKey: process.env.NFLTR_API_KEY || undefined, apiKeyFile: o.apiKeyFile });
      } catch (err) {
        die((err as Error).message, 2);
      }
      if (!apiKey)
        die('no API key: pipe it with --with-key, pass --api-key-file FILE, or set NFLTR_API_KEY', 2);
      if (!o.relay && !o.server && !o.proxyUrl)
        die('nothing to save: pass --relay URL, or --server HOST:PORT and/or --proxy-url URL', 2);
      let derived: Awaited<ReturnType<typeof resolveRelay>> | undefined;
      if (o.relay) {
        try {
          derived = await resolveRelay(o.relay, tlsCaFrom(o));
        } catch (err) {
          die((err as Error).message, err instanceof RelayUrlError ? 1 : 2);
        }
      }
      const creds: Credentials = {
        relay: o.relay,
        server: o.server,
        proxyUrl: o.proxyUrl,
        apiKey,
        tls: o.tls,
        tlsCa: o.tlsCa,
      };
      const path = credentialsPath();
      try {
        writeCredentials(creds, path);
      } catch (err) {
        die(
          `${path}: cannot save the login (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
        );
      }
      if (o.json) {
        const { apiKey: _, ...saved } = creds;
        process.stdout.write(`${JSON.stringify({ path, ...saved, derived })}\n`);
        return;
      }
      const via = derived ? ` (gRPC ${derived.server}${derived.tls ? ', TLS' : ''})` : '';
      process.stderr.write(
        `nfltr: logged in to ${o.relay ?? o.server ?? o.proxyUrl}${via}; saved to ${path}\n`,
      );
    });

  program
    .command('logout')
    .description('Remove the login saved by nfltr login')
    .option('--json', 'print {"path", "removed"} as JSON on stdout')
    .action((o: { json?: boolean }) => {
      const path = credentialsPath();
      const removed = removeCredentials(path);
      if (o.json) process.stdout.write(`${JSON.stringify({ path, removed })}\n`);
      else
        process.stderr.write(
          removed ? `nfltr: logged out; removed ${path}\n` : `nfltr: not logged in (no ${path})\n`,
        );
    });
}
