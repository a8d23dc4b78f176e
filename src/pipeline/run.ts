/**
 * One run over a capture: source -> decode -> stages -> sinks (report, pcap writers, flow log).
 * The CLI commands are thin layers over this.
 */
import { openCapture } from '../capture/open.js';
import type { PacketSource } from '../capture/source.js';
import { SplitWriter } from '../capture/writer.js';
import { Batch, Verdict } from '../packet/batch.js';
import { TrafficSummary, type SummaryJson } from '../packet/summary.js';
import { FlowLog, flowRecord, type FlowRecord } from './flowlog.js';
import { Pipeline, StageFailure, type RunCounts } from './runner.js';
import type { Sharder } from './shard.js';
import type { Stage, StageReport } from './stage.js';

export interface RunSpec {
  file: string;
  profile: string;
  stages: Stage[];
  /** Write forwarded / dropped packets to these capture files. */
  write?: string;
  writeDropped?: string;
  /** Write the flow log (one line per flow) to this file. */
  flowLog?: string;
  /** Called for every flow as it ends. */
  onFlow?: (r: FlowRecord) => void;
  /** Called after every batch (progress, trace); return true to stop reading. */
  onBatch?: (b: Batch, src: PacketSource) => boolean | void;
  batchSize?: number;
  /** Time stages (default true). */
  timing?: boolean;
  /** As one of several workers: the shard this run owns. */
  sharder?: Sharder;
  /** Set bit (num - 1) for every forwarded packet this run owns (shared between workers). */
  forwardedBits?: Uint8Array;
}

export interface StageRow {
  name: string;
  calls: number;
  packets: number;
  dropped: number;
  ns: number;
  nsPerPacket: number;
  packetsPerCall: number;
  /** With workers, this stage ran on every packet in every worker (per-source state). */
  allPackets?: boolean;
}

export interface RunReport {
  file: string;
  format: string;
  profile: string;
  interfaces: { name: string; linkType: number; snapLen: number; at?: number }[];
  complete: boolean;
  error: { offset: number; message: string } | null;
  wallSeconds: number;
  packetsPerSecond: number;
  capture: SummaryJson;
  verdicts: RunCounts;
  stages: StageRow[];
  stageReports: Record<string, StageReport>;
  /** Each stage's configuration figures (kept once when workers' reports merge). */
  stageConfig: Record<string, StageReport>;
  flowsLogged?: number;
  /** Worker threads that ran the pipeline (absent: it ran inline). */
  workers?: number;
  /** Set by `replay --repeat`: which run this report is. */
  run?: { repeat: number; note: string };
}

export interface RunResult {
  report: RunReport;
  source: PacketSource;
}

export function runCapture(spec: RunSpec): RunResult {
  const src = openCapture(spec.file);
  const pipeline = new Pipeline(spec.stages, { timing: spec.timing ?? true, sharder: spec.sharder });
  const bits = spec.forwardedBits ?? null;
  const summary = new TrafficSummary();
  const split = new SplitWriter(src, spec.write, spec.writeDropped);
  const log = spec.flowLog ? new FlowLog(spec.flowLog) : null;
  if (log || spec.onFlow) {
    for (const s of spec.stages) {
      s.watchFlows?.((t, e, why) => {
        const r = flowRecord(t, e, why);
        log?.add(r);
        spec.onFlow?.(r);
      });
    }
  }
  const b = new Batch(spec.batchSize);
  const t0 = process.hrtime.bigint();
  const report = (): RunReport => {
    const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const r: RunReport = {
      file: spec.file,
      format: src.format,
      profile: spec.profile,
      interfaces: src.interfaces.map((f) => ({ name: f.name, linkType: f.linkType, snapLen: f.snapLen, ...(f.at === undefined ? {} : { at: f.at }) })),
      complete: src.error === null,
      error: src.error ? { offset: src.error.offset, message: src.error.message } : null,
      wallSeconds,
      packetsPerSecond: wallSeconds > 0 ? summary.packets / wallSeconds : 0,
      capture: summary.toJSON(),
      verdicts: pipeline.counts(),
      stages: pipeline.runtime.map((x, k) => ({
        ...x, nsPerPacket: x.packets ? x.ns / x.packets : 0, packetsPerCall: x.calls ? x.packets / x.calls : 0,
        ...(k > 0 && spec.stages[k - 1]!.seesAllPackets ? { allPackets: true } : {}),
      })),
      stageReports: pipeline.reports(),
      stageConfig: pipeline.configs(),
    };
    if (log) r.flowsLogged = log.flows;
    return r;
  };
  try {
    while (src.fill(b) > 0) {
      pipeline.process(b);
      summary.add(b, pipeline.owned());
      if (split.active) for (let i = 0; i < b.count; i++) split.write(b, i, b.verdict[i] === Verdict.PASS);
      if (bits) {
        // Packets of other shards are not PASS here (the pipeline hid them), so only ours count.
        for (let i = 0; i < b.count; i++) {
          if (b.verdict[i] !== Verdict.PASS) continue;
          const k = b.num[i]! - 1;
          if ((k >>> 3) < bits.length) Atomics.or(bits, k >>> 3, 1 << (k & 7));
        }
      }
      const stop = spec.onBatch?.(b, src) === true;
      src.release(b);
      if (stop) break;
    }
    pipeline.finish();
  } catch (e) {
    // A stage failed: what was processed before it is still reported.
    if (e instanceof StageFailure) e.partial = report();
    throw e;
  } finally {
    src.close();
    split.close();
    log?.close();
  }
  return { report: report(), source: src };
}
