/** `nfltr p2p`: peer names and aliases, flags and their errors, and the address the relay reports. */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { watch } from '../../bench/netns.mjs';
import { AgentClient } from '../../src/agent/index.js';
import { aliasOf, resolvePeer } from '../../src/cli/p2p.js';
import type { Peer } from '../../src/planner/peers.js';
import {
  createKey,
  eventually,
  NFLTR_BIN,
  nfltr,
  type RelayProcess,
  startRelayProcess,
  tempDir,
} from '../helpers/processes.js';

const peer = (agent_id: string, transfer?: string): Peer => ({
  agent_id,
  kind: 'tunnel',
  labels: transfer ? { 'coord.transfer': transfer } : {},
  connected_since: '',
  last_seen: '',
});

describe('p2p cli', () => {
  let relay: RelayProcess | undefined;
  let apiKey = '';
  afterAll(async () => {
    await relay?.stop();
  });

  it('p2p cli - an exact id or a unique alias names a peer; an ambiguous one is refused', () => {
    const peers = [
      peer('laptop-p2p', 'p2p'),
      peer('gpu-p2p', 'p2p'),
      peer('gpu-worker', 'a2a,p2p'),
      peer('box-worker', 'a2a'),
    ];
    expect(aliasOf('laptop-p2p')).toBe('laptop');
    expect(resolvePeer(peers, 'laptop')).toBe('laptop-p2p');
    expect(resolvePeer(peers, 'gpu-worker')).toBe('gpu-worker');
    expect(() => resolvePeer(peers, 'gpu')).toThrow(
      'peer "gpu" is ambiguous: gpu-p2p, gpu-worker; give the full agent id',
    );
    // A peer that takes no direct transfers has no alias.
    expect(() => resolvePeer(peers, 'box')).toThrow(
      /no peer "box" under this key; peers that take direct transfers: laptop-p2p, gpu-p2p, gpu-worker/,
    );
  });

  it('p2p cli - help, and bad flags exit 2 naming what is wrong', async () => {
    const help = await nfltr(['p2p', 'send', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--direct-timeout');
    expect((await nfltr(['p2p', 'recv', '--help'])).stdout).toContain('--output');
    const missing = await nfltr(['p2p', 'send', 'only-a-path']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing required argument 'peer'");
    const bare = await nfltr(['p2p', 'send', 'f', 'p', '--direct-timeout', '5']);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('--direct-timeout');
    const noFile = await nfltr([
      'p2p',
      'send',
      '/nonexistent/data.bin',
      'p',
      '--server',
      '127.0.0.1:1',
      '--api-key',
      'k',
    ]);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toMatch(/cannot read \/nonexistent\/data\.bin: ENOENT/);
    const noOutput = await nfltr(['p2p', 'recv', '--server', '127.0.0.1:1', '--api-key', 'k']);
    expect(noOutput.code).toBe(2);
    expect(noOutput.stderr).toContain('--output');
  });

  it('p2p cli - the relay tells an agent the address it saw', async () => {
    relay = await startRelayProcess();
    apiKey = await createKey(relay.dataDir, 'acme');
    const agent = new AgentClient({ servers: [relay.grpcAddr], apiKey, agentId: 'seen-p2p', kind: 'tunnel' });
    await agent.start().waitConnected();
    expect(agent.observedAddr).toMatch(/^127\.0\.0\.1:\d+$/);
    await agent.close();
  });

  it('p2p cli - --relay-only sends through the relay, --from refuses other senders, a corrupt file is refused and sent again', async () => {
    const src = tempDir();
    writeFileSync(join(src, 'notes.txt'), 'p2p through the relay\n');
    const out = tempDir();
    const common = ['--server', relay!.grpcAddr, '--api-key', apiKey, '--state-dir'];
    const recv = watch(
      spawn(process.execPath, [
        NFLTR_BIN,
        'p2p',
        'recv',
        '--output',
        out,
        '--name',
        'desk-p2p',
        '--from',
        'cli-sender',
        ...common,
        tempDir(),
      ]),
    );
    try {
      await eventually(() => recv.stderr().includes('receiving'), 15_000, 'recv connected');
      const other = await nfltr([
        'p2p',
        'send',
        join(src, 'notes.txt'),
        'desk-p2p',
        '--name',
        'intruder',
        ...common,
        tempDir(),
      ]);
      expect(other.code).toBe(1);
      expect(other.stderr).toContain(
        'desk-p2p refused the files: desk-p2p takes files from cli-sender only (--from)',
      );
      const sent = await nfltr([
        'p2p',
        'send',
        join(src, 'notes.txt'),
        'desk-p2p',
        '--relay-only',
        '--name',
        'cli-sender',
        ...common,
        tempDir(),
      ]);
      expect(sent.code, sent.stderr).toBe(0);
      expect(sent.stderr).toContain('relay path asked for: using the relay path');
      expect(sent.stdout).toMatch(
        /^sent 1 file \(22 bytes\) to desk-p2p through the relay in [\d.]+ s, [\d.]+ MB\/s\n$/,
      );
      await eventually(
        () => recv.stdout().includes('received 1 file(s) (22 bytes) from cli-sender through the relay'),
        10_000,
        'recv result',
      );
      expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('p2p through the relay\n');
    } finally {
      recv.child.kill('SIGTERM');
      await recv.exited;
    }
  });
});
