// Policy evaluation: the chain (iptables), set (ipset hash:net) and trie (eBPF LPM map) evaluators
// over the same rules and packets, at 10, 1,000 and 10,000 rules; then the policy stage once per
// packet against once per flow (10 packets a flow, decisions cached in a FlowTable as conntrack
// would hold them).
//
// Rules and packets come from a seeded generator, so every run measures the same work:
//   - rules: 80% IPv4, 20% IPv6; destination prefixes of the lengths rule sets use (/32 hosts, /24,
//     /16, /20, /28; IPv6 /128 ... /48), sources "any" half the time; tcp 60%, udp 30%, icmp 5%, any 5%;
//     most tcp/udp rules name a port, some a list or a range; 70% accept, 30% drop; default drop;
//   - packets: 70% built to fall inside a random rule (its prefixes, protocol and ports), 30%
//     random traffic that mostly reaches the default. A packet built from rule k may match an
//     earlier rule first, as in life.
// Every evaluator's verdicts are checked equal before anything is timed.
//
//   node bench/policy.js [--rounds 3] [--json FILE]      (run `npm run build` first: it imports dist/)
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { CtInfo } from '../dist/conntrack/info.js';
import { FlowTable } from '../dist/conntrack/table.js';
import { Batch } from '../dist/packet/batch.js';
import { parsePrefix } from '../dist/packet/cidr.js';
import { createEvaluator, EVALUATORS } from '../dist/policy/evaluator.js';
import { parseRules, RuleTable } from '../dist/policy/rules.js';
import { Decision, PolicyStage } from '../dist/stages/policy.js';

const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '3' }, json: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  strict: false,
});
if (args.help) {
  process.stdout.write('node bench/policy.js [--rounds N] [--json FILE]\n\n  --rounds N   rounds of every task, alternating; the median of their medians is shown (default 3)\n  --json FILE  also write the results as JSON\n');
  process.exit(0);
}
const ROUNDS = Math.max(1, Number(args.rounds) || 3);
const SIZES = [10, 1000, 10000];
const PACKETS = 4096;
const BATCH = 256;
const PER_FLOW = 10;

// --- seeded generator ---

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const pick = (rnd, xs) => xs[Math.floor(rnd() * xs.length)];
const u32 = (rnd) => Math.floor(rnd() * 4294967296) >>> 0;
const v4text = (w) => `${w >>> 24}.${(w >>> 16) & 255}.${(w >>> 8) & 255}.${w & 255}`;
const v6text = (w) => w.flatMap((x) => [(x >>> 16).toString(16), (x & 0xffff).toString(16)]).join(':');
const V4_LENS = [32, 32, 32, 32, 24, 24, 24, 24, 16, 16, 20, 28];
const V6_LENS = [128, 128, 64, 64, 48, 56];
const COMMON_PORTS = [80, 443, 22, 53, 8080, 8443, 3306, 5432, 6379, 25, 123, 9090];

/** The top `bits` of a word (0-32) kept, the rest cleared: a prefix has no host bits set (the parser refuses them). */
const hostBitsClear = (w, bits) => (bits <= 0 ? 0 : bits >= 32 ? w : (w & (0xffffffff << (32 - bits))) >>> 0);

function prefix(rnd, v6) {
  if (v6) {
    const len = pick(rnd, V6_LENS);
    const w = [0x20010db8, u32(rnd), u32(rnd), u32(rnd)].map((x, k) => hostBitsClear(x, len - 32 * k));
    return `${v6text(w)}/${len}`;
  }
  const len = pick(rnd, V4_LENS);
  const base = pick(rnd, [0x0a000000, 0xac100000, 0xc0a80000, u32(rnd)]);
  return `${v4text(hostBitsClear((base | (u32(rnd) & 0x00ffffff)) >>> 0, len))}/${len}`;
}

function makeRules(n, rnd) {
  // A chain usually opens with a few broad rules; one here (telnet is rare in the packets).
  const out = ['drop tcp to any port 23'];
  for (let k = 1; k < n; k++) {
    const v6 = rnd() < 0.2;
    const p = rnd();
    const proto = p < 0.6 ? 'tcp' : p < 0.9 ? 'udp' : p < 0.95 ? (v6 ? 'icmpv6' : 'icmp') : 'any';
    let text = `${rnd() < 0.7 ? 'accept' : 'drop'} ${proto}`;
    if (rnd() < 0.5) text += ` from ${prefix(rnd, v6)}`;
    text += ` to ${prefix(rnd, v6)}`;
    if ((proto === 'tcp' || proto === 'udp') && rnd() < 0.85) {
      const q = rnd();
      text += q < 0.8 ? ` port ${pick(rnd, COMMON_PORTS)}` : q < 0.9 ? ` port ${pick(rnd, COMMON_PORTS)},${pick(rnd, COMMON_PORTS)}` : ' port 1024-65535';
    }
    out.push(text);
  }
  return out;
}

/** A packet inside rule r's prefixes, protocol and ports, or (r = null) random traffic. */
function packetFor(rnd, r) {
  if (r === null) {
    const v6 = rnd() < 0.2;
    const addr = () => (v6 ? [0x20010db8, u32(rnd), u32(rnd), u32(rnd)] : [u32(rnd), 0, 0, 0]);
    return { family: v6 ? 6 : 4, proto: pick(rnd, [6, 6, 6, 17, 17, 1]), src: addr(), dst: addr(), sport: 1024 + Math.floor(rnd() * 64000), dport: pick(rnd, [...COMMON_PORTS, 1234, 50000]) };
  }
  const fam = r.src.find((p) => p.family !== 0)?.family ?? r.dst.find((p) => p.family !== 0)?.family ?? (rnd() < 0.2 ? 6 : 4);
  const inside = (p) => {
    const w = [0, 0, 0, 0];
    for (let k = 0; k < (fam === 4 ? 1 : 4); k++) {
      const bits = Math.min(32, Math.max(0, p.len - 32 * k));
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      w[k] = p.family === 0 ? u32(rnd) : ((p.words[k] & mask) | (u32(rnd) & ~mask)) >>> 0;
    }
    if (fam === 6 && p.family === 0) w[0] = 0x20010db8;
    return w;
  };
  const ports = (ranges) => (ranges ? (() => { const x = pick(rnd, ranges); return x.lo + Math.floor(rnd() * (x.hi - x.lo + 1)); })() : 1024 + Math.floor(rnd() * 64000));
  return {
    family: fam, proto: r.proto >= 0 ? r.proto : pick(rnd, [6, 17]),
    src: inside(pick(rnd, r.src)), dst: inside(pick(rnd, r.dst)), sport: ports(r.sport), dport: ports(r.dport),
  };
}

/** The packets in batches, as the decoder would leave them; flows of PER_FLOW packets, interleaved. */
function makeBatches(rules, rnd) {
  const flows = [];
  for (let f = 0; f < PACKETS / PER_FLOW; f++) flows.push(packetFor(rnd, rnd() < 0.7 ? pick(rnd, rules) : null));
  const batches = [];
  for (let at = 0; at < PACKETS; at += BATCH) {
    const b = new Batch(BATCH);
    b.count = Math.min(BATCH, PACKETS - at);
    for (let i = 0; i < b.count; i++) {
      const n = at + i;
      // Packet n belongs to flow n mod flows: each flow's packets spread over the run.
      const f = n % flows.length;
      const p = flows[f];
      b.family[i] = p.family;
      b.proto[i] = p.proto;
      for (let k = 0; k < 4; k++) { b.src[4 * i + k] = p.src[k]; b.dst[4 * i + k] = p.dst[k]; }
      b.sport[i] = p.sport;
      b.dport[i] = p.dport;
      b.flow[i] = f;
      b.ctInfo[i] = n < flows.length ? CtInfo.NEW : CtInfo.ESTABLISHED;
    }
    batches.push(b);
  }
  return { batches, flows: flows.length };
}

// --- the runs ---

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timeTasks(tasks) {
  const samples = new Map(tasks.map((t) => [t.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const bench = new Bench({ time: 300, iterations: 5, warmupTime: 50, warmupIterations: 2 });
    // Rotate the order each round so no task always runs first or last.
    for (let k = 0; k < tasks.length; k++) { const t = tasks[(k + round) % tasks.length]; bench.add(t.name, t.fn); }
    await bench.run();
    for (const task of bench.tasks) {
      if (task.result.state !== 'completed') throw new Error(`${task.name}: ${task.result.error ?? task.result.state}`);
      samples.get(task.name).push(task.result.latency.p50);
    }
    globalThis.gc?.();
  }
  return new Map([...samples].map(([name, ms]) => [name, median(ms)]));
}

const results = { packets: PACKETS, packetsPerFlow: PER_FLOW, evaluators: [], perFlow: [] };
const rnd = mulberry32(20240611);
let sink = 0;

process.stdout.write(`policy evaluators: ns per packet (median of ${ROUNDS} rounds), ${PACKETS} packets, 70% built inside some rule\n`);
process.stdout.write('(matched: packets some rule matches; scanned: rules the chain checks per packet, on average)\n');
// Other work on the machine shows in every figure; say how busy it was.
process.stdout.write(`load average at start: ${loadavg()[0].toFixed(1)}\n\n`);
results.loadAverage = loadavg()[0];
process.stdout.write(`${'rules'.padStart(7)} ${'entries'.padStart(8)} ${'chain'.padStart(9)} ${'set'.padStart(9)} ${'trie'.padStart(9)} ${'chain/set'.padStart(10)} ${'chain/trie'.padStart(11)} ${'set/trie'.padStart(9)}  matched  scanned\n`);
const keep = new Map();
for (const n of SIZES) {
  const texts = makeRules(n, rnd);
  const rules = parseRules(texts);
  const table = new RuleTable(rules);
  const { batches, flows } = makeBatches(rules, rnd);
  const evs = EVALUATORS.map((kind) => createEvaluator(kind, table));
  // Same verdicts from all three before any timing.
  let matched = 0;
  let scanned = 0;
  for (const b of batches) {
    for (let i = 0; i < b.count; i++) {
      const want = evs[0].match(b, i);
      if (want >= 0) matched++;
      scanned += want >= 0 ? want + 1 : table.count;
      for (const ev of evs) if (ev.match(b, i) !== want) throw new Error(`${ev.kind} disagrees with chain at ${n} rules`);
    }
  }
  const tasks = evs.map((ev) => ({
    name: ev.kind,
    fn: () => {
      let acc = 0;
      for (const b of batches) for (let i = 0; i < b.count; i++) acc += ev.match(b, i);
      sink ^= acc;
    },
  }));
  const ms = await timeTasks(tasks);
  const ns = Object.fromEntries(EVALUATORS.map((k) => [k, (ms.get(k) * 1e6) / PACKETS]));
  results.evaluators.push({ rules: n, entries: table.count, nsPerPacket: ns, matchedShare: matched / PACKETS, chainScannedPerPacket: scanned / PACKETS, stats: Object.fromEntries(evs.map((ev) => [ev.kind, ev.stats()])) });
  process.stdout.write(`${String(n).padStart(7)} ${String(table.count).padStart(8)} ${ns.chain.toFixed(1).padStart(9)} ${ns.set.toFixed(1).padStart(9)} ${ns.trie.toFixed(1).padStart(9)} `
    + `${(ns.chain / ns.set).toFixed(1).padStart(9)}x ${(ns.chain / ns.trie).toFixed(1).padStart(10)}x ${(ns.set / ns.trie).toFixed(2).padStart(8)}x  ${((100 * matched) / PACKETS).toFixed(0).padStart(6)}% ${(scanned / PACKETS).toFixed(0).padStart(8)}\n`);
  keep.set(n, { rules, batches, flows });
}

// Once per packet (no conntrack) against once per flow (decisions cached in a FlowTable): the
// policy stage's whole process() over the batches, verdicts reset between runs. Per flow, every
// flow's decision is cleared before each run, so its first packet evaluates and the other
// PER_FLOW - 1 take the cached decision, as behind conntrack.
process.stdout.write(`\npolicy stage, ns per packet: every packet evaluated vs once per flow (${PER_FLOW} packets a flow, 1,000 and 10,000 rules)\n\n`);
process.stdout.write(`${'rules'.padStart(7)} ${'evaluator'.padStart(9)} ${'per packet'.padStart(11)} ${'per flow'.padStart(9)} ${'ratio'.padStart(7)}\n`);
for (const n of [1000, 10000]) {
  const { rules, batches, flows } = keep.get(n);
  const tasks = [];
  for (const evaluator of EVALUATORS) {
    const cfg = { evaluator, defaultAction: 2, rules };
    const alone = new PolicyStage(cfg, null);
    const ct = new FlowTable(flows);
    const cached = new PolicyStage(cfg, ct);
    const runAll = (stage) => () => {
      for (const b of batches) { b.verdict.fill(0); stage.process(b, 0); }
    };
    tasks.push({ name: `${evaluator} per packet`, fn: runAll(alone) });
    const perFlow = runAll(cached);
    tasks.push({ name: `${evaluator} per flow`, fn: () => { cached.flowDecision.fill(Decision.NONE); perFlow(); } });
  }
  const ms = await timeTasks(tasks);
  for (const evaluator of EVALUATORS) {
    const a = (ms.get(`${evaluator} per packet`) * 1e6) / PACKETS;
    const f = (ms.get(`${evaluator} per flow`) * 1e6) / PACKETS;
    results.perFlow.push({ rules: n, evaluator, nsPerPacketPerPacket: a, nsPerPacketPerFlow: f });
    process.stdout.write(`${String(n).padStart(7)} ${evaluator.padStart(9)} ${a.toFixed(1).padStart(11)} ${f.toFixed(1).padStart(9)} ${(a / f).toFixed(1).padStart(6)}x\n`);
  }
}

if (sink === 0.5) process.stdout.write(''); // keeps the evaluators' results alive
if (args.json) {
  mkdirSync(dirname(args.json), { recursive: true });
  writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`);
}
