/**
 * @module Executes a {@link StoreChange} on the task store: the one place where `step`'s decisions
 * become rows and events.
 */
import type { TaskSnapshot } from '../task-state.js';
import type { TaskStore } from '../task-store.js';
import type { StoreChange } from './step.js';

/**
 * Writes one change of task `taskId`. For an `append`, returns the stored snapshot, or undefined when
 * the seq was already stored (then nothing that follows from the event should happen again).
 */
export function writeChange(store: TaskStore, taskId: string, change: StoreChange): TaskSnapshot | undefined {
  switch (change.op) {
    case 'begin':
      store.begin(change.row);
      return undefined;
    case 'append':
      return store.append(taskId, change.record);
    case 'cancel_pending':
      store.setCancelPending(taskId, change.value);
      return undefined;
    case 'dispatch':
      store.setDispatch(taskId, change.phase);
      return undefined;
    case 'answer':
      store.setAnswer(taskId, change.seq, change.answer);
      return undefined;
    case 'remove':
      store.remove(taskId);
      return undefined;
  }
}
