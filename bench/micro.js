// Per-stage micro-benchmarks with tinybench: what each stage costs per packet on a fixed, prepared
// set of batches, with no reading, no runner and no other stage in the timed call.
//
// Input: 4,096 packets of `dplab gen --packets 4096 --packets-per-flow 20 --concurrency 64` (the
// default mix: 20% IPv6, 10% VLAN, 20% UDP flows, 5% attack SYNs), read once into 16 batches of
// 256 that stay in memory (one capture chunk, never released); for the new-flow path, 4,096 lone
// SYNs (`--packets-per-flow 1 --attack 0`), every one its own flow. Each task is one call over all
// of its batches; tinybench times many calls and gives each task's latency distribution.
//
//   decode            decodeBatch (fills every per-packet field from the bytes)
//   xdp               the xdp stage with the shipped blocklist (LPM trie on the source)
//   conntrack hit     the conntrack stage on packets whose flows all exist (checked: no flow is
//                     created during the timed calls)
//   conntrack new     the conntrack stage on lone SYNs, every one a new flow (checked: one flow
//                     per packet every call); the table is emptied between calls, untimed
//   policy chain/set/trie   the policy stage alone (no conntrack: every packet evaluated) with the
//                     shipped stateless profile's rules, as iptables, ipset and an eBPF LPM map
//                     would hold them
//   dnat rewrite      the dnat stage on established flows to service VIPs (conntrack ran before
//                     each call, untimed; the packets' bytes are put back between calls)
//   setEndpoint / setAddress+setPort   wire.ts: one endpoint rewritten (address, port, checksums,
//                     hash) in one call, against the two calls it replaced
//   l7 parse          the HTTP engine (src/l7/http.ts) fed whole keep-alive requests with the
//                     shipped l7 rules: ns per request
// Verdict fields are reset before every call (untimed), so a stage that drops sees the same
// packets each time. Printed: the median over the rounds of tinybench's median (latency.p50) and
// of its p99, per packet, and the ratios of the natural pairs.
//
//   node bench/micro.js [--rounds 3] [--time 300] [--quick] [--only NAME,...] [--json FILE]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { loadDist, median, OUT, synthCapture } from './lib/common.js';

const { openCapture } = await loadDist('capture/open.js');
const { Batch } = await loadDist('packet/batch.js');
const { decodeBatch } = await loadDist('packet/decode.js');
const { End, setEndpoint, setIpv4Address, setIpv6Address, setPort } = await loadDist('packet/wire.js');
const { parseProfile, PROFILE_DIR } = await loadDist('pipeline/profile.js');
const { buildStages } = await loadDist('pipeline/registry.js');
const { synthServices } = await loadDist('cli/gen.js');
await loadDist('stages/index.js');

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string' },
    time: { type: 'string' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  process.stdout.write(`node bench/micro.js [--rounds N] [--time MS] [--quick] [--only NAME,...] [--json FILE]

  --rounds N   rounds: every task runs once per round, in rotating order (default 3; --quick 1)
  --time MS    tinybench's time budget per task and round (default 300; --quick 60)
  --quick      a smoke run: 1 round of 60 ms per task
  --only N,..  only these tasks (names as printed, e.g. decode,xdp)
  --json FILE  also write the results as JSON
`);
  process.exit(0);
}
const ROUNDS = Number(args.rounds ?? (args.quick ? 1 : 3));
const TIME = Number(args.time ?? (args.quick ? 60 : 300));
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds wants a whole number from 1, got ${args.rounds}`);
if (!(TIME > 0)) throw new Error(`--time wants milliseconds, got ${args.time}`);
mkdirSync(OUT, { recursive: true });

const PACKETS = 4096;
const GEN = { seed: 1, packets: PACKETS, packetsPerFlow: 20, concurrency: 64 };
const GEN_NEW = { seed: 2, packets: PACKETS, packetsPerFlow: 1, attackShare: 0, concurrency: 64 };

/** The whole capture as batches that stay in memory: a small file is one chunk, never released. */
function loadBatches(file) {
  const src = openCapture(file);
  const batches = [];
  for (;;) {
    const b = new Batch();
    if (src.fill(b) === 0) break;
    decodeBatch(b);
    batches.push(b);
  }
  if (src.error) throw new Error(`${file}: ${src.error.message}`);
  const n = batches.reduce((a, b) => a + b.count, 0);
  if (n !== PACKETS) throw new Error(`${file}: read ${n} packets, expected ${PACKETS}`);
  if (new Set(batches.map((b) => b.bytes)).size !== 1) throw new Error(`${file}: the batches span several chunks; the benchmark wants them in one`);
  return batches;
}

const profile = (name, text) => parseProfile(text, join(PROFILE_DIR, `micro-${name}.profile`), `micro-${name}`);
const stageOf = (p, name) => {
  const stages = buildStages(p);
  return { stage: stages.find((s) => s.name === name), stages };
};
const resetVerdicts = (batches) => { for (const b of batches) { b.verdict.fill(0); b.stage.fill(0); b.reason.fill(0); } };
/** Packets the stage drops in one call over the batches (untimed: printed beside its figure). */
const dropsOf = (batches, stage) => {
  resetVerdicts(batches);
  let n = 0;
  for (const b of batches) { stage.process(b, 1); for (let i = 0; i < b.count; i++) if (b.verdict[i] === 1) n++; }
  return n;
};
let sink = 0;

const { file } = synthCapture(GEN);
const { file: newFile } = synthCapture(GEN_NEW);
const tasks = [];

// decode
{
  const batches = loadBatches(file);
  tasks.push({ name: 'decode', packets: PACKETS, fn: () => { for (const b of batches) decodeBatch(b); sink ^= batches[0].hash[0]; } });
}

// xdp, policy (per packet), conntrack hit: one set of batches, never rewritten
{
  const batches = loadBatches(file);
  const xdp = stageOf(profile('xdp', 'pipeline: xdp\n[xdp]\nblock-file: rules/blocklist.txt\n'), 'xdp').stage;
  xdp.process(batches[0], 0);
  tasks.push({
    name: 'xdp', packets: PACKETS, beforeEach: () => resetVerdicts(batches),
    fn: () => { for (const b of batches) xdp.process(b, 1); },
    check: () => dropsOf(batches, xdp),
  });
  // The shipped stateless profile (its blocklist rules, then rules/policy.rules), evaluator swapped.
  const STATELESS = readFileSync(join(PROFILE_DIR, 'stateless.profile'), 'utf8');
  if (!/^evaluator: /m.test(STATELESS)) throw new Error('profiles/stateless.profile names no evaluator');
  for (const [evaluator, as] of [['chain', 'iptables'], ['set', 'ipset'], ['trie', 'eBPF LPM']]) {
    const pol = stageOf(profile(`policy-${evaluator}`, STATELESS.replace(/^evaluator: .*$/m, `evaluator: ${evaluator}`)), 'policy').stage;
    tasks.push({
      name: `policy ${evaluator}`, as, packets: PACKETS, beforeEach: () => resetVerdicts(batches),
      fn: () => { for (const b of batches) pol.process(b, 1); },
      check: () => dropsOf(batches, pol),
    });
  }
}

// conntrack hit: the same packets less every TCP SYN, FIN and RST (skipped: their verdict set
// before each call), so every packet tracked is an ordinary packet of a flow the table holds
// (loose pickup made the flows in an untimed first pass); a SYN or FIN replayed would reopen or
// end its flow, which is not the hit path.
{
  const batches = loadBatches(file);
  const skip = batches.map((b) => Uint8Array.from({ length: b.count }, (_, i) => (b.proto[i] === 6 && (b.tcpFlags[i] & 0x07) !== 0 ? 1 : 0)));
  const tracked = PACKETS - skip.reduce((a, m) => a + m.reduce((x, y) => x + y, 0), 0);
  const setVerdicts = () => { for (let k = 0; k < batches.length; k++) { batches[k].verdict.set(skip[k]); batches[k].stage.fill(0); batches[k].reason.fill(0); } };
  const ct = stageOf(profile('ct-hit', 'pipeline: conntrack\n[conntrack]\ncapacity: 16Ki\n'), 'conntrack').stage;
  setVerdicts();
  for (const b of batches) { ct.process(b, 1); ct.endBatch(); }
  const created = () => ct.report().flowsCreated;
  const before = created();
  tasks.push({
    name: 'conntrack hit', packets: tracked, beforeEach: setVerdicts,
    fn: () => { for (const b of batches) { ct.process(b, 1); ct.endBatch(); } },
    after: () => { if (created() !== before) throw new Error(`conntrack hit: ${created() - before} flows created during the timed calls`); },
    note: `${before} flows, all in the table; ${PACKETS - tracked} SYN/FIN/RST skipped`,
  });
}

// conntrack new: lone SYNs, the table emptied between calls (untimed)
{
  const batches = loadBatches(newFile);
  const ct = stageOf(profile('ct-new', 'pipeline: conntrack\n[conntrack]\ncapacity: 16Ki\n'), 'conntrack').stage;
  const empty = () => { ct.ct.flush(0); ct.ct.table.release(); resetVerdicts(batches); };
  let calls = 0;
  const created = () => ct.report().flowsCreated;
  let last = created();
  tasks.push({
    name: 'conntrack new', packets: PACKETS, beforeEach: empty,
    fn: () => { for (const b of batches) { ct.process(b, 1); ct.endBatch(); } calls++; },
    after: () => {
      const made = created() - last;
      if (made !== calls * PACKETS) throw new Error(`conntrack new: ${made} flows created in ${calls} calls of ${PACKETS} lone SYNs (expected one per packet)`);
      last = created(); calls = 0;
    },
  });
}

// dnat rewrite: conntrack -> dnat on flows to service VIPs; bytes put back and conntrack run before each call
{
  const batches = loadBatches(file);
  const services = join(OUT, 'micro-services.txt');
  writeFileSync(services, synthServices(16, 3));
  const { stages } = stageOf(profile('dnat', `pipeline: conntrack -> dnat\n[conntrack]\ncapacity: 16Ki\n[dnat]\nservices: ${services}\n`), 'dnat');
  const [ct, dnat] = stages;
  const bytes = batches[0].bytes;
  const pristine = bytes.slice();
  const prepare = () => {
    bytes.set(pristine);
    for (const b of batches) { decodeBatch(b); ct.process(b, 0); }
  };
  const translated = () => { const t = dnat.report().packetsTranslated; return t.original + t.reply; };
  prepare();
  for (const b of batches) { dnat.process(b, 1); ct.endBatch(); }
  let calls = 0;
  let last = translated();
  tasks.push({
    name: 'dnat rewrite', packets: PACKETS, beforeEach: prepare,
    fn: () => { for (const b of batches) { dnat.process(b, 1); ct.endBatch(); } calls++; },
    after: () => {
      const per = (translated() - last) / calls;
      if (!(per > PACKETS / 2)) throw new Error(`dnat rewrite: ${per} packets translated a call, expected most of ${PACKETS}`);
      last = translated(); calls = 0;
    },
  });
}

// wire.ts: setEndpoint against setIpv4Address/setIpv6Address + setPort, on every TCP/UDP packet
{
  const batches = loadBatches(file);
  const picks = [];
  for (const b of batches) for (let i = 0; i < b.count; i++) if ((b.proto[i] === 6 || b.proto[i] === 17) && b.frag[i] === 0 && b.malformed[i] === 0) picks.push([b, i]);
  const T = [new Uint32Array([0x0a580001, 0, 0, 0]), new Uint32Array([0x0a580002, 0, 0, 0])];
  const T6 = [new Uint32Array([0xfd000088, 0, 0, 1]), new Uint32Array([0xfd000088, 0, 0, 2])];
  let flip = 0;
  tasks.push({
    name: 'setEndpoint', pair: 'wire', packets: picks.length,
    fn: () => {
      flip ^= 1;
      for (let k = 0; k < picks.length; k++) {
        const [b, i] = picks[k];
        setEndpoint(b, i, End.DST, b.family[i] === 4 ? T[flip] : T6[flip], 0, 10080 + flip);
      }
    },
  });
  tasks.push({
    name: 'setAddress+setPort', pair: 'wire', packets: picks.length,
    fn: () => {
      flip ^= 1;
      for (let k = 0; k < picks.length; k++) {
        const [b, i] = picks[k];
        if (b.family[i] === 4) setIpv4Address(b, i, End.DST, T[flip][0]);
        else setIpv6Address(b, i, End.DST, T6[flip], 0);
        setPort(b, i, End.DST, 10080 + flip);
      }
    },
  });
}

// l7 parse: the HTTP engine fed whole requests of keep-alive flows
{
  const batches = loadBatches(file);
  const p = profile('l7', 'pipeline: conntrack -> l7\n[conntrack]\ncapacity: 16Ki\n[l7]\nmode: proxy\nports: 80,8000,8080\ndefault: allow\nmax-requests: 1000000000\nrules: rules/l7.rules\n');
  const l7 = stageOf(p, 'l7').stage;
  const eng = l7.engine;
  // A packet to port 80 stands for the request's destination (the rules' `to`/`port` clauses).
  const b = batches.find((x) => { for (let i = 0; i < x.count; i++) if (x.dport[i] === 80 && x.family[i] === 4) return true; return false; });
  let i = 0;
  while (!(b.dport[i] === 80 && b.family[i] === 4)) i++;
  const PATHS = ['/', '/index.html', '/api/v1/items?page=2', '/static/app.js', '/images/logo.png', '/search?q=ebpf'];
  const HOSTS = ['shop.example', 'api.example', 'cdn.example', 'www.example'];
  const FLOWS = 64;
  const reqs = [];
  for (let k = 0; k < 256; k++) {
    reqs.push(new TextEncoder().encode(`GET ${PATHS[k % PATHS.length]} HTTP/1.1\r\nHost: ${HOSTS[k % HOSTS.length]}\r\n`
      + 'User-Agent: bench/1.0\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n'));
  }
  const bytesPer = reqs.reduce((a, r) => a + r.length, 0) / reqs.length;
  tasks.push({
    name: 'l7 parse', packets: reqs.length, unit: 'request',
    fn: () => {
      let acc = 0;
      for (let k = 0; k < reqs.length; k++) {
        const r = reqs[k];
        acc += eng.feed(1 + (k % FLOWS), r, 0, r.length, b, i, 80) + eng.completed;
      }
      sink ^= acc;
    },
    check: () => { const before = eng.requests; for (let k = 0; k < reqs.length; k++) eng.feed(1 + (k % FLOWS), reqs[k], 0, reqs[k].length, b, i, 80); return eng.requests - before; },
    note: `${bytesPer.toFixed(0)} bytes a request`,
  });
}

const only = args.only ? new Set(args.only.split(',')) : null;
if (only) for (const n of only) if (!tasks.some((t) => t.name === n)) throw new Error(`--only: no task "${n}" (${tasks.map((t) => t.name).join(', ')})`);
const run = only ? tasks.filter((t) => only.has(t.name)) : tasks;

// What each task decides, once, before any timing: printed beside the figures.
for (const t of run) if (t.check) t.decided = t.check();
if (run.some((t) => t.name === 'l7 parse') && run.find((t) => t.name === 'l7 parse').decided !== 256) {
  throw new Error(`l7 parse: ${run.find((t) => t.name === 'l7 parse').decided} requests completed of 256`);
}

process.stdout.write(`bench/micro.js: ${PACKETS.toLocaleString('en-US')} packets in ${PACKETS / 256} batches of 256, ${ROUNDS} round(s) of ${TIME} ms a task (tinybench), `
  + `node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);

const samples = new Map(run.map((t) => [t.name, { p50: [], p99: [], mean: [], n: [] }]));
for (let round = 0; round < ROUNDS; round++) {
  const bench = new Bench({ time: TIME, iterations: 10, warmupTime: Math.min(50, TIME), warmupIterations: 5 });
  for (let k = 0; k < run.length; k++) {
    const t = run[(k + round) % run.length];
    bench.add(t.name, t.fn, { async: false, ...(t.beforeEach ? { beforeEach: t.beforeEach } : {}) });
  }
  await bench.run();
  for (const task of bench.tasks) {
    const r = task.result;
    if (r.state !== 'completed') throw new Error(`${task.name}: ${r.error ?? r.state}`);
    const s = samples.get(task.name);
    s.p50.push(r.latency.p50); s.p99.push(r.latency.p99); s.mean.push(r.latency.mean); s.n.push(r.latency.samplesCount);
  }
  for (const t of run) t.after?.();
  globalThis.gc?.();
}

const rows = run.map((t) => {
  const s = samples.get(t.name);
  const per = (ms) => (ms * 1e6) / t.packets;
  return {
    name: t.name, as: t.as ?? null, unit: t.unit ?? 'packet', packets: t.packets,
    nsPerPacket: per(median(s.p50)), p99NsPerPacket: per(median(s.p99)), meanNsPerPacket: per(median(s.mean)),
    callMs: median(s.p50), samples: s.n.reduce((a, x) => a + x, 0), decided: t.decided ?? null, note: t.note ?? null,
  };
});
const at = (n) => rows.find((r) => r.name === n);
const ratios = [];
const ratio = (label, a, b) => { if (at(a) && at(b)) ratios.push({ label, a, b, ratio: at(a).nsPerPacket / at(b).nsPerPacket }); };
ratio('conntrack: new flow / hit', 'conntrack new', 'conntrack hit');
ratio('policy: chain / trie', 'policy chain', 'policy trie');
ratio('policy: set / trie', 'policy set', 'policy trie');
ratio('policy: chain / set', 'policy chain', 'policy set');
ratio('wire: setAddress+setPort / setEndpoint', 'setAddress+setPort', 'setEndpoint');
ratio('dnat rewrite / conntrack hit', 'dnat rewrite', 'conntrack hit');

const w = Math.max(...rows.map((r) => r.name.length));
process.stdout.write(`\n${'task'.padEnd(w)}  ${'ns/unit p50'.padStart(11)}  ${'p99'.padStart(8)}  ${'unit'.padEnd(7)}  ${'units/call'.padStart(10)}  ${'samples'.padStart(7)}  notes\n`);
for (const r of rows) {
  const notes = [r.as, r.decided !== null && r.unit === 'packet' ? `${r.decided} dropped` : null, r.note].filter(Boolean).join('; ');
  process.stdout.write(`${r.name.padEnd(w)}  ${r.nsPerPacket.toFixed(1).padStart(11)}  ${r.p99NsPerPacket.toFixed(1).padStart(8)}  ${r.unit.padEnd(7)}  ${String(r.packets).padStart(10)}  ${String(r.samples).padStart(7)}  ${notes}\n`);
}
if (ratios.length) {
  process.stdout.write('\n');
  for (const x of ratios) process.stdout.write(`${x.label.padEnd(42)} ${x.ratio.toFixed(2)}x\n`);
}
process.stdout.write('\nns/unit: the median over the rounds of tinybench\'s median call time (latency.p50), over the packets (or requests)\n'
  + 'of one call; p99 likewise. The tables are small (16Ki entries, a few hundred flows): these are in-cache floors, not a\n'
  + 'full 512Ki-entry table\'s cost (bench/flowtable.js and pipeline.js measure those). Verdicts are reset before every call.\n');
if (sink === 0.5) process.stdout.write('');
if (args.json) {
  mkdirSync(dirname(resolve(args.json)), { recursive: true });
  writeFileSync(args.json, JSON.stringify({
    bench: 'micro', date: new Date().toISOString(), packets: PACKETS, rounds: ROUNDS, timeMs: TIME, generator: GEN,
    node: process.version, cpus: cpus().length, loadAverage: loadavg(), tasks: rows, ratios,
  }, null, 2) + '\n');
}
