/**
 * Bounded memory from a pipe (issue 7): `dplab gen - | dplab replay -` reads in the same two 4 MiB
 * chunks as a file, so peak RSS does not grow with the number of packets. Memory does grow with
 * the flows in the conntrack table (up to its capacity), so both runs carry the same 20,000 flows,
 * 0.5M and 2.1M packets. Bound: Node itself is ~45 MB here and a whole replay of a file ~90 MB;
 * 200 MB leaves room for a slower GC and still catches a reader that buffers the stream (2.1M
 * packets are ~200 MB of capture). Peak RSS is GNU time's "Maximum resident set size".
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

const DPLAB = join(ROOT, 'bin/dplab.js');
const TIME = '/usr/bin/time';

/** Peak RSS in MB of `dplab replay -` fed `dplab gen - ARGS`, and the packets it replayed. */
function peak(genArgs: string): { mb: number; packets: number } {
  const d = `'${process.execPath}' '${DPLAB}'`;
  const r = spawnSync('sh', ['-c', `${d} gen - ${genArgs} 2>/dev/null | ${TIME} -v ${d} replay - --no-progress --json -`],
    { encoding: 'utf8', maxBuffer: 1 << 26, timeout: 300_000 });
  expect(r.status, r.stderr).toBe(0);
  const kb = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  expect(kb, r.stderr).not.toBeNull();
  return { mb: Number(kb![1]) / 1024, packets: JSON.parse(r.stdout).verdicts.packets };
}

describe('replay from a pipe runs in bounded memory', () => {
  it('peak RSS is under 200 MB and does not grow from 0.5M to 2.1M packets', () => {
    if (!existsSync(TIME)) throw new Error(`${TIME} (GNU time) is needed to measure peak RSS: apt-get install time`);
    const small = peak('--flows 20000 --packets-per-flow 25');
    const big = peak('--flows 20000 --packets-per-flow 100');
    expect(small.packets).toBeGreaterThan(500_000);
    expect(big.packets).toBeGreaterThan(2_000_000);
    expect(small.mb).toBeLessThan(200);
    expect(big.mb).toBeLessThan(200);
    // Four times the packets (~150 MB more capture through the pipe): at most a GC's slack more.
    expect(big.mb - small.mb, `0.5M packets: ${small.mb.toFixed(0)} MB, 2.1M: ${big.mb.toFixed(0)} MB`).toBeLessThan(16);
  }, 300_000);
});
