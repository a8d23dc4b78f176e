/**
 * How the workers' parts of a stage's report become one report. Each figure says how it merges
 * (Stage.merge); what it does not name is summed. A worker's part carries the rules and the
 * series behind its 'peak' figures (RunReport.merging); the merged report drops them, so a
 * `--json` reader sees the same plain numbers as from an inline run.
 */
import type { Stage, StageReport } from './stage.js';

/**
 * How one figure combines over the workers' parts:
 *   'sum'     a count of what each worker did with its own shard (the default);
 *   'max'     the largest of the parts (an extreme over flows or packets, each seen by one worker);
 *   'min'     the smallest of the parts;
 *   'config'  the same in every worker (a setting, or a stage that runs on every packet in
 *             every worker): the first part's is kept;
 *   'peak'    the most of something at once (flows in the table) when the workers each hold a
 *             share of it: a worker's peak alone says nothing of when the others peaked, so each
 *             samples its count at the same moments (Stage.series), the series are added element
 *             by element and the figure is their maximum.
 * A histogram is a record of counts by bucket: summed, it merges bucket by bucket (element-wise);
 * figures derived from one (a percentile) belong in no report part, only after the merge.
 */
export type Merge = 'sum' | 'max' | 'min' | 'config' | 'peak';

/** Rules for a report's figures by key; a rule given for a nested record applies to all of it. */
export interface MergeRules {
  readonly [key: string]: Merge | MergeRules;
}

/** Series behind a stage's 'peak' figures, by the figure's key path ("a.b" for b inside a). */
export type ReportSeries = Record<string, Float64Array>;

/** What a worker's part carries for one stage, besides its figures. */
export interface StageMerging {
  rules?: MergeRules;
  series?: ReportSeries;
}

/** The merge information of a pipeline's stages, for a worker's part of a report. */
export function stageMerging(stages: readonly Stage[]): Record<string, StageMerging> {
  const out: Record<string, StageMerging> = {};
  for (const s of stages) {
    if (s.merge === undefined && s.series === undefined) continue;
    out[s.name] = { ...(s.merge ? { rules: s.merge } : {}), ...(s.series ? { series: s.series() } : {}) };
  }
  return out;
}

/**
 * One stage report from the workers' parts. `series[k]` is part k's series (missing for a part
 * that has none); a 'peak' figure whose series some part lacks falls back to the largest part.
 */
export function mergeStageReports(parts: StageReport[], rules: Merge | MergeRules = {}, series: (ReportSeries | undefined)[] = []): StageReport {
  if (rules === 'config') return parts[0] ?? {};
  return mergeRecord(parts, rules, series, '');
}

function mergeRecord(parts: StageReport[], rules: Merge | MergeRules, series: (ReportSeries | undefined)[], path: string): StageReport {
  const out: StageReport = {};
  const keys = new Set<string>();
  for (const p of parts) for (const k of Object.keys(p)) keys.add(k);
  for (const k of keys) {
    const rule = typeof rules === 'string' ? rules : rules[k] ?? 'sum';
    const at = path === '' ? k : `${path}.${k}`;
    const values = parts.map((p) => p[k]);
    if (rule === 'config') {
      out[k] = values.find((v) => v !== undefined)!;
    } else if (values.some((v) => typeof v === 'object')) {
      out[k] = mergeRecord(values.map((v) => (typeof v === 'object' ? v : {})), rule, series, at);
    } else {
      out[k] = mergeNumbers(values.filter((v): v is number => typeof v === 'number'), rule, series.map((s) => s?.[at]));
    }
  }
  return out;
}

function mergeNumbers(values: number[], rule: Merge | MergeRules, series: (Float64Array | undefined)[]): number {
  switch (rule) {
    case 'max': return values.reduce((a, v) => Math.max(a, v), -Infinity);
    case 'min': return values.reduce((a, v) => Math.min(a, v), Infinity);
    case 'peak': {
      if (series.length === 0 || series.some((s) => s === undefined)) return values.reduce((a, v) => Math.max(a, v), 0);
      return peakOfSum(series as Float64Array[]);
    }
    default: return values.reduce((a, v) => a + v, 0);
  }
}

/** The largest element-wise sum of the series (a shorter one, from a worker that failed, adds 0 beyond its end). */
export function peakOfSum(series: readonly Float64Array[]): number {
  const n = series.reduce((a, s) => Math.max(a, s.length), 0);
  const sum = new Float64Array(n);
  for (const s of series) for (let k = 0; k < s.length; k++) sum[k]! += s[k]!;
  let peak = 0;
  for (let k = 0; k < n; k++) if (sum[k]! > peak) peak = sum[k]!;
  return peak;
}

/** The largest element of a series (0 when empty): a 'peak' figure of one pipeline. */
export function peakOf(series: Float64Array): number {
  return peakOfSum([series]);
}
