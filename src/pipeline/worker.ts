/**
 * A worker thread's job (a piscina task): run one shard of a capture through a profile. Every
 * worker reads the whole capture and decodes every packet, but runs the per-flow stages only on
 * the packets its shard owns, so workers share nothing while they run and need no messages per
 * batch. It returns its part of the report; a stage that throws ends the shard with what it
 * processed so far and the failure, never a hang.
 */
import { pathToFileURL } from 'node:url';
import { nap, OutputError } from '../capture/outfile.js';
import type { PartSpec } from '../capture/part.js';
import type { InterfaceInfo } from '../capture/source.js';
import { Verdict } from '../packet/batch.js';
import { loadProfile } from './profile.js';
import { buildStages, loadStages } from './registry.js';
import { runCapture, type RunReport } from './run.js';
import { isOutOfMemory } from './memory.js';
import { Sharder } from './shard.js';

export interface ShardTask {
  file: string;
  profile: string;
  shard: number;
  shards: number;
  batchSize?: number;
  timing?: boolean;
  /** Flow log part file for this shard. */
  flowLog?: string;
  /** Packet part file for this shard: the packets it owns, as its stages left them (--write, --write-dropped). */
  part?: PartSpec;
  /** Shared: bit per packet, set when forwarded. */
  forwardedBits?: Uint8Array;
  /** Shared: [bytes read, packets read] per shard, for the progress bar. */
  progress?: Float64Array;
  /**
   * Shared stop control, [signal, workers arrived, cutoff]: the main thread stores a signal number
   * in [0]; every worker then proposes the packets it has read, waits for the others, and goes on
   * to the largest proposal, so all shards stop after the same packet (batches end at the same
   * packets in every worker: they read the same file in the same batches).
   */
  control?: Int32Array;
  /** Test hook: sleep this many ms after each batch (to interrupt a run in a test). */
  throttleMs?: number;
  /**
   * Test hook: at this packet, in this stage, throw (a stage bug) or exit the thread (a worker
   * that dies), to prove both are reported without a hang.
   */
  failAt?: { stage: string; packet: number; how?: 'throw' | 'exit' | 'oom' };
  /**
   * Test hook: modules (paths) to import before the profile's stages are built, so a test can run
   * a stage of its own in workers: the module calls registerStage from dist/pipeline/registry.js
   * (the registry this worker builds from) and the test's profile names that stage. The CLI never
   * sets it; nothing shipped registers a stage this way.
   */
  modules?: string[];
}

export interface ShardResult {
  shard: number;
  report: RunReport | null;
  failure: { message: string; stage: string; firstPacket: number; lastPacket: number; outOfMemory?: boolean; output?: { option: string; file: string; problem: string } } | null;
  /** Packets this worker read (all shards read every packet). */
  packetsRead: number;
  /**
   * The capture's interfaces when the worker ended (every worker reads the whole capture, so all
   * have the same list): the main thread writes the merged parts with it.
   */
  interfaces?: InterfaceInfo[];
}

/** Signal numbers in ShardTask.control[0]. */
export const SIGNAL_NUMBERS: Record<string, number> = { SIGINT: 2, SIGTERM: 15 };

export default async function runShard(task: ShardTask): Promise<ShardResult> {
  for (const m of task.modules ?? []) await import(pathToFileURL(m).href);
  const profile = loadProfile(task.profile);
  // Only the stages the profile uses (each worker thread loads its own modules).
  await loadStages(profile.types);
  const stages = buildStages(profile, task.shards);
  if (task.failAt) injectFailure(stages, task.failAt);
  const ctl = task.control ?? null;
  let read = 0;
  let arrived = false;
  let cutoff = Infinity;
  let stoppedBy: string | null = null;
  const arrive = (): void => {
    if (!ctl || arrived) return;
    arrived = true;
    const mine = Math.min(read, 0x7fffffff);
    for (let cur = Atomics.load(ctl, 2); cur < mine; cur = Atomics.load(ctl, 2)) {
      if (Atomics.compareExchange(ctl, 2, cur, mine) === cur) break;
    }
    Atomics.add(ctl, 1, 1);
    Atomics.notify(ctl, 1);
  };
  try {
    const { report, source } = runCapture({
      file: task.file,
      profile: profile.name,
      stages,
      batchSize: task.batchSize,
      timing: task.timing,
      flowLog: task.flowLog,
      part: task.part,
      sharder: new Sharder(task.shards, task.shard, stages),
      forwardedBits: task.forwardedBits,
      onBatch: (_b, src) => {
        if (task.progress) {
          task.progress[task.shard * 2] = src.position;
          task.progress[task.shard * 2 + 1] = src.packets;
        }
        read = src.packets;
        if (task.throttleMs) nap(task.throttleMs);
        if (ctl === null || Atomics.load(ctl, 0) === 0) return false;
        if (!arrived) {
          arrive();
          // Wait (at most 5 s: a worker that died never arrives) for every worker's proposal.
          const until = Date.now() + 5000;
          for (let n = Atomics.load(ctl, 1); n < task.shards && Date.now() < until; n = Atomics.load(ctl, 1)) Atomics.wait(ctl, 1, n, 100);
          cutoff = Atomics.load(ctl, 2);
        }
        if (read < cutoff) return false;
        stoppedBy = Atomics.load(ctl, 0) === SIGNAL_NUMBERS.SIGTERM ? 'SIGTERM' : 'SIGINT';
        return true;
      },
    });
    if (stoppedBy) report.interrupted = stoppedBy;
    arrive();
    return { shard: task.shard, report, failure: null, packetsRead: read, interfaces: source.interfaces.map((f) => ({ ...f })) };
  } catch (e) {
    arrive();
    const f = e as { stage?: string; firstPacket?: number; lastPacket?: number; message?: string; partial?: RunReport | null; outOfMemory?: boolean };
    const output = e instanceof OutputError ? { option: e.option, file: e.file, problem: e.problem } : undefined;
    return {
      shard: task.shard,
      report: f.partial ?? null,
      failure: { message: f.message ?? String(e), stage: f.stage ?? 'unknown', firstPacket: f.firstPacket ?? 0, lastPacket: f.lastPacket ?? 0, outOfMemory: f.outOfMemory ?? isOutOfMemory(e), ...(output ? { output } : {}) },
      packetsRead: read,
    };
  }
}

function injectFailure(stages: ReturnType<typeof buildStages>, at: NonNullable<ShardTask['failAt']>): void {
  const s = stages.find((x) => x.name === at.stage);
  if (!s) return;
  const original = s.process.bind(s);
  s.process = (b, self) => {
    for (let i = 0; i < b.count; i++) {
      if (b.num[i] !== at.packet || b.verdict[i] !== Verdict.PASS) continue;
      if (at.how === 'exit') process.exit(70);
      // A real refusal, not a made-up error: 4 PiB is past any x86-64 or arm64 address space.
      if (at.how === 'oom') new ArrayBuffer(2 ** 52);
      throw new Error(`injected failure at packet ${at.packet}`);
    }
    original(b, self);
  };
}
