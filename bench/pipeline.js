// The pipeline engine end to end: profiles, per-stage costs, per-packet vs once-per-flow policy,
// and what timing the stages costs. For the "pipeline engine, XDP, conntrack, policy" issue.
//
// Input: `dplab gen --packets 1000000 --payload 16 --attack 5%` (10 packets a flow, 20% IPv6, 10%
// VLAN, 20% UDP flows: 95,000 flows plus 50,000 attack SYNs, each its own 5-tuple), generated once
// into bench/out/ and regenerated when the generator's code or options change.
//
//   (a) every shipped profile (ebpf, iptables, ipset, stateless, conntrack-only) through runCapture,
//       inline on the main thread, taking turns within each round: Mpps end to end, each profile's
//       time as a multiple of ebpf's, and ns/packet per stage from the report. A sixth contender
//       runs ebpf alone in a fresh Node process (one warm-up run, then the timed one), so ebpf's
//       JIT state owes nothing to the other profiles' code running in the same process.
//   (b) the policy stage once per packet (pipeline: policy) against once per flow
//       (pipeline: conntrack -> policy) at 10, 1,000 and 10,000 rules, for the chain, set and trie
//       evaluators. The rules match none of the generated traffic (drop rules on prefixes the
//       generator never uses, then a final accept), so every evaluation walks the whole rule set.
//   (c) timing on and off (runCapture's `timing: false`), alternating, for ebpf.
// Every run's verdicts are checked (every packet accounted for, the same verdicts every round,
// the drops the profile should make), so a contender that skips work cannot look fast.
//
//   node bench/pipeline.js [--rounds 5] [--part a,b,c] [--only ebpf,iptables] [--json FILE]
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { median, synthCapture } from './lib/common.js';

const HERE = dirname(fileURLToPath(import.meta.url));
// DPLAB_DIST=/other/dist measures another build (a prototype, a branch) in exactly the same way.
const DIST = resolve(process.env.DPLAB_DIST ?? join(HERE, '../dist'));
const load = async (m) => import(pathToFileURL(join(DIST, m)).href);
const { runCapture } = await load('pipeline/run.js');
const { loadProfile, parseProfile, builtinProfiles } = await load('pipeline/profile.js');
const { buildStages } = await load('pipeline/registry.js');
await load('stages/index.js');
const OUT = join(HERE, 'out');

const PROFILES = ['ebpf', 'iptables', 'ipset', 'stateless', 'conntrack-only'];
const PARTS = ['a', 'b', 'c'];
const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    part: { type: 'string', default: PARTS.join(',') },
    only: { type: 'string' },
    'no-fresh': { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
    // Internal: run one profile (one warm-up run, one timed run) and print the result as JSON.
    'child-run': { type: 'string' },
  },
});
if (args.help) {
  process.stdout.write(`node bench/pipeline.js [--rounds N] [--part a,b,c] [--only PROFILE,...] [--no-fresh] [--json FILE]

  --rounds N        rounds; every contender runs once per round, in rotating order (default 5;
                    part c runs twice as many, its difference is small)
  --part a,b,c      a: profiles end to end and per stage; b: policy per packet vs once per flow at
                    10 / 1k / 10k rules; c: the cost of timing the stages (default: all)
  --only P,...      part a: only these profiles (${PROFILES.join(', ')})
  --no-fresh        part a: skip "ebpf in a fresh process"
  --json FILE       also write the results as JSON
`);
  process.exit(0);
}
const ROUNDS = Number(args.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds wants a whole number from 1, got ${args.rounds}`);
const parts = new Set(args.part.split(','));
for (const p of parts) if (!PARTS.includes(p)) throw new Error(`--part: no part "${p}" (parts: ${PARTS.join(', ')})`);
const only = args.only ? args.only.split(',') : PROFILES;
for (const p of only) if (!builtinProfiles().includes(p)) throw new Error(`--only: no built-in profile "${p}" (${builtinProfiles().join(', ')})`);

// --- the input, cached in bench/out/ under a name made of its parameters ---

const GEN = {
  seed: 1, packets: 1_000_000, payloadSize: 16, packetsPerFlow: 10,
  ipv6Share: 0.2, vlanShare: 0.1, udpShare: 0.2, attackShare: 0.05,
};


// --- helpers ---

const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const int = (x) => Math.round(x).toLocaleString('en-US');

function printTable(head, cells, indent = '') {
  const w = head.map((h, k) => Math.max(h.length, ...cells.map((c) => String(c[k]).length)));
  const line = (c) => indent + c.map((x, k) => (k === 0 ? String(x).padEnd(w[k]) : String(x).padStart(w[k]))).join('  ');
  process.stdout.write(`${line(head)}\n${cells.map(line).join('\n')}\n`);
}

function outDirMiB() {
  let n = 0;
  for (const f of readdirSync(OUT)) { try { n += statSync(join(OUT, f)).size; } catch { /* gone */ } }
  return n / 2 ** 20;
}

/** The verdicts a run must agree on, as one string. */
function verdictKey(v) {
  const sorted = (o) => Object.fromEntries(Object.entries(o).sort());
  return JSON.stringify({ ...v, dropsByReason: sorted(v.dropsByReason), malformedByReason: sorted(v.malformedByReason) });
}

/**
 * One run of a profile (a built-in name or a parsed Profile) over the capture, timed around
 * runCapture. Building the stages (allocating the flow table, compiling the rules) is not timed.
 */
function runOnce(file, profile, { timing = true, maxPackets = Infinity } = {}) {
  const p = typeof profile === 'string' ? loadProfile(profile) : profile;
  const stages = buildStages(p);
  globalThis.gc?.();
  const onBatch = Number.isFinite(maxPackets) ? (_b, src) => src.packets >= maxPackets : undefined;
  const t0 = performance.now();
  const { report } = runCapture({ file, profile: p.name, stages, timing, onBatch });
  const seconds = (performance.now() - t0) / 1000;
  if (!report.complete) throw new Error(`${p.name}: the capture did not read to the end: ${report.error?.message}`);
  const v = report.verdicts;
  if (v.packets !== v.forwarded + v.dropped + v.malformed) throw new Error(`${p.name}: packets unaccounted for: ${JSON.stringify(v)}`);
  return { seconds, report };
}

// Child mode: ebpf (or another profile) alone in this process: one warm-up run, then the timed one.
if (args['child-run']) {
  const { file } = synthCapture(GEN);
  runOnce(file, args['child-run']);
  const { seconds, report } = runOnce(file, args['child-run']);
  process.stdout.write(JSON.stringify({ seconds, verdicts: report.verdicts, stages: report.stages }) + '\n');
  process.exit(0);
}

function freshProcessRun(profile) {
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child-run', profile],
    { encoding: 'utf8', env: process.env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`fresh-process run of ${profile} failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  return { seconds: out.seconds, report: { verdicts: out.verdicts, stages: out.stages } };
}

/** What a profile must drop on the generated traffic (the attack SYNs, except conntrack-only). */
function expectedDrops(profile, summary) {
  return profile === 'conntrack-only' ? 0 : summary.attackPackets;
}

// --- (a) profiles end to end ---

function partA(file, summary, results) {
  const contenders = only.map((name) => ({ id: name, profile: name, run: () => runOnce(file, name) }));
  if (only.includes('ebpf') && !args['no-fresh']) {
    contenders.push({ id: 'ebpf (fresh process)', profile: 'ebpf', run: () => freshProcessRun('ebpf') });
  }
  const verdicts = new Map();
  const check = (c, r) => {
    const v = r.report.verdicts;
    if (v.packets !== summary.packets) throw new Error(`${c.id}: ${v.packets} packets accounted for, the capture has ${summary.packets}`);
    if (v.dropped !== expectedDrops(c.profile, summary)) throw new Error(`${c.id}: dropped ${v.dropped}, expected ${expectedDrops(c.profile, summary)}: ${JSON.stringify(v)}`);
    const key = verdictKey(v);
    const before = verdicts.get(c.profile);
    if (before !== undefined && before !== key) throw new Error(`${c.id}: verdicts changed between runs:\n${before}\n${key}`);
    verdicts.set(c.profile, key);
  };
  process.stderr.write('part a: warm-up round ...\n');
  for (const c of contenders) if (c.profile === c.id) check(c, c.run());
  const runs = new Map(contenders.map((c) => [c.id, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(k + round) % contenders.length];
      const r = c.run();
      check(c, r);
      runs.get(c.id).push({ seconds: r.seconds, stages: r.report.stages.map((s) => ({ name: s.name, nsPerPacket: s.nsPerPacket, ns: s.ns, packets: s.packets })) });
    }
    if (process.stderr.isTTY) process.stderr.write(`  part a: round ${round + 1}/${ROUNDS} done\r`);
  }
  if (process.stderr.isTTY) process.stderr.write('\x1b[K');

  const rows = contenders.map((c) => {
    const rs = runs.get(c.id);
    const secs = rs.map((r) => r.seconds);
    const med = median(secs);
    const stages = rs[0].stages.map((s, k) => ({
      name: s.name,
      nsPerPacket: median(rs.map((r) => r.stages[k].nsPerPacket)),
      // Per packet of the capture (a stage after a drop sees fewer packets than came in).
      nsPerCapturePacket: median(rs.map((r) => r.stages[k].ns / summary.packets)),
    }));
    return {
      id: c.id, profile: c.profile, pipeline: loadProfile(c.profile).stages.join(' -> '),
      runs: secs, medianSeconds: med, minSeconds: Math.min(...secs), maxSeconds: Math.max(...secs),
      mpps: summary.packets / med / 1e6, nsPerPacket: (med * 1e9) / summary.packets,
      stagesNsPerCapturePacket: median(rs.map((r) => r.stages.reduce((a, s) => a + s.ns, 0) / summary.packets)),
      stages,
    };
  });
  const ebpf = rows.find((r) => r.id === 'ebpf');
  for (const r of rows) r.timeVsEbpf = ebpf ? r.medianSeconds / ebpf.medianSeconds : null;

  process.stdout.write(`\n(a) Profiles end to end: runCapture on the main thread, no workers (${ROUNDS} rounds; stage building not timed)\n\n`);
  printTable(['profile', 'pipeline', 'median s', 'min-max s', 'Mpps', 'ns/packet', 'time / ebpf'], rows.map((r) => [
    r.id, r.pipeline, r.medianSeconds.toFixed(3), `${r.minSeconds.toFixed(3)}-${r.maxSeconds.toFixed(3)}`, r.mpps.toFixed(2),
    fmt(r.nsPerPacket, 0), r.timeVsEbpf === null ? '-' : `${r.timeVsEbpf.toFixed(2)}x`,
  ]));

  const stageNames = ['decode', 'xdp', 'conntrack', 'policy'];
  process.stdout.write('\nns per packet the stage was given (median over the rounds; "-": not in the profile). "rest" is the\n'
    + 'wall time outside the stages (reading the file, the capture summary, accounting), per packet of the capture.\n\n');
  printTable(['profile', ...stageNames, 'stages (per capture packet)', 'rest', 'wall'], rows.map((r) => {
    const at = (n) => r.stages.find((s) => s.name === n);
    return [
      r.id, ...stageNames.map((n) => (at(n) ? fmt(at(n).nsPerPacket) : '-')), fmt(r.stagesNsPerCapturePacket),
      fmt(r.nsPerPacket - r.stagesNsPerCapturePacket), fmt(r.nsPerPacket),
    ];
  }));

  const fresh = rows.find((r) => r.id === 'ebpf (fresh process)');
  const target = ebpf ? { name: 'ebpf end to end >= 5 Mpps on one worker', mpps: ebpf.mpps, target: 5, met: ebpf.mpps >= 5 } : null;
  if (target) {
    process.stdout.write(`\nTarget: ${target.name}: ${target.mpps.toFixed(2)} Mpps  ${target.met ? 'MET' : 'NOT MET'}`
      + ` (${(target.mpps / target.target * 100).toFixed(0)}% of it${fresh ? `; alone in a fresh process: ${fresh.mpps.toFixed(2)} Mpps` : ''})\n`);
    const read = readFigures();
    process.stdout.write(`  Context: tcpdump -r on this machine reads ${read ? `${read.tcpdump.toFixed(2)} Mpps and dplab read+decode alone ${read.decode.toFixed(2)} Mpps (bench/read.js, ${read.date})` : '~5.5 Mpps (bench/read.js)'}:\n`
      + '  5 Mpps end to end means the whole pipeline, reading included, as fast as tcpdump only reads.\n');
  }
  results.profiles = rows;
  results.target = target;
}

/** The last bench/read.js figures, when its JSON is in bench/out/. */
function readFigures() {
  try {
    const d = JSON.parse(readFileSync(join(OUT, 'read.json'), 'utf8'));
    const m = (id) => d.contenders.find((c) => c.id === id)?.mpps;
    if (!m('tcpdump')) return null;
    return { tcpdump: m('tcpdump'), decode: m('dplab-decode'), date: d.date.slice(0, 10) };
  } catch {
    return null;
  }
}

// --- (b) policy once per packet vs once per flow ---

const RULE_COUNTS = [10, 1000, 10000];
const EVALUATORS = ['chain', 'set', 'trie'];
/** Packets each rule count runs over: the whole capture, except where a per-packet chain would take minutes. */
const PACKETS_FOR = { 10: Infinity, 1000: Infinity, 10000: 102_400 };

/**
 * n rules that match none of the generated traffic, then `accept` (rule n). The generator uses
 * 10/8, 172.16/24, fd00::/8 and the TEST-NET attack prefixes; these rules name 198.18.0.0/15
 * (RFC 2544 benchmarking) and 2001:db8:1::/48, at several prefix lengths (so the set evaluator
 * probes several), TCP or UDP, with ports. So every packet walks every rule, and every verdict is
 * the final accept.
 */
function ruleLines(n) {
  const out = [];
  const v4len = [32, 32, 24, 28, 30];
  const v6len = [128, 64, 80];
  const ports = [22, 23, 25, 443, 3306, 5432, 6379, 9000];
  for (let k = 0; k < n - 1; k++) {
    const proto = k % 3 === 2 ? 'udp' : 'tcp';
    const port = ports[k % ports.length];
    if (k % 5 === 4) {
      const len = v6len[k % v6len.length];
      // k in the first 64 bits: no host bits set at any of these lengths (the parser refuses them).
      out.push(`rule: drop ${proto} to 2001:db8:${((k >>> 16) + 1).toString(16)}:${(k & 0xffff).toString(16)}::/${len} port ${port}`);
    } else {
      const len = v4len[k % v4len.length];
      const a = ((0xc6120000 + ((k * 4) & 0x1ffff)) & (0xffffffff << (32 - len))) >>> 0; // 198.18.0.0/15, host bits clear
      out.push(`rule: drop ${proto} to ${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${len} port ${port}`);
    }
  }
  out.push('rule: accept');
  return out;
}

function policyProfile(n, evaluator, perFlow) {
  const text = [
    `# bench: ${n} rules, ${evaluator}, ${perFlow ? 'once per flow' : 'per packet'}`,
    `pipeline: ${perFlow ? 'conntrack -> policy' : 'policy'}`,
    ...(perFlow ? ['[conntrack]', 'capacity: 256Ki'] : []),
    '[policy]', `evaluator: ${evaluator}`, 'default: drop', ...ruleLines(n),
  ].join('\n');
  return parseProfile(text, `bench-${n}-${evaluator}-${perFlow ? 'flow' : 'packet'}.profile`, `${n} rules ${evaluator} ${perFlow ? 'per flow' : 'per packet'}`);
}

function partB(file, summary, results) {
  process.stdout.write(`\n(b) Policy per packet (pipeline: policy) vs once per flow (pipeline: conntrack -> policy), ${ROUNDS} rounds\n`
    + '    Rules: n-1 drop rules on prefixes the traffic never uses, then "accept": every evaluation walks every rule.\n'
    + `    At 10,000 rules only the first ${int(PACKETS_FOR[10000])} packets are replayed (a per-packet chain would take ~minutes a run).\n\n`);
  const rows = [];
  for (const n of RULE_COUNTS) {
    const cap = PACKETS_FOR[n];
    const contenders = [];
    for (const evaluator of EVALUATORS) {
      for (const perFlow of [false, true]) {
        const profile = policyProfile(n, evaluator, perFlow);
        contenders.push({ n, evaluator, perFlow, profile, id: `${evaluator} ${perFlow ? 'flow' : 'packet'}` });
      }
    }
    const check = (c, r) => {
      const v = r.report.verdicts;
      const pol = r.report.stageReports.policy;
      const reached = r.report.stages.find((s) => s.name === 'policy').packets;
      const problems = [];
      if (v.dropped !== 0 || v.malformed !== 0 || v.forwarded !== v.packets) problems.push(`verdicts ${JSON.stringify(v)} (expected every packet forwarded)`);
      if (Number.isFinite(cap) ? v.packets < cap : v.packets !== summary.packets) problems.push(`${v.packets} packets`);
      if (pol.evaluations + pol.cachedLookups !== reached) problems.push(`evaluations ${pol.evaluations} + cached ${pol.cachedLookups} != ${reached} packets at policy`);
      if (!c.perFlow && pol.cachedLookups !== 0) problems.push('cached lookups without conntrack');
      const hits = Object.entries(pol.hits);
      if (hits.length !== 1 || hits[0][0] !== `rule ${n}` || hits[0][1] !== pol.evaluations) problems.push(`hits ${JSON.stringify(pol.hits)}: expected only rule ${n} (the final accept)`);
      if (c.perFlow && r.report.stageReports.conntrack.flowsCreated !== pol.evaluations) problems.push(`${pol.evaluations} evaluations for ${r.report.stageReports.conntrack.flowsCreated} flows`);
      if (problems.length) throw new Error(`(b) ${n} rules, ${c.id}: ${problems.join('; ')}`);
    };
    for (const c of contenders) check(c, runOnce(file, c.profile, { maxPackets: cap })); // warm-up
    const runs = new Map(contenders.map((c) => [c.id, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < contenders.length; k++) {
        const c = contenders[(k + round) % contenders.length];
        const r = runOnce(file, c.profile, { maxPackets: cap });
        check(c, r);
        const pol = r.report.stages.find((s) => s.name === 'policy');
        runs.get(c.id).push({
          seconds: r.seconds, packets: r.report.verdicts.packets, policyNs: pol.nsPerPacket,
          evaluations: r.report.stageReports.policy.evaluations, cached: r.report.stageReports.policy.cachedLookups,
        });
      }
      if (process.stderr.isTTY) process.stderr.write(`  part b: ${n} rules, round ${round + 1}/${ROUNDS} done\r`);
    }
    if (process.stderr.isTTY) process.stderr.write('\x1b[K');
    for (const evaluator of EVALUATORS) {
      const sum = (perFlow) => {
        const rs = runs.get(`${evaluator} ${perFlow ? 'flow' : 'packet'}`);
        const packets = rs[0].packets;
        return {
          packets, evaluations: rs[0].evaluations, cachedLookups: rs[0].cached,
          policyNsPerPacket: median(rs.map((r) => r.policyNs)),
          pipelineNsPerPacket: median(rs.map((r) => (r.seconds * 1e9) / r.packets)),
          pipelineMinMax: [Math.min(...rs.map((r) => (r.seconds * 1e9) / r.packets)), Math.max(...rs.map((r) => (r.seconds * 1e9) / r.packets))],
        };
      };
      const a = sum(false);
      const f = sum(true);
      rows.push({ rules: n, evaluator, packets: a.packets, perPacket: a, perFlow: f, policyRatio: a.policyNsPerPacket / f.policyNsPerPacket, pipelineRatio: a.pipelineNsPerPacket / f.pipelineNsPerPacket });
    }
  }
  printTable(
    ['rules', 'evaluator', 'packets', 'policy ns/pkt: per packet', 'per flow', 'ratio', 'pipeline ns/pkt: per packet', 'per flow', 'ratio', 'evaluations: per packet', 'per flow', 'cached (per flow)'],
    rows.map((r) => [
      int(r.rules), r.evaluator, int(r.packets), fmt(r.perPacket.policyNsPerPacket), fmt(r.perFlow.policyNsPerPacket), `${r.policyRatio.toFixed(1)}x`,
      fmt(r.perPacket.pipelineNsPerPacket, 0), fmt(r.perFlow.pipelineNsPerPacket, 0), `${r.pipelineRatio.toFixed(2)}x`,
      int(r.perPacket.evaluations), int(r.perFlow.evaluations), int(r.perFlow.cachedLookups),
    ]),
  );
  process.stdout.write('\n  policy ns/pkt is the policy stage\'s time over the packets it was given; pipeline ns/pkt is runCapture\'s wall time\n'
    + '  per packet (reading, decode and conntrack included). ratio = per packet / per flow (above 1: once per flow is cheaper).\n'
    + '  Once per flow, the rules ran once per flow (evaluations = flows conntrack created, the attack SYNs being one-packet flows);\n'
    + '  every other packet was a cached lookup of the decision stored in its conntrack entry.\n');
  results.policy = rows;
}

// --- (c) the cost of timing ---

let clockSink = 0; // keeps the clock reads of the estimate from being optimised away

function partC(file, summary, results) {
  const rounds = ROUNDS * 2;
  const contenders = [true, false].map((timing) => ({ timing, id: timing ? 'timing on' : 'timing off' }));
  const want = verdictKey(runOnce(file, 'ebpf', { timing: true }).report.verdicts);
  runOnce(file, 'ebpf', { timing: false });
  const runs = { 'timing on': [], 'timing off': [] };
  const paired = [];
  for (let round = 0; round < rounds; round++) {
    const t = {};
    for (let k = 0; k < 2; k++) {
      const c = contenders[(k + round) % 2];
      const r = runOnce(file, 'ebpf', { timing: c.timing });
      if (verdictKey(r.report.verdicts) !== want) throw new Error(`(c) ${c.id}: verdicts differ`);
      if (!c.timing && r.report.stages.some((s) => s.ns !== 0)) throw new Error('(c) timing off, yet stages have ns');
      runs[c.id].push(r.seconds);
      t[c.id] = r.seconds;
    }
    paired.push(t['timing on'] / t['timing off'] - 1);
    if (process.stderr.isTTY) process.stderr.write(`  part c: round ${round + 1}/${rounds} done\r`);
  }
  if (process.stderr.isTTY) process.stderr.write('\x1b[K');
  const on = median(runs['timing on']);
  const off = median(runs['timing off']);
  const overhead = on / off - 1;
  const pairedMedian = median(paired);
  process.stdout.write(`\n(c) The cost of timing the stages: ebpf with timing on and off, alternating, ${rounds} rounds\n\n`);
  printTable(['ebpf', 'median s', 'min-max s', 'Mpps'], Object.entries(runs).map(([id, xs]) => [
    id, median(xs).toFixed(3), `${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)}`, (summary.packets / median(xs) / 1e6).toFixed(2),
  ]));
  // The same from first principles: what the clock reads cost, times how many the runner makes
  // (two per call of decode and of each stage, every batch), over the untimed run.
  const probe = runOnce(file, 'ebpf', { timing: true }).report.stages;
  const reads = probe[0].calls * 2 * probe.length;
  const clockNs = median(Array.from({ length: 7 }, () => {
    const n = 1_000_000;
    let acc = 0;
    const t0 = performance.now();
    for (let k = 0; k < n; k++) acc += performance.now();
    const ns = ((performance.now() - t0) * 1e6) / n;
    clockSink += acc;
    return ns;
  }));
  const estimate = (reads * clockNs) / 1e9 / off;
  const met = overhead < 0.05;
  process.stdout.write(`\nTarget: timing overhead < 5% of the untimed run: ${(overhead * 100).toFixed(1)}% (medians), `
    + `${(pairedMedian * 100).toFixed(1)}% (median of the per-round pairs)  ${met ? 'MET' : 'NOT MET'} (on the medians)\n`
    + `  From first principles: ${int(reads)} clock reads a run (2 per call of decode and of each of the ${probe.length - 1} stages, ${int(probe[0].calls)} batches)\n`
    + `  x ${clockNs.toFixed(1)} ns a performance.now() = ${((reads * clockNs) / 1e6).toFixed(1)} ms, ${(estimate * 100).toFixed(2)}% of the untimed run. A measured difference\n`
    + '  much larger than that, either way, is the machine (see the min-max columns), not the timer.\n');
  results.timing = {
    rounds, on: runs['timing on'], off: runs['timing off'], overhead, pairedOverheads: paired, pairedMedian, target: 0.05, met,
    clockReads: reads, clockNs, estimatedOverhead: estimate,
  };
}

// --- main ---

const { file, summary } = synthCapture(GEN);
process.stdout.write(`bench/pipeline: ${int(summary.packets)} packets (${int(summary.tcpFlows + summary.udpFlows)} flows + ${int(summary.attackPackets)} attack SYNs), `
  + `${(summary.bytes / 2 ** 20).toFixed(1)} MiB, ${ROUNDS} rounds, node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, `
  + `load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}${process.env.DPLAB_DIST ? `, dplab from ${DIST}` : ''}\n`
  + `  input: ${file} (bench/out/ holds ${outDirMiB().toFixed(0)} MiB)\n`);
const results = {
  bench: 'pipeline', file, generator: GEN, capture: summary, rounds: ROUNDS, node: process.version, cpus: cpus().length,
  cpu: cpus()[0]?.model, loadAverageStart: loadavg(), dist: DIST, date: new Date().toISOString(),
};
if (parts.has('a')) partA(file, summary, results);
if (parts.has('b')) partB(file, summary, results);
if (parts.has('c')) partC(file, summary, results);
results.loadAverageEnd = loadavg();
process.stdout.write(`\nLoad average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}. Medians over the rounds; the machine is shared and noisy, so read the ratios.\n`);
if (args.json) {
  mkdirSync(dirname(resolve(args.json)), { recursive: true });
  writeFileSync(args.json, JSON.stringify(results, null, 2) + '\n');
}
