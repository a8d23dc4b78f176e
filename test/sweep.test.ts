/**
 * dplab sweep (issue 10): the crossovers it prints are where the measured order of two profiles
 * changes (checked on given points, where the answer is known), and a real sweep runs every
 * profile at every value over the same generated packets.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderSweep } from '../src/cli/sweep.js';
import { ROOT } from './helpers.js';

describe('sweep', () => {
  it('names a crossover exactly where two profiles change order, and none where they do not', () => {
    const pts = [
      { value: 10, packets: 1, profiles: [{ profile: 'a', nsPerPacket: 100 }, { profile: 'b', nsPerPacket: 200 }, { profile: 'c', nsPerPacket: 50 }] },
      { value: 100, packets: 1, profiles: [{ profile: 'a', nsPerPacket: 150 }, { profile: 'b', nsPerPacket: 180 }, { profile: 'c', nsPerPacket: 60 }] },
      { value: 1000, packets: 1, profiles: [{ profile: 'a', nsPerPacket: 400 }, { profile: 'b', nsPerPacket: 190 }, { profile: 'c', nsPerPacket: 70 }] },
    ];
    const text = renderSweep('rules', ['a', 'b', 'c'], pts);
    const lines = text.split('\n').filter((l) => l.includes('becomes cheaper'));
    expect(lines).toEqual(['  between rules 100 and 1000: b becomes cheaper than a']);
    expect(text).toMatch(/a: 4\.00x \(100\.0 -> 400\.0 ns\)/);
  });

  it('runs every profile at every value', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/dplab.js'), 'sweep', 'packets-per-flow', '--values', '5,500', '--packets', '20000', '--profiles', 'iptables,ebpf'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const rows = r.stdout.split('\n').filter((l) => /^\s*(5|500)\s+[\d.]+\s+[\d.]+\s*$/.test(l));
    expect(rows).toHaveLength(2);
    expect(r.stdout).toMatch(/Crossovers:/);
  });
});
