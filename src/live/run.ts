/**
 * A live run: the replay pipeline (pipeline/run.ts's CaptureRun: decode, stages, accounting,
 * writers, flow log) over batches from a live source. When no packet is ready the loop waits on
 * the socket (or a short timeout) instead of ending; it ends when the source is done (--count,
 * --duration) or a signal sets the stop flag, and reports as replay does.
 */
import { performance } from 'node:perf_hooks';
import { CaptureRun, YIELD_MS, type RunResult, type RunSpec, type StopFlag } from '../pipeline/run.js';
import type { LiveSource } from './source.js';

/** Longest wait for the socket before looking at the stop flag again. */
export const WAIT_MS = 50;

export interface LiveRunSpec extends RunSpec {
  source: LiveSource;
  stop: StopFlag;
  /** Called every tickMs while the run lasts (the status line). */
  onTick?: (run: CaptureRun, src: LiveSource) => void;
  tickMs?: number;
  /** Called once the source and outputs are open, before the first wait. */
  onReady?: () => void;
}

export async function runLive(spec: LiveRunSpec): Promise<RunResult> {
  const run = new CaptureRun(spec);
  const src = spec.source;
  const tick = spec.onTick ? setInterval(() => spec.onTick!(run, src), spec.tickMs ?? 250) : null;
  try {
    spec.onReady?.();
    let next = performance.now() + YIELD_MS;
    for (;;) {
      if (run.step()) {
        // Under load, batches come back to back: give timers and signals a turn every YIELD_MS.
        if (performance.now() < next) continue;
        await new Promise<void>((r) => setImmediate(r));
        next = performance.now() + YIELD_MS;
        continue;
      }
      if (spec.stop.signal || src.done) break;
      await src.wait(WAIT_MS);
      next = performance.now() + YIELD_MS;
    }
  } catch (e) {
    run.fail(e);
  } finally {
    if (tick) clearInterval(tick);
  }
  return run.end();
}
