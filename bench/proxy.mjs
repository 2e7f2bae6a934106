// HTTP through the relay (`nfltr http` + `/browse`) against the same local server reached directly:
// sequential small-request latency and one large download's throughput.
import { createServer } from 'node:http';
import { kill, percentile, startNfltr, startRelay } from './common.mjs';

const MiB = 1024 * 1024;

function startService() {
  const chunk = Buffer.alloc(MiB, 97);
  const server = createServer((req, res) => {
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
      },
      proxied: {
        ...(await latency(`${proxied}/?n=100`, auth, requests)),
        mb_s: await throughput(`${proxied}/?n=${bytes}`, auth, bytes),
      },
    };
  } finally {
    await kill(tunnel);
    await kill(relay.child);
    service.close();
  }
}
