/**
 * P2P transfers in one process: two agents on the in-memory relay, A2A sealed, the direct link over
 * loopback. The real processes and network namespaces are test/p2p/netns.test.ts's part.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ArtifactReceiver, describeFiles, listFiles } from '../../src/agent/artifacts/index.js';
import { A2aEndpoint, AgentClient, MemoryRelay } from '../../src/agent/index.js';
import {
  a2aTransferChannel,
  DirectRace,
  InboundFiles,
  IncomingTransfer,
  type PathChange,
  sendFiles,
} from '../../src/agent/p2p/index.js';
import type { P2pOffer } from '../../src/protocol/a2a.js';
import { generateX25519 } from '../../src/protocol/e2ee-noise.js';
import { eventually, tempDir } from '../helpers/processes.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('p2p transfer', () => {
  const relay = new MemoryRelay();
  const clients: AgentClient[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
  });

  async function end(agentId: string, role: 'initiator' | 'responder') {
    const agent = new AgentClient({
      servers: ['memory'],
      apiKey: 'key',
      agentId,
      kind: 'tunnel',
      dialer: relay.dialer(),
    });
    clients.push(agent);
    await agent.start().waitConnected();
    const staticKey = generateX25519();
    return { agent, staticKey, a2a: new A2aEndpoint({ agent, role, e2ee: true, staticKey }) };
  }

  /** A sender and a receiver; the receiver answers every offer into `out` (one receiver per transfer). */
  async function pair(id: string, recvAddresses: string[]) {
    const s = await end(`${id}-s`, 'initiator');
    const r = await end(`${id}-r`, 'responder');
    const out = tempDir();
    const inbound = new Map<string, InboundFiles>();
    const recvPaths: PathChange[] = [];
    r.a2a.on('message', async (m) => {
      if (m.msg.case !== 'p2pOffer') return;
      const offer: P2pOffer = m.msg.value;
      let files = inbound.get(offer.transferId);
      if (!files) {
        files = new InboundFiles({
          taskId: offer.transferId,
          dir: out,
          partialDir: join(out, '.partial', offer.transferId),
        });
        inbound.set(offer.transferId, files);
      }
      await IncomingTransfer.start({
        offer,
        inbound: files,
        channel: a2aTransferChannel(r.a2a, r.agent, m.peer, m.channel),
        identity: { localId: r.agent.agentId, remoteId: m.peer, staticKey: r.staticKey },
        addresses: recvAddresses,
        directTimeoutMs: 500,
        onPath: (c) => recvPaths.push(c),
      });
    });
    return { s, r, out, recvPaths };
  }

  async function send(
    p: Awaited<ReturnType<typeof pair>>,
    dir: string,
    opts: {
      addresses: string[];
      signal?: AbortSignal;
      transferId?: string;
      relayOnly?: boolean;
      corruptChunk?: { name: string; offset: number };
    },
  ) {
    const files = await listFiles(dir);
    const paths: PathChange[] = [];
    const report = await sendFiles({
      channel: a2aTransferChannel(p.s.a2a, p.s.agent, p.r.agent.agentId, 'p2p-t1'),
      identity: { localId: p.s.agent.agentId, remoteId: p.r.agent.agentId, staticKey: p.s.staticKey },
      transferId: opts.transferId ?? 't1',
      taskId: 't1',
      files,
      infos: await describeFiles(files),
      addresses: opts.addresses,
      relayOnly: opts.relayOnly,
      directTimeoutMs: 500,
      signal: opts.signal,
      corruptChunk: opts.corruptChunk,
      onPath: (c) => paths.push(c),
    });
    return { report, paths };
  }

  function source(mib: number): { dir: string; data: Buffer } {
    const dir = tempDir();
    const data = randomBytes(mib * 1024 * 1024);
    writeFileSync(join(dir, 'data.bin'), data);
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'small.txt'), 'hello');
    return { dir, data };
  }

  it('p2p - files go over the direct link and verify', async () => {
    const p = await pair('direct', ['127.0.0.1']);
    const { dir, data } = source(12);
    const { report, paths } = await send(p, dir, { addresses: ['127.0.0.1'] });
    expect(paths.map((c) => c.path)).toEqual(['direct']);
    expect(report.path).toBe('direct');
    expect(report.failed).toEqual([]);
    await eventually(() => sha(readFileSync(join(p.out, 'data.bin'))) === sha(data), 5000, 'file placed');
    expect(readFileSync(join(p.out, 'sub', 'small.txt'), 'utf8')).toBe('hello');
    expect(p.recvPaths.map((c) => c.path)).toEqual(['direct']);
  });

  it('p2p - no reachable candidate falls back to the relay and says why', async () => {
    // 198.51.100.0/24 is TEST-NET-2: nothing of ours answers there.
    const p = await pair('fallback', ['198.51.100.7']);
    const { dir, data } = source(3);
    const { report, paths } = await send(p, dir, { addresses: ['198.51.100.8'] });
    expect(report.path).toBe('relay');
    expect(paths).toHaveLength(1);
    expect(paths[0]!.why).toMatch(/no direct connection within 500 ms \(198\.51\.100\.7:\d+: /);
    await eventually(() => sha(readFileSync(join(p.out, 'data.bin'))) === sha(data), 5000, 'file placed');
  });

  it('p2p - a transfer stopped midway resumes from what the receiver has', async () => {
    const p = await pair('resume', ['127.0.0.1']);
    const { dir, data } = source(24);
    const stop = new AbortController();
    const first = send(p, dir, { addresses: ['127.0.0.1'], signal: stop.signal });
    // Stop once some bytes are across (partial files under hashed names).
    const received = () => {
      try {
        return readdirBytes(join(p.out, '.partial', 't1'));
      } catch {
        return 0;
      }
    };
    await eventually(() => received() > 4 * 1024 * 1024, 10_000, 'some bytes received');
    stop.abort('test');
    await expect(first).rejects.toThrow(/transfer stopped/);
    const { report } = await send(p, dir, { addresses: ['127.0.0.1'] });
    expect(report.resumedBytes).toBeGreaterThan(4 * 1024 * 1024);
    expect(report.bytesSent).toBeLessThan(data.length);
    await eventually(() => sha(readFileSync(join(p.out, 'data.bin'))) === sha(data), 5000, 'file placed');
  });

  it('p2p - a chunk altered before the link fails its file closed', async () => {
    const p = await pair('corrupt', ['127.0.0.1']);
    const { dir } = source(3);
    const { report } = await send(p, dir, {
      addresses: ['127.0.0.1'],
      corruptChunk: { name: 'data.bin', offset: 1024 * 1024 },
    });
    expect(report.path).toBe('direct');
    expect(report.failed).toEqual([
      {
        name: 'data.bin',
        error: 'artifact data.bin discarded: chunk at offset 1048576 does not match its SHA-256',
      },
    ]);
    expect(existsSync(join(p.out, 'data.bin'))).toBe(false);
    expect(readFileSync(join(p.out, 'sub', 'small.txt'), 'utf8')).toBe('hello');
  });

  it('p2p - a connection that presents another key is refused', async () => {
    const secret = randomBytes(32);
    const a = generateX25519();
    const b = generateX25519();
    const mallory = generateX25519();
    const sender = await DirectRace.listen({
      identity: { localId: 'a', remoteId: 'b', staticKey: a, secret },
      picker: true,
      addresses: ['127.0.0.1'],
    });
    const receiver = await DirectRace.listen({
      identity: { localId: 'b', remoteId: 'a', staticKey: mallory, secret },
      picker: false,
      addresses: ['127.0.0.1'],
    });
    const [rs, rr] = await Promise.all([
      sender.connect(receiver.candidates, b.publicKey, 1000),
      receiver.connect(sender.candidates, a.publicKey, 1000),
    ]);
    expect(rs.link).toBeUndefined();
    expect(rr.link).toBeUndefined();
    expect(rs.failures.join('\n')).toMatch(/presented the key SHA256:.*, not b's SHA256:/);
  });

  it('p2p - a peer that never answers the offer gets the files through the relay when asked to', async () => {
    // The receiving end of an nfltr without direct transfer for task files: it ignores the offer and
    // takes the chunks that come through the relay, acking them there.
    const s = await end('mute-s', 'initiator');
    const r = await end('mute-r', 'responder');
    const out = tempDir();
    const receiver = new ArtifactReceiver({
      taskId: 'mute',
      dir: out,
      partialDir: join(out, '.partial'),
      acceptUnannounced: true,
      sendAck: (ack) => void r.a2a.send(s.agent.agentId, 'mute', { case: 'artifactAck', value: ack }),
    });
    r.a2a.on('message', (m) => {
      if (m.msg.case === 'artifactChunk') void receiver.accept(m.msg.value);
    });
    const src = tempDir();
    const body = randomBytes(300_000);
    writeFileSync(join(src, 'f.bin'), body);
    const files = await listFiles(src);
    const paths: PathChange[] = [];
    const report = await sendFiles({
      channel: a2aTransferChannel(s.a2a, s.agent, r.agent.agentId, 'mute'),
      identity: { localId: s.agent.agentId, remoteId: r.agent.agentId, staticKey: s.staticKey },
      transferId: 'mute',
      taskId: 'mute',
      files,
      infos: await describeFiles(files),
      addresses: ['127.0.0.1'],
      relayIfUnanswered: true,
      answerTimeoutMs: 300,
      onPath: (c) => paths.push(c),
    });
    expect(report.path).toBe('relay');
    expect(paths).toEqual([{ path: 'relay', why: 'mute-r did not answer the direct transfer offer' }]);
    const got = await receiver.verify(await describeFiles(files));
    expect(got.problems).toEqual([]);
    expect(sha(readFileSync(join(out, 'f.bin')))).toBe(sha(body));
  });
});

function readdirBytes(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}
