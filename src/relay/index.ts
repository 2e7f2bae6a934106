export type { Bus, BusHandlers, PresenceEvent, Refusal } from './bus/index.js';
// The PostgreSQL store and NATS bus load on demand (openStoreFrom, openBus); import them from
// store/postgres and bus/nats directly when needed by name.
export { LocalBus, LocalHub, openBus } from './bus/index.js';
export { Cluster, type PeerView } from './cluster.js';
export { Accounting, type AccountStats, type DropReason } from './limits.js';
export {
  DEFAULT_HOLD_WINDOW_MS,
  DEFAULT_KEEPALIVE_INTERVAL_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_LIMITS,
  type Relay,
  type RelayLimits,
  type RelayOptions,
  splitHostPort,
  startRelay,
} from './relay.js';
export { awaitRevocation, Revocations } from './revocation.js';
export {
  type ApiKeyInfo,
  type AuthResult,
  isPostgresUrl,
  openStore,
  openStoreFrom,
  redactUrl,
  SqliteStore,
  type Store,
} from './store/index.js';
