/**
 * @module What orchestrate_task checks and builds before a task leaves (its id, its objective, its input
 * files, the TaskStart), and how a failed dispatch is told apart: one that certainly never reached the
 * worker is forgotten, any other is withdrawn (docs/durability.md).
 */
import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import {
  checkArtifactLimit,
  describeFiles,
  type LocalFile,
  resolveLocalPaths,
} from '../agent/artifacts/index.js';
import type { A2aBody } from '../agent/index.js';
import { A2aError, AgentError } from '../agent/index.js';
import { TaskStartSchema, taskIdProblem } from '../protocol/a2a.js';
import { PlannerError } from './errors.js';
import { LIMIT_FLAG } from './task-files.js';
import type { TaskRequest } from './task-store.js';

export interface DispatchRequest {
  agent_id: string;
  task_id?: string;
  objective: string;
  context?: Record<string, unknown>;
  constraints?: Record<string, unknown>;
  artifact_files?: string[];
  timeout_ms?: number;
}

/** `task-20260414T101112Z-3f9a1c`: sortable, unique enough, and valid as a channel and folder name. */
export function generateTaskId(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `task-${stamp}-${randomBytes(3).toString('hex')}`;
}

/** The id a request dispatches under, once its id and objective are usable. */
export function checkDispatch(req: DispatchRequest): string {
  const taskId = req.task_id ?? generateTaskId();
  const problem = taskIdProblem(taskId);
  if (problem)
    throw new PlannerError('invalid_argument', `${problem} (or omit task_id to get one generated)`);
  if (!req.objective.trim()) {
    throw new PlannerError('invalid_argument', 'objective is empty: say what the worker should do');
  }
  return taskId;
}

/** Reads and hashes the input files, and builds the TaskStart and the request kept with the task. */
export async function prepareDispatch(
  taskId: string,
  req: DispatchRequest,
  maxBytes: number,
): Promise<{ files: LocalFile[]; request: TaskRequest; start: A2aBody }> {
  let files: LocalFile[] = [];
  let inputs: Awaited<ReturnType<typeof describeFiles>> = [];
  try {
    files = req.artifact_files?.length ? await resolveLocalPaths(req.artifact_files) : [];
    checkArtifactLimit(files, maxBytes, LIMIT_FLAG);
    inputs = await describeFiles(files);
  } catch (err) {
    throw new PlannerError(
      'invalid_argument',
      `${(err as Error).message}; nothing was sent. Fix artifact_files (local paths on the planner machine) and retry`,
    );
  }
  const request: TaskRequest = {
    context: req.context,
    constraints: req.constraints,
    timeout_ms: req.timeout_ms,
    input_files: inputs.map((f) => ({ name: f.name, size: Number(f.size), sha256: f.sha256 })),
  };
  const start: A2aBody = {
    case: 'taskStart',
    value: create(TaskStartSchema, {
      taskId,
      objective: req.objective,
      contextJson: JSON.stringify(req.context ?? {}),
      constraintsJson: JSON.stringify(req.constraints ?? {}),
      timeoutMs: BigInt(req.timeout_ms ?? 0),
      inputFiles: inputs,
    }),
  };
  return { files, request, start };
}

/**
 * Whether a dispatch that failed with `cause` certainly left nothing at the worker, so its row can go:
 * the worker refused it, the relay had no such peer, the send never reached the relay's queue, or the
 * encrypted channel was refused. Anything else (no answer in time, a handshake that timed out, the
 * planner shutting down) may have left the TaskStart on its way: the dispatch is withdrawn instead.
 */
export function neverDelivered(cause: Error): boolean {
  if (cause instanceof AgentError) return true;
  if (cause instanceof A2aError) return cause.code !== 'handshake_timeout' && cause.code !== 'reset';
  return (
    cause instanceof PlannerError &&
    (cause.code === 'refused' || cause.code === 'unknown_agent' || cause.code === 'a2a')
  );
}

/** The error orchestrate_task answers for a withdrawn dispatch. */
export function withdrawnError(failure: Error, taskId: string, agentId: string): PlannerError {
  return new PlannerError(
    failure instanceof PlannerError ? failure.code : 'timeout',
    `${failure.message.replace(/[.;]?\s*$/, '')}. The dispatch is withdrawn: should task ${taskId} reach ` +
      `${agentId} late, ${agentId} is told to cancel it, and get_task_status ${taskId} then shows it ` +
      `cancelled. probe_worker ${agentId}, or dispatch the objective again (with a new task_id, or to ` +
      'another worker)',
  );
}
