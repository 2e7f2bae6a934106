/**
 * `--relay URL`: one address from which agent commands derive --server, --proxy-url and --tls (the relay
 * publishes its gRPC address at /.well-known/nfltr), with each mistake diagnosed. Real relays (plain and
 * TLS with a self-signed certificate), real workers, `nfltr peers` and `nfltr login`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKey,
  eventually,
  freePort,
  NFLTR_BIN,
  nfltr,
  type RelayProcess,
  selfSignedCert,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';
import { startPlanner } from '../planner/helpers.js';

let plain: RelayProcess;
let secure: RelayProcess;
let key: string;
let tlsKey: string;
let cert: string;
let secureUrl: string;
/** No saved login, no relay address from the environment the tests run in. */
const clean = {
  XDG_CONFIG_HOME: tempDir(),
  NFLTR_SERVER: '',
  NFLTR_PROXY_URL: '',
  NFLTR_RELAY: '',
  NFLTR_TLS: '',
  NFLTR_TLS_CA: '',
};

beforeAll(async () => {
  const dir = tempDir();
  const tls = selfSignedCert(dir);
  cert = tls.cert;
  [plain, secure] = await Promise.all([
    startRelayProcess(),
    startRelayProcess({ dataDir: dir, args: ['--tls-cert', tls.cert, '--tls-key', tls.key] }),
  ]);
  secureUrl = `https://127.0.0.1:${secure.httpPort}`;
  [key, tlsKey] = await Promise.all([createKey(plain.dataDir, 'acct'), createKey(dir, 'acct')]);
}, 60_000);

afterAll(async () => {
  await Promise.all([plain?.stop(), secure?.stop()]);
});

/** A worker started with `args`; resolves once it is ready (or exits), with its stderr so far. */
async function startWorker(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(
    process.execPath,
    [NFLTR_BIN, 'worker', '--state-dir', tempDir(), '--mcp-command', 'nfltr shell-mcp', ...args],
    { env: { ...process.env, ...clean, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  return { child, stderr: () => err };
}

async function stop(child: ChildProcess) {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
}

/** A worker that gives up after 2s; its exit code and stderr. */
const failingWorker = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  nfltr(
    [
      'worker',
      '--connect-timeout',
      '2s',
      '--state-dir',
      tempDir(),
      '--mcp-command',
      'nfltr shell-mcp',
      ...args,
    ],
    { env: { ...clean, NFLTR_API_KEY: key, ...env } },
  );

describe('--relay URL', () => {
  it('the relay publishes its gRPC port and whether it speaks TLS', async () => {
    const res = await fetch(`${plain.httpUrl}/.well-known/nfltr`);
    expect(await res.json()).toEqual({ grpc_port: plain.grpcPort, tls: false });
  });

  // Alone: it lists every agent on the plain relay. The cases after it wait out their own timeouts and
  // relays with agents of their own: they run at once.
  it('a worker and nfltr peers need nothing else (plain relay)', async () => {
    const w = await startWorker(['--relay', plain.httpUrl, '--name', 'relay-url-w1'], {
      NFLTR_API_KEY: key,
    });
    try {
      await eventually(() => w.stderr().includes('nfltr worker ready'), 30_000, 'worker ready');
      expect(w.stderr()).toContain(`connected to relay server=${plain.grpcAddr}`);
      const peers = await nfltr(['peers', '--json', '--relay', plain.httpUrl], {
        env: { ...clean, NFLTR_API_KEY: key },
      });
      expect(peers.code).toBe(0);
      expect(JSON.parse(peers.stdout).peers.map((p: { agent_id: string }) => p.agent_id)).toEqual([
        'relay-url-w1',
      ]);
    } finally {
      await stop(w.child);
    }
  });

  it.concurrent('https: TLS as the relay says, its certificate trusted with --tls-ca', async () => {
    const w = await startWorker(['--name', 'relay-url-tls'], {
      NFLTR_API_KEY: tlsKey,
      NFLTR_RELAY: secureUrl,
      NFLTR_TLS_CA: cert,
    });
    try {
      await eventually(() => w.stderr().includes('nfltr worker ready'), 30_000, 'worker ready');
      expect(w.stderr()).toContain(`connected to relay server=${secure.grpcAddr}`);
    } finally {
      await stop(w.child);
    }
  });

  it.concurrent('--server given as a flag wins over the address --relay derives', async () => {
    const port = await freePort();
    const r = await failingWorker(['--relay', plain.httpUrl, '--server', `127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`nothing listens at 127\\.0\\.0\\.1:${port}:`));
  });

  it.concurrent('nothing listening: exit 1 after --connect-timeout, naming the URL', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const r = await failingWorker(['--relay', url]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      `nfltr: --relay ${url}: nothing listens there: is \`nfltr relay\` running, and is this its HTTP address (--http-addr, 8080 by default)?`,
    );
  });

  it.concurrent('the gRPC port given for the HTTP address', async () => {
    const r = await failingWorker(['--relay', `http://${plain.grpcAddr}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/likely the relay's gRPC port: give its HTTP address \(--http-addr/);
  });

  it.concurrent('https to a relay without TLS, and http to a relay with TLS', async () => {
    const https = await failingWorker(['--relay', `https://127.0.0.1:${plain.httpPort}`]);
    expect(https.code).toBe(1);
    expect(https.stderr).toMatch(/the relay does not speak TLS there: use http:\/\/127\.0\.0\.1:\d+$/m);
    const http = await failingWorker(['--relay', `http://127.0.0.1:${secure.httpPort}`]);
    expect(http.code).toBe(1);
    expect(http.stderr).toContain(`if the relay speaks TLS, use ${secureUrl}`);
  });

  it.concurrent('a self-signed certificate without --tls-ca', async () => {
    const r = await failingWorker(['--relay', secureUrl]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/certificate is not trusted here \(\w+\): pass --tls-ca FILE/);
  });

  it.concurrent('an HTTP server that is not a relay', async () => {
    const r = await failingWorker(['--relay', `${plain.httpUrl}/sub`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not an nfltr relay's HTTP address \(GET \/\.well-known\/nfltr answered 404\)/);
  });

  it.concurrent('--wait asks until the relay comes up', async () => {
    const httpPort = await freePort();
    const w = await startWorker(
      ['--relay', `http://127.0.0.1:${httpPort}`, '--wait', '--name', 'relay-url-late'],
      { NFLTR_API_KEY: key },
    );
    let late: RelayProcess | undefined;
    try {
      await new Promise((r) => setTimeout(r, 1_500));
      expect(w.child.exitCode).toBeNull();
      late = await startRelayProcess({ dataDir: plain.dataDir, httpPort });
      await eventually(() => w.stderr().includes('nfltr worker ready'), 30_000, 'worker ready');
      expect(w.stderr()).toContain(`connected to relay server=${late.grpcAddr}`);
    } finally {
      await stop(w.child);
      await late?.stop();
    }
  });

  it.concurrent('a relay behind a proxy advertises its public gRPC address (--advertise-grpc)', async () => {
    const port = await freePort();
    const fronted = await startRelayProcess({ args: ['--advertise-grpc', `127.0.0.1:${port}`] });
    try {
      const res = await fetch(`${fronted.httpUrl}/.well-known/nfltr`);
      expect(await res.json()).toEqual({ grpc_port: fronted.grpcPort, grpc_addr: `127.0.0.1:${port}` });
      const r = await failingWorker(['--relay', fronted.httpUrl]);
      expect(r.stderr).toMatch(new RegExp(`nothing listens at 127\\.0\\.0\\.1:${port}:`));
    } finally {
      await fronted.stop();
    }
    const bad = await nfltr(['relay', '--advertise-grpc', 'grpc.example.com']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--advertise-grpc.*expected host:port, got "grpc.example.com"/);
  });

  it.concurrent('the planner: discovery and tasks through --relay; a relay it cannot ask is what its A2A tools answer', async () => {
    const planner = await startPlanner(['--relay', plain.httpUrl, '--state-dir', tempDir()], key, {
      env: clean,
    });
    try {
      expect(await planner.ok('list_my_peers')).toMatchObject({ peers: expect.any(Array) });
      await eventually(
        () => planner.stderr().includes(`server=${plain.grpcAddr}`),
        30_000,
        'planner connected',
      );
    } finally {
      await planner.close();
    }
    const url = `http://127.0.0.1:${await freePort()}`;
    const lost = await startPlanner(['--relay', url, '--state-dir', tempDir()], key, { env: clean });
    try {
      expect(await lost.fails('probe_worker', { agent_id: 'w' })).toContain(
        `--relay ${url}: nothing listens there: is \`nfltr relay\` running`,
      );
    } finally {
      await lost.close();
    }
  });

  it.concurrent('nfltr login --relay saves it; a worker started without flags uses it', async () => {
    const config = tempDir();
    const env = { ...clean, XDG_CONFIG_HOME: config };
    const login = await nfltr(['login', '--relay', plain.httpUrl], {
      env: { ...env, NFLTR_API_KEY: key },
    });
    expect(login.code).toBe(0);
    expect(login.stderr).toContain(`logged in to ${plain.httpUrl} (gRPC ${plain.grpcAddr})`);
    const saved = JSON.parse(readFileSync(join(config, 'nfltr', 'credentials.json'), 'utf8'));
    expect(saved).toMatchObject({ relay: plain.httpUrl, apiKey: key });
    const w = await startWorker(['--name', 'relay-url-saved'], { ...env, NFLTR_API_KEY: '' });
    try {
      await eventually(() => w.stderr().includes('nfltr worker ready'), 30_000, 'worker ready');
      expect(w.stderr()).toContain(`connected to relay server=${plain.grpcAddr}`);
    } finally {
      await stop(w.child);
    }
    const typo = await nfltr(['login', '--relay', `http://127.0.0.1:${await freePort()}`], {
      env: { ...env, NFLTR_API_KEY: key },
    });
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/nothing listens there/);
    // A --server typed over a saved relay is dialled as given: the relay (here gone) is not even asked.
    const gone = `http://127.0.0.1:${await freePort()}`;
    writeFileSync(join(config, 'nfltr', 'credentials.json'), JSON.stringify({ relay: gone, apiKey: key }));
    const port = await freePort();
    const own = await failingWorker(['--server', `127.0.0.1:${port}`], { ...env, NFLTR_API_KEY: '' });
    expect(own.stderr).toMatch(new RegExp(`nothing listens at 127\\.0\\.0\\.1:${port}:`));
  });
});
