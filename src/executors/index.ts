/**
 * @module The executors: MCP servers that run one task per `run_task` call (docs/executor-contract.md).
 * Each lives in its own folder; this file lists the entry points by name.
 */
export { checkClaudeCli, createClaudeMcpServer, runPermissionBridge } from './claude-mcp/index.js';
export { checkCodexCli, checkCodexReady, createCodexMcpServer } from './codex-mcp/index.js';
export { checkCopilotCli, createCopilotMcpServer } from './copilot-mcp/index.js';
export { createShellMcpServer } from './shell-mcp/index.js';
