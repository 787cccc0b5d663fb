// FederationError: every problem found in a federation file, each with its YAML path and what to do about it.

export interface Problem {
  /** Where in the file, e.g. `members[2].ca` (or `line 4, column 3` for a YAML syntax error). */
  path: string;
  /** What is wrong and how to fix it. */
  message: string;
}

export class FederationError extends Error {
  override readonly name = 'FederationError';
  constructor(
    readonly file: string,
    readonly problems: Problem[],
  ) {
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}\n` +
        problems.map((problem) => `  ${problem.path}: ${problem.message}`).join('\n'),
    );
  }
}
