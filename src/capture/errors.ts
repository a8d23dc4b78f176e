/**
 * A capture that cannot be read further. It names the file and the byte offset of the damage and
 * says what to do; the packets before the damage have already been delivered.
 */
export class CaptureError extends Error {
  constructor(
    readonly file: string,
    /** Byte offset in the file where the damage starts, or -1 when no offset applies. */
    readonly offset: number,
    readonly problem: string,
    readonly hint: string,
  ) {
    super(`${file}${offset >= 0 ? ` at byte ${offset}` : ''}: ${problem}${hint ? `. ${hint}` : ''}`);
    this.name = 'CaptureError';
  }
}
