// Baseline for the peer comparison: a direct A2A call (@a2a-js/sdk client and server, JSON-RPC over HTTP on
// loopback, no relay) running the same trivial task. `node a2a-direct.mjs server` prints `ready {port}`.
import { randomUUID } from 'node:crypto';

export const CARD = (port) => ({
  name: 'bench-echo',
  description: 'Answers every message at once',
  supportedInterfaces: [
    { url: `http://127.0.0.1:${port}/`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' },
  ],
  provider: undefined,
  version: '1.0.0',
  capabilities: { streaming: false, pushNotifications: false, extensions: [] },
  securitySchemes: {},
  securityRequirements: [],
  defaultInputModes: ['text/plain'],
  defaultOutputModes: ['text/plain'],
  skills: [],
  signatures: [],
});

if (process.argv[2] === 'server') {
  const { default: express } = await import('express');
  const { DefaultRequestHandler, InMemoryTaskStore } = await import('@a2a-js/sdk/server');
  const { jsonRpcHandler, UserBuilder } = await import('@a2a-js/sdk/server/express');
  const { Role } = await import('@a2a-js/sdk');
  const executor = {
    async execute(ctx, bus) {
      const text = ctx.userMessage.parts[0]?.content?.value ?? '';
      bus.publish({
        kind: 'message',
        data: {
          messageId: randomUUID(),
          contextId: ctx.contextId,
          taskId: '',
          role: Role.ROLE_AGENT,
          parts: [
            {
              content: { $case: 'text', value: `done: ${text}` },
              metadata: undefined,
              filename: '',
              mediaType: 'text/plain',
            },
          ],
          metadata: undefined,
          extensions: [],
          referenceTaskIds: [],
        },
      });
      bus.finished();
    },
    async cancelTask() {},
  };
  const app = express();
  const server = app.listen(0, '127.0.0.1', () => {
    const port = server.address().port;
    const handler = new DefaultRequestHandler(CARD(port), new InMemoryTaskStore(), executor);
    app.use(jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }));
    process.stdout.write(`ready ${JSON.stringify({ port })}\n`);
  });
}

/** A client for the server above; `call(text)` resolves with the agent's reply text. */
export async function directClient(port) {
  const { ClientFactory } = await import('@a2a-js/sdk/client');
  const { Role } = await import('@a2a-js/sdk');
  const client = await new ClientFactory().createFromAgentCard(CARD(port));
  return async (text) => {
    const r = await client.sendMessage({
      tenant: '',
      message: {
        messageId: randomUUID(),
        contextId: '',
        taskId: '',
        role: Role.ROLE_USER,
        parts: [
          {
            content: { $case: 'text', value: text },
            metadata: undefined,
            filename: '',
            mediaType: 'text/plain',
          },
        ],
        metadata: undefined,
        extensions: [],
        referenceTaskIds: [],
      },
      configuration: undefined,
      metadata: undefined,
    });
    return r;
  };
}
