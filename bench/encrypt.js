// Per-packet crypto (issue 13): the encrypt stage (WireGuard's data path: ChaCha20-Poly1305 per
// packet through node:crypto, into outer IPv4/UDP) at 64, 512 and 1,400-byte payloads, against
// `openssl speed -evp chacha20-poly1305` on the same buffer sizes as the ceiling (the same OpenSSL
// Node links, in C, one buffer sealed over and over: no packet handling, no allocation).
//
// Input: synthetic captures (bench/lib/common.js synthCapture, 1,000 packets per flow, so nearly
// every packet carries the payload) with gen's addresses: clients on node-a, servers on node-b.
// Contenders per size, taking turns within each round:
//   stage   pipeline: encrypt (alone, so its row is the crypto's cost), inline, --write to bench/out
//   seal    the Sealer (src/crypto/wireguard.ts) alone in a loop on one buffer of the inner packet's size
// Printed per size: encrypt ns/packet, ns/byte, Gbit/s of plaintext; the bare seal's; openssl's
// Gbit/s and the stage's share of it; and what node:crypto's per-call allocation costs: minor GCs
// and their time per million packets (PerformanceObserver 'gc').
//
//   node bench/encrypt.js [--rounds 3] [--packets 300000] [--json FILE]
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { benchArgs, loadDist, median, OUT, synthCapture } from './lib/common.js';

const { runCapture } = await loadDist('pipeline/run.js');
const { loadProfile } = await loadDist('pipeline/profile.js');
const { buildStages } = await loadDist('pipeline/registry.js');
const { Sealer, pairKey } = await loadDist('crypto/wireguard.js');
await loadDist('stages/index.js');

const args = benchArgs('encrypt.js', 300000);
const ROUNDS = args.rounds;
const PACKETS = args.packets;
const PROFILE = join(OUT, 'encrypt.profile');
writeFileSync(PROFILE, 'pipeline: encrypt\n[encrypt]\nsecret: bench\nnode: node-a 192.168.0.1 10.0.0.0/8, fd00:10::/64\nnode: node-b 192.168.0.2 172.16.0.0/16, fd00:172:16::/64\n');
const OUTFILE = join(OUT, 'encrypt-out.pcap');

let gcCount = 0;
let gcMs = 0;
const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) { gcCount++; gcMs += e.duration; } });
obs.observe({ entryTypes: ['gc'] });
const settle = () => new Promise((r) => setImmediate(r));

async function runStage(file) {
  globalThis.gc?.();
  await settle();
  const g0 = gcCount; const m0 = gcMs;
  const r = runCapture({ file, profile: PROFILE, stages: buildStages(loadProfile(PROFILE)), write: OUTFILE }).report;
  await settle();
  const rep = r.stageReports.encrypt;
  const row = r.stages.find((s) => s.name === 'encrypt');
  if (rep.packetsSealed < r.verdicts.packets * 0.9) {
    process.stderr.write(`bench/encrypt.js: only ${rep.packetsSealed} of ${r.verdicts.packets} packets sealed\n`);
    process.exit(1);
  }
  return { ns: row.ns, sealed: rep.packetsSealed, bytes: rep.plaintextBytes, gcs: gcCount - g0, gcMs: gcMs - m0 };
}

async function runSeal(size, n) {
  const sealer = new Sealer();
  const key = pairKey('bench', 'node-a', 'node-b');
  const plain = new Uint8Array(size).fill(0x61);
  const out = new Uint8Array(size + 100);
  globalThis.gc?.();
  await settle();
  const g0 = gcCount; const m0 = gcMs;
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < n; k++) sealer.seal(key, 1, k + 1, 0xc0a80001, 0xc0a80002, 64, plain, 0, size, out, 0);
  const ns = Number(process.hrtime.bigint() - t0);
  await settle();
  return { ns, sealed: n, bytes: size * n, gcs: gcCount - g0, gcMs: gcMs - m0 };
}

function openssl(size) {
  const r = spawnSync('openssl', ['speed', '-evp', 'chacha20-poly1305', '-bytes', String(size), '-seconds', '1', '-mr'], { encoding: 'utf8' });
  const m = /\+F:\d+:[^:]+:([\d.]+)/.exec(r.stdout ?? '');
  return m ? Number(m[1]) : null;
}

process.stdout.write(`bench/encrypt.js: ${PACKETS.toLocaleString('en-US')} packets per capture, ${ROUNDS} rounds; ${cpus().length} CPUs, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
const results = [];
for (const payload of [64, 512, 1400]) {
  const { file } = synthCapture({ packets: PACKETS, packetsPerFlow: 1000, concurrency: 50, payloadSize: payload, seed: 13 });
  await runStage(file); // warm-up
  const stage = [];
  const seal = [];
  let inner = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const s = await runStage(file);
    stage.push(s);
    // The bare seal on a buffer of the capture's mean inner packet size.
    inner = Math.round(s.bytes / s.sealed);
    seal.push(await runSeal(inner, s.sealed));
  }
  const ossl = median([openssl(inner), openssl(inner), openssl(inner)].filter((x) => x !== null));
  const m = (xs, f) => median(xs.map(f));
  const row = {
    payload,
    innerBytes: inner,
    stage: { nsPerPacket: m(stage, (x) => x.ns / x.sealed), nsPerByte: m(stage, (x) => x.ns / x.bytes), gbps: m(stage, (x) => (x.bytes * 8) / x.ns),
      gcsPerMillion: m(stage, (x) => (x.gcs * 1e6) / x.sealed), gcMsPerMillion: m(stage, (x) => (x.gcMs * 1e6) / x.sealed) },
    seal: { nsPerPacket: m(seal, (x) => x.ns / x.sealed), nsPerByte: m(seal, (x) => x.ns / x.bytes), gbps: m(seal, (x) => (x.bytes * 8) / x.ns),
      gcsPerMillion: m(seal, (x) => (x.gcs * 1e6) / x.sealed), gcMsPerMillion: m(seal, (x) => (x.gcMs * 1e6) / x.sealed) },
    openssl: ossl ? { gbps: (ossl * 8) / 1e9, nsPerPacket: (inner / ossl) * 1e9 } : null,
  };
  results.push(row);
}
obs.disconnect();

const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);
process.stdout.write('\npayload  inner B | stage ns/pkt  ns/B  Gbit/s  GCs/1M  GC ms/1M | seal ns/pkt  ns/B  Gbit/s | openssl ns/pkt  Gbit/s | stage/openssl time\n');
for (const r of results) {
  process.stdout.write(`${String(r.payload).padStart(7)}  ${String(r.innerBytes).padStart(7)} | ${f1(r.stage.nsPerPacket).padStart(12)}  ${f2(r.stage.nsPerByte).padStart(4)}  ${f2(r.stage.gbps).padStart(6)}  ${f1(r.stage.gcsPerMillion).padStart(6)}  ${f1(r.stage.gcMsPerMillion).padStart(8)} | `
    + `${f1(r.seal.nsPerPacket).padStart(11)}  ${f2(r.seal.nsPerByte).padStart(4)}  ${f2(r.seal.gbps).padStart(6)} | `
    + `${r.openssl ? `${f1(r.openssl.nsPerPacket).padStart(14)}  ${f2(r.openssl.gbps).padStart(6)}` : `${'-'.padStart(14)}  ${'-'.padStart(6)}`} | `
    + `${r.openssl ? f1(r.stage.nsPerPacket / r.openssl.nsPerPacket).padStart(5) : '-'}x\n`);
}
process.stdout.write('\nMedians of the rounds. stage = the encrypt row of `pipeline: encrypt` (grow into the output area, seal, outer headers and\n'
  + 'checksums); seal = the Sealer alone; openssl = `openssl speed -evp chacha20-poly1305 -bytes N` (CPU time, one buffer).\n'
  + 'GCs/1M: garbage collections per million packets, from node:crypto\'s cipher object and output buffers per call.\n');
if (args.json) writeFileSync(args.json, JSON.stringify({ packets: PACKETS, rounds: ROUNDS, results }, null, 2) + '\n');
