/**
 * How many worker threads a run gets by default. Apart from src/pipeline/parallel.ts so that the
 * command line decides without loading the thread pool (piscina: ~30 ms of every start).
 */
import { availableParallelism } from 'node:os';

/** Below this size a capture runs inline: starting workers would cost more than they save. */
export const PARALLEL_MIN_BYTES = 256 << 20;

/**
 * The default number of workers: never more than is measured to be faster than one.
 *
 * Every worker reads and decodes the whole capture (the repeated part, ~70 ns of a packet's
 * ~214 ns with the ebpf profile on one worker) and runs the stages on its share; on top, the
 * threads share the last-level cache: here (2 vCPUs) two single-worker replays run at once each
 * slowed 1.4-1.6x, and a 16 MB random-access working set went from 14 to 32 ns an access with a
 * second copy running (bench/README.md, "Workers"). So on 2 cores `--workers 2` took 1.02-1.57 s
 * where one worker took 0.81-0.87 s on a 3M-packet, 358 MB capture, and auto is one worker.
 * With more cores the duplicated part is paid once per worker while the rest divides: from the
 * measured phases, 4 workers would give ~1.9x (bench/README.md), so captures of 256 MiB or more
 * use one worker per core (at most 8); below that, starting workers costs more than they save.
 */
export function defaultWorkers(fileSize: number, cores = availableParallelism()): number {
  return cores <= 2 || fileSize < PARALLEL_MIN_BYTES ? 1 : Math.min(cores, 8);
}
