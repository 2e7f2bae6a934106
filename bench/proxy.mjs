// HTTP through the relay against the same local server reached directly, in the same run: `/browse`
// (`nfltr http`, the relay terminates HTTP) and `proxy_request` (from `nfltr mcp`, sealed end to end):
// sequential small-request latency, and one large download's and upload's throughput.
import { rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import { kill, percentile, startNfltr, startRelay, tempDir } from './common.mjs';
import { json, startPlanner } from './dispatch.mjs';

const MiB = 1024 * 1024;

function startService() {
  const chunk = Buffer.alloc(MiB, 97);
  const server = createServer((req, res) => {
    if (req.method === 'PUT') {
      let got = 0;
      req.on('data', (c) => {
        got += c.byteLength;
      });
      return void req.on('end', () => res.end(String(got)));
    }
    const n = Number(new URL(req.url, 'http://x').searchParams.get('n') ?? 0);
    let sent = 0;
    const pump = () => {
      while (sent < n) {
        const c = chunk.subarray(0, Math.min(MiB, n - sent));
        sent += c.byteLength;
        if (!res.write(c)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  return new Promise((res) => server.listen(0, '127.0.0.1', () => res(server)));
}

async function latency(url, headers, n) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await fetch(url, { headers });
    await r.arrayBuffer();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { p50_ms: percentile(times, 50), p99_ms: percentile(times, 99) };
}

async function throughput(url, headers, bytes) {
  const t0 = performance.now();
  const r = await fetch(url, { headers });
  let got = 0;
  for await (const c of r.body) got += c.byteLength;
  if (got !== bytes) throw new Error(`downloaded ${got} of ${bytes} bytes`);
  return bytes / MiB / ((performance.now() - t0) / 1000);
}

async function uploadRate(url, headers, bytes) {
  const chunk = Buffer.alloc(MiB, 98);
  const t0 = performance.now();
  const got = await new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => {
        text += d;
      });
      res.on('end', () => resolve(Number(text)));
    });
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        sent += MiB;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  if (got !== bytes) throw new Error(`uploaded ${got} of ${bytes} bytes`);
  return bytes / MiB / ((performance.now() - t0) / 1000);
}

/** The same figures through `proxy_request` of a planner (MCP over stdio). */
async function viaPlanner(relay, requests, bytes) {
  const planner = await startPlanner(relay);
  const call = async (args) => {
    const r = await planner.callTool({
      name: 'proxy_request',
      arguments: { agent_id: 'bench-http', timeout_ms: 50_000, ...args },
    });
    if (r.isError) throw new Error(r.content[0].text);
    return json(r);
  };
  try {
    for (let i = 0; ; i++) {
      try {
        await call({ method: 'GET', path: '/?n=100' });
        break;
      } catch (err) {
        if (i === 100) throw err; // the planner is still connecting
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    for (let i = 0; i < 20; i++) await call({ method: 'GET', path: '/?n=100' }); // warm-up
    const times = [];
    for (let i = 0; i < requests; i++) {
      const t0 = performance.now();
      await call({ method: 'GET', path: '/?n=100' });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    let t0 = performance.now();
    const down = await call({ method: 'GET', path: `/?n=${bytes}` });
    if (down.body_bytes !== bytes) throw new Error(`proxy_request downloaded ${down.body_bytes} bytes`);
    const mb_s = bytes / MiB / ((performance.now() - t0) / 1000);
    rmSync(down.body_file);
    const file = join(tempDir(), 'up.bin');
    writeFileSync(file, Buffer.alloc(bytes, 98));
    t0 = performance.now();
    const up = await call({ method: 'PUT', path: '/', body_file: file });
    if (Number(up.body) !== bytes) throw new Error(`proxy_request uploaded ${up.body} bytes`);
    const up_mb_s = bytes / MiB / ((performance.now() - t0) / 1000);
    rmSync(file);
    return { p50_ms: percentile(times, 50), p99_ms: percentile(times, 99), mb_s, up_mb_s };
  } finally {
    await planner.close();
  }
}

export async function benchProxy({ requests = 200, mib = 64 } = {}) {
  const service = await startService();
  const port = service.address().port;
  const relay = await startRelay();
  const { child: tunnel } = await startNfltr(
    'http',
    [String(port), '--server', relay.grpcAddr, '--name', 'bench-http'],
    /serving/,
    // The ready line is an info line.
    { NFLTR_API_KEY: relay.key, NFLTR_LOG_LEVEL: 'info' },
  );
  try {
    const direct = `http://127.0.0.1:${port}`;
    const proxied = `${relay.httpUrl}/browse/bench-http`;
    const auth = { 'x-api-key': relay.key };
    await latency(`${proxied}/?n=100`, auth, 20); // warm-up
    const bytes = mib * MiB;
    return {
      direct: {
        ...(await latency(`${direct}/?n=100`, {}, requests)),
        mb_s: await throughput(`${direct}/?n=${bytes}`, {}, bytes),
        up_mb_s: await uploadRate(`${direct}/`, {}, bytes),
      },
      proxied: {
        ...(await latency(`${proxied}/?n=100`, auth, requests)),
        mb_s: await throughput(`${proxied}/?n=${bytes}`, auth, bytes),
        up_mb_s: await uploadRate(`${proxied}/`, auth, bytes),
      },
      proxy_request: await viaPlanner(relay, requests, bytes),
    };
  } finally {
    await kill(tunnel);
    await kill(relay.child);
    service.close();
  }
}
