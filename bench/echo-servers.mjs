// Echo peers for the routing benchmark, one per transport, each in its own process:
//   node echo-servers.mjs grpc | ws | agent <relayAddr> <apiKey>
// Each prints `ready {...}` on stdout once it serves.
import * as grpc from '@grpc/grpc-js';
import { WebSocketServer } from 'ws';

const mode = process.argv[2];
const id = (b) => b;

if (mode === 'grpc') {
  // A naive bidi echo: one gRPC message per write, as most services do.
  const server = new grpc.Server();
  server.addService(
    {
      echo: {
        path: '/bench.Echo/Echo',
        requestStream: true,
        responseStream: true,
        requestSerialize: id,
        requestDeserialize: id,
        responseSerialize: id,
        responseDeserialize: id,
      },
    },
    { echo: (call) => call.on('data', (b) => call.write(b)).on('end', () => call.end()) },
  );
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    process.stdout.write(`ready ${JSON.stringify({ port })}\n`);
  });
} else if (mode === 'ws') {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 }, () =>
    process.stdout.write(`ready ${JSON.stringify({ port: wss.address().port })}\n`),
  );
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
} else if (mode === 'agent') {
  const { AgentClient } = await import('../dist/agent/index.js');
  const agent = new AgentClient({
    servers: [process.argv[3]],
    apiKey: process.argv[4],
    agentId: 'bench-echo',
    kind: 'worker',
  });
  agent.on('envelope', (e) =>
    agent.send({ to: e.from, channel: e.channel, seq: e.seq, kind: e.kind, payload: e.payload }),
  );
  await agent.start().waitConnected();
  process.stdout.write(`ready ${JSON.stringify({ agent: 'bench-echo' })}\n`);
} else {
  throw new Error(`unknown mode ${mode}`);
}
