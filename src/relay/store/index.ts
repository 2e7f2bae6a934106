export { isPostgresUrl, openStore, openStoreFrom } from './open.js';
export { redactUrl } from './redact.js';
export { SqliteStore } from './sqlite/index.js';
export type {
  ApiKeyInfo,
  AuthResult,
  ClaimResult,
  CommandRecord,
  DigestRecord,
  HeldPresence,
  PresenceClaim,
  PresenceRecord,
  Store,
} from './store.js';
export { StoreClock } from './store.js';
