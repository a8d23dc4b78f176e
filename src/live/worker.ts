/** A live worker thread: one AF_PACKET ring socket in the fanout group, its own pipeline. */
import { parentPort, workerData } from 'node:worker_threads';
import { stageMerging } from '../pipeline/merge.js';
import { loadProfile } from '../pipeline/profile.js';
import { buildStages } from '../pipeline/registry.js';
import type { StopFlag } from '../pipeline/run.js';
import '../stages/index.js';
import { flowFigures } from '../cli/live.js';
import { PacketRingSource } from './packet.js';
import { runLive } from './run.js';
import { LiveError } from './source.js';
import type { WorkerMessage, WorkerTask } from './workers.js';

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
    onTick: (run, s) => {
      const p = run.pipeline;
      send({ type: 'tick', tick: { packets: s.packets, counts: p.counts(), runtime: p.runtime.map((x) => ({ name: x.name, packets: x.packets, ns: x.ns })), flows: flowFigures(p.reports()), kernelDrops: s.kernel().drops } });
    },
  });
  const report = { ...result.report, merging: stageMerging(stages) };
  send({ type: 'done', report, kernel: src.kernel() });
  port.close();
}

main().catch((e) => {
  send({ type: 'error', message: (e as Error)?.stack ?? String(e), hint: '', live: false });
  port.close();
});
