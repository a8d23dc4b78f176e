/**
 * Workers change nothing: with 2 and 3 worker threads every shipped capture gets the same
 * verdict for every packet, the same flows (tuple, counters, state, how they ended), the same
 * totals and the same figure for figure stage reports (peaks included) as one pipeline on the
 * main thread. Also: a stage that throws in a worker ends the run with the stage and packets
 * named and what was processed reported, and no hang.
 */
import { readFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import { loadProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { writeSynthPcap } from '../src/gen/synth.js';
import { defaultWorkers, mergeReports, PARALLEL_MIN_BYTES, runParallel, WorkerFailure, workerPool } from '../src/pipeline/parallel.js';
import { runCapture, type RunReport } from '../src/pipeline/run.js';
import { StageFailure } from '../src/pipeline/runner.js';
import { Sharder } from '../src/pipeline/shard.js';
import { reportError } from '../src/cli/main.js';
import { renderReport } from '../src/cli/report.js';
import '../src/stages/index.js';
import { CAPTURES, captureIndex, ROOT } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'dplab-workers-'));
// One pool for the whole file: starting threads per capture would be most of the run time.
const pool = workerPool(3);
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await pool.destroy();
});

function opens(file: string): boolean {
  try { openCapture(file).close(); return true; } catch { return false; }
}

function flowLines(path: string): string[] {
  return readFileSync(path, 'utf8').trim().split('\n').slice(1).sort();
}

/** ctlb's sockets (ebpf), dnat's bindings (iptables), vfp's (hns): per-flow state the shards must split alike. */
const PROFILES = ['ebpf', 'iptables', 'hns'];

describe('N workers give the same results as one pipeline', () => {
  for (const row of captureIndex()) {
    const file = join(CAPTURES, row.file);
    if (!opens(file)) continue;
    it(`${row.file}`, async () => {
      for (const profile of PROFILES) {
        const bits = new Uint8Array(new SharedArrayBuffer(1 << 16));
        const one = runCapture({ file, profile, stages: buildStages(loadProfile(profile)), forwardedBits: bits, flowLog: join(dir, 'one.flows') });
        for (const workers of [2, 3]) {
          const many = await runParallel({ file, profile, workers, pool, flowLog: join(dir, 'many.flows'), verdictBits: true });
          const msg = `${profile}, ${workers} workers`;
          expect(many.report.verdicts, msg).toEqual(one.report.verdicts);
          const bytes = Math.ceil(one.report.capture.packets / 8);
          expect(Buffer.from(many.forwarded.subarray(0, bytes)).equals(Buffer.from(bits.subarray(0, bytes))), `${msg}: per-packet verdicts`).toBe(true);
          expect(flowLines(join(dir, 'many.flows')), `${msg}: flows`).toEqual(flowLines(join(dir, 'one.flows')));
          expect(many.report.capture).toEqual(one.report.capture);
          expect(captureSection(many.report), `${msg}: the text report's capture part`).toBe(captureSection(one.report));
          // Rows every worker runs on every packet count each packet once per worker.
          expect(many.report.stages.map((s) => [s.name, s.allPackets ? s.packets / workers : s.packets, s.dropped]))
            .toEqual(one.report.stages.map((s) => [s.name, s.packets, s.dropped]));
          expect(many.report.stages[0]).toMatchObject({ name: 'decode', allPackets: true, packets: one.report.capture.packets * workers });
          expectSameStageReports(many.report, one.report, msg);
        }
      }
    });
  }
});

describe('the text report does not depend on the order the workers\' counts were merged in', () => {
  it('breakdowns with equal counts list the same way whichever key came first', () => {
    const r = runCapture({ file: join(CAPTURES, 'demo', 'node-ingress.pcap'), profile: 'ebpf', stages: buildStages(loadProfile('ebpf')) }).report;
    const reversed = (o: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(o).reverse());
    const c = r.capture;
    // The demo capture has one ICMP and one ICMPv6 packet: a tie whose order merging could change.
    expect(c.l4['ipv4/icmp']).toBe(c.l4['ipv6/icmpv6']);
    const flipped = { ...r, capture: { ...c, l4: reversed(c.l4), l3: reversed(c.l3), linkTypes: reversed(c.linkTypes) } };
    expect(captureSection(flipped)).toBe(captureSection(r));
  });
});

/** The text report from its breakdowns by link type, L3 and L4 to the verdicts (the summary as a user reads it). */
function captureSection(r: RunReport): string {
  const t = renderReport(r);
  const from = t.indexOf('\nLink types');
  const to = t.indexOf('\nVerdicts');
  // A capture without packets (an empty or unreadable file) has no breakdowns to show; any other
  // must have both headings, or two reports would be compared as two empty strings.
  if (r.capture.packets === 0) {
    expect(from, 'no "Link types" breakdown without packets').toBe(-1);
    return '';
  }
  expect(from, 'the report has its "Link types" heading').toBeGreaterThanOrEqual(0);
  expect(to, 'and its "Verdicts" line after it').toBeGreaterThan(from);
  return t.slice(from, to);
}

/** Every figure of every stage (peakEntries and activeAtEnd included), and nothing internal left over. */
function expectSameStageReports(merged: RunReport, one: RunReport, msg: string): void {
  expect(merged.stageReports, `${msg}: stage reports`).toEqual(one.stageReports);
  expect(merged.stageReports.conntrack?.peakEntries, `${msg}: peak entries`).toBeTypeOf('number');
  expect(merged, `${msg}: the merge information of the parts`).not.toHaveProperty('merging');
  expect(one).not.toHaveProperty('merging');
}

describe('flows that time out mid-run: the peak of live flows is the peak of the workers\' sum', () => {
  // On the shipped captures few flows end before the input does, so every worker's peak is at
  // the end and even a sum of the workers' peaks is right. Here flows time out after 3 ms of a
  // 250 ms capture, so the workers' live counts peak at different moments.
  const SHORT = ['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close']
    .map((s) => `timeout-tcp-${s}: 3ms\n`).join('') + 'timeout-udp: 3ms\ntimeout-udp-stream: 3ms\ntimeout-icmp: 3ms\n';
  const file = join(dir, 'expiring.pcap');
  const profileOf = (name: string): string => {
    const path = join(dir, `${name}-short.profile`);
    writeFileSync(path, readFileSync(join(ROOT, 'profiles', `${name}.profile`), 'utf8').replace('[conntrack]\n', `[conntrack]\n${SHORT}`));
    return path;
  };
  beforeAll(() => {
    writeSynthPcap(file, { seed: 3, flows: 2000, scanShare: 0.2, concurrency: 100 });
    // The profiles' rule files, where the copies of the profiles look for them.
    symlinkSync(join(ROOT, 'profiles', 'rules'), join(dir, 'rules'));
  });

  for (const name of PROFILES) {
    it(`${name} with 3 ms timeouts`, async () => {
      const profile = profileOf(name);
      const one = runCapture({ file, profile, stages: buildStages(loadProfile(profile)) }).report;
      const ct = one.stageReports.conntrack!;
      // Flows did time out, and far more flows were made than were ever live at once.
      expect((ct.destroyed as Record<string, number>).timeout).toBeGreaterThan(1000);
      expect(ct.peakEntries).toBeLessThan((ct.flowsCreated as number) / 10);
      expect(ct.peakEntries).toBeGreaterThanOrEqual((ct.activeAtEnd as Record<string, number>).total!);
      for (const workers of [2, 3]) {
        const msg = `${name}, ${workers} workers`;
        // The workers' parts, run here one after another: their own peaks add up to more than
        // the peak, so a merge that sums them (as before) fails this test.
        const parts = Array.from({ length: workers }, (_, k) => runCapture({
          file, profile, stages: buildStages(loadProfile(profile), workers), sharder: new Sharder(workers, k),
        }).report);
        const summed = parts.reduce((a, p) => a + (p.stageReports.conntrack!.peakEntries as number), 0);
        expect(summed, `${msg}: the workers' own peaks`).toBeGreaterThan(ct.peakEntries as number);
        expectSameStageReports(mergeReports(parts, 1), one, `${msg}, merged here`);
        const many = await runParallel({ file, profile, workers, pool });
        expect(many.report.verdicts, msg).toEqual(one.verdicts);
        expectSameStageReports(many.report, one, msg);
      }
    });
  }
});

describe('a failing worker', () => {
  it('names the stage and packets, reports what was processed, and does not hang', async () => {
    const file = join(CAPTURES, 'large/zeek_echo-connections.pcap');
    const err = await runParallel({ file, profile: 'ebpf', workers: 2, failAt: { stage: 'conntrack', packet: 40000 } })
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerFailure);
    const f = err as WorkerFailure;
    expect(f.message).toMatch(/stage conntrack failed while processing packets \d+-\d+: injected failure at packet 40000/);
    const [, from, to] = /packets (\d+)-(\d+)/.exec(f.message)!.map(Number);
    expect(from).toBeLessThanOrEqual(40000);
    expect(to).toBeGreaterThanOrEqual(40000);
    // The report covers the other worker's whole shard and the failing worker's packets before the failure.
    expect(f.partial).not.toBeNull();
    expect(f.partial!.verdicts.packets).toBeGreaterThan(40000 / 2);
    expect(f.partial!.verdicts.packets).toBeLessThan(82582);
  });

  it('that dies outright is reported with the other workers\' results', async () => {
    const file = join(CAPTURES, 'large/zeek_echo-connections.pcap');
    const err = await runParallel({ file, profile: 'ebpf', workers: 2, failAt: { stage: 'conntrack', packet: 40000, how: 'exit' } })
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerFailure);
    expect((err as WorkerFailure).message).toMatch(/worker \d died/);
    const partial = (err as WorkerFailure).partial!;
    expect(partial.verdicts.packets).toBeGreaterThan(0);
    expect(partial.verdicts.packets).toBeLessThan(82582);
  });
});

describe('running out of memory', () => {
  // The allocation is a real one the system refuses (4 PiB, past any 64-bit address space), so the
  // error is V8's own, not a message written to match: what ulimit -v or a full machine gives.
  const refuse = (): never => { new ArrayBuffer(2 ** 52); throw new Error('4 PiB was granted'); };
  const file = join(CAPTURES, 'large/zeek_echo-connections.pcap');

  it('in a worker is told apart from a bug, with what was processed', async () => {
    const err = await runParallel({ file, profile: 'ebpf', workers: 2, failAt: { stage: 'conntrack', packet: 40000, how: 'oom' } })
      .then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerFailure);
    const f = err as WorkerFailure;
    expect(f.outOfMemory).toBe(true);
    expect(f.message).toMatch(/stage conntrack failed while processing packets \d+-\d+: Array buffer allocation failed/);
    expect(f.partial!.verdicts.packets).toBeGreaterThan(40000 / 2);
    // A stage's ordinary throw is still a bug.
    const bug = await runParallel({ file, profile: 'ebpf', workers: 2, failAt: { stage: 'conntrack', packet: 40000 } })
      .then(() => null, (e: unknown) => e);
    expect((bug as WorkerFailure).outOfMemory).toBe(false);
  });

  it('on the main thread: the report so far, one line saying what to change, exit 6', () => {
    const stages = buildStages(loadProfile('ebpf'));
    const ct = stages.find((s) => s.name === 'conntrack')!;
    const process0 = ct.process.bind(ct);
    ct.process = (b, self) => {
      for (let i = 0; i < b.count; i++) if (b.num[i] === 30000) refuse();
      process0(b, self);
    };
    const err = (() => { try { runCapture({ file, profile: 'ebpf', stages }); return null; } catch (e) { return e; } })();
    expect(err).toBeInstanceOf(StageFailure);
    expect((err as StageFailure).outOfMemory).toBe(true);
    const out: string[] = [];
    const errOut: string[] = [];
    const so = vi.spyOn(process.stdout, 'write').mockImplementation((t) => { out.push(String(t)); return true; });
    const se = vi.spyOn(process.stderr, 'write').mockImplementation((t) => { errOut.push(String(t)); return true; });
    let code: number;
    try { code = reportError(err, 'replay'); } finally { so.mockRestore(); se.mockRestore(); }
    expect(code).toBe(6);
    expect(out.join('')).toMatch(/INCOMPLETE/);
    const first = Number(/packets (\d+)-/.exec(errOut.join(''))![1]);
    expect(out.join('')).toContain(`${(first - 1).toLocaleString('en-US')} packets`);
    expect(errOut).toHaveLength(1);
    expect(errOut[0]).toMatch(/^dplab: out of memory: stage conntrack failed while processing packets \d+-\d+: Array buffer allocation failed\. .*ulimit -v.*capacity/);
    expect(errOut[0]).not.toMatch(/bug/);
    // Outside any stage (reading, merging) it is the same advice, not "internal error".
    const se2 = vi.spyOn(process.stderr, 'write').mockImplementation((t) => { errOut.push(String(t)); return true; });
    try { code = reportError((() => { try { return refuse(); } catch (e) { return e; } })(), 'compare'); } finally { se2.mockRestore(); }
    expect(code).toBe(6);
    expect(errOut[1]).toMatch(/^dplab compare: out of memory: Array buffer allocation failed\. /);
  });
});

describe('--workers auto', () => {
  // bench/workers.js on this project's 2-vCPU machine: 2 workers from the command line (a new pool)
  // ran 0.89x one worker, so auto must not choose them there; with more cores the per-flow part
  // divides and big captures get one worker per core (at most 8).
  it('is one worker on 2 cores, whatever the size, and below PARALLEL_MIN_BYTES anywhere', () => {
    expect(defaultWorkers(8 * PARALLEL_MIN_BYTES, 2)).toBe(1);
    expect(defaultWorkers(8 * PARALLEL_MIN_BYTES, 1)).toBe(1);
    expect(defaultWorkers(PARALLEL_MIN_BYTES - 1, 16)).toBe(1);
  });
  it('is one per core, at most 8, for big captures on bigger machines', () => {
    expect(defaultWorkers(PARALLEL_MIN_BYTES, 4)).toBe(4);
    expect(defaultWorkers(PARALLEL_MIN_BYTES, 32)).toBe(8);
  });
});
