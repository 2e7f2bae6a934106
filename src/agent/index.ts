export {
  A2A_KIND,
  type A2aBody,
  A2aEndpoint,
  type A2aEndpointOptions,
  A2aError,
  type A2aFailure,
  type A2aInbound,
} from './a2a.js';
export {
  AgentClient,
  AgentError,
  type AgentOptions,
  type AgentStatus,
  DEFAULT_BACKOFF_MS,
  type InboundEnvelope,
  type OutboundEnvelope,
} from './client.js';
export {
  DEFAULT_HTTP_TIMEOUT_MS,
  exposeHttp,
  HTTP_ROUTES_LABEL,
  type HttpRoute,
  HttpService,
  httpLabels,
  parseRoute,
  parseTarget,
} from './http-tunnel.js';
export { MemoryRelay, type MemoryRelayOptions } from './memory-relay.js';
export {
  fingerprint,
  KnownPeers,
  type KnownPeersOptions,
  loadStaticKey,
  type PeerPins,
  type PinCheck,
  STATIC_KEY_FILE,
} from './peer-keys.js';
export {
  type ControlDialer,
  type ControlTransport,
  type FatalCode,
  GrpcDialer,
  type TransportEnd,
} from './transport.js';
