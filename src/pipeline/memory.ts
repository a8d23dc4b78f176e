/** Telling an allocation the system refused from a bug: see cli/main.ts reportError (exit 6). */

/**
 * Whether `e` says the process ran out of memory: V8's RangeError when the system refuses an
 * ArrayBuffer ("Array buffer allocation failed": a flow table or batch growing past ulimit -v or
 * the machine), or a worker stopped at its heap limit. Not a bug in dplab: the run needed more
 * memory than it was given, and the user can give more or ask the stages to hold less.
 */
export function isOutOfMemory(e: unknown): boolean {
  if (e instanceof RangeError && /allocation failed/i.test(e.message)) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ERR_WORKER_OUT_OF_MEMORY' || code === 'ERR_MEMORY_ALLOCATION_FAILED';
}
