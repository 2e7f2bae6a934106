export { type Relay, type RelayOptions, splitHostPort, startRelay } from './relay.js';
export { type ApiKeyInfo, type AuthResult, openStore, SqliteStore, type Store } from './store/index.js';
