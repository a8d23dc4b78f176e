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
  /** An output could not be written during the run (disk full...): what was processed is reported. */
  OUTPUT: 4,
  /** The run needed more memory than the process could get: what was processed is reported. */
  MEMORY: 6,
  /** Stopped by SIGINT (128 + 2) or SIGTERM (128 + 15): what was processed is reported. */
  SIGINT: 130,
  SIGTERM: 143,
} as const;

/**
 * An option that takes a whole number in [min, max]: the number, `fallback` when the option was
 * not given, or a UsageError that quotes what was given.
 */
export function wholeNumber(text: string | undefined, option: string, command: string, min: number, max: number, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    const range = max === Infinity ? `of ${min} or more` : `${min}..${max}`;
    throw new UsageError(`${option} wants a whole number ${range}, got "${text}"`, command);
  }
  return n;
}
