/**
 * One run over a capture: source -> decode -> stages -> sinks (report, pcap writers, flow log).
 * The CLI commands are thin layers over this.
 */
import { openCapture } from '../capture/open.js';
import type { PacketSource } from '../capture/source.js';
import { OutputError, type OutputFile } from '../capture/outfile.js';
import { PartWriter, type PartSpec } from '../capture/part.js';
import { SplitWriter } from '../capture/writer.js';
import { Batch, Verdict } from '../packet/batch.js';
import { TrafficSummary, type SummaryJson } from '../packet/summary.js';
import { FlowLog, flowRecord, type FlowRecord } from './flowlog.js';
import { stageMerging, type StageMerging } from './merge.js';
import { Pipeline, StageFailure, type RunCounts } from './runner.js';
import type { Sharder } from './shard.js';
import type { Stage, StageReport } from './stage.js';
import { commas } from '../packet/format.js';

export interface RunSpec {
  file: string;
  /** Read this source (already open: a live tap) instead of opening `file`. */
  source?: PacketSource;
  profile: string;
  stages: Stage[];
  /** Write forwarded / dropped packets to these capture files (paths, or outputs already open). */
  write?: string | OutputFile;
  writeDropped?: string | OutputFile;
  /** Write the flow log (one line per flow) to this file. */
  flowLog?: string | OutputFile;
  /** Set by a signal handler: the run stops at the next batch and reports what it processed. */
  stop?: StopFlag;
  /** Called once the input is open and before any packet is read: the caller opens its own outputs (--json). */
  beforeRead?: () => void;
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
  /** As a worker: write the packets this run owns, as the stages left them, to this part file. */
  part?: PartSpec;
}

export interface StageRow {
  name: string;
  calls: number;
  packets: number;
  dropped: number;
  ns: number;
  nsPerPacket: number;
  packetsPerCall: number;
  /**
   * With workers, this row ran on every packet in every worker (decode, and stages with
   * per-source state); merged, its packets count each packet once per worker.
   */
  allPackets?: boolean;
  /** The stage emulates the application's side (Stage.emulation): not dataplane cost. */
  emulation?: boolean;
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
  /** The run was stopped by this signal: the report covers the packets before it. */
  interrupted?: string;
  /** Set by `replay --repeat`: which run this report is. */
  run?: { repeat: number; note: string };
  /**
   * Only in a worker's part of a report, for mergeReports (which drops it): how each stage's
   * figures merge, and the series behind its peaks.
   */
  merging?: Record<string, StageMerging>;
}

export interface RunResult {
  report: RunReport;
  source: PacketSource;
}

export function runCapture(spec: RunSpec): RunResult {
  const run = new CaptureRun(spec, false);
  try {
    while (run.step());
  } catch (e) {
    run.fail(e);
  }
  return run.end();
}

/** Time between two yields to the event loop in runCaptureAsync. */
export const YIELD_MS = 50;

/**
 * runCapture that gives the event loop a turn every YIELD_MS, so a signal handler can set
 * `spec.stop` and the run ends at the next batch with the report of what it processed. Measured on
 * a 1M-packet gen capture: a yield (one setImmediate) costs ~4 us, 0.01% at one per 50 ms; the
 * clock reads ~0.1 ns a packet (0.04%); end to end, CPU time against runCapture differed by
 * +0.15% on average over 5 runs of 15 rounds each (-1.6% to +1.3%: the machine's noise).
 */
export async function runCaptureAsync(spec: RunSpec): Promise<RunResult> {
  // The file is read ahead on libuv's thread pool: this loop waits for a read when it must.
  const run = new CaptureRun(spec, true);
  try {
    let next = performance.now() + YIELD_MS;
    // The clock is read every 4th batch: ~90 ns each time, 0.1 ns a packet at 256 packets a batch.
    for (let n = 1; ; n++) {
      if (!run.step()) {
        const read = run.waitForRead();
        if (read === null) break;
        await read;
        next = performance.now() + YIELD_MS;
        continue;
      }
      if ((n & 3) !== 0 || performance.now() < next) continue;
      await new Promise<void>((r) => setImmediate(r));
      next = performance.now() + YIELD_MS;
    }
  } catch (e) {
    run.fail(e);
  }
  return run.end();
}

/** What can stop a run early: a handler sets `signal` (SIGINT, SIGTERM) and the run ends at the next batch. */
export interface StopFlag {
  signal: string | null;
}

/**
 * One run, a batch at a time: open everything, step until done, end (close, report). Exported for
 * a live source, whose `step` returns false whenever no packet is ready yet (`src.done` says
 * whether more may come): the live loop waits and steps again.
 */
export class CaptureRun {
  private readonly src: PacketSource;
  /** Read-only outside: a live status line reads its counts between batches. */
  readonly pipeline: Pipeline;
  private readonly bits: Uint8Array | null;
  private readonly summary: TrafficSummary;
  private readonly split: SplitWriter;
  private readonly log: FlowLog | null;
  private readonly part: PartWriter | null;
  private readonly b: Batch;
  private readonly t0 = process.hrtime.bigint();
  private failure: unknown = null;
  private interrupted: string | null = null;

  /** readAhead: the caller waits on waitForRead() when step() returns false (runCaptureAsync). */
  constructor(private readonly spec: RunSpec, readAhead = false) {
    // Every output is opened (and so checked) after the input and before any packet is read.
    this.src = spec.source ?? openCapture(spec.file, readAhead ? { readAhead } : undefined);
    try {
      spec.beforeRead?.();
      this.split = new SplitWriter(this.src, spec.write, spec.writeDropped);
      try {
        this.log = spec.flowLog ? new FlowLog(spec.flowLog) : null;
      } catch (e) {
        this.split.close();
        throw e;
      }
      try {
        this.part = spec.part ? new PartWriter(spec.part) : null;
      } catch (e) {
        this.split.close();
        this.log?.close();
        throw e;
      }
    } catch (e) {
      this.src.close();
      throw e;
    }
    this.pipeline = new Pipeline(spec.stages, { timing: spec.timing ?? true, sharder: spec.sharder });
    this.bits = spec.forwardedBits ?? null;
    const log = this.log;
    if (log || spec.onFlow) {
      for (const s of spec.stages) {
        s.watchFlows?.((t, e, why) => {
          const r = flowRecord(t, e, why);
          log?.add(r);
          spec.onFlow?.(r);
        });
      }
    }
    this.b = new Batch(spec.batchSize);
    this.summary = new TrafficSummary(spec.sharder ? { me: spec.sharder.me, of: spec.sharder.shards } : null);
  }

  /** One batch: false when the input is done or the run was asked to stop. */
  step(): boolean {
    const { src, b, pipeline, split, part, bits, spec } = this;
    if (spec.stop?.signal) { this.interrupted = spec.stop.signal; return false; }
    if (src.fill(b) === 0) return false;
    pipeline.process(b, this.summary);
    if (split.active) for (let i = 0; i < b.count; i++) split.write(b, i, b.verdict[i] === Verdict.PASS);
    if (part) {
      // Packets of other shards are FOREIGN here; every other packet is this worker's to write.
      for (let i = 0; i < b.count; i++) {
        const v = b.verdict[i];
        if (v !== Verdict.FOREIGN) part.write(b, i, v === Verdict.PASS);
      }
    }
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
    return !stop;
  }

  /**
   * After step() returned false: a promise to wait for before stepping again (the source is still
   * reading the next part of the file), or null when the run is over. The source has a read to
   * wait for only when its fill() just returned 0 for it, so a stop (a signal, onBatch) gives null.
   */
  waitForRead(): Promise<void> | null {
    return this.src.waitForRead?.() ?? null;
  }

  fail(e: unknown): void {
    this.failure = e;
  }

  /**
   * Finish the stages (their flows go to the log) unless a stage failed, close every output, and
   * return the report; or throw the failure (a stage's, or an output's) with the report of what
   * was processed before it attached.
   */
  end(): RunResult {
    if (this.failure === null) {
      try { this.pipeline.finish(); } catch (e) { this.failure = e; }
    }
    this.src.close();
    try { this.split.close(); } catch (e) { this.failure ??= e; }
    try { this.log?.close(); } catch (e) { this.failure ??= e; }
    try { this.part?.close(); } catch (e) { this.failure ??= e; }
    const e = this.failure;
    if (e instanceof StageFailure || e instanceof OutputError) {
      // What was processed before the failure is still reported.
      const r = this.report();
      if (e instanceof OutputError) {
        this.split.explain(e);
        if (e.option === '--flows' && this.log) e.note = `it holds the first ${commas(this.log.flushed)} flows`;
      }
      e.partial = r;
    }
    if (e !== null) throw e;
    return { report: this.report(), source: this.src };
  }

  private report(): RunReport {
    const { src, spec, summary, pipeline, log } = this;
    const wallSeconds = Number(process.hrtime.bigint() - this.t0) / 1e9;
    const r: RunReport = {
      file: src.path,
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
        ...(k > 0 && spec.stages[k - 1]!.emulation ? { emulation: true } : {}),
      })),
      stageReports: pipeline.reports(),
      stageConfig: pipeline.configs(),
      ...(spec.sharder ? { merging: stageMerging(spec.stages) } : {}),
    };
    // Only flows that surely reached the file count as logged.
    if (log) r.flowsLogged = this.failure instanceof OutputError && this.failure.option === '--flows' ? log.flushed : log.flows;
    if (this.interrupted) r.interrupted = this.interrupted;
    return r;
  }
}
