/**
 * Verdicts do not depend on how packets are batched: every shipped capture, and a generated SYN
 * scan whose flows begin and end inside one batch, give the same verdict (stage and reason) for
 * every packet and the same flow log at --batch 1, 7 and 256, and with 2 workers; and
 * `dplab trace` (which runs one packet at a time) tells the same verdict as `replay` for every
 * packet of the scan.
 *
 * The scan's expected drops come from tshark, not from dplab: the shipped policy drops TCP to
 * ports 23, 135, 139 and 445, and conntrack carries a flow's decision to its reply, so exactly the
 * packets tshark finds with `tcp.port in {23, 135, 139, 445}` are dropped by policy rule.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCapture } from '../src/capture/open.js';
import { writeSynthPcap } from '../src/gen/synth.js';
import { Verdict } from '../src/packet/batch.js';
import { runParallel, workerPool } from '../src/pipeline/parallel.js';
import { loadProfile, parseProfile } from '../src/pipeline/profile.js';
import { buildStages } from '../src/pipeline/registry.js';
import { runCapture } from '../src/pipeline/run.js';
import { tracePacket } from '../src/cli/trace.js';
import '../src/stages/index.js';
import { CAPTURES, captureIndex, ROOT } from './helpers.js';

const BATCHES = [1, 7, 256];
/** Every profile that keeps per-flow state of its own: ctlb's sockets, dnat's and vfp's NAT bindings. */
const PROFILES = ['ebpf', 'iptables', 'hns'];
/** The profiles whose policy stage's drops tshark can find by a filter (hns drops in vfp's ACL layer). */
const POLICY_ORACLE = ['ebpf', 'iptables'];

interface Outcome {
  /** Per packet (index num - 1): 0 forwarded, else 1 + stage * 256 + reason; -1 malformed. */
  verdicts: number[];
  /** The flow log, in the order flows ended. */
  flows: string[];
  /** At --batch 1: what `dplab trace` says of each packet (its last line), as the trace command renders it. */
  traced: string[];
}

function replay(file: string, profile: string, batchSize: number, text?: string): Outcome {
  const verdicts: number[] = [];
  const flows: string[] = [];
  const traced: string[] = [];
  const stages = buildStages(text === undefined ? loadProfile(profile) : parseProfile(text, `${profile}.profile`));
  runCapture({
    file,
    profile,
    stages,
    batchSize,
    timing: false,
    onFlow: (r) => flows.push(JSON.stringify(r)),
    onBatch: (b) => {
      for (let i = 0; i < b.count; i++) {
        verdicts[b.num[i]! - 1] = b.verdict[i] === Verdict.PASS ? 0 : b.malformed[i] !== 0 ? -1 : 1 + b.stage[i]! * 256 + b.reason[i]!;
      }
      if (batchSize === 1) traced.push(tracePacket(b, 0, stages).at(-1)!.trim());
    },
  });
  return { verdicts, flows, traced };
}

function opens(file: string): boolean {
  try { openCapture(file).close(); return true; } catch { return false; }
}

const dir = mkdtempSync(join(tmpdir(), 'dplab-batch-'));
const scan = join(dir, 'scan.pcap');
const pool = workerPool(2);
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await pool.destroy();
});

describe('a SYN scan: flows that end inside a batch', () => {
  /** Packet numbers tshark finds with a display filter. */
  const tshark = (filter: string): number[] => {
    const r = spawnSync('tshark', ['-r', scan, '-Y', filter, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) throw new Error(`tshark could not read the scan (${r.error?.message ?? r.stderr}): install it, e.g. apt-get install tshark`);
    return r.stdout.split('\n').filter(Boolean).map(Number);
  };
  const PORTS = 'tcp.port in {23, 135, 139, 445}';
  /** The shipped blocklist: xdp drops it in ebpf, the iptables chain has it as its first rules. */
  const BLOCKED = 'ip.addr == 192.0.2.0/24 || ip.addr == 198.51.100.0/24 || ip.addr == 203.0.113.0/24 || ipv6.addr == 2001:db8:bad::/48';
  const expected: Record<string, number[]> = {};
  beforeAll(() => {
    // 40% of packets are probes: about 60 two-packet flows start and end in every 256-packet batch.
    writeSynthPcap(scan, { seed: 7, flows: 400, scanShare: 0.4, attackShare: 0.05, concurrency: 50 });
    expected.ebpf = tshark(`(${PORTS}) && !(${BLOCKED})`);
    expected.iptables = tshark(`(${PORTS}) || (${BLOCKED})`);
  });

  for (const profile of POLICY_ORACLE) {
    it(`${profile}: policy drops by rule exactly the packets tshark finds, at every batch size`, () => {
      const expectedDrops = expected[profile]!;
      expect(expectedDrops.length).toBeGreaterThan(100);
      const policy = buildStages(loadProfile(profile)).findIndex((s) => s.name === 'policy');
      for (const batch of BATCHES) {
        const { verdicts } = replay(scan, profile, batch);
        const byRule = verdicts.flatMap((v, k) => (v === 1 + policy * 256 + 0 ? [k + 1] : []));
        expect(byRule, `--batch ${batch}`).toEqual(expectedDrops);
      }
    });
  }

  for (const profile of PROFILES) {
    it(`${profile}: the same verdicts and flow log at every batch size`, () => {
      const base = replay(scan, profile, 256);
      expect(base.verdicts.filter((v) => v !== 0).length, 'some packets dropped').toBeGreaterThan(100);
      for (const batch of [1, 7]) {
        const other = replay(scan, profile, batch);
        expect(other.verdicts, `--batch ${batch}`).toEqual(base.verdicts);
        expect(other.flows, `--batch ${batch} flow log`).toEqual(base.flows);
      }
    });

    it(`${profile}: 2 workers give every packet the verdict one pipeline gives`, async () => {
      const one = replay(scan, profile, 256);
      for (const batchSize of [7, 256]) {
        const r = await runParallel({ file: scan, profile, workers: 2, batchSize, pool, timing: false, verdictBits: true });
        const forwarded = one.verdicts.map((_, k) => (r.forwarded[k >>> 3]! >> (k & 7)) & 1);
        expect(forwarded, `--workers 2 --batch ${batchSize}`).toEqual(one.verdicts.map((v) => (v === 0 ? 1 : 0)));
      }
    });
  }

  // Timeouts of a few milliseconds (the scan spans ~30 ms), so entries expire during the run and
  // when the sweep reaches them matters too.
  const SHORT_TIMEOUTS = ['syn-sent', 'syn-recv', 'established', 'fin-wait', 'close-wait', 'last-ack', 'time-wait', 'close']
    .map((s) => `timeout-tcp-${s}: 3ms\n`).join('') + 'timeout-udp: 3ms\ntimeout-udp-stream: 3ms\ntimeout-icmp: 3ms\n';
  for (const whenFull of ['evict', 'drop-new']) {
    it(`a flow table that fills (64 entries, when-full: ${whenFull}): the same verdicts and flow log at every batch size`, () => {
      const text = `pipeline: conntrack -> policy\n[conntrack]\ncapacity: 64\nwhen-full: ${whenFull}\n${SHORT_TIMEOUTS}[policy]\nrules: ${join(ROOT, 'profiles/rules/policy.rules')}\n`;
      const base = replay(scan, `small-${whenFull}`, 256, text);
      // The table did fill: flows were evicted, or packets dropped for want of room.
      expect(base.flows.some((f) => f.includes('"end":"evicted"')) || base.verdicts.includes(1 + 0 * 256 + 0)).toBe(true);
      for (const batch of [1, 7]) {
        const other = replay(scan, `small-${whenFull}`, batch, text);
        expect(other.verdicts, `--batch ${batch}`).toEqual(base.verdicts);
        expect(other.flows, `--batch ${batch} flow log`).toEqual(base.flows);
      }
    });
  }

  it('trace tells every packet the verdict replay gives', () => {
    const { verdicts } = replay(scan, 'ebpf', 256);
    const names = buildStages(loadProfile('ebpf')).map((s) => s.name);
    const out = execFileSync('node', [join(ROOT, 'bin/dplab.js'), 'trace', scan, '--packet', `1-${verdicts.length}`, '--limit', String(verdicts.length)], { encoding: 'utf8', maxBuffer: 1 << 28 });
    const told = [...out.matchAll(/^ {2}=> (.*)$/gm)].map((m) => m[1]!);
    expect(told.length).toBe(verdicts.length);
    const expected = verdicts.map((v) => (v === 0 ? 'forwarded' : v < 0 ? 'malformed' : `dropped by ${names[(v - 1) >> 8]}`));
    expect(told.map((t) => t.replace(/ \(.*$/, ''))).toEqual(expected);
  });
});

/** The last line trace prints for a packet with verdict code v. */
function told(v: number, stageNames: string[]): string {
  return v === 0 ? '=> forwarded' : v < 0 ? '=> malformed' : `=> dropped by ${stageNames[(v - 1) >> 8]}`;
}

const names: Record<string, string[]> = Object.fromEntries(PROFILES.map((p) => [p, buildStages(loadProfile(p)).map((s) => s.name)]));

describe('every shipped capture: the same verdicts and flows at --batch 1, 7 and 256, and trace agrees', () => {
  for (const row of captureIndex()) {
    const file = join(CAPTURES, row.file);
    if (!opens(file)) continue;
    it(row.file, () => {
      for (const profile of PROFILES) {
        const base = replay(file, profile, 256);
        for (const batch of [1, 7]) {
          const other = replay(file, profile, batch);
          expect(other.verdicts, `${profile} --batch ${batch}`).toEqual(base.verdicts);
          expect(other.flows, `${profile} --batch ${batch} flow log`).toEqual(base.flows);
          // trace runs one packet at a time and renders each packet's fate: it agrees with replay.
          if (batch === 1) expect(other.traced, `${profile} trace`).toEqual(base.verdicts.map((v) => told(v, names[profile]!)));
        }
      }
    });
  }
});
