/**
 * @module `nfltr shell-mcp`: an executor that runs shell commands behind the `run_task` contract.
 */

export { formatDuration } from '../../util/duration.js';
export {
  type AllowRule,
  type AllowVerdict,
  checkAllowed,
  compileAllowPattern,
  isAllowed,
  SHELL_CONTROL_CHARS,
} from './allow.js';
export { CODE_RUNNING_PROGRAMS, codeRisk, splitCommands } from './code-flags.js';
export {
  type CommandOutcome,
  commandStatus,
  type RunCommandOptions,
  runCommand,
} from './run-command.js';
export {
  type CommandResult,
  type CommandStatus,
  createShellMcpServer,
  DEFAULT_COMMAND_TIMEOUT_MS,
  type ShellMcpOptions,
  type ShellTaskResult,
} from './server.js';
