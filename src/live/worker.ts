/** A live worker thread: one AF_PACKET ring socket in the fanout group, its own pipeline. */
import { parentPort, workerData } from 'node:worker_threads';
import { stageMerging, type Merge, type MergeRules } from '../pipeline/merge.js';
import { loadProfile } from '../pipeline/profile.js';
import { buildStages } from '../pipeline/registry.js';
import { isOutOfMemory } from '../pipeline/memory.js';
import type { StopFlag } from '../pipeline/run.js';
import '../stages/index.js';
import { PacketRingSource } from './packet.js';
import { runLive } from './run.js';
import { LiveError } from './source.js';
import { liveTick, type WorkerMessage, type WorkerTask } from './workers.js';

const task = workerData as WorkerTask;
const port = parentPort!;
const send = (m: WorkerMessage): void => port.postMessage(m);

async function main(): Promise<void> {
  const profile = loadProfile(task.profile);
  const stages = buildStages(profile);
  let src: PacketRingSource;
  try {
    src = new PacketRingSource({ iface: task.iface, blockSize: task.blockSize, blocks: task.blocks, fanoutGroup: task.fanoutGroup });
  } catch (e) {
    send({ type: 'error', message: (e as Error).message, hint: e instanceof LiveError ? e.hint : '', live: e instanceof LiveError });
    port.close();
    return;
  }
  const stop: StopFlag = { signal: null };
  port.on('message', (m: string) => {
    if (m === 'stop') { stop.signal ??= 'SIGINT'; src.wake(); }
    if (m === 'end') src.end();
  });
  const result = await runLive({
    file: task.iface, source: src, stop, profile: profile.name, stages, batchSize: task.batchSize,
    onReady: () => send({ type: 'ready' }),
    onTick: (run, s) => send({ type: 'tick', tick: liveTick(run, s) }),
  });
  // A peak (conntrack's peakEntries) cannot be merged exactly here: replay's workers sample their
  // flow counts at the same packet numbers, but each live worker numbers only its own packets, so
  // the samples are not simultaneous. The merged figure is the sum of the workers' peaks: an upper
  // bound (they need not peak at the same moment), the safe side for sizing a table.
  const merging = stageMerging(stages);
  for (const m of Object.values(merging)) {
    delete m.series;
    if (m.rules) m.rules = peakAsSum(m.rules) as MergeRules;
  }
  const report = { ...result.report, merging };
  send({ type: 'done', report, kernel: src.kernel(), stopReason: src.stopReason });
  port.close();
}

main().catch((e) => {
  // Out of memory is the user's to fix (a limit, a capacity): its one line, not a stack trace.
  const oom = isOutOfMemory(e);
  send({ type: 'error', message: oom ? (e as Error).message : (e as Error)?.stack ?? String(e), hint: '', live: false, outOfMemory: oom });
  port.close();
});

function peakAsSum(rules: Merge | MergeRules): Merge | MergeRules {
  if (typeof rules === 'string') return rules === 'peak' ? 'sum' : rules;
  const out: Record<string, Merge | MergeRules> = {};
  for (const [k, v] of Object.entries(rules)) out[k] = peakAsSum(v);
  return out;
}
