/**
 * The runner: decode, then each stage in profile order, timing every call (VPP's `show runtime`:
 * calls, packets, ns, packets/call) and accounting for every packet:
 *   packets in = forwarded + dropped (by stage and reason) + malformed (by reason).
 */
import type { RunReport } from './run.js';
import { performance } from 'node:perf_hooks';
import type { Batch } from '../packet/batch.js';
import * as batchModule from '../packet/batch.js';
import { MALFORMED_NAMES } from '../packet/decode.js';
import * as decodeModule from '../packet/decode.js';
import type { TrafficSummary } from '../packet/summary.js';
import { isOutOfMemory } from './memory.js';
import { Sharder } from './shard.js';
import type { Stage, StageReport } from './stage.js';
// What the per-packet code uses of other modules, as this module's own consts (see
// src/conntrack/tracker.ts): V8 reads an imported binding through its module cell at every use.
const { Verdict } = batchModule;
const { decodeBatch } = decodeModule;

export interface StageRuntime {
  name: string;
  calls: number;
  /** Packets the stage was given (alive when it ran). */
  packets: number;
  dropped: number;
  ns: number;
}

export interface RunCounts {
  packets: number;
  forwarded: number;
  dropped: number;
  malformed: number;
  /** "stage/reason" -> packets */
  dropsByReason: Record<string, number>;
  malformedByReason: Record<string, number>;
}

export interface PipelineOptions {
  /** Time every stage call (default true). Off only to measure what timing itself costs. */
  timing?: boolean;
  /** Run as one of several workers: only the packets this sharder owns are this pipeline's. */
  sharder?: Sharder;
}

/** A worker thread failed (its stage threw, or it died); `partial` covers what every worker processed. */
export class WorkerFailure extends Error {
  constructor(message: string, readonly partial: RunReport | null, readonly outOfMemory = false) {
    super(message);
    this.name = 'WorkerFailure';
  }
}

/** A stage threw: which one, on which packets. */
export class StageFailure extends Error {
  /** The report of everything processed before the failure (set by the run loop). */
  partial: unknown = null;
  /** The stage could not get memory (see isOutOfMemory): not a bug in the stage. */
  readonly outOfMemory: boolean;
  constructor(readonly stage: string, readonly firstPacket: number, readonly lastPacket: number, override readonly cause: unknown) {
    super(`stage ${stage} failed while processing packets ${firstPacket}-${lastPacket}: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'StageFailure';
    this.outOfMemory = isOutOfMemory(cause);
  }
}


export class Pipeline {
  readonly runtime: StageRuntime[];
  /**
   * drops[stage][reason], each as long as the highest reason its stage gave needs (reasons are
   * 16 bits): 65,536 counters per stage from the start were 512 KB a stage of zeroed memory, a
   * page fault per 4 KB when malloc's heap zeroes it, in each of compare's 28 pipelines.
   */
  private readonly drops: Float64Array[];
  private readonly malformedBy = new Float64Array(256);
  /** Per stage: one past the highest drop reason it has given (counts() looks no further). */
  private readonly reasonsUsed = new Int32Array(251);
  /** Per stage: packets of the current batch it dropped (account() fills, runStages empties). */
  private readonly dropsAt = new Float64Array(251);
  private forwarded = 0;
  private readonly timing: boolean;
  private readonly sharder: Sharder | null;
  /** Stages [0, replicated) see every packet in every worker (they keep per-source state). */
  private readonly replicated: number;
  private mine = new Uint8Array(0);

  constructor(readonly stages: Stage[], opts: PipelineOptions = {}) {
    if (stages.length > 250) throw new RangeError('a pipeline has at most 250 stages');
    this.timing = opts.timing ?? true;
    this.sharder = opts.sharder ?? null;
    let r = 0;
    while (r < stages.length && stages[r]!.seesAllPackets) r++;
    const late = stages.slice(r).find((s) => s.seesAllPackets);
    if (late && this.sharder) {
      throw new RangeError(`stage ${late.name} keeps per-source state, so with several workers it must come before every per-flow stage`);
    }
    this.replicated = this.sharder ? r : 0;
    this.runtime = [{ name: 'decode', calls: 0, packets: 0, dropped: 0, ns: 0 },
      ...stages.map((s) => ({ name: s.name, calls: 0, packets: 0, dropped: 0, ns: 0 }))];
    this.drops = stages.map(() => new Float64Array(16));
  }

  /**
   * Decode and run every stage over the batch, then account for its packets. With `summary`, the
   * batch is counted there as decoded (what a stage may rewrite is held before the stages run,
   * see TrafficSummary.hold): the summary describes the capture. A batch a stage failed on is
   * counted nowhere; the failure names its packets.
   */
  process(b: Batch, summary: TrafficSummary | null = null): void {
    const t0 = this.timing ? performance.now() : 0;
    decodeBatch(b);
    const decodeNs = this.timing ? (performance.now() - t0) * 1e6 : 0;
    if (summary !== null) summary.hold(b);
    this.runStages(b, decodeNs);
    if (summary !== null) summary.countHeld(b);
  }

  /**
   * Run every stage over a batch that is already decoded, then account for its packets;
   * `decodeNs` is what decoding it cost (the decode row). For several pipelines over one decode.
   */
  runStages(b: Batch, decodeNs: number): void {
    const timing = this.timing;
    b.outUsed = 0; // the output area is this pipeline's, for this batch
    let t0 = 0;
    let t1 = 0;
    const sharder = this.sharder;
    let mine = this.mine;
    let owned = b.count;
    if (sharder) {
      if (mine.length < b.capacity) mine = this.mine = new Uint8Array(b.capacity);
      owned = sharder.mark(b, mine);
    }
    const stages = this.stages;
    const rts = this.runtime;
    let s = 0;
    try {
      // Stages [0, replicated) keep per-source state: in a worker they run on every packet, so
      // each worker's copy of that state is the one a single pipeline would have, and count only
      // the packets this worker owns. Then the other shards' packets are hidden (FOREIGN). Every
      // stage is called even when no packet is left for it: stages keep time by the capture's
      // packet numbers (conntrack's expiry sweep), the same in every worker.
      for (; s < stages.length; s++) {
        if (s === this.replicated && sharder) hideForeign(b, mine);
        if (timing) t0 = performance.now();
        stages[s]!.process(b, s);
        if (timing) { t1 = performance.now(); rts[s + 1]!.ns += (t1 - t0) * 1e6; }
      }
      if (this.replicated === stages.length && sharder) hideForeign(b, mine);
      for (s = 0; s < stages.length; s++) stages[s]!.endBatch?.();
    } catch (e) {
      throw new StageFailure(stages[s]?.name ?? 'decode', b.num[0]!, b.num[b.count - 1]!, e);
    }
    // What each stage was given and dropped, from the verdicts the batch ended with (one pass, in
    // account(), instead of a count after every stage): a packet is alive for stage s unless
    // decoding or a stage before s dropped it.
    const malformed = this.account(b);
    const dropsAt = this.dropsAt;
    const dec = rts[0]!;
    dec.calls++;
    dec.packets += owned;
    dec.ns += decodeNs;
    dec.dropped += malformed;
    let alive = owned - malformed;
    for (s = 0; s < stages.length; s++) {
      const rt = rts[s + 1]!;
      if (alive > 0 || s < this.replicated) rt.calls++;
      const d = dropsAt[s]!;
      rt.packets += alive;
      rt.dropped += d;
      alive -= d;
      dropsAt[s] = 0;
    }
  }

  /**
   * Count the batch's verdicts (this pipeline's packets: FOREIGN ones are another worker's) into
   * the run's totals and dropsAt (per stage, for this batch); returns the malformed packets.
   */
  private account(b: Batch): number {
    const dropsAt = this.dropsAt;
    let bad = 0;
    for (let i = 0; i < b.count; i++) {
      const v = b.verdict[i];
      if (v === Verdict.FOREIGN) continue;
      if (v === Verdict.PASS) this.forwarded++;
      else if (b.malformed[i] !== 0) { this.malformedBy[b.malformed[i]!]!++; bad++; } else {
        const st = b.stage[i]!;
        const r = b.reason[i]!;
        dropsAt[st]!++;
        if (r >= this.reasonsUsed[st]!) this.useReason(st, r);
        this.drops[st]![r]!++;
      }
    }
    return bad;
  }

  /** Stage st gave drop reason r, higher than any before: its counters reach that far. */
  private useReason(st: number, r: number): void {
    this.reasonsUsed[st] = r + 1;
    const old = this.drops[st]!;
    if (r < old.length) return;
    let n = old.length;
    while (n <= r) n *= 2; // a power of two from 16: at most 65,536, as reasons are 16 bits
    const grown = new Float64Array(n);
    grown.set(old);
    this.drops[st] = grown;
  }

  finish(): void {
    for (const s of this.stages) s.finish?.();
  }

  counts(): RunCounts {
    const dropsByReason: Record<string, number> = {};
    let dropped = 0;
    for (let s = 0; s < this.stages.length; s++) {
      const names = this.stages[s]!.reasons;
      for (let r = 0; r < this.reasonsUsed[s]!; r++) {
        const v = this.drops[s]![r]!;
        if (v === 0) continue;
        dropsByReason[`${this.stages[s]!.name}/${names[r] ?? `reason-${r}`}`] = v;
        dropped += v;
      }
    }
    const malformedByReason: Record<string, number> = {};
    let malformed = 0;
    for (let r = 1; r < 256; r++) {
      const v = this.malformedBy[r]!;
      if (v === 0) continue;
      malformedByReason[MALFORMED_NAMES[r] ?? `reason-${r}`] = v;
      malformed += v;
    }
    return { packets: this.forwarded + dropped + malformed, forwarded: this.forwarded, dropped, malformed, dropsByReason, malformedByReason };
  }

  reports(): Record<string, StageReport> {
    const out: Record<string, StageReport> = {};
    for (const s of this.stages) out[s.name] = s.report();
    return out;
  }

  configs(): Record<string, StageReport> {
    const out: Record<string, StageReport> = {};
    for (const s of this.stages) if (s.describe) out[s.name] = s.describe();
    return out;
  }
}

/** Packets of other shards leave the alive set (dropped ones stay dropped; they are not ours either). */
function hideForeign(b: Batch, mine: Uint8Array): void {
  const v = b.verdict;
  for (let i = 0; i < b.count; i++) if (mine[i] === 0) v[i] = Verdict.FOREIGN;
}
