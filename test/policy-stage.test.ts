/**
 * The policy stage: per-rule hits against tshark's counts on shipped captures (test/golden/stages/
 * policy.json, made by scripts/make-stage-golden.mjs) for every evaluator; once per flow behind
 * conntrack versus once per packet without; explanations and config errors.
 *
 * The conntrack stage is written separately; here a stand-in stage marks packets (ctInfo, flow,
 * dir) the way conntrack does, keyed by the 5-tuple, so the policy side is tested on its own.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CtInfo } from '../src/conntrack/info.js';
import { FlowTable } from '../src/conntrack/table.js';
import { Verdict, type Batch } from '../src/packet/batch.js';
import { Proto } from '../src/packet/decode.js';
import { EVALUATORS } from '../src/policy/evaluator.js';
import { parseProfile } from '../src/pipeline/profile.js';
import { runCapture } from '../src/pipeline/run.js';
import { Pipeline } from '../src/pipeline/runner.js';
import type { Stage, StageReport } from '../src/pipeline/stage.js';
import { Decision, PolicyStage, policyConfig } from '../src/stages/policy.js';
import { CAPTURES, ROOT } from './helpers.js';
import { rawBatch, runProfile, stagesOf, type RawPacket } from './stage-run.js';

/** Profiles and list files the tests write: one folder, removed when they are done. */
const tmp = mkdtempSync(join(tmpdir(), 'dplab-policy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface PolicyCase {
  name: string;
  file: string;
  default: string;
  rules: string[];
  filters: string[];
  expected: { hits: Record<string, number>; dropped: number };
}
interface PerFlowCase {
  file: string;
  default: string;
  rules: string[];
  expected: { packets: number; tcpStreams: number; nonTcp: number; droppedPerPacket: number; droppedPerFlow: number };
}
const golden = JSON.parse(readFileSync(join(ROOT, 'test/golden/stages/policy.json'), 'utf8')) as { cases: PolicyCase[]; perFlow: PerFlowCase };

function profileText(c: { default: string; rules: string[] }, evaluator: string): string {
  return `pipeline: policy\n[policy]\nevaluator: ${evaluator}\ndefault: ${c.default}\n${c.rules.map((r) => `rule: ${r}`).join('\n')}\n`;
}

describe('policy without conntrack: every packet is evaluated, first match wins (tshark counts)', () => {
  for (const c of golden.cases) {
    for (const evaluator of EVALUATORS) {
      it(`${c.file}: ${c.name} [${evaluator}]`, () => {
        const { report } = runProfile(profileText(c, evaluator), c.file);
        expect(report.verdicts.malformed).toBe(0);
        const policy = report.stageReports.policy!;
        const want = Object.fromEntries(Object.entries(c.expected.hits).filter(([, n]) => n > 0));
        expect(policy.hits).toEqual(want);
        expect(report.verdicts.dropped).toBe(c.expected.dropped);
        const ipPackets = Object.values(c.expected.hits).reduce((a, n) => a + n, 0);
        expect(policy.evaluations).toBe(ipPackets);
        expect(policy.cachedLookups).toBe(0);
      });
    }
  }
});

/**
 * Stand-in for the conntrack stage: one flow per 5-tuple (either direction), in a real FlowTable.
 * A flow's packets are NEW until the other side answers, ESTABLISHED after; dir says which side
 * sent the packet. Non-TCP/UDP packets stay UNTRACKED. (No timeouts, states or table limits:
 * what the policy stage reads is ctInfo, flow and dir, and its own columns in the table.)
 */
class HandConntrack implements Stage {
  readonly name = 'conntrack';
  readonly reasons: readonly string[] = [];
  readonly table = new FlowTable(4096);
  private readonly flows = new Map<string, { entry: number; origin: string; replied: boolean }>();

  process(b: Batch): void {
    for (let i = 0; i < b.count; i++) {
      if (b.verdict[i] !== Verdict.PASS) continue;
      const p = b.proto[i];
      if (b.family[i] === 0 || (p !== Proto.TCP && p !== Proto.UDP)) { b.ctInfo[i] = CtInfo.UNTRACKED; b.flow[i] = -1; continue; }
      const w = 4 * i;
      const a = `${[...b.src.subarray(w, w + 4)]}:${b.sport[i]}`;
      const z = `${[...b.dst.subarray(w, w + 4)]}:${b.dport[i]}`;
      const key = `${p} ${a < z ? `${a} ${z}` : `${z} ${a}`}`;
      let f = this.flows.get(key);
      if (!f) {
        f = { entry: this.flows.size, origin: a, replied: false };
        this.flows.set(key, f);
      }
      const dir = a === f.origin ? 0 : 1;
      if (dir === 1) f.replied = true;
      b.flow[i] = f.entry;
      b.dir[i] = dir;
      b.ctInfo[i] = f.replied ? CtInfo.ESTABLISHED : CtInfo.NEW;
    }
  }

  report(): StageReport {
    return { flows: this.flows.size };
  }
}

function policyStage(text: string, ct: FlowTable | null, file = 'inline.profile'): PolicyStage {
  const section = parseProfile(`pipeline: policy\n[policy]\n${text}\n`, file).sections.get('policy')!;
  const s = new PolicyStage(policyConfig(section), ct);
  const [unknown] = section.unknownKeys();
  if (unknown) throw unknown;
  return s;
}

describe('policy behind conntrack decides once per flow', () => {
  const c = golden.perFlow;
  for (const evaluator of EVALUATORS) {
    it(`${c.file}: ${c.expected.tcpStreams} flows, ${c.expected.packets} packets -> ${c.expected.tcpStreams} evaluations [${evaluator}]`, () => {
      const ct = new HandConntrack();
      const perFlow = policyStage(`evaluator: ${evaluator}\ndefault: ${c.default}\n${c.rules.map((r) => `rule: ${r}`).join('\n')}`, ct.table);
      const withCt = runCapture({ file: join(CAPTURES, c.file), profile: 'per-flow', stages: [ct, perFlow], timing: false }).report;
      expect(ct.report().flows).toBe(c.expected.tcpStreams);
      const r = withCt.stageReports.policy!;
      expect(r.evaluations).toBe(c.expected.tcpStreams + c.expected.nonTcp);
      expect(r.cachedLookups).toBe(c.expected.packets - c.expected.tcpStreams - c.expected.nonTcp);
      // The flows' first packets go to the server's port 80: accepted, and so is every reply.
      expect(withCt.verdicts.dropped).toBe(c.expected.droppedPerFlow);

      const perPacket = runProfile(profileText(c, evaluator), c.file).report;
      expect(perPacket.stageReports.policy!.evaluations).toBe(c.expected.packets);
      // Judged alone, the server's replies match no rule and fall to the default (drop).
      expect(perPacket.verdicts.dropped).toBe(c.expected.droppedPerPacket);
    });
  }
});

/** A stand-in conntrack that marks packet k with marks[k] (ctInfo, flow entry, direction). */
class Marks implements Stage {
  readonly name = 'marks';
  readonly reasons: readonly string[] = [];
  constructor(private readonly marks: [info: number, flow: number, dir: number][]) {}
  process(b: Batch): void {
    for (let i = 0; i < b.count; i++) [b.ctInfo[i], b.flow[i], b.dir[i]] = this.marks[i]!;
  }
  report(): StageReport {
    return {};
  }
}

/** Policy's per-flow columns, as the test reads them. */
interface FlowCache { decision: Uint8Array; rule: Int32Array }

function run(rules: string, pkts: RawPacket[], marks: [number, number, number][] | null): { b: Batch; s: PolicyStage; table: FlowCache } {
  const s = policyStage(rules, marks ? new FlowTable(16) : null);
  const p = new Pipeline(marks ? [new Marks(marks), s] : [s]);
  const b = rawBatch(pkts);
  p.process(b);
  return { b, s, table: { decision: s.flowDecision, rule: s.flowRule } };
}

describe('what is cached and what is evaluated per packet', () => {
  const rules = 'default: accept\nrule: drop udp from 192.0.2.0/24 port 53\nrule: accept udp';
  const bad = { src: '192.0.2.1', dst: '10.0.0.1', dport: 53 };
  const badReply = { src: '10.0.0.1', dst: '192.0.2.1', sport: 53, dport: 40000 };
  const good = { src: '198.51.100.1', dst: '10.0.0.1', dport: 53 };

  it('a NEW packet decides for its flow; the flow\'s later packets, both ways, get the cached decision', () => {
    const { b, s, table } = run(rules, [bad, bad, badReply, good, good], [
      [CtInfo.NEW, 3, 0], [CtInfo.NEW, 3, 0], [CtInfo.ESTABLISHED, 3, 1], [CtInfo.NEW, 5, 0], [CtInfo.ESTABLISHED, 5, 0],
    ]);
    expect([...b.verdict.subarray(0, 5)]).toEqual([Verdict.DROP, Verdict.DROP, Verdict.DROP, Verdict.PASS, Verdict.PASS]);
    expect([table.decision[3], table.rule[3], table.decision[5], table.rule[5]]).toEqual([Decision.DROP, 0, Decision.ACCEPT, 1]);
    expect(s.report()).toMatchObject({ evaluations: 2, cachedLookups: 3, dropped: 3, accepted: 2, hits: { 'rule 1': 1, 'rule 2': 1 } });
    expect(s.explain(b, 0)).toBe('rule 1 (drop udp from 192.0.2.0/24 port 53) matched: drop; stored in flow #3');
    expect(s.explain(b, 2)).toBe('cached decision of flow #3: drop (rule 1)');
    expect(s.explain(b, 4)).toBe('cached decision of flow #5: accept (rule 2)');
    expect([b.reason[0], b.reason[2]]).toEqual([0, 0]);
    expect(s.reasons[b.reason[0]!]).toBe('rule');
  });

  it('INVALID and UNTRACKED packets are evaluated on their own and store nothing', () => {
    const { b, s, table } = run(rules, [bad, bad], [[CtInfo.INVALID, 3, 0], [CtInfo.UNTRACKED, -1, 0]]);
    expect([...b.verdict.subarray(0, 2)]).toEqual([Verdict.DROP, Verdict.DROP]);
    expect(table.decision[3]).toBe(Decision.NONE);
    expect(s.report()).toMatchObject({ evaluations: 2, cachedLookups: 0 });
    expect(s.explain(b, 0)).toBe('rule 1 (drop udp from 192.0.2.0/24 port 53) matched: drop');
  });

  it('a reply or an ICMP error reaching policy before its flow has a decision is judged alone, not stored', () => {
    // The reply matches no drop rule (its source is the server), so judged alone it passes; had it
    // been stored, the flow's own first packet would have been accepted from the cache.
    const { b, s, table } = run(rules, [badReply, bad], [[CtInfo.ESTABLISHED, 3, 1], [CtInfo.NEW, 3, 0]]);
    expect([...b.verdict.subarray(0, 2)]).toEqual([Verdict.PASS, Verdict.DROP]);
    expect(table.decision[3]).toBe(Decision.DROP);
    expect(s.report()).toMatchObject({ evaluations: 2, cachedLookups: 0 });
    const related = run(rules, [bad], [[CtInfo.RELATED, 7, 0]]);
    expect(related.table.decision[7]).toBe(Decision.NONE);
  });

  it('without conntrack every packet runs the rules; the default decides when none matches', () => {
    const { b, s } = run('default: drop\nrule: accept udp port 53', [good, badReply, { ...good, proto: Proto.TCP }], null);
    expect([...b.verdict.subarray(0, 3)]).toEqual([Verdict.PASS, Verdict.DROP, Verdict.DROP]);
    expect(s.report()).toMatchObject({ evaluations: 3, cachedLookups: 0, dropped: 2, hits: { 'rule 1': 1, default: 2 } });
    expect(s.reasons[b.reason[1]!]).toBe('default');
    expect(s.explain(b, 1)).toBe('no rule matched: default drop');
  });

  it('packets that are not IP are accepted without evaluation', () => {
    const [policy] = stagesOf('pipeline: policy\n[policy]\ndefault: drop\n');
    const { report } = runCapture({ file: join(CAPTURES, 'linktype/zeek_linuxsll-arp.pcap'), profile: 'arp', stages: [policy!], timing: false });
    expect(report.verdicts.dropped).toBe(0);
    expect(report.stageReports.policy).toMatchObject({ evaluations: 0, notIp: 12, accepted: 12 });
  });
});

describe('rules from the profile and from rule files', () => {
  it('are numbered in the order they appear, rule: and rules: interleaved', () => {
    const dir = mkdtempSync(join(tmp, 'case-'));
    writeFileSync(join(dir, 'web.rules'), '# web\naccept tcp port 80\n\naccept tcp port 443  # tls\n');
    const profile = join(dir, 'site.profile');
    const [policy] = stagesOf('pipeline: policy\n[policy]\nrule: drop from 192.0.2.0/24\nrules: web.rules\nrule: drop tcp\n', profile);
    const p = new Pipeline([policy!]);
    const b = rawBatch([
      { src: '198.51.100.1', dst: '10.0.0.1', proto: Proto.TCP, dport: 443 },
      { src: '198.51.100.1', dst: '10.0.0.1', proto: Proto.TCP, dport: 22 },
    ]);
    p.process(b);
    expect(policy!.explain!(b, 0)).toBe('rule 3 (accept tcp port 443) matched: accept');
    expect(policy!.explain!(b, 1)).toBe('rule 4 (drop tcp) matched: drop');
    expect(policy!.describe!().rules).toMatchObject({ written: 4 });
  });

  const err = (section: string, file = 'site.profile'): string => {
    try {
      stagesOf(`pipeline: policy\n[policy]\n${section}\n`, file);
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };

  it.each([
    ['evaluator: radix', 'site.profile:3: [policy] evaluator: "radix" is not one of: chain, set, trie'],
    ['default: reject', 'site.profile:3: [policy] default: "reject" is not one of: accept, drop'],
    ['rule: accept tcp\nrule: drop tcp port 99999', 'site.profile:4: [policy] rule: "99999" is not a port: ports are 0..65535'],
    ['rule: allow tcp', 'site.profile:3: [policy] rule: "allow" is not an action'],
    ['rule: drop tcp from 10.0.0.300/8', 'site.profile:3: [policy] rule: "10.0.0.300/8" is not an IPv4 or IPv6 prefix'],
    ['rules: missing.rules', 'site.profile:3: [policy] rules: cannot read'],
    ['rul: drop tcp', 'site.profile:3: [policy] rul: unknown key'],
  ])('%j', (section, message) => {
    expect(err(section)).toContain(message);
  });

  it('an error in a rules file names that file and line', () => {
    const dir = mkdtempSync(join(tmp, 'case-'));
    writeFileSync(join(dir, 'web.rules'), 'accept tcp port 80\n# next one is wrong\ndrop tcp form 10.0.0.0/8\n');
    expect(err('rule: drop icmp\nrules: web.rules', join(dir, 'site.profile')))
      .toMatch(/web\.rules:3: \[policy\] rule: unexpected "form" \(expected one of: from, to, sport, port\) \(in the rules file of .*site\.profile:4\)$/);
  });
});
