/**
 * The runner: decode, then each stage in profile order, timing every call (VPP's `show runtime`:
 * calls, packets, ns, packets/call) and accounting for every packet:
 *   packets in = forwarded + dropped (by stage and reason) + malformed (by reason).
 */
import { performance } from 'node:perf_hooks';
import { Verdict, type Batch } from '../packet/batch.js';
import { decodeBatch, MALFORMED_NAMES } from '../packet/decode.js';
import type { Stage, StageReport } from './stage.js';

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
}

export class Pipeline {
  readonly runtime: StageRuntime[];
  /** drops[stage * 65536 + reason] */
  private readonly drops: Float64Array;
  private readonly malformedBy = new Float64Array(256);
  private forwarded = 0;
  private readonly timing: boolean;

  constructor(readonly stages: Stage[], opts: PipelineOptions = {}) {
    if (stages.length > 250) throw new RangeError('a pipeline has at most 250 stages');
    this.timing = opts.timing ?? true;
    this.runtime = [{ name: 'decode', calls: 0, packets: 0, dropped: 0, ns: 0 },
      ...stages.map((s) => ({ name: s.name, calls: 0, packets: 0, dropped: 0, ns: 0 }))];
    this.drops = new Float64Array(Math.max(1, stages.length) * 65536);
  }

  /** Decode and run every stage over the batch, then account for its packets. */
  process(b: Batch): void {
    const timing = this.timing;
    let t0 = timing ? performance.now() : 0;
    decodeBatch(b);
    let t1 = timing ? performance.now() : 0;
    const dec = this.runtime[0]!;
    dec.calls++;
    dec.packets += b.count;
    dec.ns += (t1 - t0) * 1e6;
    let alive = countAlive(b);
    dec.dropped += b.count - alive;
    const stages = this.stages;
    for (let s = 0; s < stages.length; s++) {
      if (alive === 0) break;
      const rt = this.runtime[s + 1]!;
      t0 = t1;
      if (timing) t0 = performance.now();
      stages[s]!.process(b, s);
      if (timing) t1 = performance.now();
      const after = countAlive(b);
      rt.calls++;
      rt.packets += alive;
      rt.dropped += alive - after;
      rt.ns += (t1 - t0) * 1e6;
      alive = after;
    }
    this.account(b);
  }

  private account(b: Batch): void {
    const { verdict, malformed, stage, reason } = b;
    for (let i = 0; i < b.count; i++) {
      if (verdict[i] === Verdict.PASS) this.forwarded++;
      else if (malformed[i] !== 0) this.malformedBy[malformed[i]!]!++;
      else this.drops[stage[i]! * 65536 + reason[i]!]!++;
    }
  }

  finish(): void {
    for (const s of this.stages) s.finish?.();
  }

  counts(): RunCounts {
    const dropsByReason: Record<string, number> = {};
    let dropped = 0;
    for (let s = 0; s < this.stages.length; s++) {
      const names = this.stages[s]!.reasons;
      for (let r = 0; r < 65536; r++) {
        const v = this.drops[s * 65536 + r]!;
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
}

export function countAlive(b: Batch): number {
  const v = b.verdict;
  let n = 0;
  for (let i = 0; i < b.count; i++) if (v[i] === Verdict.PASS) n++;
  return n;
}
