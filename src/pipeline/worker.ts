/**
 * A worker thread's job (a piscina task): run one shard of a capture through a profile. Every
 * worker reads the whole capture and decodes every packet, but runs the per-flow stages only on
 * the packets its shard owns, so workers share nothing while they run and need no messages per
 * batch. It returns its part of the report; a stage that throws ends the shard with what it
 * processed so far and the failure, never a hang.
 */
import { loadProfile } from './profile.js';
import { buildStages } from './registry.js';
import { runCapture, type RunReport } from './run.js';
import { Sharder } from './shard.js';
import '../stages/index.js';

export interface ShardTask {
  file: string;
  profile: string;
  shard: number;
  shards: number;
  batchSize?: number;
  timing?: boolean;
  /** Flow log part file for this shard. */
  flowLog?: string;
  /** Shared: bit per packet, set when forwarded. */
  forwardedBits?: Uint8Array;
  /** Shared: [bytes read, packets read] per shard, for the progress bar. */
  progress?: Float64Array;
  /**
   * Test hook: at this packet, in this stage, throw (a stage bug) or exit the thread (a worker
   * that dies), to prove both are reported without a hang.
   */
  failAt?: { stage: string; packet: number; how?: 'throw' | 'exit' };
}

export interface ShardResult {
  shard: number;
  report: RunReport | null;
  failure: { message: string; stage: string; firstPacket: number; lastPacket: number } | null;
}

export default function runShard(task: ShardTask): ShardResult {
  const profile = loadProfile(task.profile);
  const stages = buildStages(profile, task.shards);
  if (task.failAt) injectFailure(stages, task.failAt);
  try {
    const { report } = runCapture({
      file: task.file,
      profile: profile.name,
      stages,
      batchSize: task.batchSize,
      timing: task.timing,
      flowLog: task.flowLog,
      sharder: new Sharder(task.shards, task.shard),
      forwardedBits: task.forwardedBits,
      onBatch: (_b, src) => {
        if (task.progress) {
          task.progress[task.shard * 2] = src.position;
          task.progress[task.shard * 2 + 1] = src.packets;
        }
      },
    });
    return { shard: task.shard, report, failure: null };
  } catch (e) {
    const f = e as { stage?: string; firstPacket?: number; lastPacket?: number; message?: string; partial?: RunReport | null };
    return {
      shard: task.shard,
      report: f.partial ?? null,
      failure: { message: f.message ?? String(e), stage: f.stage ?? 'unknown', firstPacket: f.firstPacket ?? 0, lastPacket: f.lastPacket ?? 0 },
    };
  }
}

function injectFailure(stages: ReturnType<typeof buildStages>, at: NonNullable<ShardTask['failAt']>): void {
  const s = stages.find((x) => x.name === at.stage);
  if (!s) return;
  const original = s.process.bind(s);
  s.process = (b, self) => {
    for (let i = 0; i < b.count; i++) {
      if (b.num[i] !== at.packet || b.verdict[i] !== 0) continue;
      if (at.how === 'exit') process.exit(70);
      throw new Error(`injected failure at packet ${at.packet}`);
    }
    original(b, self);
  };
}
