/**
 * Opening a capture path, and `--workers N` for the AF_PACKET path: N worker threads, each with
 * its own ring socket in one PACKET_FANOUT group (FANOUT_HASH, with defragmentation). The kernel
 * hashes each packet's flow symmetrically (both directions alike) and gives it to one socket, so
 * each worker runs its own pipeline and flow table on its share and nothing crosses threads per
 * packet or per batch: only a status tick a few times a second and the report at the end. The
 * main thread merges the reports as replay's workers' are merged.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { mergeReports } from '../pipeline/parallel.js';
import type { CaptureRun, RunReport, StopFlag } from '../pipeline/run.js';
import { WorkerFailure, type RunCounts } from '../pipeline/runner.js';
import { PacketRingSource, type RingOptions } from './packet.js';
import { RawSocketSource } from './raw.js';
import { LiveError, type CaptureKind, type KernelCounts, type LiveSource } from './source.js';

export function openLiveSource(kind: CaptureKind, opts: RingOptions): LiveSource {
  return kind === 'packet' ? new PacketRingSource(opts) : new RawSocketSource(opts);
}

/** What the status line shows, from one pipeline or summed over the workers. */
export interface LiveTick {
  packets: number;
  counts: RunCounts;
  runtime: { name: string; packets: number; ns: number }[];
  flows: { created: number; active: number };
  kernelDrops: number;
}

/** The status line's figures now (between batches: a few times a second). */
export function liveTick(run: CaptureRun, src: LiveSource): LiveTick {
  const p = run.pipeline;
  return {
    packets: src.packets, counts: p.counts(), runtime: p.runtime.map((x) => ({ name: x.name, packets: x.packets, ns: x.ns })),
    flows: flowFigures(p.reports()), kernelDrops: src.kernel().drops,
  };
}

/** Flows made and still in the table, from the stages' reports (conntrack's figures), for the status line. */
export function flowFigures(reports: Record<string, Record<string, unknown>>): { created: number; active: number } {
  let created = 0;
  let ended = 0;
  for (const r of Object.values(reports)) {
    if (typeof r.flowsCreated !== 'number') continue;
    created += r.flowsCreated;
    for (const v of Object.values((r.destroyed ?? {}) as Record<string, number>)) ended += v;
  }
  return { created, active: created - ended };
}

export interface WorkerTask {
  iface: string;
  profile: string;
  batchSize: number;
  blockSize: number;
  blocks: number;
  fanoutGroup: number;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'error'; message: string; hint: string; live: boolean; outOfMemory?: boolean }
  | { type: 'tick'; tick: LiveTick }
  | { type: 'done'; report: RunReport; kernel: KernelCounts; stopReason: string | null };

export interface LiveWorkersSpec {
  iface: string;
  workers: number;
  profile: string;
  batchSize: number;
  blockSize: number;
  blocks: number;
  stop: StopFlag;
  /** Receives the function that makes every worker stop (for the signal handler). */
  setWake: (wake: () => void) => void;
  durationMs?: number;
  onDuration?: () => void;
  onReady?: () => void;
  onTick?: (t: LiveTick) => void;
}

const WORKER = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'live', 'worker.js');

export async function runLiveWorkers(spec: LiveWorkersSpec): Promise<{ report: RunReport; kernel: KernelCounts; workerPackets: number[]; stopReason: string | null }> {
  const t0 = process.hrtime.bigint();
  const fanoutGroup = (process.pid & 0x7fff) + 1;
  const task: WorkerTask = { iface: spec.iface, profile: spec.profile, batchSize: spec.batchSize, blockSize: spec.blockSize, blocks: spec.blocks, fanoutGroup };
  const threads = Array.from({ length: spec.workers }, () => new Worker(WORKER, { workerData: task }));
  const ticks: (LiveTick | null)[] = threads.map(() => null);
  const done: ({ report: RunReport; kernel: KernelCounts; stopReason: string | null } | null)[] = threads.map(() => null);
  let failure: Error | null = null;
  let ready = 0;
  let tickTimer: NodeJS.Timeout | null = null;
  let durationTimer: NodeJS.Timeout | null = null;
  const post = (m: string): void => { for (const w of threads) w.postMessage(m); };
  spec.setWake(() => post('stop'));
  if (spec.stop.signal) post('stop');
  await new Promise<void>((resolve) => {
    let exited = 0;
    threads.forEach((w, k) => {
      w.on('message', (m: WorkerMessage) => {
        if (m.type === 'ready') {
          if (++ready !== threads.length) return;
          spec.onReady?.();
          if (spec.onTick) tickTimer = setInterval(() => { const t = sumTicks(ticks); if (t) spec.onTick!(t); }, 250);
          if (spec.durationMs !== undefined) durationTimer = setTimeout(() => { spec.onDuration?.(); post('end'); }, spec.durationMs);
        } else if (m.type === 'tick') ticks[k] = m.tick;
        else if (m.type === 'done') {
          done[k] = { report: m.report, kernel: m.kernel, stopReason: m.stopReason };
          if (m.stopReason) post('end'); // one socket lost its interface: so did the others
        }
        else if (m.type === 'error') {
          failure ??= m.live ? new LiveError(m.message, m.hint) : m.outOfMemory ? new WorkerFailure(m.message, null, true) : new Error(m.message);
          post('stop');
        }
      });
      w.on('error', (e) => { failure ??= e; post('stop'); });
      w.on('exit', () => { if (++exited === threads.length) resolve(); });
    });
  });
  if (tickTimer) clearInterval(tickTimer);
  if (durationTimer) clearTimeout(durationTimer);
  if (failure) throw failure;
  const parts = done.filter((d): d is { report: RunReport; kernel: KernelCounts; stopReason: string | null } => d !== null);
  if (parts.length !== threads.length) throw new Error('a live worker ended without a report');
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const report = mergeReports(parts.map((p) => p.report), wall);
  // Every worker decoded only the packets the kernel gave it (no packet is decoded twice, unlike
  // replay's workers): the decode row is a plain sum.
  const dec = report.stages[0]!;
  dec.packets = parts.reduce((a, p) => a + p.report.stages[0]!.packets, 0);
  dec.nsPerPacket = dec.packets ? dec.ns / dec.packets : 0;
  dec.packetsPerCall = dec.calls ? dec.packets / dec.calls : 0;
  delete dec.allPackets;
  const kernel: KernelCounts = {
    drops: parts.reduce((a, p) => a + p.kernel.drops, 0),
    packets: parts.reduce((a, p) => a + (p.kernel.packets ?? 0), 0),
    source: parts[0]!.kernel.source,
  };
  return { report, kernel, workerPackets: parts.map((p) => p.report.capture.packets), stopReason: parts.find((p) => p.stopReason)?.stopReason ?? null };
}

function sumTicks(ticks: (LiveTick | null)[]): LiveTick | null {
  const have = ticks.filter((t): t is LiveTick => t !== null);
  if (have.length === 0) return null;
  const counts: RunCounts = { packets: 0, forwarded: 0, dropped: 0, malformed: 0, dropsByReason: {}, malformedByReason: {} };
  const out: LiveTick = { packets: 0, counts, runtime: have[0]!.runtime.map((r) => ({ name: r.name, packets: 0, ns: 0 })), flows: { created: 0, active: 0 }, kernelDrops: 0 };
  for (const t of have) {
    out.packets += t.packets;
    counts.packets += t.counts.packets;
    counts.forwarded += t.counts.forwarded;
    counts.dropped += t.counts.dropped;
    counts.malformed += t.counts.malformed;
    for (const [k, v] of Object.entries(t.counts.dropsByReason)) counts.dropsByReason[k] = (counts.dropsByReason[k] ?? 0) + v;
    t.runtime.forEach((r, k) => { out.runtime[k]!.packets += r.packets; out.runtime[k]!.ns += r.ns; });
    out.flows.created += t.flows.created;
    out.flows.active += t.flows.active;
    out.kernelDrops += t.kernelDrops;
  }
  return out;
}
