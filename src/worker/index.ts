/**
 * @module The worker: labels and capacity, executor sessions (MCP client), task runner. Every export
 * here is public API; add names deliberately.
 */
export { CommandLineError, splitCommandLine } from '../util/command-line.js';
export { WorkerConfigError } from './errors.js';
export {
  buildToolArguments,
  CHECK_READY_TOOL,
  callCheckReady,
  checkExecutor,
  chooseTool,
  claudeMcpCommand,
  composePrompt,
  type ElicitHandler,
  type ExecutorCheck,
  type ExecutorCommand,
  ExecutorError,
  ExecutorSession,
  type ExecutorStartOptions,
  type ExecutorUser,
  executorEnvironment,
  isClaudeCodeServer,
  mainStringField,
  parseExecutorCommand,
  probeReadiness,
  type Readiness,
  RUN_TASK_TOOL,
  type TaskInput,
  type ToolChoice,
  WORKER_SECRETS,
} from './executor.js';
export {
  AUTOMATIC_LABEL_PREFIXES,
  automaticLabels,
  checkUserLabels,
  LABEL,
  LabelKeeper,
  LOAD_STEP_PCT,
  loadPct,
  memoryClassMb,
} from './labels.js';
export { parseTaskStart } from './message-router.js';
export { listOutputFiles } from './outputs.js';
export { descendantPids, isAlive } from './process-tree.js';
export { EVENTS_FILE, TaskEventLog } from './task-events.js';
export { answerContent, type HaltReason, resultTextOf, TaskRunner, type TaskSpec } from './task-runner.js';
export {
  DEFAULT_SLOT_LEASE_MS,
  DEFAULT_STALL_AFTER_MS,
  runWorker,
  Worker,
  type WorkerExit,
  type WorkerOptions,
} from './worker.js';
