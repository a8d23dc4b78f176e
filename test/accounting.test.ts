/**
 * Every packet is accounted for: packets in = forwarded + dropped (by stage and reason) +
 * malformed, on every shipped capture (damaged ones included) and every built-in profile; the
 * per-stage table adds up; and on clean captures "packets in" is capinfos' count (INDEX.tsv).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CaptureError } from '../src/capture/errors.js';
import { builtinProfiles, loadProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture, type RunReport } from '../src/pipeline/run.js';
import '../src/stages/index.js';
import { CAPTURES, captureIndex } from './helpers.js';

const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

function checkBooks(rep: RunReport, packetsRead: number): void {
  const v = rep.verdicts;
  expect(v.packets).toBe(packetsRead);
  expect(v.forwarded + v.dropped + v.malformed).toBe(v.packets);
  expect(sum(v.dropsByReason)).toBe(v.dropped);
  expect(sum(v.malformedByReason)).toBe(v.malformed);
  expect(rep.capture.malformed).toBe(v.malformed);
  // The runtime table: each stage gets what the one before it let through.
  const [decode, ...stages] = rep.stages;
  expect(decode!.packets).toBe(v.packets);
  expect(decode!.dropped).toBe(v.malformed);
  let alive = v.packets - v.malformed;
  for (const s of stages) {
    expect(s.packets).toBe(alive);
    alive -= s.dropped;
  }
  expect(alive).toBe(v.forwarded);
}

describe('every packet is accounted for', () => {
  const profiles = builtinProfiles();
  it('ships profiles to check', () => expect(profiles.length).toBeGreaterThanOrEqual(4));
  for (const row of captureIndex()) {
    it(`${row.file}: in = forwarded + dropped + malformed under ${profiles.join(', ')}`, () => {
      for (const name of profiles) {
        let run: ReturnType<typeof runCapture>;
        try {
          run = runCapture({ file: join(CAPTURES, row.file), profile: name, stages: buildStages(loadProfile(name)) });
        } catch (e) {
          // Not a capture at all: nothing was read, so nothing to account for; the error says where.
          expect(e).toBeInstanceOf(CaptureError);
          expect((e as CaptureError).offset).toBeGreaterThanOrEqual(0);
          continue;
        }
        const { report, source } = run;
        checkBooks(report, source.packets);
        if (!row.file.startsWith('fuzz/') && !row.file.startsWith('malformed/')) expect(report.verdicts.packets).toBe(row.packets);
      }
    });
  }
});

describe('--write and --write-dropped split the capture', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dplab-acct-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const tsharkCount = (f: string): number => {
    try {
      return execFileSync('tshark', ['-r', f, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
        .split('\n').filter((l) => l.trim() !== '').length;
    } catch (e) {
      throw new Error(`tshark is needed to read the written captures back (apt-get install tshark): ${(e as Error).message}`);
    }
  };
  for (const [file, profile] of [['large/ppp_many-protocols.pcap', 'iptables'], ['pcapng/ppp_pcapng-example.pcapng', 'ebpf'], ['malformed/tcpdump_ipv4_invalid_hdr_length.pcap', 'ebpf']] as const) {
    it(`${file} (${profile}): tshark reads forwarded + dropped back as every packet`, () => {
      const fwd = join(dir, 'fwd'); const drop = join(dir, 'drop');
      const { report } = runCapture({ file: join(CAPTURES, file), profile, stages: buildStages(loadProfile(profile)), write: fwd, writeDropped: drop });
      expect(tsharkCount(fwd)).toBe(report.verdicts.forwarded);
      expect(tsharkCount(drop)).toBe(report.verdicts.dropped + report.verdicts.malformed);
    });
  }
});
