/**
 * commas(): numbers as en-US writes them, without loading ICU. The oracle is ICU itself,
 * `toLocaleString('en-US')`, on the same numbers.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commas } from '../src/packet/format.js';

describe('commas', () => {
  it('writes what toLocaleString("en-US") writes', () => {
    const cases = [0, -0, 1, 999, 1000, 1234567, -1234567, 0.5, 1.0005, 2.0005, 0.0005, -0.0005, 0.0004, 9.9995,
      999.9995, 99999.9995, 1e-7, 5e-7, 1e20, 123456789.123456, Number.MAX_SAFE_INTEGER, NaN, Infinity, -Infinity, 1e21, 3.4e38];
    for (const x of cases) expect(commas(x), String(x)).toBe(x.toLocaleString('en-US'));
  });

  it('agrees with toLocaleString on any double, and on numbers with a few decimals', () => {
    fc.assert(fc.property(fc.double({ noNaN: false }), (x) => commas(x) === x.toLocaleString('en-US')), { numRuns: 20000 });
    const decimals = fc.tuple(fc.integer({ min: -1e9, max: 1e9 }), fc.integer({ min: 0, max: 9999 }))
      .map(([i, f]) => i + Math.sign(i || 1) * f / 10000);
    fc.assert(fc.property(decimals, (x) => commas(x) === x.toLocaleString('en-US')), { numRuns: 20000 });
  });
});
