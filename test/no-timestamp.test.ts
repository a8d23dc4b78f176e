/**
 * pcapng Simple Packet Blocks carry no timestamp. The expected values are tshark's, from the
 * golden files scripts/make-golden.mjs wrote (its `time` column is frame.time_epoch, empty for an
 * SPB): `dplab decode` prints no time where tshark prints none, and the report's first and last
 * timestamps are those of the first and last packets that have one. The captures: the synthetic
 * test/fixtures/simple-packet-blocks.pcapng (scripts/make-fixtures.mjs; it starts and ends with
 * an SPB) and two real files that mix SPBs with Enhanced Packet Blocks.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import { Batch } from '../src/packet/batch.js';
import { timestampToString } from '../src/packet/format.js';
import { TrafficSummary } from '../src/packet/summary.js';
import { ROOT, readAll } from './helpers.js';

const CASES = [
  ['test/fixtures/simple-packet-blocks.pcapng', 'test/golden/fixtures/simple-packet-blocks.pcapng.tsv'],
  ['captures/pcapng/gopacket_le_test100.pcapng', 'test/golden/pcapng/gopacket_le_test100.pcapng.tsv'],
  ['captures/pcapng/gopacket_be_test202.pcapng', 'test/golden/pcapng/gopacket_be_test202.pcapng.tsv'],
] as const;

/** tshark's frame.time_epoch per packet, '' where it printed none. */
function tsharkTimes(golden: string): string[] {
  const lines = readFileSync(join(ROOT, golden), 'utf8').trim().split('\n');
  const col = lines[0]!.split('\t').indexOf('time');
  return lines.slice(1).map((l) => l.split('\t')[col]!);
}

describe('packets without a timestamp (pcapng Simple Packet Blocks)', () => {
  for (const [capture, golden] of CASES) {
    it(`${capture}: dplab decode prints the time tshark prints, and none where tshark has none`, () => {
      const want = tsharkTimes(golden);
      expect(want.filter((t) => t === '').length).toBeGreaterThan(0);
      const out = execFileSync('node', [join(ROOT, 'bin/dplab.js'), 'decode', join(ROOT, capture)], { encoding: 'utf8' });
      const got = out.trimEnd().split('\n').map((l) => l.split('\t')[1]);
      expect(got).toEqual(want);
    });

    it(`${capture}: the summary's first and last timestamps skip packets without one`, () => {
      const times = tsharkTimes(golden).filter((t) => t !== '');
      const s = new TrafficSummary();
      readAll(join(ROOT, capture), (b) => s.add(b));
      expect(timestampToString(s.firstSec, s.firstNsec)).toBe(times[0]);
      expect(timestampToString(s.lastSec, s.lastNsec)).toBe(times[times.length - 1]);
    });
  }

  it('a packet without a timestamp runs on the last time the file gave (0 before any), so conntrack\'s clock never goes back', () => {
    // Batches of two, so an SPB also starts a batch (packet 3) and takes the previous batch's time.
    const clock: string[] = [];
    const src = openCapture(join(ROOT, CASES[0][0]));
    const b = new Batch(2);
    while (src.fill(b) > 0) {
      for (let i = 0; i < b.count; i++) clock.push(timestampToString(b.tsSec[i]!, b.tsNsec[i]!));
      src.release(b);
    }
    src.close();
    const known = tsharkTimes(CASES[0][1]);
    let last = '0.000000000';
    expect(clock).toEqual(known.map((t) => (last = t === '' ? last : t)));
  });
});
