/**
 * @module The pieces the AI executors share: the `run_task` skeleton, CLI process groups, command
 * splitting and `--help` probing.
 */

export { processGroupAlive } from '../../util/process-group.js';
export { findHelpOption, formatArgv, type HelpOption, readHelp, splitCommand } from './cli-command.js';
export {
  AGENT_KILL_GRACE_MS,
  type AgentExit,
  type AgentProcess,
  type AgentProcessOptions,
  activeAgentProcessGroups,
  spawnAgentProcess,
} from './process.js';
export { CHECK_READY_TOOL, type Readiness, registerCheckReady } from './ready.js';
export {
  type AgentRunContext,
  type AgentRunResult,
  type AgentTaskResult,
  type AgentTaskSpec,
  activeAgentTasks,
  agentTaskOutputSchema,
  composePrompt,
  errorResult,
  type GitCodeResultInfo,
  progressLine,
  type RunTaskArgs,
  runAgentTask,
  runPendingCleanups,
  runTaskInputSchema,
  type TaskUsage,
  trackCleanup,
  usageLine,
} from './task.js';
