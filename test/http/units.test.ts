/** The pure parts of the HTTP proxy: routes, targets, header rules. */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { parseRoute, parseTarget, routeFor, routesLabel } from '../../src/agent/http-tunnel.js';
import { type A2aMessage, A2aMessageSchema, encodeA2aMessage } from '../../src/protocol/a2a.js';
import {
  type AgentFrame,
  AgentFrameSchema,
  encodeAgentFrame,
  encodeRelayFrame,
  type RelayFrame,
  RelayFrameSchema,
} from '../../src/protocol/control.js';
import {
  HttpFrameSchema,
  headerList,
  headerObject,
  requestProblem,
  statusOfProxyError,
} from '../../src/protocol/http-proxy.js';

describe('routes', () => {
  const routes = [
    parseRoute('/=http://localhost:5173'),
    parseRoute('/api=http://localhost:3000/v1/'),
    parseRoute('/api/admin=https://admin.local'),
  ];

  it('picks the longest prefix on whole segments and replaces it by the target path', () => {
    expect(routeFor(routes, '/api/users?x=1')?.href).toBe('http://localhost:3000/v1/users?x=1');
    expect(routeFor(routes, '/api')?.href).toBe('http://localhost:3000/v1/');
    expect(routeFor(routes, '/apiary')?.href).toBe('http://localhost:5173/apiary');
    expect(routeFor(routes, '/api/admin/x')?.href).toBe('https://admin.local/x');
    expect(routeFor(routes.slice(1), '/other')).toBeUndefined();
  });

  it('reads ports, host:port and URLs; refuses the rest naming the flag', () => {
    expect(parseTarget('8080', 'x').href).toBe('http://localhost:8080/');
    expect(parseTarget('box:81', 'x').href).toBe('http://box:81/');
    expect(() => parseTarget('ftp://h', '--expose')).toThrow(/--expose: only http and https/);
    expect(() => parseRoute('api=x')).toThrow(/--route: expected PREFIX=URL/);
    expect(routesLabel(routes)).toBe(
      '/=http://localhost:5173 /api=http://localhost:3000/v1 /api/admin=https://admin.local',
    );
  });
});

describe('headers', () => {
  it('drops hop-by-hop headers, those Connection names, and the ones asked', () => {
    const list = headerList(
      {
        connection: 'keep-alive, x-private',
        'x-private': '1',
        'transfer-encoding': 'chunked',
        host: 'relay',
        'x-api-key': 'secret',
        'set-cookie': ['a=1', 'b=2'],
        'content-type': 'text/plain',
      },
      ['x-api-key'],
    );
    expect(headerObject(list)).toEqual({ 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
  });

  it('checks request heads and maps error codes to statuses', () => {
    expect(requestProblem('GET', '/a?b')).toBeUndefined();
    expect(requestProblem('get', '/')).toMatch(/not an HTTP method/);
    expect(requestProblem('GET', 'a b')).toMatch(/must start with/);
    expect(statusOfProxyError('timeout')).toBe(504);
    expect(statusOfProxyError('agent_not_connected')).toBe(404);
    expect(statusOfProxyError('something_else')).toBe(502);
  });
});

describe('body chunk frames', () => {
  const generic = {
    agent: (f: AgentFrame['frame']) => toBinary(AgentFrameSchema, create(AgentFrameSchema, { frame: f })),
    relay: (f: RelayFrame['frame']) => toBinary(RelayFrameSchema, create(RelayFrameSchema, { frame: f })),
    a2a: (m: A2aMessage['msg']) => toBinary(A2aMessageSchema, create(A2aMessageSchema, { msg: m })),
  };
  const chunk = (streamId: string, data: Uint8Array, end: boolean) =>
    create(HttpFrameSchema, { streamId, frame: { case: 'data', value: { data, end } } });

  it('are the bytes protobuf writes, for every size class, id and end flag', () => {
    for (const size of [0, 1, 127, 128, 16_383, 16_384, 65_536, 300_000, 2_097_152]) {
      const data = new Uint8Array(size).map((_, i) => i * 31);
      for (const streamId of ['', 'a1b2c3d4e5f60718', 'é'.repeat(70)])
        for (const end of [false, true]) {
          const value = chunk(streamId, data, end);
          expect(
            Buffer.compare(encodeAgentFrame({ case: 'http', value }), generic.agent({ case: 'http', value })),
          ).toBe(0);
          expect(
            Buffer.compare(encodeRelayFrame({ case: 'http', value }), generic.relay({ case: 'http', value })),
          ).toBe(0);
          expect(
            Buffer.compare(encodeA2aMessage({ case: 'http', value }), generic.a2a({ case: 'http', value })),
          ).toBe(0);
        }
    }
  });

  it('keep the fields a newer peer added, as protobuf does', () => {
    const known = toBinary(HttpFrameSchema, chunk('s', Buffer.from('body'), true));
    // Field 9 (varint 5) on the frame, after what this version knows.
    const value = fromBinary(HttpFrameSchema, Buffer.concat([known, Buffer.from([0x48, 0x05])]));
    expect(value.$unknown).toHaveLength(1);
    expect(
      Buffer.compare(encodeAgentFrame({ case: 'http', value }), generic.agent({ case: 'http', value })),
    ).toBe(0);
  });

  it('with trailers, and other frames, are left to protobuf', () => {
    const value = create(HttpFrameSchema, {
      streamId: 's',
      frame: { case: 'data', value: { end: true, trailers: [{ name: 'x-sum', value: '1' }] } },
    });
    expect(
      Buffer.compare(encodeAgentFrame({ case: 'http', value }), generic.agent({ case: 'http', value })),
    ).toBe(0);
  });
});
