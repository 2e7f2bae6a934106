import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import { type AgentFlags, addAgentOptions, agentOptionsFrom } from '../../src/cli/agent-options.js';
import { tempDir } from '../helpers/processes.js';

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

describe('agent options - the API key from a file', () => {
  const flags = { server: 'relay:9090', name: 'w1' };

  it('--api-key-file gives the key (its first line) when --api-key and NFLTR_API_KEY are unset', () => {
    const file = join(tempDir(), 'key');
    writeFileSync(file, 'nfk_from_file \nsecond line\n');
    expect(agentOptionsFrom({ ...flags, apiKeyFile: file }, 'worker').apiKey).toBe('nfk_from_file');
    expect(agentOptionsFrom({ ...flags, apiKey: 'k', apiKeyFile: file }, 'worker').apiKey).toBe('k');
  });

  it('an unreadable or empty key file is an error naming --api-key-file', () => {
    const dir = tempDir();
    expect(() => agentOptionsFrom({ ...flags, apiKeyFile: join(dir, 'none') }, 'worker')).toThrow(
      `--api-key-file ${join(dir, 'none')}: does not exist`,
    );
    writeFileSync(join(dir, 'empty'), '\n');
    expect(() => agentOptionsFrom({ ...flags, apiKeyFile: join(dir, 'empty') }, 'worker')).toThrow(
      /the file is empty; put the API key on its first line/,
    );
    expect(() => agentOptionsFrom(flags, 'worker')).toThrow(
      'no API key: pass --api-key, set NFLTR_API_KEY, or pass --api-key-file',
    );
  });
});
