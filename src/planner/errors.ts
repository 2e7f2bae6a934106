/**
 * @module The planner's local errors. Each tool failure is one of these, and its message is what the
 * MCP client (an LLM) reads, so it says what went wrong and what to do next.
 */
import type { HttpProxyErrorCode } from '../protocol/http-proxy.js';

export type PlannerErrorCode =
  /** The relay's HTTP API or control stream cannot be reached; the message names the address tried. */
  | 'relay_unreachable'
  /** The relay refused the API key. */
  | 'unauthenticated'
  /** No peer with that id under this API key, or it is not a worker. */
  | 'unknown_agent'
  /** No task with that id in this planner's store. */
  | 'unknown_task'
  /** The task id is already used by this planner. */
  | 'duplicate_task_id'
  /** An argument is malformed (selector, task id, artifact path). */
  | 'invalid_argument'
  /** The task is not in a state that allows the call (answer when not waiting, cancel when done). */
  | 'wrong_state'
  /** The worker refused the task (no_free_slots, draining, …). */
  | 'refused'
  /** The worker did not answer in time. */
  | 'timeout'
  /** The encrypted A2A channel could not be set up (pairing key, plaintext refusal). */
  | 'a2a'
  /** proxy_request: the service's answer (no_route, service_refused, timeout, agent_gone, …). */
  | HttpProxyErrorCode;

export class PlannerError extends Error {
  constructor(
    readonly code: PlannerErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PlannerError';
  }
}
