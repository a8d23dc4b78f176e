// Two (or more) builds of dplab in one process, taking turns on the same capture: for changes
// too small to see across separate runs on a noisy 2-core machine. Each build is its own module
// graph (its own JIT state); the order rotates every round, the first two rounds are warm-up.
// Prints, per build, the medians of ns/packet end to end, per stage, and outside the stages
// (reading, summary, accounting).
//
//   npm run build && git archive OLD | tar -x -C /tmp/old && (cd /tmp/old && ln -s $PWD/node_modules && npx tsc)
//   node --expose-gc bench/ab.js [--profile ebpf] [--rounds 12] [--file CAPTURE] dist /tmp/old/dist
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { median, synthCapture } from './lib/common.js';

const { values, positionals } = parseArgs({
  options: { profile: { type: 'string', default: 'ebpf' }, rounds: { type: 'string', default: '12' }, file: { type: 'string' } },
  allowPositionals: true,
});
if (positionals.length < 1) {
  // Run by bench/run.js with no builds to compare: say how, and skip.
  process.stdout.write('ab.js compares builds: node bench/ab.js [--profile P] [--rounds N] [--file CAPTURE] DIST [DIST ...] (skipped: no builds given)\n');
  process.exit(0);
}
const file = values.file ?? synthCapture({ seed: 1, packets: 1000000, payloadSize: 16, packetsPerFlow: 10, ipv6Share: 0.2, vlanShare: 0.1, udpShare: 0.2, attackShare: 0.05 }).file;
const builds = [];
for (const d of positionals.map((p) => resolve(p))) {
  const load = (m) => import(pathToFileURL(join(d, m)).href);
  const { runCapture } = await load('pipeline/run.js');
  const { loadProfile } = await load('pipeline/profile.js');
  const { buildStages } = await load('pipeline/registry.js');
  await load('stages/index.js');
  builds.push({ d, run: () => runCapture({ file, profile: values.profile, stages: buildStages(loadProfile(values.profile)) }).report, rows: new Map() });
}
const rounds = Number(values.rounds);
let verdicts = null;
for (let r = 0; r < rounds; r++) {
  for (let k = 0; k < builds.length; k++) {
    const b = builds[(k + r) % builds.length];
    // Collect the last run's flow tables (tens of MB) now, not inside the next timed run.
    globalThis.gc?.();
    const rep = b.run();
    // Every build must decide the same: a faster one that skips work is no faster.
    const v = JSON.stringify(rep.verdicts);
    if (verdicts === null) verdicts = v;
    else if (v !== verdicts) throw new Error(`${b.d} gives other verdicts than ${builds[0].d}`);
    if (r < 2) continue;
    const n = rep.capture.packets;
    const add = (name, x) => { if (!b.rows.has(name)) b.rows.set(name, []); b.rows.get(name).push(x); };
    add('total', (rep.wallSeconds * 1e9) / n);
    for (const s of rep.stages) add(s.name, s.packets ? s.ns / s.packets : 0);
    add('outside stages', (rep.wallSeconds * 1e9 - rep.stages.reduce((a, s) => a + s.ns, 0)) / n);
  }
}
const names = [...builds[0].rows.keys()];
process.stdout.write(`${values.profile} on ${file}, ${rounds - 2} rounds, medians of ns/packet\n`);
process.stdout.write(`${'build'.padEnd(36)}${names.map((x) => x.padStart(16)).join('')}\n`);
for (const b of builds) process.stdout.write(`${b.d.slice(-36).padEnd(36)}${names.map((x) => median(b.rows.get(x) ?? [0]).toFixed(1).padStart(16)).join('')}\n`);
