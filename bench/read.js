// Reading and decoding a capture: dplab against its peers, in one run.
//
// A 1,000,000-packet capture of small packets (made by `dplab gen`, cached in bench/out/) is read
// by every contender, alternating the contenders over several rounds; the table shows medians and
// each contender's time as a multiple of dplab's read+decode. Every contender's packet count is
// checked, so a contender that stops early cannot look fast.
//
//   node bench/read.js [--rounds 7] [--tshark-rounds 1] [--only dplab-decode,tcpdump] [--json FILE]
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
// DPLAB_DIST=/other/dist measures another build (a prototype, a branch) in exactly the same way.
const DIST = resolve(process.env.DPLAB_DIST ?? join(HERE, '../dist'));
const load = async (m) => import(pathToFileURL(join(DIST, m)).href);
const { openCapture } = await load('capture/open.js');
const { writeSynthPcap } = await load('gen/synth.js');
const { Batch } = await load('packet/batch.js');
const { decodeBatch } = await load('packet/decode.js');
const OUT = join(HERE, 'out');
const require = createRequire(import.meta.url);

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '7' },
    'tshark-rounds': { type: 'string', default: '1' },
    only: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  process.stdout.write(`node bench/read.js [--rounds N] [--tshark-rounds N] [--only ID,ID] [--json FILE]

  --rounds N         rounds; every contender runs once per round, in rotating order (default 7)
  --tshark-rounds N  rounds tshark takes part in (default 1: it needs ~20 s a run here; 0 skips it)
  --only ID,...      only these contenders: ${'dplab-decode, dplab-read, pcap-parser, tcpdump, capinfos, tshark'}
  --json FILE        also write the results as JSON
`);
  process.exit(0);
}
const ROUNDS = Number(args.rounds);
const TSHARK_ROUNDS = Number(args['tshark-rounds']);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds wants a whole number from 1, got ${args.rounds}`);
if (!Number.isInteger(TSHARK_ROUNDS) || TSHARK_ROUNDS < 0) throw new Error(`--tshark-rounds wants a whole number from 0, got ${args['tshark-rounds']}`);

// --- the input: 1M small packets, regenerated when the generator or its options change ---

const GEN = {
  seed: 1, packets: 1_000_000, payloadSize: 16, packetsPerFlow: 10,
  ipv6Share: 0.2, vlanShare: 0.1, udpShare: 0.2, attackShare: 0.05,
};
const FILE = join(OUT, 'read-1m-small.pcap');

function input() {
  mkdirSync(OUT, { recursive: true });
  const generator = createHash('sha256').update(readFileSync(join(DIST, 'gen/synth.js'))).digest('hex').slice(0, 16);
  const metaFile = FILE.replace(/\.pcap$/, '.json');
  const key = JSON.stringify({ GEN, generator });
  if (existsSync(FILE) && existsSync(metaFile)) {
    const meta = JSON.parse(readFileSync(metaFile, 'utf8'));
    if (meta.key === key) return meta.summary;
  }
  process.stderr.write(`generating ${FILE} (dplab gen --packets 1000000 --payload 16) ...\n`);
  const summary = writeSynthPcap(FILE, GEN);
  writeFileSync(metaFile, JSON.stringify({ key, summary }, null, 2) + '\n');
  return summary;
}

// --- the contenders: each run returns what it counted, checked against the generator's numbers ---

/** dplab: open, fill batches, decode, and read decoded fields so no work can be skipped. */
function dplabDecode() {
  const src = openCapture(FILE);
  const b = new Batch();
  let packets = 0; let tcp = 0; let acc = 0;
  try {
    while (src.fill(b) > 0) {
      decodeBatch(b);
      const n = b.count;
      const { proto, hash, sport, malformed } = b;
      for (let i = 0; i < n; i++) {
        acc = (acc + hash[i] + sport[i] + malformed[i]) | 0;
        if (proto[i] === 6) tcp++;
      }
      packets += n;
      src.release(b);
    }
  } finally {
    src.close();
  }
  if (src.error) throw new Error(`dplab: ${src.error.message}`);
  return { packets, tcp, acc };
}

/** dplab's reader alone: fill batches and read the per-packet fields the reader sets. */
function dplabRead() {
  const src = openCapture(FILE);
  const b = new Batch();
  let packets = 0; let acc = 0;
  try {
    while (src.fill(b) > 0) {
      const n = b.count;
      const { capLen, tsNsec, off } = b;
      for (let i = 0; i < n; i++) acc = (acc + capLen[i] + tsNsec[i] + b.bytes[off[i] + 12]) | 0;
      packets += n;
      src.release(b);
    }
  } finally {
    src.close();
  }
  if (src.error) throw new Error(`dplab: ${src.error.message}`);
  return { packets, acc };
}

/**
 * pcap-parser 0.2.1, as its README uses it: parse(path), one 'packet' event per packet. A truncated
 * file ends silently, so the count is what shows it read everything; on 'error' it leaves its file
 * open, so the stream is destroyed here.
 */
function pcapParser() {
  const pcap = require('pcap-parser');
  return new Promise((resolve, reject) => {
    let packets = 0; let acc = 0;
    const p = pcap.parse(FILE);
    p.on('packet', (pk) => { packets++; acc = (acc + pk.data.length + pk.header.timestampMicroseconds) | 0; });
    p.on('end', () => resolve({ packets, acc }));
    p.on('error', (e) => { p.stream.destroy(); reject(e); });
  });
}

function run(cmd, argv) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited with ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Packets in a capture, by dplab's reader (used to check what a peer wrote). */
function countPackets(path) {
  const src = openCapture(path);
  const b = new Batch();
  let n = 0;
  try { while (src.fill(b) > 0) { n += b.count; src.release(b); } } finally { src.close(); }
  return n;
}

// BPF's plain `tcp` does not look inside 802.1Q tags; this is tcpdump's idiom for both.
const TCP_FILTER = 'tcp or (vlan and tcp)';

const CONTENDERS = [
  {
    id: 'dplab-decode', label: 'dplab read+decode (in-process)', needs: null,
    run: dplabDecode, check: (r, s) => r.packets === s.packets && r.tcp === s.tcpPackets,
  },
  {
    id: 'dplab-read', label: 'dplab read only (in-process)', needs: null,
    run: dplabRead, check: (r, s) => r.packets === s.packets,
  },
  {
    id: 'pcap-parser', label: 'pcap-parser 0.2.1, count packets (in-process)', needs: 'npm ci',
    available: () => { try { require.resolve('pcap-parser'); return true; } catch { return false; } },
    run: pcapParser, check: (r, s) => r.packets === s.packets,
  },
  {
    id: 'tcpdump', label: `tcpdump -r F -w /dev/null '${TCP_FILTER}' (subprocess)`, needs: 'apt-get install tcpdump',
    available: () => has('tcpdump', ['--version']),
    run: () => { run('tcpdump', ['-r', FILE, '-w', '/dev/null', TCP_FILTER]); return {}; },
    // -w /dev/null leaves nothing to count: once, untimed, the same filter writes a file we count.
    verify: (s) => {
      const out = join(OUT, 'tcpdump-check.pcap');
      run('tcpdump', ['-r', FILE, '-w', out, TCP_FILTER]);
      const n = countPackets(out);
      rmSync(out);
      return n === s.tcpPackets ? null : `tcpdump kept ${n} TCP packets, the capture has ${s.tcpPackets}`;
    },
  },
  {
    id: 'capinfos', label: 'capinfos -c -M F: count packets, no dissection (subprocess)', needs: 'apt-get install tshark',
    available: () => has('capinfos', ['-h']),
    run: () => ({ packets: Number(/Number of packets:\s*(\d+)/.exec(run('capinfos', ['-c', '-M', FILE]))?.[1]) }),
    check: (r, s) => r.packets === s.packets,
  },
  {
    id: 'tshark', label: 'tshark -r F -Y tcp -w F2: dissect every packet (subprocess)', needs: 'apt-get install tshark',
    available: () => has('tshark', ['--version']),
    rounds: TSHARK_ROUNDS,
    run: () => {
      const out = join(OUT, 'tshark-out.pcap');
      run('tshark', ['-r', FILE, '-Y', 'tcp', '-w', out]);
      const tcp = countPackets(out);
      rmSync(out);
      return { tcp };
    },
    check: (r, s) => r.tcp === s.tcpPackets,
  },
];

function has(cmd, argv) {
  const r = spawnSync(cmd, argv, { stdio: 'ignore' });
  return !r.error;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function timeOne(c, summary) {
  globalThis.gc?.();
  const t0 = performance.now();
  const r = await c.run();
  const secs = (performance.now() - t0) / 1000;
  if (c.check && !c.check(r, summary)) throw new Error(`${c.label}: wrong count ${JSON.stringify(r)}`);
  return secs;
}

async function main() {
  const summary = input();
  const only = args.only ? new Set(args.only.split(',')) : null;
  const chosen = CONTENDERS.filter((c) => !only || only.has(c.id));
  const active = [];
  const missing = [];
  for (const c of chosen) {
    if (c.id === 'tshark' && TSHARK_ROUNDS <= 0) missing.push({ c, why: 'skipped (--tshark-rounds 0)' });
    else if (c.available && !c.available()) missing.push({ c, why: `not installed (${c.needs})` });
    else active.push(c);
  }
  process.stdout.write(`bench/read: ${summary.packets.toLocaleString('en-US')} packets, `
    + `${(summary.bytes / 2 ** 20).toFixed(1)} MiB (${((summary.bytes - 24) / summary.packets - 16).toFixed(1)} bytes/frame on average), `
    + `${ROUNDS} rounds, node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, `
    + `load average ${loadavg()[0].toFixed(2)}${process.env.DPLAB_DIST ? `, dplab from ${DIST}` : ''}\n`);
  for (const { c, why } of missing) process.stdout.write(`  ${c.id}: ${why}\n`);

  for (const c of active) {
    const problem = c.verify?.(summary);
    if (problem) throw new Error(problem);
  }
  // One untimed round warms the page cache and the JIT.
  for (const c of active) if (!c.rounds) await timeOne(c, summary);

  const times = new Map(active.map((c) => [c.id, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < active.length; k++) {
      const c = active[(k + round) % active.length];
      if (c.rounds !== undefined && round >= c.rounds) continue;
      times.get(c.id).push(await timeOne(c, summary));
    }
    if (process.stderr.isTTY) process.stderr.write(`  round ${round + 1}/${ROUNDS} done\r`);
  }
  if (process.stderr.isTTY) process.stderr.write('\x1b[K');

  const base = active.find((c) => c.id === 'dplab-decode') ? median(times.get('dplab-decode')) : NaN;
  const rows = active.map((c) => {
    const t = times.get(c.id);
    const med = median(t);
    return {
      id: c.id, label: c.label, runs: t, medianSeconds: med, minSeconds: Math.min(...t), maxSeconds: Math.max(...t),
      mpps: summary.packets / med / 1e6, timeVsDplabDecode: med / base,
    };
  });
  printTable(rows);

  const rowOf = (id) => rows.find((r) => r.id === id);
  const targets = [
    { name: 'dplab read+decode vs tcpdump', peer: 'tcpdump', target: 1.0 },
    { name: 'dplab read+decode vs pcap-parser', peer: 'pcap-parser', target: 4.0 },
  ].map((t) => {
    const r = rowOf(t.peer);
    const speedup = r ? r.medianSeconds / base : null;
    return { ...t, speedup, met: speedup === null || Number.isNaN(speedup) ? null : speedup >= t.target };
  });
  process.stdout.write('\nTargets (peer median time / dplab read+decode median time; higher is better for dplab):\n');
  for (const t of targets) {
    const v = t.speedup === null || Number.isNaN(t.speedup) ? 'not measured' : `${t.speedup.toFixed(2)}x  ${t.met ? 'MET' : 'NOT MET'}`;
    process.stdout.write(`  ${`${t.name} (target >= ${t.target.toFixed(1)}x):`.padEnd(52)} ${v}\n`);
  }
  const tcpdumpStart = active.some((c) => c.id === 'tcpdump') ? startupMs() : null;
  if (tcpdumpStart !== null) process.stdout.write(`\nSubprocess times are wall time including start-up: tcpdump on a 1-packet capture takes ${tcpdumpStart.toFixed(1)} ms here.\n`);
  process.stdout.write('Medians over the rounds; the machine is shared and noisy, so read the ratios, not the absolute times.\n');

  if (args.json) {
    mkdirSync(dirname(resolve(args.json)), { recursive: true });
    writeFileSync(args.json, JSON.stringify({
      bench: 'read', file: FILE, generator: GEN, capture: summary, rounds: ROUNDS, node: process.version,
      cpus: cpus().length, cpu: cpus()[0]?.model, loadAverage: loadavg(), dist: DIST, date: new Date().toISOString(),
      contenders: rows, missing: missing.map(({ c, why }) => ({ id: c.id, why })), targets, tcpdumpStartupMs: tcpdumpStart,
    }, null, 2) + '\n');
  }
}

/** Median start-up cost of the tcpdump subprocess, on a one-packet capture. */
function startupMs() {
  const tiny = join(OUT, 'one-packet.pcap');
  writeSynthPcap(tiny, { packets: 1, attackShare: 0 });
  const t = [];
  for (let k = 0; k < 5; k++) {
    const t0 = performance.now();
    run('tcpdump', ['-r', tiny, '-w', '/dev/null', TCP_FILTER]);
    t.push(performance.now() - t0);
  }
  return median(t);
}

function printTable(rows) {
  const head = ['contender', 'median s', 'min-max s', 'Mpps', 'time / dplab r+d', 'runs'];
  const cells = rows.map((r) => [
    r.label, r.medianSeconds.toFixed(3), `${r.minSeconds.toFixed(3)}-${r.maxSeconds.toFixed(3)}`, r.mpps.toFixed(2),
    `${r.timeVsDplabDecode.toFixed(2)}x`, String(r.runs.length),
  ]);
  const w = head.map((h, k) => Math.max(h.length, ...cells.map((c) => c[k].length)));
  const line = (c) => c.map((x, k) => (k === 0 ? x.padEnd(w[k]) : x.padStart(w[k]))).join('  ');
  process.stdout.write(`\n${line(head)}\n${cells.map(line).join('\n')}\n`);
}

process.noDeprecation = true; // pcap-parser calls new Buffer(); its warning is not news
await main();
