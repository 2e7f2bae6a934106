/**
 * @module `nfltr claude-mcp`: an executor that runs each task with Claude Code headless behind the
 * `run_task` contract.
 */
export {
  BRIDGE_SERVER_NAME,
  BRIDGE_TOOL_NAME,
  PERMISSION_PROMPT_TOOL,
  type PermissionBridge,
  type PermissionDecision,
  type PermissionRequest,
  runPermissionBridge,
  startPermissionBridge,
} from './permission-bridge.js';
export {
  type ClaudeMcpOptions,
  checkClaudeCli,
  claudeArgv,
  createClaudeMcpServer,
  DEFAULT_CLAUDE_TIMEOUT_MS,
} from './server.js';
export { type ClaudeResultMessage, ClaudeStream, describeToolUse } from './stream-json.js';
