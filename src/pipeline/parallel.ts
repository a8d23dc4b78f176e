/**
 * Running a capture on several worker threads. Each worker is one coarse piscina task: it reads
 * the whole capture, decodes every packet and runs the per-flow stages on the packets its shard
 * owns (RSS-style, by the symmetric flow hash). Nothing crosses threads per batch, so adding
 * workers changes no verdict and memory stays bounded (each worker streams the file in its own
 * few chunks). The main thread merges the parts into one report.
 *
 * Measured before choosing (see the issue note): piscina costs 22-33 us per task, nothing for one
 * task per worker per run; a per-batch task or message would have cost more than the stages.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { openCapture } from '../capture/open.js';
import { SplitWriter } from '../capture/writer.js';
import { Batch } from '../packet/batch.js';
import { addSummaries } from '../packet/summary.js';
import { FLOW_LOG_HEADER } from './flowlog.js';
import type { RunCounts } from './runner.js';
import type { RunReport, StageRow } from './run.js';
import type { StageReport } from './stage.js';
import type { ShardResult, ShardTask } from './worker.js';

/** The compiled worker: tests run the TypeScript sources, but a worker thread needs dist/. */
const WORKER = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'pipeline', 'worker.js');

/** Below this size a capture runs inline: starting workers would cost more than they save. */
export const PARALLEL_MIN_BYTES = 256 << 20;

/**
 * The default number of workers: what was fastest where it was measured (bench/workers.js, 2
 * vCPUs). Every worker decodes the whole capture, so the speed-up is capped by decoding's share:
 * 2 workers ran a 310 MB capture 1.5x faster on a warm pool, and ~1.07x from a cold start (a new
 * pool costs ~0.6 s), so captures below 256 MiB run inline and bigger ones on one worker per core
 * (at most 8).
 */
export function defaultWorkers(fileSize: number, cores = availableParallelism()): number {
  return cores < 2 || fileSize < PARALLEL_MIN_BYTES ? 1 : Math.min(cores, 8);
}

export interface ParallelSpec {
  file: string;
  /** Profile name or path, as the CLI got it (each worker loads it itself). */
  profile: string;
  workers: number;
  batchSize?: number;
  timing?: boolean;
  write?: string;
  writeDropped?: string;
  flowLog?: string;
  onProgress?: (position: number, size: number, packets: number) => void;
  /** Test hook, passed to the workers. */
  failAt?: ShardTask['failAt'];
  /** Run on this pool (at least `workers` threads) instead of starting one; the caller destroys it. */
  pool?: Piscina;
}

/** A pool of worker threads for runParallel, for callers that run many captures. */
export function workerPool(threads: number): Piscina {
  return new Piscina({ filename: WORKER, minThreads: threads, maxThreads: threads, idleTimeout: 1000 });
}

export interface ParallelResult {
  report: RunReport;
  /** Bit (num - 1) set for every forwarded packet. */
  forwarded: Uint8Array;
  /** Workers that failed, with what failed; the report covers what every worker processed. */
  failures: ShardResult['failure'][];
}

export class WorkerFailure extends Error {
  constructor(message: string, readonly partial: RunReport | null) {
    super(message);
    this.name = 'WorkerFailure';
  }
}

export async function runParallel(spec: ParallelSpec): Promise<ParallelResult> {
  if (!existsSync(WORKER)) throw new Error(`worker script ${WORKER} is missing: run "npm run build"`);
  const file = resolve(spec.file);
  // Open once here: a bad file fails before any thread starts, with the reader's own message.
  openCapture(file).close();
  const size = statSync(file).size;
  const n = spec.workers;
  // One bit per packet: a record takes at least 16 bytes (pcap) or 32 (pcapng).
  const forwarded = new Uint8Array(new SharedArrayBuffer(Math.ceil(size / 16 / 8) + 1));
  const progress = new Float64Array(new SharedArrayBuffer(n * 2 * 8));
  const profile = existsSync(spec.profile) ? resolve(spec.profile) : spec.profile;
  const pool = spec.pool ?? workerPool(n);
  const t0 = process.hrtime.bigint();
  const timer = spec.onProgress ? setInterval(() => {
    let pos = Infinity; let packets = 0;
    for (let k = 0; k < n; k++) { pos = Math.min(pos, progress[k * 2]!); packets = Math.max(packets, progress[k * 2 + 1]!); }
    spec.onProgress!(pos, size, packets);
  }, 250) : null;
  const parts = spec.flowLog ? Array.from({ length: n }, (_, k) => `${spec.flowLog}.part${k}`) : [];
  let results: ShardResult[];
  try {
    results = await Promise.all(Array.from({ length: n }, (_, k) => {
      const task: ShardTask = {
        file, profile, shard: k, shards: n, batchSize: spec.batchSize, timing: spec.timing,
        flowLog: parts[k], forwardedBits: forwarded, progress, failAt: spec.failAt,
      };
      return (pool.run(task) as Promise<ShardResult>).catch((e: Error): ShardResult => ({
        shard: k, report: null,
        failure: { message: `worker ${k} died: ${e?.message ?? String(e)}`, stage: 'unknown', firstPacket: 0, lastPacket: 0 },
      }));
    }));
  } finally {
    if (timer) clearInterval(timer);
    if (!spec.pool) await pool.destroy();
  }
  const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (spec.flowLog) mergeFlowLogs(spec.flowLog, parts);
  const reports = results.map((r) => r.report).filter((r): r is RunReport => r !== null);
  const failures = results.map((r) => r.failure).filter((f) => f !== null);
  if (reports.length === 0) throw new WorkerFailure(failures.map((f) => f!.message).join('; '), null);
  const report = mergeReports(reports, wallSeconds);
  if (failures.length > 0) {
    const f = failures[0]!;
    const what = f.firstPacket ? `${f.message} (shard ${results.find((r) => r.failure === f)!.shard} of ${n})` : f.message;
    throw new WorkerFailure(what, report);
  }
  if (spec.write || spec.writeDropped) splitByVerdict(file, forwarded, spec.write, spec.writeDropped);
  return { report, forwarded, failures };
}

/** Add two stage reports key by key. */
function addReports(a: StageReport, b: StageReport): StageReport {
  const out: StageReport = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const x = out[k];
    if (typeof v === 'number') out[k] = (typeof x === 'number' ? x : 0) + v;
    else out[k] = addReports(typeof x === 'object' ? x : {}, v);
  }
  return out;
}

function addCounts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/**
 * One report from the workers' parts. Capture summaries, verdicts and stage costs are sums (each
 * worker counts the packets it owns; ns is CPU time over all
 * workers); stage figures are summed, except for stages that see every packet in every worker,
 * whose figures are one worker's (each worker's copy saw the whole capture).
 */
export function mergeReports(parts: RunReport[], wallSeconds: number): RunReport {
  const first = parts[0]!;
  const verdicts: RunCounts = { packets: 0, forwarded: 0, dropped: 0, malformed: 0, dropsByReason: {}, malformedByReason: {} };
  for (const p of parts) {
    verdicts.packets += p.verdicts.packets;
    verdicts.forwarded += p.verdicts.forwarded;
    verdicts.dropped += p.verdicts.dropped;
    verdicts.malformed += p.verdicts.malformed;
    verdicts.dropsByReason = addCounts(verdicts.dropsByReason, p.verdicts.dropsByReason);
    verdicts.malformedByReason = addCounts(verdicts.malformedByReason, p.verdicts.malformedByReason);
  }
  const stages: StageRow[] = first.stages.map((s, k) => {
    const calls = parts.reduce((a, p) => a + p.stages[k]!.calls, 0);
    const packets = parts.reduce((a, p) => a + p.stages[k]!.packets, 0);
    const ns = parts.reduce((a, p) => a + p.stages[k]!.ns, 0);
    return {
      ...s, calls, packets, ns,
      dropped: parts.reduce((a, p) => a + p.stages[k]!.dropped, 0),
      nsPerPacket: packets ? ns / packets : 0,
      packetsPerCall: calls ? packets / calls : 0,
    };
  });
  const stageReports: Record<string, StageReport> = {};
  for (const name of Object.keys(first.stageReports)) {
    const all = first.stages.find((s) => s.name === name)?.allPackets === true;
    stageReports[name] = all ? first.stageReports[name]! : parts.reduce((a, p) => addReports(a, p.stageReports[name] ?? {}), {} as StageReport);
  }
  const capture = parts.slice(1).reduce((a, p) => addSummaries(a, p.capture), first.capture);
  const merged: RunReport = {
    ...first,
    stageConfig: first.stageConfig,
    capture,
    wallSeconds,
    packetsPerSecond: wallSeconds > 0 ? capture.packets / wallSeconds : 0,
    verdicts,
    stages,
    stageReports,
    workers: parts.length,
  };
  if (parts.some((p) => p.flowsLogged !== undefined)) merged.flowsLogged = parts.reduce((a, p) => a + (p.flowsLogged ?? 0), 0);
  return merged;
}

function mergeFlowLogs(path: string, parts: string[]): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, FLOW_LOG_HEADER + '\n');
    for (const part of parts) {
      if (!existsSync(part)) continue;
      const text = readFileSync(part, 'utf8');
      const body = text.slice(text.indexOf('\n') + 1);
      if (body) writeSync(fd, body);
      rmSync(part);
    }
  } finally {
    closeSync(fd);
  }
}

/** Re-read the capture and write each packet where its verdict bit says. */
function splitByVerdict(file: string, bits: Uint8Array, write?: string, writeDropped?: string): void {
  const src = openCapture(file);
  const split = new SplitWriter(src, write, writeDropped);
  const b = new Batch();
  try {
    while (src.fill(b) > 0) {
      for (let i = 0; i < b.count; i++) {
        const k = b.num[i]! - 1;
        split.write(b, i, ((bits[k >>> 3]! >> (k & 7)) & 1) === 1);
      }
      src.release(b);
    }
  } finally {
    src.close();
    split.close();
  }
}
