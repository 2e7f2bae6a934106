// 3. Artifacts: MB/s of one large file (default 1 GiB, --artifact-mib) from disk to disk through the
// relay on the real path (AgentClient + A2aEndpoint + ArtifactSender in this process, ArtifactReceiver
// in another, the relay in a third), encryption on and off, against raw loopback TCP between two
// processes (file → socket → file) measured in the same run. The nfltr figure includes chunking, the
// whole-file SHA-256 on the receiver, per-chunk SHA-256 at both ends when encryption is off (AES-256-GCM
// authenticates each chunk when it is on, as in nfltr worker and nfltr mcp), acks and flow control; the
// whole-file hash the sender takes before announcing is timed apart (`hash_mb_s`).
import { createCipheriv, createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { kill, ROOT, spawnReady, startRelay, summarise, tempDir } from './common.mjs';

const AGENT = join(ROOT, 'bench', 'artifact-agent.mjs');
const MIB = 1024 * 1024;

/** Writes `mib` MiB of incompressible content (AES-256-CTR of zeros), fast. */
export async function writeFile(path, mib) {
  const cipher = createCipheriv(
    'aes-256-ctr',
    createHash('sha256').update('bench').digest(),
    Buffer.alloc(16),
  );
  const zeros = Buffer.alloc(MIB);
  const out = createWriteStream(path);
  for (let i = 0; i < mib; i++) {
    if (!out.write(cipher.update(zeros))) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((r, j) => out.end((e) => (e ? j(e) : r())));
}

/**
 * CPU milliseconds a process has used so far (user + system, from /proc; Linux only, NaN elsewhere).
 * CPU per MiB moves far less than MB/s when other work shares the machine.
 */
function cpuMs(pid) {
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime (fields 14 and 15), in clock ticks of 10 ms.
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

function tcpOnce(port, path) {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const sock = connect(port, '127.0.0.1', () => {
      createReadStream(path, { highWaterMark: MIB }).pipe(sock);
    });
    sock.once('data', () => {
      sock.destroy();
      resolve(performance.now() - start);
    });
    sock.once('error', reject);
  });
}

async function nfltrOnce(ctx, file, info) {
  const { ArtifactSender } = ctx.mod;
  const taskId = `bench-${randomUUID().slice(0, 8)}`;
  const start = performance.now();
  await ctx.a2a.send(ctx.peer, taskId, {
    case: 'taskStart',
    value: ctx.create(ctx.TaskStartSchema, { taskId, objective: 'bench', inputFiles: [info] }),
  });
  const sender = new ArtifactSender([file], {
    taskId,
    send: (msg) => ctx.a2a.send(ctx.peer, taskId, msg),
    whenWritable: () => ctx.agent.whenWritable(8 * MIB),
    chunkHashes: !ctx.a2a.encrypted,
    sendConsumesData: ctx.a2a.encrypted,
  });
  ctx.senders.set(taskId, sender);
  const report = await sender.run();
  ctx.senders.delete(taskId);
  if (report.failed.length) throw new Error(`bench transfer failed: ${JSON.stringify(report.failed)}`);
  return performance.now() - start;
}

/** One transfer, with the CPU milliseconds each process used for it. */
async function nfltrMeasured(ctx, file, info) {
  const pids = { sender: process.pid, relay: ctx.relayPid, receiver: ctx.child.pid };
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid)]));
  const ms = await nfltrOnce(ctx, file, info);
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid) - before[k]]));
  return { ms, cpu };
}

async function nfltrEndpoint(relay, e2ee) {
  const { AgentClient, A2aEndpoint } = await import('../dist/agent/index.js');
  const mod = await import('../dist/agent/artifacts/index.js');
  const { create } = await import('@bufbuild/protobuf');
  const { TaskStartSchema } = await import('../dist/protocol/a2a.js');
  const recv = await spawnReady([AGENT, 'agent', relay.grpcAddr, relay.key, String(e2ee)]);
  const agent = new AgentClient({
    servers: [relay.grpcAddr],
    apiKey: relay.key,
    agentId: `bench-send-${e2ee}`,
    kind: 'planner',
  });
  const a2a = new A2aEndpoint({ agent, role: 'initiator', e2ee });
  const senders = new Map();
  a2a.on('message', ({ channel, msg }) => {
    if (msg.case === 'artifactAck') senders.get(channel)?.onAck(msg.value);
  });
  await agent.start().waitConnected();
  const relayPid = relay.child.pid;
  return {
    mod,
    create,
    TaskStartSchema,
    agent,
    a2a,
    senders,
    peer: recv.info.agentId,
    child: recv.child,
    relayPid,
  };
}

export async function benchArtifacts({ mib = 1024, repeats = 3 } = {}) {
  const dir = tempDir('nfltr-bench-art-');
  const path = join(dir, 'artifact.bin');
  try {
    await writeFile(path, mib);
    const size = statSync(path).size;
    const mb = size / 1e6;
    const { describeFiles, ARTIFACT_CHUNK_BYTES, ARTIFACT_WINDOW_BYTES } = await import(
      '../dist/agent/artifacts/index.js'
    );
    const file = { name: 'artifact.bin', path, size };
    const hashStart = performance.now();
    const [info] = await describeFiles([file]);
    const hashMs = performance.now() - hashStart;

    const tcp = await spawnReady([AGENT, 'tcp']);
    const tcpMs = [];
    for (let r = 0; r < repeats; r++) tcpMs.push(await tcpOnce(tcp.info.port, path));
    await kill(tcp.child);

    const relay = await startRelay();
    const out = {};
    for (const e2ee of [true, false]) {
      const ctx = await nfltrEndpoint(relay, e2ee);
      const ms = [];
      for (let r = 0; r < repeats; r++) ms.push(await nfltrMeasured(ctx, file, info));
      await ctx.agent.close();
      await kill(ctx.child);
      out[e2ee ? 'encrypted' : 'plain'] = ms;
    }
    await kill(relay.child);
    const rate = (list) => summarise(list.map((ms) => mb / (ms / 1000)));
    /** CPU ms per MiB moved, per process (median of the repeats). */
    const cpuPerMib = (list) =>
      Object.fromEntries(
        ['sender', 'relay', 'receiver'].map((k) => [k, summarise(list.map((r) => r.cpu[k] / mib)).median]),
      );
    return {
      params: {
        mib,
        repeats,
        chunk_kib: ARTIFACT_CHUNK_BYTES / 1024,
        window_mib: ARTIFACT_WINDOW_BYTES / MIB,
      },
      encrypted: { mb_s: rate(out.encrypted.map((r) => r.ms)), cpu_ms_per_mib: cpuPerMib(out.encrypted) },
      plain: { mb_s: rate(out.plain.map((r) => r.ms)), cpu_ms_per_mib: cpuPerMib(out.plain) },
      tcpRaw: { mb_s: rate(tcpMs) },
      hash_mb_s: mb / (hashMs / 1000),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === import.meta.filename) {
  const mib = Number(process.argv[2] ?? 1024);
  process.stdout.write(
    `${JSON.stringify(await benchArtifacts({ mib, repeats: Number(process.argv[3] ?? 1) }), null, 2)}\n`,
  );
  process.exit(0);
}
