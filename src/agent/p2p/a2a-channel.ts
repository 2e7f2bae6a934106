/** @module A {@link TransferChannel} on an A2A endpoint: one channel with one peer, through the relay. */
import type { A2aEndpoint } from '../a2a.js';
import { ARTIFACT_WINDOW_BYTES } from '../artifacts/index.js';
import type { AgentClient } from '../client.js';
import type { TransferChannel } from './transfer.js';

export function a2aTransferChannel(
  a2a: A2aEndpoint,
  agent: AgentClient,
  peer: string,
  channel: string,
): TransferChannel {
  return {
    send: (msg) => a2a.send(peer, channel, msg),
    whenWritable: (signal) => agent.whenWritable(ARTIFACT_WINDOW_BYTES, signal),
    subscribe(handler) {
      const onMessage = (m: {
        peer: string;
        channel: string;
        msg: Parameters<typeof handler.message>[0];
      }) => {
        if (m.peer === peer && m.channel === channel) handler.message(m.msg);
      };
      const onResync = (e: { peer: string }) => {
        if (e.peer === peer) handler.resync?.();
      };
      a2a.on('message', onMessage);
      a2a.on('resync', onResync);
      return () => {
        a2a.off('message', onMessage);
        a2a.off('resync', onResync);
      };
    },
  };
}
