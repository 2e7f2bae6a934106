/**
 * @module The Codex executor (`nfltr codex-mcp`): the app-server protocol client and the MCP server.
 */
export { type CodexSettings, describeItem, runCodexTurn } from './app-server.js';
export {
  type CodexMcpOptions,
  checkCodexCli,
  checkCodexReady,
  codexAppServerArgv,
  codexError,
  createCodexMcpServer,
  DEFAULT_CODEX_TIMEOUT_MS,
  DEFAULT_UNREACHABLE_AFTER_MS,
} from './server.js';
