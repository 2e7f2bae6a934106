// A receiving end for the artifacts bench, in its own process: `tcp <port?>` is a raw TCP sink writing
// what it gets to a file (the baseline); `agent <grpcAddr> <key> <e2ee>` is an nfltr agent (worker side
// of the task channel) that receives each TaskStart's input files with the real ArtifactReceiver.
// Prints `ready {...}` on stdout. Received files are deleted after each transfer.
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [mode, ...args] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'nfltr-bench-recv-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
process.on('SIGTERM', () => process.exit(0));

if (mode === 'tcp') {
  // One connection per transfer: write everything to disk, then answer one byte when the sender ends.
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    const path = join(dir, `tcp-${Date.now()}.bin`);
    const out = createWriteStream(path);
    sock.pipe(out);
    out.on('finish', () => {
      rmSync(path, { force: true });
      sock.end(Buffer.from([1]));
    });
  });
  server.listen(0, '127.0.0.1', () =>
    process.stdout.write(`ready ${JSON.stringify({ port: server.address().port })}\n`),
  );
} else if (mode === 'agent') {
  const [grpcAddr, key, e2ee] = args;
  const { AgentClient, A2aEndpoint } = await import('../dist/agent/index.js');
  const { ArtifactReceiver } = await import('../dist/agent/artifacts/index.js');
  const agent = new AgentClient({
    servers: [grpcAddr],
    apiKey: key,
    agentId: `bench-recv-${e2ee}`,
    kind: 'worker',
  });
  const a2a = new A2aEndpoint({ agent, role: 'responder', e2ee: e2ee === 'true' });
  const receivers = new Map();
  a2a.on('message', ({ peer, channel, msg, sealed }) => {
    if (msg.case === 'taskStart') {
      const taskDir = join(dir, channel);
      const r = new ArtifactReceiver({
        taskId: channel,
        dir: join(taskDir, 'input'),
        partialDir: join(taskDir, '.incoming'),
        maxBytes: 8 * 1024 ** 3,
        sendAck: (ack) => void a2a.send(peer, channel, { case: 'artifactAck', value: ack }).catch(() => {}),
      });
      receivers.set(channel, r);
      r.expect(msg.value.inputFiles).then(
        () => setTimeout(() => rmSync(taskDir, { recursive: true, force: true }), 100),
        (err) => process.stderr.write(`bench receiver: ${err.message}\n`),
      );
    } else if (msg.case === 'artifactChunk') void receivers.get(channel)?.accept(msg.value, sealed);
  });
  await agent.start().waitConnected();
  process.stdout.write(`ready ${JSON.stringify({ agentId: agent.agentId })}\n`);
}
