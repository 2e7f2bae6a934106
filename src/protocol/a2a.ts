/**
 * @module A2A message types (`a2a-mcp-v1`), generated from proto/nfltr/v1/a2a.proto, plus the task
 * state names exactly as the product documents give them.
 */
import { TaskState } from './gen/nfltr/v1/a2a_pb.js';

export * from './gen/nfltr/v1/a2a_pb.js';

export const A2A_PROTOCOL = 'a2a-mcp-v1';

export type TaskStateName = 'accepted' | 'running' | 'waiting_input' | 'completed' | 'failed' | 'cancelled';

const NAMES: Record<TaskStateName, TaskState> = {
  accepted: TaskState.ACCEPTED,
  running: TaskState.RUNNING,
  waiting_input: TaskState.WAITING_INPUT,
  completed: TaskState.COMPLETED,
  failed: TaskState.FAILED,
  cancelled: TaskState.CANCELLED,
};

export const taskStateFromName = (name: TaskStateName): TaskState => NAMES[name];

export function taskStateName(state: TaskState): TaskStateName | undefined {
  for (const [name, value] of Object.entries(NAMES)) if (value === state) return name as TaskStateName;
  return undefined;
}

export const TERMINAL_STATES: ReadonlySet<TaskStateName> = new Set(['completed', 'failed', 'cancelled']);
