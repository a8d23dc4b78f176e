/** A mistake on the command line: printed as one line with a pointer to --help, exit code 1. */
export class UsageError extends Error {
  constructor(message: string, readonly command = '') {
    super(message);
    this.name = 'UsageError';
  }
}

/** Exit codes, documented in --help. */
export const Exit = {
  OK: 0,
  /** Bad command line, missing file, bad profile: nothing was processed. */
  USAGE: 1,
  /** The capture is damaged or partly unreadable: what was read is reported, the rest is not. */
  DAMAGED: 2,
  /** dplab itself failed (a bug or a worker crash): please report it. */
  INTERNAL: 3,
} as const;
