// Replaying from a pipe: `dplab gen - --packets N | dplab replay -`, the whole capture streamed
// through standard input. Prints packets/s (of the replay, wall clock, generator included: they
// run side by side) and the replay's peak RSS (GNU time), which must stay bounded whatever N: the
// reader holds two 4 MiB chunks, and the flow table at most its capacity.
//
//   node bench/pipe.js [--packets 30000000] [--profile ebpf] [--json FILE]
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
const DPLAB = join(HERE, '..', 'bin', 'dplab.js');
const TIME = '/usr/bin/time';

const { values: args } = parseArgs({
  options: {
    packets: { type: 'string', default: '30000000' },
    profile: { type: 'string', default: 'ebpf' },
    json: { type: 'string' },
    help: { type: 'boolean' },
  },
  strict: false, // bench/run.js passes --rounds etc. to every benchmark
});
if (args.help) {
  process.stdout.write('node bench/pipe.js [--packets 30000000] [--profile ebpf] [--json FILE]\n');
  process.exit(0);
}
if (!existsSync(TIME)) {
  process.stderr.write(`bench/pipe.js: ${TIME} (GNU time) is needed for the peak RSS: apt-get install time\n`);
  process.exit(1);
}

const packets = Number(args.packets);
const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;
const d = `${q(process.execPath)} ${q(DPLAB)}`;
const cmd = `${d} gen - --packets ${packets} 2>/dev/null | ${TIME} -v ${d} replay - --no-progress --profile ${q(args.profile)} --json -`;
process.stderr.write(`bench/pipe.js: ${cmd.replaceAll(q(process.execPath) + ' ', '')}\n`);
const t0 = process.hrtime.bigint();
const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 1 << 28 });
const wall = Number(process.hrtime.bigint() - t0) / 1e9;
if (r.status !== 0) {
  process.stderr.write(r.stderr);
  process.stderr.write(`bench/pipe.js: the pipeline failed (exit ${r.status})\n`);
  process.exit(1);
}
const report = JSON.parse(r.stdout);
const rssMb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024;
const got = report.verdicts.packets;
if (got !== packets) {
  process.stderr.write(`bench/pipe.js: replay saw ${got} packets, gen wrote ${packets}\n`);
  process.exit(1);
}
const result = {
  packets,
  profile: args.profile,
  wallSeconds: wall,
  packetsPerSecond: packets / wall,
  replayPacketsPerSecond: report.packetsPerSecond,
  peakRssMb: rssMb,
  flowTablePeak: report.stageReports?.conntrack?.['peak entries'] ?? report.stageReports?.conntrack?.peakEntries ?? null,
  machine: { cpus: cpus().length, loadavg: loadavg().map((x) => +x.toFixed(2)) },
};
const n = (x) => Math.round(x).toLocaleString('en-US');
process.stdout.write(`dplab gen - --packets ${n(packets)} | dplab replay -  (profile ${args.profile})\n`
  + `  wall clock         ${wall.toFixed(1)} s\n`
  + `  packets/s          ${n(result.packetsPerSecond)} (whole pipeline), ${n(result.replayPacketsPerSecond)} (replay's own figure)\n`
  + `  replay peak RSS    ${rssMb.toFixed(0)} MB\n`
  + `  flow table peak    ${result.flowTablePeak === null ? '-' : n(result.flowTablePeak)} entries\n`
  + `  machine            ${result.machine.cpus} CPUs, load ${result.machine.loadavg.join(' ')}\n`);
if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 2) + '\n');
