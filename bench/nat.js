// Per-packet DNAT against connect-time load balancing (issue 8), on generated service traffic at
// 5, 50 and 5,000 packets per flow (the article's "5 or 5,000 packets"), and tcprewrite as the C
// peer for "pcap in, rewritten pcap out".
//
// Input: `dplab gen --packets N --packets-per-flow P --services FILE` (every server address and
// port a service VIP with 3 backends; 20% IPv6, 10% VLAN, 20% UDP flows), generated once per P into
// bench/out/. Contenders, taking turns within each round (rotating order), all inline on the main
// thread, pcap in and pcap out (--write to bench/out/):
//   dnat      pipeline: conntrack -> dnat        kube-proxy: a binding per flow, a rewrite per packet
//   ctlb      pipeline: ctlb -> conntrack        Calico CTLB: the backend chosen at connect; the
//                                                 dataplane (conntrack) translates nothing; ctlb's
//                                                 re-addressing is emulation, reported apart
//   tcprewrite  tcprewrite --dstipmap ... --portmap ... --fixcsum (stateless, one direction of
//                                                 each flow; wall time with process start)
// Printed: Mpps end to end; dataplane ns/packet (the stages' own times: conntrack + dnat against
// conntrack alone) and their ratio; ctlb's emulation ns/packet and connects; tcprewrite's Mpps and
// dnat's end-to-end rate as a multiple of it (target: >= 1.0 on one worker).
// Every dnat/ctlb run is checked: all packets forwarded, translations both ways, the same counts
// every round.
//
//   node bench/nat.js [--rounds 3] [--packets 1000000] [--json FILE]
import { spawnSync } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DIST, median, OUT, synthCapture } from './lib/common.js';

const load = async (m) => import(pathToFileURL(join(DIST, m)).href);
const { runCapture } = await load('pipeline/run.js');
const { loadProfile } = await load('pipeline/profile.js');
const { buildStages } = await load('pipeline/registry.js');
const { synthServices } = await load('cli/gen.js');
await load('stages/index.js');

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    packets: { type: 'string', default: '1000000' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  process.stdout.write('node bench/nat.js [--rounds N] [--packets N] [--json FILE]\n');
  process.exit(0);
}
const ROUNDS = Number(args.rounds);
const PACKETS = Number(args.packets);
mkdirSync(OUT, { recursive: true });

const SERVERS = 16;
const services = join(OUT, 'nat-services.txt');
writeFileSync(services, synthServices(SERVERS, 3));
const profile = (name, text) => {
  const f = join(OUT, `nat-${name}.profile`);
  writeFileSync(f, text);
  return f;
};
const PROFILES = {
  dnat: profile('dnat', `pipeline: conntrack -> dnat\n[dnat]\nservices: ${services}\n[conntrack]\ncapacity: 1Mi\n`),
  ctlb: profile('ctlb', `pipeline: ctlb -> conntrack\n[ctlb]\nservices: ${services}\n[conntrack]\ncapacity: 1Mi\n`),
};
const tcprewrite = spawnSync('tcprewrite', ['--version'], { encoding: 'utf8' }).status === 0;
const OUTFILE = join(OUT, 'nat-out.pcap');

function runDplab(name, file) {
  const p = PROFILES[name];
  const t0 = process.hrtime.bigint();
  const r = runCapture({ file, profile: p, stages: buildStages(loadProfile(p)), write: OUTFILE });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const rep = r.report;
  if (rep.verdicts.forwarded !== rep.verdicts.packets) throw new Error(`${name}: ${rep.verdicts.packets - rep.verdicts.forwarded} packets not forwarded`);
  const row = (s) => rep.stages.find((x) => x.name === s);
  const ns = (s) => (row(s) ? row(s).ns / rep.verdicts.packets : 0);
  const nat = name === 'dnat' ? rep.stageReports.dnat.packetsTranslated : rep.stageReports.ctlb.packetsReaddressed;
  if (!(nat.original > 0 && nat.reply > 0)) throw new Error(`${name}: nothing translated`);
  return {
    secs,
    packets: rep.verdicts.packets,
    dataplane: ns('conntrack') + ns('dnat'),
    conntrack: ns('conntrack'),
    dnat: ns('dnat'),
    emulation: ns('ctlb'),
    check: JSON.stringify(nat),
    connects: name === 'ctlb' ? rep.stageReports.ctlb.connects.tcp + rep.stageReports.ctlb.connects.udp : rep.stageReports.dnat.bindingsCreated,
  };
}

function runTcprewrite(file) {
  // 172.16.0.0/24 -> 10.88.0.0/24 and the TCP/UDP service ports to the backends' (stateless:
  // every packet mapped on its own; replies are not mapped back).
  const t0 = process.hrtime.bigint();
  const r = spawnSync('tcprewrite', ['--dstipmap=172.16.0.0/24:10.88.0.0/24', '--portmap=80:10080,8080:18080,8000:18000,7777:17777,40000:50000',
    '--fixcsum', '-i', file, '-o', OUTFILE], { encoding: 'utf8' });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`tcprewrite failed: ${r.stderr}`);
  if (statSync(OUTFILE).size < statSync(file).size * 0.9) throw new Error('tcprewrite wrote less than it read');
  return { secs };
}

const results = [];
process.stdout.write(`bench/nat.js: ${PACKETS.toLocaleString('en-US')} packets per capture, ${ROUNDS} rounds; ${cpus().length} CPUs, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
if (!tcprewrite) process.stdout.write('tcprewrite not found (Debian package tcpreplay): its column is skipped\n');
for (const ppf of [5, 50, 5000]) {
  const { file, summary } = synthCapture({ packets: PACKETS, packetsPerFlow: ppf, concurrency: Math.min(1000, Math.max(10, Math.floor(PACKETS / ppf / 4))), payloadSize: 64, seed: 8 });
  const contenders = ['dnat', 'ctlb', ...(tcprewrite ? ['tcprewrite'] : [])];
  const runs = Object.fromEntries(contenders.map((c) => [c, []]));
  // One untimed round warms the JIT.
  runDplab('dnat', file); runDplab('ctlb', file);
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(k + r) % contenders.length];
      runs[c].push(c === 'tcprewrite' ? runTcprewrite(file) : runDplab(c, file));
    }
  }
  for (const c of ['dnat', 'ctlb']) if (new Set(runs[c].map((x) => x.check)).size !== 1) throw new Error(`${c}: counts changed between rounds`);
  const med = (c, k) => median(runs[c].map((x) => x[k]));
  const row = {
    packetsPerFlow: ppf,
    packets: summary.packets,
    dnat: { mpps: summary.packets / med('dnat', 'secs') / 1e6, dataplaneNs: med('dnat', 'dataplane'), conntrackNs: med('dnat', 'conntrack'), dnatNs: med('dnat', 'dnat'), bindings: runs.dnat[0].connects },
    ctlb: { mpps: summary.packets / med('ctlb', 'secs') / 1e6, dataplaneNs: med('ctlb', 'dataplane'), emulationNs: med('ctlb', 'emulation'), connects: runs.ctlb[0].connects },
    ...(tcprewrite ? { tcprewrite: { mpps: summary.packets / med('tcprewrite', 'secs') / 1e6 } } : {}),
  };
  results.push(row);
}

const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
process.stdout.write('\npackets/flow  dnat Mpps  ctlb Mpps  tcprewrite Mpps  dnat/tcprewrite  | dataplane ns/packet: dnat (ct + nat)  ctlb (ct)  ratio | ctlb emulation ns/packet, connects\n');
for (const r of results) {
  const tr = r.tcprewrite ? `${f2(r.tcprewrite.mpps).padStart(15)}  ${f2(r.dnat.mpps / r.tcprewrite.mpps).padStart(15)}` : `${'-'.padStart(15)}  ${'-'.padStart(15)}`;
  process.stdout.write(`${String(r.packetsPerFlow).padStart(12)}  ${f2(r.dnat.mpps).padStart(9)}  ${f2(r.ctlb.mpps).padStart(9)}  ${tr}  | `
    + `${`${f1(r.dnat.dataplaneNs)} (${f1(r.dnat.conntrackNs)} + ${f1(r.dnat.dnatNs)})`.padStart(35)}  ${f1(r.ctlb.dataplaneNs).padStart(9)}  ${f2(r.dnat.dataplaneNs / r.ctlb.dataplaneNs).padStart(5)} | `
    + `${f1(r.ctlb.emulationNs)}, ${r.ctlb.connects.toLocaleString('en-US')}\n`);
}
process.stdout.write('\nMedians of the rounds. dataplane = the stages a kernel would run per packet (conntrack, plus dnat for kube-proxy);\n'
  + 'ctlb\'s re-addressing stands for a once-per-connect() choice and is not dataplane cost. The per-flow binding\n'
  + '(backend choice, reply tuple) runs inside conntrack\'s row, as the entry is created.\n');
if (args.json) writeFileSync(args.json, JSON.stringify({ packets: PACKETS, rounds: ROUNDS, results }, null, 2) + '\n');
