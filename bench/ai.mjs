// nfltr ai: keystroke-to-echo latency seen by a browser-side viewer (sealed frames over the relay's
// WebSocket, through `nfltr ai` and its PTY), against the same keystroke echoed by a local PTY.
import { join } from 'node:path';
import pty from 'node-pty';
import WebSocket from 'ws';
import { kill, percentile, ROOT, startNfltr, startRelay } from './common.mjs';

const { A2V, AiViewerCrypto, accessToken, V2A } = await import(join(ROOT, 'dist/protocol/ai-session.js'));

/** Times `n` one-character round trips: `send(ch)` then wait until `echoed` sees it. */
async function rounds(n, send, onOutput) {
  const rtts = [];
  let waiting;
  onOutput((text) => {
    if (waiting && text.includes(waiting.ch)) waiting.done();
  });
  for (let i = 0; i < n; i++) {
    const ch = String.fromCharCode(97 + (i % 26));
    const t0 = performance.now();
    await new Promise((done) => {
      waiting = { ch, done };
      send(ch);
    });
    rtts.push(performance.now() - t0);
    // Keep the line short: erase the character again (^U kills the line in cooked mode).
    waiting = undefined;
    send('\u0015');
    await new Promise((r) => setTimeout(r, 2));
  }
  rtts.sort((a, b) => a - b);
  return { p50_ms: percentile(rtts, 50), p99_ms: percentile(rtts, 99) };
}

export async function benchAi({ keystrokes = 300 } = {}) {
  const local = pty.spawn('cat', [], { cols: 80, rows: 24 });
  let localCb;
  local.onData((d) => localCb?.(d));
  const baseline = await rounds(
    keystrokes,
    (ch) => local.write(ch),
    (cb) => (localCb = cb),
  );
  local.kill();

  const relay = await startRelay({ args: ['--hold-window', '1s'] });
  const { child: ai, match } = await startNfltr(
    'ai',
    ['--server', relay.grpcAddr, '--proxy-url', relay.httpUrl, '--name', 'bench-ai', '--', 'cat'],
    /\S+\/ai\/bench-ai#k=([\w-]+)/,
    { NFLTR_API_KEY: relay.key },
  );
  const link = match[1];
  const k = Buffer.from(link, 'base64url');
  const viewer = new AiViewerCrypto(k, 'bench-ai');
  const ws = new WebSocket(`${relay.httpUrl.replace('http', 'ws')}/ai/bench-ai/ws?t=${accessToken(k)}`);
  await new Promise((res, rej) => ws.once('open', res).once('error', rej));
  let outputCb;
  let writer;
  ws.on('message', (data) => {
    const { type, body } = viewer.open(data);
    if (type === A2V.output) outputCb?.(body.toString('utf8'));
    if (type === A2V.state) {
      const s = JSON.parse(body.toString('utf8'));
      if (s.you && s.writer === s.you) writer?.();
    }
  });
  await new Promise((res) => {
    writer = res;
    ws.send(viewer.seal(V2A.hello));
  });
  const relayed = await rounds(
    keystrokes,
    (ch) => ws.send(viewer.seal(V2A.input, Buffer.from(ch))),
    (cb) => (outputCb = cb),
  );
  ws.close();
  await kill(ai);
  await kill(relay.child);
  return { keystrokes, relayed, local: baseline };
}
