/**
 * @module A task id as a tool gives it: the stored task, or an error that says what the id is (being
 * dispatched, withdrawn, unknown, already used) and what to do.
 */
import { PlannerError } from './errors.js';
import type { StoredTask, TaskStore } from './task-store.js';

/**
 * The task for a tool call. A dispatch not answered yet, or withdrawn, is an error that says so; with
 * `dispatching` a dispatch is returned (wait_for_tasks waits on it).
 */
export function findTask(store: TaskStore, taskId: string, dispatching = false): StoredTask {
  const task = store.get(taskId);
  if (task && (task.snapshot.state !== undefined || dispatching)) return task;
  if (task?.dispatch === 'withdrawn') {
    throw new PlannerError(
      'wrong_state',
      `task ${taskId} was withdrawn: worker ${task.snapshot.agent_id} did not answer its dispatch in ` +
        'time, and has not been heard from since. It is told to cancel the task as soon as it is; then ' +
        'this shows the task cancelled (or, if the task never reached it, the id is dropped)',
    );
  }
  if (task) {
    throw new PlannerError(
      'wrong_state',
      `task ${taskId} is still being dispatched: orchestrate_task has not returned yet`,
    );
  }
  throw new PlannerError(
    'unknown_task',
    `unknown task ${JSON.stringify(taskId)}: this planner has no task with that id. Call list_active_tasks ` +
      '(with all: true for finished ones) to see the task ids it tracks',
  );
}

/** Refuses an id this planner has in its store (a task, or a dispatch). */
export function assertNewTaskId(store: TaskStore, taskId: string): void {
  const existing = store.get(taskId)?.snapshot;
  if (existing) {
    throw new PlannerError(
      'duplicate_task_id',
      `task_id ${JSON.stringify(taskId)} is already used by this planner` +
        (existing.state ? ` (worker ${existing.agent_id}, state ${existing.state})` : ' (being dispatched)') +
        '; choose another task_id, or omit it to get a generated one',
    );
  }
}
