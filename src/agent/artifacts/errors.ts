/** @module The one error type of the artifact layer, with a code callers can branch on. */

export class ArtifactError extends Error {
  constructor(
    readonly code:
      | 'bad_name'
      | 'duplicate'
      | 'too_large'
      | 'integrity'
      | 'unreadable'
      | 'unexpected'
      | 'incomplete'
      | 'aborted'
      | 'stalled',
    message: string,
  ) {
    super(message);
    this.name = 'ArtifactError';
  }
}

/** The errno code of a file system error (`ENOENT`), or its message. */
export const errText = (err: unknown): string =>
  (err as NodeJS.ErrnoException).code ?? (err as Error).message;
