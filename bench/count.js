// Instructions a packet, counted by valgrind's callgrind: for changes too small to time on a VM
// whose speed drifts 20% between two runs (DESIGN.md "Fourth pass"). Counts, not seconds: the same
// build, capture and flags give the same count to ~1% for ebpf (3,140 and 3,141 with --rounds 6),
// whatever else the machine is doing; read + decode alone has varied 4%, so run each build twice
// (DESIGN.md "Fifth pass"). They say nothing of cache misses (a change that trades instructions
// for misses needs timing, with bench/ab.js or alternating processes), and rep-prefixed memset
// counts one per byte here.
//
// Each build runs the capture 3 and then 3 + N times (--rounds N, 3) in a fresh
// `node --single-threaded` (no background compiler or marker, whose timing would otherwise decide
// when optimised code arrives and so the count); the difference is the last N rounds, all warm,
// divided by their packets.
//
//   node bench/count.js [--profile ebpf] [--packets 300000] [--rounds 3] [--file CAPTURE] [--shard K/N] [--json FILE] [DIST ...]   (default: dist)
//
// --shard K/N counts what worker K of N does (it reads and decodes every packet, runs the per-flow
// stages on its shard), still divided by every packet of the capture.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DIST, synthCapture } from './lib/common.js';

const { values, positionals } = parseArgs({
  options: {
    profile: { type: 'string', default: 'ebpf' }, packets: { type: 'string', default: '300000' }, file: { type: 'string' },
    rounds: { type: 'string', default: '3' }, json: { type: 'string' }, shard: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  },
  allowPositionals: true,
});
if (values.help) {
  process.stdout.write('node bench/count.js [--profile ebpf] [--packets 300000] [--rounds 3] [--file CAPTURE] [--shard K/N] [--json FILE] [DIST ...]\n');
  process.exit(0);
}
if (values.shard !== undefined) {
  const m = /^(\d+)\/(\d+)$/.exec(values.shard);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 256 || Number(m[1]) >= Number(m[2])) {
    process.stderr.write(`count.js: --shard ${values.shard}: give K/N, worker K (from 0) of N workers (1-256), e.g. --shard 0/2\n`);
    process.exit(2);
  }
}
if (spawnSync('valgrind', ['--version']).error) {
  process.stdout.write('count.js: valgrind is not installed (apt-get install valgrind): skipped\n');
  process.exit(0);
}
// The issue's traffic shape (1,000 flows active at once), 200 packets a flow: the established path.
const { file, summary } = values.file
  ? { file: resolve(values.file), summary: null }
  : synthCapture({ seed: 1, packets: Number(values.packets), packetsPerFlow: 200, payloadSize: 64, concurrency: 1000 });
const builds = positionals.length ? positionals.map((p) => resolve(p)) : [DIST];
const RUNNER = `
  const [dist, file, profile, rounds, shard] = process.argv.slice(1);
  const load = (m) => import(require('node:url').pathToFileURL(require('node:path').join(dist, m)).href);
  (async () => {
    const { runCapture } = await load('pipeline/run.js');
    const { loadProfile } = await load('pipeline/profile.js');
    const { buildStages } = await load('pipeline/registry.js');
    const { Sharder } = await load('pipeline/shard.js');
    await load('stages/index.js');
    const [me, of] = shard === '' ? [0, 1] : shard.split('/').map(Number);
    let packets = 0;
    for (let r = 0; r < Number(rounds); r++) {
      const stages = buildStages(loadProfile(profile), of);
      packets = runCapture({ file, profile, stages, timing: false, ...(shard === '' ? {} : { sharder: new Sharder(of, me, stages) }) }).source.packets;
    }
    process.stdout.write(String(packets));
  })();`;

function instructions(dist, rounds) {
  const r = spawnSync('valgrind', ['--tool=callgrind', '--smc-check=all', '--callgrind-out-file=/dev/null',
    process.execPath, '--single-threaded', '-e', RUNNER, dist, file, values.profile, String(rounds), values.shard ?? ''], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const m = /Collected : (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m) {
    // What valgrind or the build said last, without this script's own stack: the run is what failed.
    const said = (r.error?.message ?? r.stderr).split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('==') && !/^\s+at /.test(l)).slice(0, 4).join('\n    ');
    process.stderr.write(`count.js: callgrind could not count ${dist} (exit ${r.status ?? r.signal}):\n    ${said}\n`);
    process.exit(1);
  }
  return { ir: Number(m[1]), packets: Number(r.stdout) };
}

const rounds = Number(values.rounds);
process.stdout.write(`count.js: ${values.profile}${values.shard ? ` as worker ${values.shard}` : ''} on ${file}${summary ? ` (${summary.packets.toLocaleString('en-US')} packets)` : ''}, instructions a packet in rounds 4-${3 + rounds}\n`);
const counts = [];
for (const d of builds) {
  const before = instructions(d, 3);
  const after = instructions(d, 3 + rounds);
  const perPacket = (after.ir - before.ir) / (rounds * after.packets);
  counts.push({ build: d, instructionsPerPacket: Math.round(perPacket) });
  process.stdout.write(`  ${d.padEnd(40)} ${perPacket.toFixed(0).padStart(7)}\n`);
}
if (values.json) writeFileSync(values.json, JSON.stringify({ profile: values.profile, file, rounds, counts }, null, 2) + '\n');
