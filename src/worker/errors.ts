/**
 * @module Local errors of the worker. They never cross the wire: the planner sees task reasons instead.
 */

/** A configuration the worker cannot start with (bad flag, unusable executor). The CLI exits with 2. */
export class WorkerConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WorkerConfigError';
  }
}
