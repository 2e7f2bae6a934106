/**
 * @module The pieces the AI executors share: the `run_task` skeleton, CLI process groups, command
 * splitting and `--help` probing.
 */

export { GROUP_KILL_GRACE_MS, ProcessGroups, processGroupAlive } from '../../util/process-group.js';
export { findHelpOption, formatArgv, type HelpOption, readHelp, splitCommand } from './cli-command.js';
export {
  type AgentExit,
  type AgentProcess,
  type AgentProcessOptions,
  spawnAgentProcess,
} from './process.js';
export { CHECK_READY_TOOL, type Readiness, registerCheckReady } from './ready.js';
export {
  type AgentRunContext,
  type AgentRunResult,
  type AgentTaskResult,
  type AgentTaskSpec,
  AgentTasks,
  agentTaskOutputSchema,
  composePrompt,
  errorResult,
  type GitCodeResultInfo,
  progressLine,
  type RunTaskArgs,
  registerAgentRunTask,
  runAgentTask,
  runTaskInputSchema,
  type TaskUsage,
  usageLine,
} from './task.js';
export { openTranscript, type Transcript } from './transcript.js';
