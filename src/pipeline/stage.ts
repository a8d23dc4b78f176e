/**
 * The stage interface, in three lines:
 *   - a stage is built from its validated config (a section of a profile) by its factory;
 *   - `process(batch, self)` visits the packets whose verdict is still PASS, may drop them (verdict,
 *     stage = self, reason) and may rewrite their bytes in place;
 *   - `report()` returns its own counters for the run's report; `finish()` ends the run (expire state).
 * Stages never read files, print or time themselves: the runner does that around them.
 */
import type { FlowTable } from '../conntrack/table.js';
import type { Batch } from '../packet/batch.js';
import type { MergeRules, ReportSeries } from './merge.js';

export interface Stage {
  /** Shown in reports: "xdp", "conntrack", "policy", ... */
  readonly name: string;
  /** Names of this stage's drop reasons, indexed by the code it writes to batch.reason. */
  readonly reasons: readonly string[];
  process(b: Batch, self: number): void;
  /** What the stage counted: numbers or nested records of numbers (merged across workers by `merge`). */
  report(): StageReport;
  /**
   * How report()'s figures merge across workers (sum, max, min, config, peak; see merge.ts).
   * Figures not named are summed.
   */
  readonly merge?: MergeRules;
  /** The series behind each 'peak' figure, by key path: sampled at the same moments in every worker. */
  series?(): ReportSeries;
  /** Figures about the stage's configuration (table sizes, rules): the same in every worker. */
  describe?(): StageReport;
  /**
   * Called after every stage has processed a batch. A stage that frees per-flow state during a
   * batch (conntrack ending a flow) makes it reusable here, never earlier: later stages still
   * reach this batch's packets' state by entry number.
   */
  endBatch?(): void;
  /** Called once after the last batch. */
  finish?(): void;
  /** A one-line description of what the stage did to packet i, for `dplab trace`. */
  explain?(b: Batch, i: number): string;
  /**
   * True for a stage that keeps state per source rather than per flow (a per-source rate limit):
   * with several workers it runs on every packet in every worker, so no worker's state depends on
   * how flows were sharded.
   */
  readonly seesAllPackets?: boolean;
  /**
   * True for a stage that rewrites packet bytes (NAT, TTL, encapsulation): when several pipelines
   * share one decode (pipeline/fanout.ts), the next one gets the bytes as read back.
   */
  readonly rewrites?: boolean;
  /**
   * True for a stage whose work is not dataplane cost: it emulates the application's side (ctlb
   * re-addressing packets as a connected socket would have sent them). Reports show its row apart,
   * outside the dataplane total.
   */
  readonly emulation?: boolean;
  /**
   * For a stage that translates addresses: the hash a sharder should use for a packet, so that both
   * directions of a translated flow meet in one worker (see nat/services.ts).
   */
  readonly steering?: Steering;
  /** Stages that keep flows call `listener` as each flow ends (for the flow log). */
  watchFlows?(listener: (table: FlowTable, entry: number, why: number) => void): void;
}

export interface Steering {
  shardHash(b: Batch, i: number, sport: number, dport: number, h: number): number;
}

export interface StageReport {
  [key: string]: number | StageReport;
}
