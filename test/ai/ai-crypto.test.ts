import { describe, expect, it } from 'vitest';
import {
  A2V,
  AiAgentCrypto,
  AiViewerCrypto,
  accessToken,
  newSessionKey,
  shareLink,
  tokenHash,
  V2A,
} from '../../src/protocol/ai-session.js';

describe('ai-session crypto', () => {
  it('ai-session - frames open both ways with the link key', () => {
    const k = newSessionKey();
    const agent = new AiAgentCrypto(k, 'lap-ai');
    const viewer = new AiViewerCrypto(k, 'lap-ai');
    const up = agent.open('v1', viewer.seal(V2A.input, Buffer.from('ls\r')));
    expect(up.type).toBe(V2A.input);
    expect(up.body.toString()).toBe('ls\r');
    const down = viewer.open(agent.seal(A2V.output, Buffer.from('hello')));
    expect(down).toEqual({ type: A2V.output, body: Buffer.from('hello') });
  });

  it('ai-session - refuses another key, another agent id, a replay and an altered byte', () => {
    const k = newSessionKey();
    const agent = new AiAgentCrypto(k, 'lap-ai');
    const frame = agent.seal(A2V.output, Buffer.from('secret'));
    expect(() => new AiViewerCrypto(newSessionKey(), 'lap-ai').open(frame)).toThrow(/authentication/);
    expect(() => new AiViewerCrypto(k, 'other-ai').open(frame)).toThrow(/authentication/);
    const viewer = new AiViewerCrypto(k, 'lap-ai');
    viewer.open(frame);
    expect(() => viewer.open(frame)).toThrow(/already used/);
    const next = agent.seal(A2V.output, Buffer.from('more'));
    next[next.length - 1]! ^= 1;
    expect(() => viewer.open(next)).toThrow(/authentication/);

    const up = viewer.seal(V2A.input, Buffer.from('x'));
    agent.open('v1', up);
    expect(() => agent.open('v1', up)).toThrow(/already used/);
    // Two viewers never share a nonce space: each page load has its own salt, hence its own key.
    const other = new AiViewerCrypto(k, 'lap-ai');
    expect(agent.open('v2', other.seal(V2A.hello)).type).toBe(V2A.hello);
    expect(() => agent.open('v1', other.seal(V2A.hello))).toThrow(/salt/);
  });

  it('ai-session - the link carries the key only in its fragment; the relay sees a derived token', () => {
    const k = newSessionKey();
    const link = shareLink('https://relay.example/', 'lap-ai', k);
    const url = new URL(link);
    expect(url.pathname).toBe('/ai/lap-ai');
    expect(url.search).toBe('');
    expect(Buffer.from(url.hash.slice(3), 'base64url')).toEqual(k);
    const t = accessToken(k);
    expect(t).not.toContain(url.hash.slice(3));
    expect(tokenHash(t)).toMatch(/^[0-9a-f]{64}$/);
  });
});
