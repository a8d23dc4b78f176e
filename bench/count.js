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
//   node bench/count.js [--profile ebpf] [--packets 300000] [--rounds 3] [--file CAPTURE] [--shard K/N] [--by-function] [--json FILE] [DIST ...]   (default: dist)
//
// --by-function also simulates the branch predictor (callgrind --branch-sim=yes) and splits the
// count by function: callgrind's per-address totals are named through the map that node writes
// with --perf-basic-prof (/tmp/perf-PID.map: the optimised JavaScript is "JS:*name file:line",
// each tier and each compiled version its own range), summed by name and subtracted as the totals
// are. Per packet, for the functions that cost most: instructions, conditional branches and
// mispredicted ones. The mispredicts are valgrind's model's (a gshare "typical of around 2004"):
// they rank functions; two branches it blamed cost nothing in time when taken out (DESIGN.md
// "Thirteenth pass"). The functions V8 inlined show under their callers.
//
// --shard K/N counts what worker K of N does (it reads and decodes every packet, runs the per-flow
// stages on its shard), still divided by every packet of the capture.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DIST, loadDist, synthCapture } from './lib/common.js';

const { values, positionals } = parseArgs({
  options: {
    profile: { type: 'string', default: 'ebpf' }, packets: { type: 'string', default: '300000' }, file: { type: 'string' },
    rounds: { type: 'string', default: '3' }, json: { type: 'string' }, shard: { type: 'string' }, 'by-function': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
  allowPositionals: true,
});
if (values.help) {
  process.stdout.write('node bench/count.js [--profile ebpf] [--packets 300000] [--rounds 3] [--file CAPTURE] [--shard K/N] [--by-function] [--json FILE] [DIST ...]\n');
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
// A profile given as a path is made absolute here, as loadProfile would from this directory: the
// valgrind child reads it (and the rule files beside it) from wherever it resolves.
const { isProfilePath } = await loadDist('pipeline/profile.js');
const profileArg = isProfilePath(values.profile) ? resolve(values.profile) : values.profile;
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

const byFunction = values['by-function'];
const tmp = byFunction ? mkdtempSync(join(tmpdir(), 'dplab-count-')) : '';
// Gone however the script ends (a failed callgrind or callgrind_annotate exits at once).
if (byFunction) process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function instructions(dist, rounds) {
  const out = byFunction ? join(tmp, 'callgrind.out') : '/dev/null';
  const r = spawnSync('valgrind', ['--tool=callgrind', '--smc-check=all', `--callgrind-out-file=${out}`, ...(byFunction ? ['--branch-sim=yes'] : []),
    process.execPath, '--single-threaded', ...(byFunction ? ['--perf-basic-prof'] : []), '-e', RUNNER, dist, file, profileArg, String(rounds), values.shard ?? ''],
  { encoding: 'utf8', maxBuffer: 1 << 26 });
  const m = /Collected : (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m) {
    // What valgrind or the build said last, without this script's own stack: the run is what failed.
    const said = (r.error?.message ?? r.stderr).split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('==') && !/^\s+at /.test(l)).slice(0, 4).join('\n    ');
    process.stderr.write(`count.js: callgrind could not count ${dist} (exit ${r.status ?? r.signal}):\n    ${said}\n`);
    process.exit(1);
  }
  return { ir: Number(m[1]), packets: Number(r.stdout), functions: byFunction ? functions(out, Number(/^==(\d+)==/m.exec(r.stderr)?.[1]), dist) : null };
}

/** callgrind's totals by function, as Map(name -> [instructions, conditional branches, mispredicted]). */
function functions(out, pid, dist) {
  const mapFile = `/tmp/perf-${pid}.map`;
  const ranges = existsSync(mapFile)
    ? readFileSync(mapFile, 'utf8').split('\n').map((l) => /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(l)).filter((x) => x !== null)
      .map((x) => ({ start: parseInt(x[1], 16), size: parseInt(x[2], 16), name: x[3].replace(`file://${dist}/`, '') }))
      .sort((a, b) => a.start - b.start)
    : [];
  rmSync(mapFile, { force: true });
  const nameOf = (address) => {
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (ranges[mid].start <= address) lo = mid + 1; else hi = mid - 1;
    }
    const x = ranges[hi];
    return x && address < x.start + x.size ? x.name : 'JIT code not in the map';
  };
  const a = spawnSync('callgrind_annotate', ['--show=Ir,Bc,Bcm', '--threshold=100', out], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (a.status !== 0) {
    process.stderr.write(`count.js: callgrind_annotate could not read ${out} (${a.error?.message ?? (a.stderr.trim().split('\n')[0] || `exit ${a.status}`)}); it comes with valgrind and needs perl\n`);
    process.exit(1);
  }
  const byName = new Map();
  for (const line of a.stdout.split('\n')) {
    const m = /^\s*([\d,]+|\.)\s+(?:\([^)]*\)\s+)?([\d,]+|\.)\s+(?:\([^)]*\)\s+)?([\d,]+|\.)\s+(?:\([^)]*\)\s+)?(\S.*)$/.exec(line);
    if (!m || m[4].startsWith('PROGRAM TOTALS')) continue;
    const jit = /^\?\?\?:0x([0-9a-f]+) \[\?\?\?\]/.exec(m[4]);
    const name = jit ? nameOf(parseInt(jit[1], 16)) : m[4].replace(/ \[.*\]$/, '').replace(/^\?\?\?:/, '').slice(0, 100);
    const t = byName.get(name) ?? [0, 0, 0];
    for (let k = 0; k < 3; k++) t[k] += m[k + 1] === '.' ? 0 : Number(m[k + 1].replaceAll(',', ''));
    byName.set(name, t);
  }
  return byName;
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
  if (byFunction) {
    const per = rounds * after.packets;
    const rows = [...after.functions].map(([name, t]) => {
      const b = before.functions.get(name) ?? [0, 0, 0];
      return { name, ir: (t[0] - b[0]) / per, branches: (t[1] - b[1]) / per, mispredicted: (t[2] - b[2]) / per };
    });
    const all = rows.reduce((x, r) => ({ ir: x.ir + r.ir, branches: x.branches + r.branches, mispredicted: x.mispredicted + r.mispredicted }), { ir: 0, branches: 0, mispredicted: 0 });
    process.stdout.write(`    a packet: ${all.ir.toFixed(0)} instructions, ${all.branches.toFixed(0)} conditional branches, ${all.mispredicted.toFixed(1)} mispredicted; by function:\n`);
    process.stdout.write(`    ${'instr'.padStart(7)} ${'branch'.padStart(7)} ${'mispr'.padStart(6)}  function\n`);
    for (const r of rows.sort((x, y) => y.ir - x.ir).slice(0, 24)) {
      process.stdout.write(`    ${r.ir.toFixed(1).padStart(7)} ${r.branches.toFixed(1).padStart(7)} ${r.mispredicted.toFixed(2).padStart(6)}  ${r.name}\n`);
    }
    counts.at(-1).byFunction = rows.filter((r) => Math.abs(r.ir) >= 0.5).sort((x, y) => y.ir - x.ir);
  }
}
if (values.json) writeFileSync(values.json, JSON.stringify({ profile: values.profile, file, rounds, counts }, null, 2) + '\n');
