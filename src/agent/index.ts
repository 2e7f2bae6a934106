export {
  AgentClient,
  AgentError,
  type AgentOptions,
  type AgentStatus,
  DEFAULT_BACKOFF_MS,
  type InboundEnvelope,
  type OutboundEnvelope,
} from './client.js';
