/**
 * @module The planner (`nfltr mcp`): MCP server and tools, task manager, durable task store.
 * Exports are listed by name; anything added here becomes the planner's public surface.
 */

export { answerProblem } from './answer-schema.js';
export { type DispatchRequest, generateTaskId } from './dispatch.js';
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
export type { ProbeReport } from './probes.js';
export { INSTRUCTIONS, type PlannerServer, type PlannerServerOptions, servePlanner } from './server.js';
export { type ListedTool, ToolSurface } from './surface.js';
export { type CancelOutcome, TaskManager, type TaskManagerOptions } from './task-manager.js';
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
export {
  MAX_WAIT_MS,
  NOTABLE_STATES,
  type PlannerTool,
  plannerTools,
  type RunContext,
  type ToolContext,
} from './tools.js';
