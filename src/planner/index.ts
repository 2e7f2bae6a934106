/**
 * @module The planner (`nfltr mcp`): MCP server and tools, task manager, durable task store.
 * Exports are listed by name; anything added here becomes the planner's public surface.
 */
export {
  buildReport,
  DemoError,
  type DemoOptions,
  type DemoResult,
  type EmbeddedRelay,
  runDemo,
} from './demo.js';
export { PlannerError, type PlannerErrorCode } from './errors.js';
export { acquireStateLock, LockError } from './lock.js';
export {
  CLIENT_FORMATS,
  type ClientFormat,
  ConfigFileError,
  clientEntry,
  DEFAULT_MCP_NAME,
  formatFromPath,
  type MergeResult,
  mergeClientConfig,
  type PlannerLaunch,
  vscodeKeyInputId,
  writeClientConfig,
} from './mcp-json.js';
export { matchesSelector, type Peer, PeerDirectory, parseSelector, type SelectorTerm } from './peers.js';
export { createPlannerServer, type PlannerServerOptions } from './server.js';
export {
  type CancelOutcome,
  type DispatchRequest,
  generateTaskId,
  PROBE_CHANNEL,
  type ProbeReport,
  TaskManager,
  type TaskManagerOptions,
  taskIdProblem,
} from './task-manager.js';
export {
  type ArtifactRecord,
  applyEvent,
  canTransition,
  isTerminal,
  newSnapshot,
  type PendingQuestion,
  type TaskEventRecord,
  type TaskSnapshot,
  type TaskStateName,
} from './task-state.js';
export { type StoredTask, type TaskRequest, TaskStore } from './task-store.js';
export { registerA2aTools, registerDiscoveryTools, type ToolContext } from './tools.js';
