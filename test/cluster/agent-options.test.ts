import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { type AgentFlags, addAgentOptions, agentOptionsFrom } from '../../src/cli/agent-options.js';

const parse = async (argv: string[]) => {
  let flags: AgentFlags = {};
  const cmd = addAgentOptions(new Command('worker')).action((o: AgentFlags) => {
    flags = o;
  });
  await cmd.parseAsync(argv, { from: 'user' });
  return agentOptionsFrom({ apiKey: 'k', name: 'w1', ...flags }, 'worker');
};

describe('agent options - several relay replicas', () => {
  afterEach(() => {
    delete process.env.NFLTR_SERVER;
  });

  it('--server takes a comma-separated list, tried in that order', async () => {
    expect((await parse(['--server', 'relay-1:9090, relay-2:9090,[::1]:9091'])).servers).toEqual([
      'relay-1:9090',
      'relay-2:9090',
      '[::1]:9091',
    ]);
  });

  it('NFLTR_SERVER gives the same list when --server is absent', async () => {
    process.env.NFLTR_SERVER = 'a:9090,b:9090';
    expect((await parse([])).servers).toEqual(['a:9090', 'b:9090']);
  });

  it('a bad entry is refused, quoted and naming --server', async () => {
    await expect(parse(['--server', 'a:9090,b'])).rejects.toThrow('--server: expected host:port, got "b"');
  });
});
