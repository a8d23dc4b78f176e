/**
 * Running a capture on several worker threads. Each worker is one coarse piscina task: it reads
 * the whole capture, decodes every packet and runs the per-flow stages on the packets its shard
 * owns (RSS-style, by the symmetric flow hash). Nothing crosses threads per batch, so adding
 * workers changes no verdict and memory stays bounded (each worker streams the file in its own
 * few chunks). The main thread merges the parts into one report.
 *
 * Measured before choosing (bench/workers.js): a piscina task costs ~67 us and a MessagePort round
 * trip ~38 us; one task per worker per run costs nothing, a task or message per batch would have
 * cost more than the stages.
 */
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { openCapture } from '../capture/open.js';
import { OutputError, outputFile, type OutputFile } from '../capture/outfile.js';
import { PartReader, type PartSpec } from '../capture/part.js';
import type { PacketSource } from '../capture/source.js';
import { SplitWriter } from '../capture/writer.js';
import { Batch } from '../packet/batch.js';
import { addSummaries } from '../packet/summary.js';
import { FLOW_LOG_HEADER } from './flowlog.js';
import { mergeStageReports } from './merge.js';
import { isOutOfMemory } from './memory.js';
import { WorkerFailure, type RunCounts } from './runner.js';
import type { RunReport, StageRow, StopFlag } from './run.js';
import type { StageReport } from './stage.js';
import { SIGNAL_NUMBERS, type ShardResult, type ShardTask } from './worker.js';

// Kept importable from here; they live where the CLI can reach them without loading piscina.
export { WorkerFailure } from './runner.js';
export { defaultWorkers, PARALLEL_MIN_BYTES } from './threads.js';

/** The compiled worker: tests run the TypeScript sources, but a worker thread needs dist/. */
const WORKER = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'pipeline', 'worker.js');

export interface ParallelSpec {
  file: string;
  /** Profile name or path, as the CLI got it (each worker loads it itself). */
  profile: string;
  workers: number;
  batchSize?: number;
  timing?: boolean;
  write?: string | OutputFile;
  writeDropped?: string | OutputFile;
  flowLog?: string | OutputFile;
  onProgress?: (position: number, size: number, packets: number) => void;
  /** Set by a signal handler: every worker stops after the same packet and the run reports what they processed. */
  stop?: StopFlag;
  /** Test hook, passed to the workers: sleep this many ms after each batch. */
  throttleMs?: number;
  /** Called once the input is open and before any thread starts: the caller opens its own outputs (--json). */
  beforeRead?: () => void;
  /** Test hook, passed to the workers. */
  failAt?: ShardTask['failAt'];
  /** Run on this pool (at least `workers` threads) instead of starting one; the caller destroys it. */
  pool?: Piscina;
  /** Test hook, passed to the workers: modules to import before building stages (see ShardTask.modules). */
  modules?: string[];
  /**
   * Fill ParallelResult.forwarded, a bit per packet (for tests that compare verdicts packet by
   * packet). Off by default: it costs an atomic write per forwarded packet in every worker.
   */
  verdictBits?: boolean;
}

/** A pool of worker threads for runParallel, for callers that run many captures. */
export function workerPool(threads: number): Piscina {
  return new Piscina({ filename: WORKER, minThreads: threads, maxThreads: threads, idleTimeout: 1000 });
}

export interface ParallelResult {
  report: RunReport;
  /** With spec.verdictBits: bit (num - 1) set for every forwarded packet (else empty). */
  forwarded: Uint8Array;
  /** Workers that failed, with what failed; the report covers what every worker processed. */
  failures: ShardResult['failure'][];
}

export async function runParallel(spec: ParallelSpec): Promise<ParallelResult> {
  if (!existsSync(WORKER)) throw new Error(`worker script ${WORKER} is missing: run "npm run build"`);
  const file = resolve(spec.file);
  // Open once here: a bad file fails before any thread starts, with the reader's own message.
  openCapture(file).close();
  const size = statSync(file).size;
  const n = spec.workers;
  // Every output is opened (and so checked) before any thread starts or any packet is read.
  const outs: OutputFile[] = [];
  let fwdOut: OutputFile | undefined;
  let dropOut: OutputFile | undefined;
  let flowOut: OutputFile | undefined;
  spec.beforeRead?.();
  try {
    if (spec.write !== undefined) outs.push(fwdOut = outputFile('--write', spec.write));
    if (spec.writeDropped !== undefined) outs.push(dropOut = outputFile('--write-dropped', spec.writeDropped));
    if (spec.flowLog !== undefined) outs.push(flowOut = outputFile('--flows', spec.flowLog));
  } catch (e) {
    for (const o of outs) o.close();
    throw e;
  }
  // The workers' parts (flow log; packets for --write and --write-dropped, one part per worker
  // for both): next to their output when it is a regular file, else (standard output, a device)
  // in a temporary folder. Removed however the run ends (a second signal excepted).
  const regular = (o?: OutputFile): o is OutputFile => o !== undefined && !o.stdout && isRegular(o.path);
  const anchor = regular(fwdOut) ? fwdOut : regular(dropOut) ? dropOut : undefined;
  const flowsNextTo = regular(flowOut);
  const needTmp = (flowOut !== undefined && !flowsNextTo) || ((fwdOut || dropOut) !== undefined && !anchor);
  const tmp = needTmp ? mkdtempSync(join(tmpdir(), 'dplab-parts-')) : null;
  const parts = flowOut ? Array.from({ length: n }, (_, k) => (flowsNextTo ? `${flowOut!.path}.part${k}` : join(tmp!, `flows${k}`))) : [];
  const packetParts = fwdOut || dropOut ? Array.from({ length: n }, (_, k): PartSpec => ({
    path: anchor ? `${anchor.path}.part${k}` : join(tmp!, `packets${k}`),
    option: (anchor ?? fwdOut ?? dropOut)!.option,
    forwarded: fwdOut !== undefined,
    dropped: dropOut !== undefined,
  })) : [];
  try {
    return await runShards(spec, file, size, parts, packetParts, fwdOut, dropOut, flowOut);
  } finally {
    for (const part of parts) rmSync(part, { force: true });
    for (const part of packetParts) rmSync(part.path, { force: true });
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    for (const o of outs) try { o.close(); } catch { /* a close that fails after a failure: the first is reported */ }
  }
}

function isRegular(path: string): boolean {
  try { return statSync(path).isFile(); } catch { return false; }
}

async function runShards(spec: ParallelSpec, file: string, size: number, parts: string[], packetParts: PartSpec[],
  fwdOut?: OutputFile, dropOut?: OutputFile, flowOut?: OutputFile): Promise<ParallelResult> {
  const n = spec.workers;
  // One bit per packet: a record takes at least 16 bytes (pcap) or 32 (pcapng).
  const forwarded = new Uint8Array(new SharedArrayBuffer(spec.verdictBits ? Math.ceil(size / 16 / 8) + 1 : 0));
  const progress = new Float64Array(new SharedArrayBuffer(n * 2 * 8));
  const control = new Int32Array(new SharedArrayBuffer(3 * 4));
  const profile = existsSync(spec.profile) ? resolve(spec.profile) : spec.profile;
  const pool = spec.pool ?? workerPool(n);
  const t0 = process.hrtime.bigint();
  const timer = spec.onProgress ? setInterval(() => {
    let pos = Infinity; let packets = 0;
    for (let k = 0; k < n; k++) { pos = Math.min(pos, progress[k * 2]!); packets = Math.max(packets, progress[k * 2 + 1]!); }
    spec.onProgress!(pos, size, packets);
  }, 250) : null;
  // A signal handler sets spec.stop; the workers see it through the shared control word.
  const stopTimer = spec.stop ? setInterval(() => {
    const sig = spec.stop!.signal;
    if (sig && Atomics.load(control, 0) === 0) Atomics.store(control, 0, SIGNAL_NUMBERS[sig] ?? 2);
  }, 20) : null;
  let results: ShardResult[];
  try {
    results = await Promise.all(Array.from({ length: n }, (_, k) => {
      const task: ShardTask = {
        file, profile, shard: k, shards: n, batchSize: spec.batchSize, timing: spec.timing,
        flowLog: parts[k], part: packetParts[k], forwardedBits: spec.verdictBits ? forwarded : undefined, progress, failAt: spec.failAt,
        control, throttleMs: spec.throttleMs, modules: spec.modules,
      };
      return (pool.run(task) as Promise<ShardResult>).catch((e: Error): ShardResult => ({
        shard: k, report: null, packetsRead: 0,
        failure: { message: `worker ${k} died: ${e?.message ?? String(e)}`, stage: 'unknown', firstPacket: 0, lastPacket: 0, outOfMemory: isOutOfMemory(e) },
      }));
    }));
  } finally {
    if (timer) clearInterval(timer);
    if (stopTimer) clearInterval(stopTimer);
    if (!spec.pool) await pool.destroy();
  }
  const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const reports = results.map((r) => r.report).filter((r): r is RunReport => r !== null);
  const failures = results.map((r) => r.failure).filter((f) => f !== null);
  if (reports.length === 0) throw new WorkerFailure(failures.map((f) => f!.message).join('; '), null, failures.some((f) => f!.outOfMemory));
  const report = mergeReports(reports, wallSeconds);
  const interrupted = reports.find((r) => r.interrupted)?.interrupted;
  if (interrupted) report.interrupted = interrupted;
  // Every worker stopped after the same packet (see ShardTask.control): the parts hold those.
  // The capture's interfaces as the workers ended (the same in all): the merged captures use them.
  const source = { format: report.format, interfaces: results.find((r) => r.interfaces)?.interfaces ?? [] };
  const outputFailure = failures.find((f) => f!.output);
  if (outputFailure) {
    const o = outputFailure.output!;
    if (o.option === '--flows') {
      const e = new OutputError(o.option, flowOut ? flowOut.name : o.file, o.problem, true);
      e.partial = report;
      throw e;
    }
    // A packet part could not be written (the disk next to the output filled): nothing is
    // merged. The parts go first (giving their room back) and the captures get their headers
    // alone, so each is a capture that holds no packet, as the message says.
    const named = o.option === '--write' ? fwdOut : dropOut;
    const tmpPart = named === undefined || !packetParts[0]!.path.startsWith(`${named.path}.part`);
    const e = new OutputError(o.option, tmpPart ? o.file : named.name, o.problem, true);
    for (const p of packetParts) rmSync(p.path, { force: true });
    try { mergeParts([], source, fwdOut, dropOut); } catch { /* the first failure is the one reported */ }
    e.note = tmpPart ? 'a temporary part of the workers\' captures; no packet was written' : o.option === '--write'
      ? 'it holds the first 0 forwarded packets' : 'it holds the first 0 dropped packets';
    e.partial = report;
    throw e;
  }
  if (failures.length > 0) {
    const f = failures[0]!;
    const what = f.firstPacket ? `${f.message} (shard ${results.find((r) => r.failure === f)!.shard} of ${n})` : f.message;
    throw new WorkerFailure(what, report, f.outOfMemory === true);
  }
  try {
    if (flowOut) mergeFlowLogs(flowOut, parts);
    if (fwdOut || dropOut) mergeParts(packetParts.map((p) => p.path), source, fwdOut, dropOut);
  } catch (e) {
    if (e instanceof OutputError) {
      e.partial = report;
      if (e.option === '--flows') delete report.flowsLogged;
    }
    throw e;
  }
  return { report, forwarded, failures };
}

function addCounts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/**
 * One report from the workers' parts. Capture summaries, verdicts and stage costs are sums (each
 * worker counts the packets it owns; ns is CPU time over all
 * workers); each stage figure merges as its stage declares (Stage.merge: summed unless it says
 * max, min, config or peak, see merge.ts), except for stages that see every packet in every
 * worker, whose figures are one worker's (each worker's copy saw the whole capture).
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
    // Decode (row 0) and per-source stages run on every packet in every worker, though each worker
    // counts only the packets it owns: their time covers the packets times the workers, so their
    // packets are counted that way too (marked allPackets), and ns/packet is not inflated.
    const everyWorker = k === 0 || s.allPackets === true;
    const packets = parts.reduce((a, p) => a + p.stages[k]!.packets, 0) * (everyWorker ? parts.length : 1);
    const ns = parts.reduce((a, p) => a + p.stages[k]!.ns, 0);
    return {
      ...s, calls, packets, ns, ...(everyWorker ? { allPackets: true } : {}),
      dropped: parts.reduce((a, p) => a + p.stages[k]!.dropped, 0),
      nsPerPacket: packets ? ns / packets : 0,
      packetsPerCall: calls ? packets / calls : 0,
    };
  });
  const stageReports: Record<string, StageReport> = {};
  for (const name of Object.keys(first.stageReports)) {
    const all = first.stages.find((s) => s.name === name)?.allPackets === true;
    const rules = all ? 'config' : parts.find((p) => p.merging?.[name])?.merging?.[name]?.rules;
    stageReports[name] = mergeStageReports(parts.map((p) => p.stageReports[name] ?? {}), rules, parts.map((p) => p.merging?.[name]?.series));
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
  // The parts' merge information is spent: the merged report is what an inline run reports.
  delete merged.merging;
  if (parts.some((p) => p.flowsLogged !== undefined)) merged.flowsLogged = parts.reduce((a, p) => a + (p.flowsLogged ?? 0), 0);
  return merged;
}

/** The workers' parts, header once, copied a block at a time (memory stays bounded). */
function mergeFlowLogs(out: OutputFile, parts: string[]): void {
  out.text(FLOW_LOG_HEADER + '\n');
  const buf = new Uint8Array(1 << 20);
  for (const part of parts) {
    if (!existsSync(part)) continue;
    const fd = openSync(part, 'r');
    try {
      // The part starts with its own header line: skip it.
      let header = true;
      for (let got = readSync(fd, buf, 0, buf.length, null); got > 0; got = readSync(fd, buf, 0, buf.length, null)) {
        let from = 0;
        if (header) {
          const nl = buf.subarray(0, got).indexOf(10);
          if (nl < 0) continue;
          header = false;
          from = nl + 1;
        }
        out.write(buf, from, got - from);
      }
    } finally {
      closeSync(fd);
    }
    rmSync(part);
  }
}

/**
 * The workers' packet parts merged by packet number into the real captures, through the
 * SplitWriter an inline run writes with, so the bytes are the same. Each part is in order, so this
 * is a k-way merge: at most 8 readers, scanned for the lowest number (a heap would not pay). Each
 * reader holds one 1 MiB block; nothing is allocated per packet.
 */
function mergeParts(paths: string[], src: Pick<PacketSource, 'format' | 'interfaces'>, write?: OutputFile, writeDropped?: OutputFile): void {
  const split = new SplitWriter(src, write, writeDropped);
  const readers: PartReader[] = [];
  const b = new Batch(1);
  try {
    for (const p of paths) if (existsSync(p)) readers.push(new PartReader(p));
    for (;;) {
      let r: PartReader | null = null;
      let lowest = Infinity;
      for (let k = 0; k < readers.length; k++) {
        const x = readers[k]!;
        if (x.num < lowest) { lowest = x.num; r = x; }
      }
      if (r === null) break;
      split.write(b, 0, r.load(b));
      r.next();
    }
  } catch (e) {
    if (e instanceof OutputError) split.explain(e);
    throw e;
  } finally {
    for (const r of readers) r.close();
    split.close();
  }
}
