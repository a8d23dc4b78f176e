/**
 * Several pipelines over the same packets, decoded once (for `compare`: the same capture through
 * several profiles in one read). Each pipeline must see the batch exactly as if it were alone:
 * after decoding, the batch's decoded and stage fields are saved, and put back before every
 * pipeline after the first; the packets' bytes are saved too, and put back, only when a pipeline
 * before has a stage that rewrites packets (Stage.rewrites), so no pipeline sees another's
 * rewrites. Decoding is paid once and charged to every pipeline's decode row, as each would pay
 * it alone.
 */
import { performance } from 'node:perf_hooks';
import type { Batch } from '../packet/batch.js';
import { decodeBatch } from '../packet/decode.js';
import type { Pipeline } from './runner.js';

/** Sees each batch as decoded (fields as read) and after each pipeline ran (its verdicts): compare. */
export interface FanoutObserver {
  decoded(b: Batch): void;
  ran(pipeline: number, b: Batch): void;
}

export class Fanout {
  /** The batch's decoded and stage fields as decoding left them. */
  private fields = new Uint8Array(0);
  /** The batch's packet bytes as read, [bytesFrom, bytesTo) of the chunk. */
  private bytes = new Uint8Array(0);
  private bytesFrom = 0;
  private bytesTo = 0;
  /** Per pipeline: does it rewrite packet bytes? */
  private readonly rewrites: boolean[];
  /** Time spent saving and restoring, in ns: the price of sharing one decode (reported apart). */
  restoreNs = 0;

  constructor(readonly pipelines: Pipeline[], private readonly timing = true, private readonly observer: FanoutObserver | null = null) {
    if (pipelines.length === 0) throw new RangeError('a fan-out needs at least one pipeline');
    this.rewrites = pipelines.map((p) => p.stages.some((s) => s.rewrites === true));
  }

  process(b: Batch): void {
    const timing = this.timing;
    const t0 = timing ? performance.now() : 0;
    decodeBatch(b);
    const t1 = timing ? performance.now() : 0;
    const decodeNs = (t1 - t0) * 1e6;
    const last = this.pipelines.length - 1;
    // Save only what a later pipeline needs back: fields always, bytes if something rewrites them.
    const anyRewrite = this.rewrites.some((r, k) => r && k < last);
    if (last > 0) {
      if (this.fields.length !== b.decoded.length) this.fields = new Uint8Array(b.decoded.length);
      this.fields.set(b.decoded);
      if (anyRewrite) this.saveBytes(b);
    }
    let restore = timing ? performance.now() - t1 : 0;
    this.observer?.decoded(b);
    for (let k = 0; k <= last; k++) {
      if (k > 0) {
        const r0 = timing ? performance.now() : 0;
        b.decoded.set(this.fields);
        // The bytes are as read unless the pipeline just before rewrote them.
        if (this.rewrites[k - 1]) b.bytes.set(this.bytes.subarray(0, this.bytesTo - this.bytesFrom), this.bytesFrom);
        if (timing) restore += performance.now() - r0;
      }
      this.pipelines[k]!.runStages(b, decodeNs);
      this.observer?.ran(k, b);
    }
    this.restoreNs += restore * 1e6;
  }

  /** Copy the bytes of the batch's packets (contiguous in the chunk, in order). */
  private saveBytes(b: Batch): void {
    if (b.count === 0) { this.bytesFrom = this.bytesTo = 0; return; }
    let from = b.off[0]!;
    let to = from;
    for (let i = 0; i < b.count; i++) {
      const o = b.off[i]!;
      if (o < from) from = o;
      const e = o + b.capLen[i]!;
      if (e > to) to = e;
    }
    const n = to - from;
    if (this.bytes.length < n) this.bytes = new Uint8Array(Math.max(n, this.bytes.length * 2));
    this.bytes.set(b.bytes.subarray(from, to), 0);
    this.bytesFrom = from;
    this.bytesTo = to;
  }

  finish(): void {
    for (const p of this.pipelines) p.finish();
  }
}
