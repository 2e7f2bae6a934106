/** @module The planner's task transitions: one pure `step`, and the writer of its store changes. */
export {
  type Action,
  failureError,
  type Input,
  type RecoverWhy,
  type StoreChange,
  step,
  type Task,
} from './step.js';
export { writeChange } from './write.js';
