// The path into a pod (issue 13): route's full path (a FIB lookup for every packet, then the pod
// namespace's own pass: a second conntrack and a filter chain, for every packet) against bypass
// (a flow's first packet per direction takes the full path, later ones are redirected straight to
// the pod, as bpf_redirect_peer), at 10, 1,000 and 100,000 routes.
//
// Input: a synthetic capture (bench/lib/common.js synthCapture, 50 packets per flow); route tables
// with a /32 (/128) per server (the pods, on their own devices), defaults for the clients, and
// filler prefixes (other nodes' pod CIDRs, IPv4 /24 and IPv6 /64) up to the size. Contenders per
// size, taking turns within each round, inline:
//   full     pipeline: conntrack -> route (mode full) -> pod-ct :: conntrack -> pod-policy :: policy
//   bypass   the same with mode bypass
// Printed: dataplane ns/packet (every stage's own time over the packets in), route's row, the pod
// side's rows, and full/bypass. Every run is checked: the two give the same verdicts and egress.
//
//   node bench/route.js [--rounds 3] [--packets 500000] [--json FILE]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { benchArgs, loadDist, median, OUT, synthCapture } from './lib/common.js';

const { runCapture } = await loadDist('pipeline/run.js');
const { loadProfile } = await loadDist('pipeline/profile.js');
const { buildStages } = await loadDist('pipeline/registry.js');
await loadDist('stages/index.js');

const args = benchArgs('route.js', 500000);
const ROUNDS = args.rounds;
const PACKETS = args.packets;

function table(n) {
  const lines = ['default via 192.168.0.254 dev eth0', 'default via fe80::1 dev eth0'];
  // The servers (pods here): 172.16.0.0/24 and fd00:172:16::/64, one device per 16 of them.
  lines.push('172.16.0.0/24 dev cali0', 'fd00:172:16::/64 dev cali0');
  for (let k = 1; lines.length < Math.min(n, 40); k++) lines.push(`172.16.0.${k}/32 dev cali${k % 16}`, `fd00:172:16::${k.toString(16)}/128 dev cali${k % 16}`);
  for (let k = 0; lines.length < n; k++) {
    if (k % 4 === 3) lines.push(`fd00:244:${(k >> 16).toString(16)}:${(k & 0xffff).toString(16)}::/64 via fe80::2 dev eth0`);
    else lines.push(`${100 + ((k >> 16) & 0x7f)}.${(k >> 8) & 0xff}.${k & 0xff}.0/24 via 192.168.0.${2 + (k % 250)} dev eth0`);
  }
  const f = join(OUT, `routes-${n}.txt`);
  writeFileSync(f, `${lines.slice(0, n).join('\n')}\n`);
  return f;
}

function profile(n, mode) {
  const f = join(OUT, `route-${n}-${mode}.profile`);
  writeFileSync(f, `pipeline: conntrack -> route -> pod-ct :: conntrack -> pod-policy :: policy\n[conntrack]\ncapacity: 1Mi\n[route]\nroutes: ${table(n)}\nmode: ${mode}\n`
    + '[pod-ct]\ncapacity: 1Mi\ninvalid: accept\n[pod-policy]\nevaluator: chain\nrule: drop from 100.64.0.0/10\nrule: drop tcp port 23\nrule: accept tcp port 80,443,8080\n');
  return f;
}

const STAGES = ['conntrack', 'route', 'pod-ct', 'pod-policy'];
function run(file, p) {
  const r = runCapture({ file, profile: p, stages: buildStages(loadProfile(p)) }).report;
  const ns = (s) => r.stages.find((x) => x.name === s).ns / r.verdicts.packets;
  return {
    dataplane: STAGES.reduce((a, s) => a + ns(s), 0),
    route: ns('route'),
    pod: ns('pod-ct') + ns('pod-policy'),
    check: JSON.stringify([r.verdicts.forwarded, r.verdicts.dropsByReason, r.stageReports.route.egressByDevice]),
    bypassed: r.stageReports.route.bypassed,
  };
}

process.stdout.write(`bench/route.js: ${PACKETS.toLocaleString('en-US')} packets, ${ROUNDS} rounds; ${cpus().length} CPUs, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
const { file, summary } = synthCapture({ packets: PACKETS, packetsPerFlow: 50, concurrency: 500, payloadSize: 64, seed: 5 });
const results = [];
for (const n of [10, 1000, 100000]) {
  const P = { full: profile(n, 'full'), bypass: profile(n, 'bypass') };
  run(file, P.full); run(file, P.bypass); // warm-up
  const runs = { full: [], bypass: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const m of r % 2 ? ['bypass', 'full'] : ['full', 'bypass']) runs[m].push(run(file, P[m]));
  }
  const checks = new Set([...runs.full, ...runs.bypass].map((x) => x.check));
  if (checks.size !== 1) {
    process.stderr.write(`bench/route.js: ${n} routes: full and bypass disagree on verdicts or egress\n`);
    process.exit(1);
  }
  const m = (c, k) => median(runs[c].map((x) => x[k]));
  results.push({ routes: n, packets: summary.packets, bypassed: runs.bypass[0].bypassed,
    full: { dataplaneNs: m('full', 'dataplane'), routeNs: m('full', 'route'), podNs: m('full', 'pod') },
    bypass: { dataplaneNs: m('bypass', 'dataplane'), routeNs: m('bypass', 'route'), podNs: m('bypass', 'pod') } });
}

const f1 = (x) => x.toFixed(1);
process.stdout.write('\n routes | full: dataplane  route  pod side | bypass: dataplane  route  pod side | full/bypass | bypassed packets\n');
for (const r of results) {
  process.stdout.write(`${String(r.routes).padStart(7)} | ${f1(r.full.dataplaneNs).padStart(15)}  ${f1(r.full.routeNs).padStart(5)}  ${f1(r.full.podNs).padStart(8)} | `
    + `${f1(r.bypass.dataplaneNs).padStart(17)}  ${f1(r.bypass.routeNs).padStart(5)}  ${f1(r.bypass.podNs).padStart(8)} | ${(r.full.dataplaneNs / r.bypass.dataplaneNs).toFixed(2).padStart(11)} | `
    + `${(r.bypassed / r.packets * 100).toFixed(1)}%\n`);
}
process.stdout.write('\nns per packet in, medians of the rounds; dataplane = conntrack + route + pod-ct + pod-policy. Verdicts and egress checked equal.\n');
if (args.json) writeFileSync(args.json, JSON.stringify({ packets: PACKETS, rounds: ROUNDS, results }, null, 2) + '\n');
