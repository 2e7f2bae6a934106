export { openStore } from './open.js';
export { SqliteStore } from './sqlite/index.js';
export type { ApiKeyInfo, AuthResult, Store } from './store.js';
