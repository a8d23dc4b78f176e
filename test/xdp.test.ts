/**
 * The xdp stage: block lists checked against tshark's counts of the same prefixes on shipped
 * captures (test/golden/stages/xdp.json, made by scripts/make-stage-golden.mjs), the rate limiter
 * against arithmetic done by hand, and config errors that name file and line.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Verdict } from '../src/packet/batch.js';
import { Pipeline } from '../src/pipeline/runner.js';
import '../src/stages/xdp.js';
import { ROOT } from './helpers.js';
import { rawBatch, runProfile, stagesOf, type RawPacket } from './stage-run.js';

/** Profiles and list files the tests write: one folder, removed when they are done. */
const tmp = mkdtempSync(join(tmpdir(), 'dplab-xdp-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface XdpCase {
  name: string;
  file: string;
  config: string[];
  filters: Record<string, string>;
  expected: { 'blocked-src': number; 'blocked-dst': number };
}

const golden = JSON.parse(readFileSync(join(ROOT, 'test/golden/stages/xdp.json'), 'utf8')) as { cases: XdpCase[] };

describe('xdp drops what tshark counts in the blocked prefixes', () => {
  for (const c of golden.cases) {
    it(`${c.file}: ${c.name} (${c.config.join('; ')})`, () => {
      const { report } = runProfile(`pipeline: xdp\n[xdp]\n${c.config.join('\n')}\n`, c.file);
      // The decoder drops malformed packets before any stage: none here, so tshark's counts apply as they are.
      expect(report.verdicts.malformed).toBe(0);
      const drops = report.verdicts.dropsByReason;
      expect(drops['xdp/blocked-src'] ?? 0, c.filters['blocked-src']).toBe(c.expected['blocked-src']);
      expect(drops['xdp/blocked-dst'] ?? 0, c.filters['blocked-dst']).toBe(c.expected['blocked-dst']);
      expect(report.verdicts.dropped).toBe(c.expected['blocked-src'] + c.expected['blocked-dst']);
      const xdp = report.stageReports.xdp!;
      expect(xdp['blocked-src']).toBe(c.expected['blocked-src']);
      expect(xdp['blocked-dst']).toBe(c.expected['blocked-dst']);
      expect((xdp.passed as number) + (xdp.notIp as number) + c.expected['blocked-src'] + c.expected['blocked-dst']).toBe(report.verdicts.packets);
    });
  }

  it('a block file works as block: lines (and lines keep their numbers in explanations)', () => {
    const dir = mkdtempSync(join(tmp, 'case-'));
    writeFileSync(join(dir, 'bad.txt'), '# bad hosts\n\n212.199.202.0/24   # the whole /24\n');
    const profile = join(dir, 'p.profile');
    writeFileSync(profile, 'pipeline: xdp\n[xdp]\nblock-file: bad.txt\n');
    const [xdp] = stagesOf('pipeline: xdp\n[xdp]\nblock-file: bad.txt\n', profile);
    const p = new Pipeline([xdp!]);
    const b = rawBatch([{ src: '212.199.202.9', dst: '10.0.0.1' }]);
    p.process(b);
    expect(b.verdict[0]).toBe(Verdict.DROP);
    expect(xdp!.explain!(b, 0)).toMatch(/^source 212\.199\.202\.9 is in blocked 212\.199\.202\.0\/24 \(.*bad\.txt:3\): drop$/);
  });
});

/** Run packets through a pipeline of one xdp stage; returns the verdicts as 'pass' / reason names. */
function outcomes(config: string, pkts: RawPacket[]): { got: string[]; explain: string[]; report: Record<string, unknown> } {
  const [xdp] = stagesOf(`pipeline: xdp\n[xdp]\n${config}\n`);
  const p = new Pipeline([xdp!]);
  const b = rawBatch(pkts);
  p.process(b);
  const got: string[] = [];
  const explain: string[] = [];
  for (let i = 0; i < b.count; i++) {
    got.push(b.verdict[i] === Verdict.PASS ? 'pass' : xdp!.reasons[b.reason[i]!]!);
    explain.push(xdp!.explain!(b, i));
  }
  return { got, explain, report: xdp!.report() };
}

describe('longest prefix decides between block and allow', () => {
  it('an allow hole inside a block passes, a longer block inside the hole drops again', () => {
    const { got, explain } = outcomes('block: 10.0.0.0/8\nallow: 10.1.0.0/16\nblock: 10.1.2.0/24', [
      { src: '10.9.9.9', dst: '192.0.2.1' },
      { src: '10.1.9.9', dst: '192.0.2.1' },
      { src: '10.1.2.9', dst: '192.0.2.1' },
      { src: '192.0.2.1', dst: '10.1.2.3' },
      { src: '10.1.9.9', dst: '10.1.2.3' },
    ]);
    expect(got).toEqual(['blocked-src', 'pass', 'blocked-src', 'blocked-dst', 'blocked-dst']);
    expect(explain[1]).toMatch(/^passed \(source in allowed 10\.1\.0\.0\/16 \(.*inline\.profile:4\)\)$/);
    expect(explain[3]).toMatch(/^destination 10\.1\.2\.3 is in blocked 10\.1\.2\.0\/24 \(.*inline\.profile:5\): drop$/);
  });

  it('IPv6 prefixes match IPv6 packets only, and "any" blocks both families', () => {
    expect(outcomes('block: 2001:db8::/32', [{ src: '2001:db8::1', dst: '2001:db9::1' }, { src: '32.1.13.184', dst: '10.0.0.1' }]).got)
      .toEqual(['blocked-src', 'pass']);
    expect(outcomes('block: any\nallow: 2001:db8::/32', [{ src: '192.0.2.1', dst: '10.0.0.1' }, { src: '2001:db8::1', dst: '2001:db8::2' }, { src: '2001:db8::1', dst: 'fe80::2' }]).got)
      .toEqual(['blocked-src', 'pass', 'blocked-dst']);
  });
});

describe('per-source rate limit (token bucket on packet timestamps)', () => {
  it('matches the bucket worked by hand: 2/s, burst 3', () => {
    // A bucket holds at most 3 tokens and gains 2 a second (one per 500 ms); a packet takes one.
    // Source A:
    //   t=0      new bucket, full: 3        -> pass, 2 left
    //   t=100ms  +0.2 -> 2.2               -> pass, 1.2 left
    //   t=200ms  +0.2 -> 1.4               -> pass, 0.4 left
    //   t=300ms  +0.2 -> 0.6 (< 1)         -> rate-limited, 0.6 kept
    //   t=1000ms +1.4 -> 2.0               -> pass, 1.0 left
    //   t=1100ms +0.2 -> 1.2               -> pass, 0.2 left
    //   t=1150ms +0.1 -> 0.3               -> rate-limited
    //   t=2650ms +3.0 -> 3.3, capped at 3  -> pass, 2 left
    // Source B at t=300ms has its own full bucket -> pass.
    const A = '198.51.100.7';
    const { got, report, explain } = outcomes('rate-limit: 2/s burst 3', [
      { src: A, dst: '10.0.0.1', ms: 1_700_000_000_000 },
      { src: A, dst: '10.0.0.1', ms: 1_700_000_000_100 },
      { src: A, dst: '10.0.0.1', ms: 1_700_000_000_200 },
      { src: A, dst: '10.0.0.1', ms: 1_700_000_000_300 },
      { src: '198.51.100.8', dst: '10.0.0.1', ms: 1_700_000_000_300 },
      { src: A, dst: '10.0.0.2', ms: 1_700_000_001_000 },
      { src: A, dst: '10.0.0.2', ms: 1_700_000_001_100 },
      { src: A, dst: '10.0.0.2', ms: 1_700_000_001_150 },
      { src: A, dst: '10.0.0.2', ms: 1_700_000_002_650 },
    ]);
    expect(got).toEqual(['pass', 'pass', 'pass', 'rate-limited', 'pass', 'pass', 'pass', 'rate-limited', 'pass']);
    expect(report['rate-limited']).toBe(2);
    expect(report.rateTable).toMatchObject({ inUse: 2, evictions: 0 });
    expect(explain[3]).toBe('source 198.51.100.7 is over its rate limit (2/s burst 3): drop');
    expect(explain[0]).toBe('passed, within its rate limit');
  });

  it('burst defaults to one second of the rate; the limit applies to IPv6 sources too', () => {
    const pkts = Array.from({ length: 5 }, () => ({ src: '2001:db8::1', dst: '2001:db8::2', ms: 5000 }));
    expect(outcomes('rate-limit: 3/s', pkts).got).toEqual(['pass', 'pass', 'pass', 'rate-limited', 'rate-limited']);
  });

  it('a packet blocked by prefix does not spend a token', () => {
    const { got } = outcomes('block: 10.0.0.0/8\nrate-limit: 1/m burst 1', [
      { src: '192.0.2.1', dst: '10.0.0.1', ms: 0 },
      { src: '192.0.2.1', dst: '192.0.2.2', ms: 0 },
      { src: '192.0.2.1', dst: '192.0.2.2', ms: 0 },
    ]);
    expect(got).toEqual(['blocked-dst', 'pass', 'rate-limited']);
  });

  it('a full table reuses the slot seen longest ago, and counts evicting a bucket that was not yet full', () => {
    // 8 slots = one set of 8: nine sources, one packet each, 1 ms apart. The ninth evicts the
    // first (seen longest ago), whose bucket (1/s burst 1) was emptied 8 ms before: still refilling.
    // So the first source, seen again, has a fresh bucket and passes where it would otherwise wait.
    const pkts: RawPacket[] = Array.from({ length: 9 }, (_, k) => ({ src: `192.0.2.${k + 1}`, dst: '10.0.0.1', ms: k }));
    pkts.push({ src: '192.0.2.1', dst: '10.0.0.1', ms: 20 });
    const { got, report } = outcomes('rate-limit: 1/s burst 1\nrate-table: 8', pkts);
    expect(got).toEqual(Array(10).fill('pass'));
    expect(report.rateTable).toMatchObject({ inUse: 8, evictions: 2, evictedActive: 2 });
  });

  it('the same packets give the same verdicts however they are batched (time comes from the packets)', () => {
    const pkts: RawPacket[] = Array.from({ length: 200 }, (_, k) => ({ src: `192.0.2.${k % 3}`, dst: '10.0.0.1', ms: 1000 + k * 7 }));
    const whole = outcomes('rate-limit: 20/s burst 5', pkts).got;
    const [xdp] = stagesOf('pipeline: xdp\n[xdp]\nrate-limit: 20/s burst 5\n');
    const p = new Pipeline([xdp!]);
    const pieces: string[] = [];
    for (let at = 0; at < pkts.length; at += 37) {
      const b = rawBatch(pkts.slice(at, at + 37));
      p.process(b);
      for (let i = 0; i < b.count; i++) pieces.push(b.verdict[i] === Verdict.PASS ? 'pass' : 'rate-limited');
    }
    expect(pieces).toEqual(whole);
    expect(whole.filter((x) => x !== 'pass').length).toBeGreaterThan(0);
  });
});

describe('xdp config errors name the file and line', () => {
  const err = (section: string): string => {
    try {
      stagesOf(`pipeline: xdp\n[xdp]\n${section}\n`, 'site.profile');
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };

  it.each([
    ['block: 10.0.0.300/8', 'site.profile:3: [xdp] block: "10.0.0.300/8" is not an IPv4 or IPv6 prefix'],
    ['block: 10.0.0.0/8,', 'site.profile:3: [xdp] block: "10.0.0.0/8," has an empty item'],
    ['block: 10.0.0.0/8\nallow: 10.0.0.0/8', 'site.profile:4: [xdp] allow: 10.0.0.0/8 is both blocked and allowed (also at site.profile:3)'],
    ['block: any\nallow: ::/0', 'site.profile:4: [xdp] allow: ::/0 is both blocked and allowed (also at site.profile:3)'],
    ['rate-limit: 100', 'site.profile:3: [xdp] rate-limit: "100" is not a rate limit'],
    ['rate-limit: 0/s', 'site.profile:3: [xdp] rate-limit: "0" is not a positive number of packets'],
    ['rate-limit: 10/s burst 0', 'site.profile:3: [xdp] rate-limit: burst "0" is not a whole number of packets >= 1'],
    ['rate-table: 4', 'site.profile:3: [xdp] rate-table: 4 is out of range (8..16777216)'],
    ['blok: 10.0.0.0/8', 'site.profile:3: [xdp] blok: unknown key'],
    ['block-file: no-such-file.txt', 'site.profile:3: [xdp] block-file: cannot read'],
  ])('%j', (section, message) => {
    expect(err(section)).toContain(message);
  });

  it('an error in a block file names that file and line', () => {
    const dir = mkdtempSync(join(tmp, 'case-'));
    writeFileSync(join(dir, 'bad.txt'), '10.0.0.0/8\n# comment\n10.0.0.0/99\n');
    writeFileSync(join(dir, 'p.profile'), '');
    expect(() => stagesOf('pipeline: xdp\n[xdp]\nblock-file: bad.txt\n', join(dir, 'p.profile')))
      .toThrow(/bad\.txt:3: \[xdp\] block-file: "10\.0\.0\.0\/99": prefix length 99 is longer than an IPv4 address \(32 bits\) \(in the block file of .*p\.profile:3\)/);
  });
});
