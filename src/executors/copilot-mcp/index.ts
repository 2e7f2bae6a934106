/**
 * @module `nfltr copilot-mcp`: an executor that runs each task with GitHub Copilot CLI (over its Agent
 * Client Protocol server, or its prompt mode) behind the `run_task` contract.
 */
export {
  ACP_PROTOCOL_VERSION,
  AUTH_REQUIRED,
  authRequiredText,
  COPILOT_AUTH_FIX,
  COPILOT_TOKEN_ENV,
  offerMatches,
  pickOption,
  planSettings,
  runAcpTask,
  type SessionSettings,
} from './acp.js';
export { INTERNAL_ERROR, JsonRpcPeer, METHOD_NOT_FOUND, RpcError, type RpcHandlers } from './json-rpc.js';
export {
  type CopilotCli,
  type CopilotMcpOptions,
  checkCopilotCli,
  checkCopilotReady,
  copilotAcpArgv,
  copilotPromptArgv,
  createCopilotMcpServer,
  DEFAULT_COPILOT_TIMEOUT_MS,
  possibleValues,
} from './server.js';
