// Storage errors with stable codes: a locked or corrupt database, a failed sync, a caller that broke a Raft invariant.
export type StorageErrorCode =
  | 'STORAGE_LOCKED' // another process (or another NodeStore in this one) holds the database
  | 'STORAGE_OPEN_FAILED'
  | 'STORAGE_CLOSED'
  | 'STORAGE_FAILED' // a synced write failed earlier: the store refuses further writes (state on disk is unknown)
  | 'STORAGE_CORRUPT' // what is on disk contradicts an invariant the store maintains
  | 'STORAGE_INVARIANT' // the caller asked for a write that would break a Raft invariant
  | 'STORAGE_COMPACTED' // a read below the first retained index
  | 'STORAGE_UNAVAILABLE'; // a read beyond the last stored index

export class StorageError extends Error {
  readonly code: StorageErrorCode;

  constructor(code: StorageErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'StorageError';
    this.code = code;
  }
}

/** Asserts an invariant of the caller's request; a violation is a bug in the caller, never recoverable. */
export function require_(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw new StorageError('STORAGE_INVARIANT', message());
}

export function corrupt(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw new StorageError('STORAGE_CORRUPT', message());
}
