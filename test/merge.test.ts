/**
 * How the workers' parts of a stage report merge: each figure by its declared rule (sum unless
 * named: max, min, config, peak), nested records by their own rules or one rule for all.
 */
import { describe, expect, it } from 'vitest';
import { mergeStageReports, peakOfSum } from '../src/pipeline/merge.js';

describe('merging stage reports', () => {
  it('sums what no rule names, key by key, keys any part has', () => {
    expect(mergeStageReports([{ a: 1, h: { x: 1 } }, { a: 2, h: { y: 5 } }, { b: 4 }]))
      .toEqual({ a: 3, b: 4, h: { x: 1, y: 5 } });
  });

  it('max, min and config figures, nested rules and a rule for a whole record', () => {
    const parts = [
      { big: 3, small: 3, size: 64, n: 1, in: { longest: 7, count: 1 }, cfg: { rules: 4, nodes: 9 } },
      { big: 5, small: 2, size: 64, n: 1, in: { longest: 2, count: 1 }, cfg: { rules: 4, nodes: 9 } },
    ];
    expect(mergeStageReports(parts, { big: 'max', small: 'min', size: 'config', in: { longest: 'max' }, cfg: 'config' }))
      .toEqual({ big: 5, small: 2, size: 64, n: 2, in: { longest: 7, count: 2 }, cfg: { rules: 4, nodes: 9 } });
  });

  it('config for a whole report keeps the first part (a stage every worker runs on every packet)', () => {
    expect(mergeStageReports([{ a: 1 }, { a: 1 }], 'config')).toEqual({ a: 1 });
  });

  it('a peak is the peak of the summed series, not the sum of the peaks', () => {
    const one = Float64Array.of(1, 5, 2, 0);
    const two = Float64Array.of(4, 1, 3, 1);
    expect(mergeStageReports([{ peak: 5, n: 1 }, { peak: 4, n: 1 }], { peak: 'peak' }, [{ peak: one }, { peak: two }]))
      .toEqual({ peak: 6, n: 2 });
    // A nested figure's series is named by its path.
    expect(mergeStageReports([{ t: { peak: 5 } }, { t: { peak: 4 } }], { t: { peak: 'peak' } }, [{ 't.peak': one }, { 't.peak': two }]))
      .toEqual({ t: { peak: 6 } });
    // A part without its series (from an older or failed worker): the largest part, a lower bound.
    expect(mergeStageReports([{ peak: 5 }, { peak: 4 }], { peak: 'peak' }, [{ peak: one }, undefined])).toEqual({ peak: 5 });
  });

  it('series of different lengths (a worker that failed early) add as far as each goes', () => {
    expect(peakOfSum([Float64Array.of(1, 1, 7), Float64Array.of(3)])).toBe(7);
    expect(peakOfSum([])).toBe(0);
  });
});
