// Flow tracking against the C tools that track flows from a capture: dplab replay (ebpf and
// conntrack-only, one worker) vs nfpcapd (nfdump), argus and tshark's TCP conversations, on the
// same `dplab gen` capture (20 packets a flow), side by side in one process tree.
//
// Every contender is a command run from here, one after the other within a round, the order
// rotating every round; the figure is wall time including process start-up (each tool's start-up,
// measured on a one-packet capture, is printed beside it). tshark dissects every packet (~25 s a
// million here), so it takes part in --tshark-rounds rounds only (default 1).
//
//   dplab ebpf            dplab replay F --profile ebpf --workers 1         ctlb, xdp, conntrack, policy
//   dplab conntrack-only  dplab replay F --profile conntrack-only --workers 1   conntrack alone
//   nfpcapd               nfpcapd -r F -w DIR                              NetFlow records (nfdump 1.7)
//   argus                 argus -r F -w /dev/null                          argus flow records
//   tshark conv,tcp       tshark -q -z conv,tcp -r F                       full dissection + TCP conversations
//
// Each run's work is checked: dplab's JSON report (every packet, its flows), nfpcapd's own count
// of packets processed and flows (stderr), tshark's conversation lines, argus's records (counted
// once, untimed, writing to a file, with ra). The flow counts are set against what the generator
// wrote, by each tool's definition of a flow. A tool that is not installed is skipped with a line
// saying how to install it.
//
//   node bench/flowtrack.js [--packets 1000000] [--rounds 3] [--tshark-rounds 1] [--quick] [--json FILE]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DPLAB, median, OUT, synthCapture } from './lib/common.js';

const { values: args } = parseArgs({
  options: {
    packets: { type: 'string' },
    rounds: { type: 'string' },
    'tshark-rounds': { type: 'string' },
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  process.stdout.write(`node bench/flowtrack.js [--packets N] [--rounds N] [--tshark-rounds N] [--quick] [--json FILE]

  --packets N        packets of the generated capture, 20 a flow (default 1,000,000; the issue's
                     figure was measured on 3,000,000)
  --rounds N         rounds; every contender runs once per round, in rotating order (default 3)
  --tshark-rounds N  rounds tshark takes part in (default 1; 0 skips it)
  --quick            a smoke run: 100,000 packets, 1 round
  --json FILE        also write the results as JSON
`);
  process.exit(0);
}
const whole = (name, v, min) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} wants a whole number from ${min}, got ${v}`);
  return n;
};
const PACKETS = whole('packets', args.packets ?? (args.quick ? 100_000 : 1_000_000), 1000);
const ROUNDS = whole('rounds', args.rounds ?? (args.quick ? 1 : 3), 1);
const TSHARK_ROUNDS = Math.min(ROUNDS, whole('tshark-rounds', args['tshark-rounds'] ?? 1, 0));
mkdirSync(OUT, { recursive: true });

const GEN = { seed: 1, packets: PACKETS, packetsPerFlow: 20 };
const { file, summary } = synthCapture(GEN);
const { file: tiny } = synthCapture({ seed: 1, packets: 1, packetsPerFlow: 20 });
const legit = summary.tcpFlows + summary.udpFlows;
const attack = summary.attackPackets;

const NFDIR = join(OUT, 'flowtrack-nfpcapd');
const ARGUS_OUT = join(OUT, 'flowtrack.argus');
const DPLAB_JSON = join(OUT, 'flowtrack-dplab.json');

/** Is `cmd` on PATH? (spawn fails with ENOENT when it is not) */
const installed = (cmd) => spawnSync(cmd, ['-h'], { stdio: 'ignore', timeout: 20_000 }).error?.code !== 'ENOENT';

// GNU time, when present, gives each run's CPU time (user + system): argus, for one, sleeps ~1 s
// before it exits, which wall time counts and CPU time does not.
const TIME = '/usr/bin/time';
const TIME_OUT = join(OUT, 'flowtrack-time.txt');
const haveTime = existsSync(TIME);

function timed(cmd, argv, opts = {}) {
  const [c, a] = haveTime ? [TIME, ['-f', '%U %S', '-o', TIME_OUT, cmd, ...argv]] : [cmd, argv];
  const t0 = process.hrtime.bigint();
  const r = spawnSync(c, a, { encoding: 'utf8', maxBuffer: 1 << 28, ...opts });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (exit ${r.status ?? r.signal}): ${String(r.stderr).trim().split('\n').slice(-3).join(' / ')}`);
  let cpuSeconds = null;
  if (haveTime) {
    const m = /([\d.]+) ([\d.]+)\s*$/.exec(readFileSync(TIME_OUT, 'utf8'));
    if (m) cpuSeconds = Number(m[1]) + Number(m[2]);
  }
  return { seconds, cpuSeconds, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

// Each contender: run(F) returns { seconds, packets?, flows?, ownMpps? }.
const CONTENDERS = [
  ...['ebpf', 'conntrack-only'].map((profile) => ({
    id: `dplab ${profile}`, dplab: true, cmd: `dplab replay F --profile ${profile} --workers 1`,
    what: profile === 'ebpf' ? 'ctlb, xdp, conntrack, policy' : 'conntrack alone',
    definition: profile === 'ebpf'
      ? 'conntrack entries (both directions one flow); xdp drops the attack SYNs before conntrack'
      : 'conntrack entries: both directions one flow, each attack SYN its own',
    expected: profile === 'ebpf' ? legit : legit + attack,
    run: (f) => {
      const r = timed(DPLAB, ['replay', f, '--profile', profile, '--workers', '1', '--no-progress', '--json', DPLAB_JSON], { stdio: ['ignore', 'ignore', 'pipe'] });
      const rep = JSON.parse(readFileSync(DPLAB_JSON, 'utf8'));
      const ct = rep.stageReports.conntrack;
      return { ...r, packets: rep.verdicts.packets, flows: ct.flowsCreated, tableFull: ct.tableFull ?? null, ownMpps: rep.packetsPerSecond / 1e6 };
    },
  })),
  {
    id: 'nfpcapd', tool: 'nfpcapd', pkg: 'nfdump', cmd: 'nfpcapd -r F -w DIR', what: 'NetFlow records, written to nfcapd files in DIR',
    definition: 'NetFlow records: one per direction, so a two-way flow is two',
    expected: 2 * legit + attack,
    run: (f) => {
      rmSync(NFDIR, { recursive: true, force: true });
      mkdirSync(NFDIR, { recursive: true });
      const r = timed('nfpcapd', ['-r', f, '-w', NFDIR]);
      const text = r.stdout + r.stderr;
      const flows = /Flows: (\d+)/.exec(text);
      const packets = /Total: Processed: (\d+)/.exec(text) ?? /Processed: (\d+)/.exec(text);
      return { ...r, flows: flows ? Number(flows[1]) : null, packets: packets ? Number(packets[1]) : null };
    },
  },
  {
    id: 'argus', tool: 'argus', pkg: 'argus-server', cmd: 'argus -r F -w /dev/null', what: 'argus flow records',
    definition: 'argus flow records: both directions one record, each attack SYN its own',
    expected: legit + attack,
    run: (f) => timed('argus', ['-r', f, '-w', '/dev/null']),
    // Counted once, untimed: the same run writing its records to a file, read back with ra.
    count: (f) => {
      rmSync(ARGUS_OUT, { force: true });
      timed('argus', ['-r', f, '-w', ARGUS_OUT]);
      if (!installed('ra')) return { flows: null, why: 'ra not installed (apt-get install argus-client)' };
      const r = timed('ra', ['-r', ARGUS_OUT, '-n', '-s', 'proto']);
      const flows = r.stdout.split('\n').map((l) => l.trim()).filter((l) => l && l !== 'Proto' && l !== 'man').length;
      return { flows };
    },
  },
  {
    id: 'tshark conv,tcp', tool: 'tshark', pkg: 'tshark', cmd: 'tshark -q -z conv,tcp -r F', what: 'full dissection + TCP conversations',
    definition: 'TCP conversations only (UDP flows not counted); both directions one',
    expected: summary.tcpFlows + attack,
    tshark: true,
    run: (f) => {
      const r = timed('tshark', ['-q', '-z', 'conv,tcp', '-r', f]);
      return { ...r, flows: r.stdout.split('\n').filter((l) => l.includes('<->')).length };
    },
  },
];

const skipped = [];
const contenders = CONTENDERS.filter((c) => {
  if (c.dplab || installed(c.tool)) return true;
  skipped.push({ id: c.id, tool: c.tool, install: `apt-get install ${c.pkg}` });
  return false;
});
if (TSHARK_ROUNDS === 0) {
  const k = contenders.findIndex((c) => c.tshark);
  if (k >= 0) { skipped.push({ id: contenders[k].id, tool: 'tshark', install: null, why: '--tshark-rounds 0' }); contenders.splice(k, 1); }
}

const n = (x) => Math.round(x).toLocaleString('en-US');
process.stdout.write(`bench/flowtrack.js: ${n(summary.packets)} packets (${n(legit)} flows of 20 packets: ${n(summary.tcpFlows)} TCP, ${n(summary.udpFlows)} UDP; `
  + `${n(attack)} attack SYNs), ${(summary.bytes / 2 ** 20).toFixed(1)} MiB, ${ROUNDS} round(s) (tshark ${TSHARK_ROUNDS}); `
  + `${cpus().length} CPUs, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}\n  input: ${file}\n`);
for (const s of skipped) {
  process.stdout.write(s.install ? `${s.id}: ${s.tool} not installed, skipped (${s.install})\n` : `${s.id}: skipped (${s.why})\n`);
}

// Start-up: each contender on a one-packet capture (median of 3), untimed in the table.
const startup = new Map();
for (const c of contenders) startup.set(c.id, median([0, 1, 2].map(() => c.run(tiny).seconds)));

const runs = new Map(contenders.map((c) => [c.id, []]));
const seen = new Map();
for (let round = 0; round < ROUNDS; round++) {
  for (let k = 0; k < contenders.length; k++) {
    const c = contenders[(k + round) % contenders.length];
    if (c.tshark && round >= TSHARK_ROUNDS) continue;
    const r = c.run(file);
    if (r.packets !== undefined && r.packets !== null && r.packets !== summary.packets) {
      throw new Error(`${c.id}: saw ${r.packets} packets, the capture has ${summary.packets}`);
    }
    if (r.flows !== undefined && r.flows !== null) {
      if (seen.has(c.id) && seen.get(c.id) !== r.flows) throw new Error(`${c.id}: ${r.flows} flows, ${seen.get(c.id)} in an earlier round`);
      seen.set(c.id, r.flows);
    }
    runs.get(c.id).push(r);
  }
  if (process.stderr.isTTY) process.stderr.write(`  round ${round + 1}/${ROUNDS} done\r`);
}
if (process.stderr.isTTY) process.stderr.write('\x1b[K');
const counted = new Map();
for (const c of contenders) {
  if (c.count) { const x = c.count(file); counted.set(c.id, x); if (x.flows !== null) seen.set(c.id, x.flows); }
}

const rows = contenders.map((c) => {
  const secs = runs.get(c.id).map((r) => r.seconds);
  const med = median(secs);
  const start = startup.get(c.id);
  const own = runs.get(c.id).map((r) => r.ownMpps).filter((x) => x !== undefined);
  const cpu = runs.get(c.id).map((r) => r.cpuSeconds).filter((x) => x !== null);
  return {
    id: c.id, command: c.cmd, what: c.what, runs: secs.length, medianSeconds: med, minSeconds: Math.min(...secs), maxSeconds: Math.max(...secs),
    mpps: summary.packets / med / 1e6, startupSeconds: start, mppsLessStartup: med > start ? summary.packets / (med - start) / 1e6 : null,
    ownMpps: own.length ? median(own) : null,
    cpuSeconds: cpu.length ? median(cpu) : null, mppsPerCpu: cpu.length ? summary.packets / median(cpu) / 1e6 : null,
    flows: seen.get(c.id) ?? null, expectedFlows: c.expected, flowDefinition: c.definition,
    flowsWhyMissing: counted.get(c.id)?.why ?? null,
    // dplab's table filled (its capacity is the profile's): flows were evicted or refused, so its
    // count depends on the capacity, not only on the traffic.
    tableFull: runs.get(c.id).find((r) => r.tableFull)?.tableFull ?? null,
  };
});
const byId = (id) => rows.find((r) => r.id === id);
for (const r of rows) {
  r.timeVsEbpf = byId('dplab ebpf') ? r.medianSeconds / byId('dplab ebpf').medianSeconds : null;
  r.timeVsConntrackOnly = byId('dplab conntrack-only') ? r.medianSeconds / byId('dplab conntrack-only').medianSeconds : null;
}

const f2 = (x) => (x === null || x === undefined ? '-' : x.toFixed(2));
const table = (head, cells) => {
  const w = head.map((h, k) => Math.max(h.length, ...cells.map((c) => String(c[k]).length)));
  const line = (c) => c.map((x, k) => (k === 0 ? String(x).padEnd(w[k]) : String(x).padStart(w[k]))).join('  ');
  process.stdout.write(`${line(head)}\n${cells.map(line).join('\n')}\n`);
};
process.stdout.write('\n');
table(['contender', 'runs', 'median s', 'min-max s', 'Mpps', 'start-up s', 'Mpps less start-up', 'CPU s', 'Mpps per CPU s', 'time / ebpf', 'time / conntrack-only'], rows.map((r) => [
  r.id, r.runs, r.medianSeconds.toFixed(3), `${r.minSeconds.toFixed(3)}-${r.maxSeconds.toFixed(3)}`, f2(r.mpps), r.startupSeconds.toFixed(3),
  f2(r.mppsLessStartup), r.cpuSeconds === null ? '-' : r.cpuSeconds.toFixed(2), f2(r.mppsPerCpu), r.timeVsEbpf === null ? '-' : `${r.timeVsEbpf.toFixed(2)}x`, r.timeVsConntrackOnly === null ? '-' : `${r.timeVsConntrackOnly.toFixed(2)}x`,
]));
const own = rows.filter((r) => r.ownMpps !== null).map((r) => `${r.id} ${r.ownMpps.toFixed(2)}`).join(', ');
process.stdout.write(`\nMpps = packets / median wall time of the command, start-up included; time / X above 1: slower than dplab X.\n`
  + `CPU s = user + system time of the command (GNU time${haveTime ? '' : ': not installed, apt-get install time'}); dplab's includes Node's start-up and JIT.\n`
  + `dplab's own figure (its report's packets/s, reading to report, no Node start-up): ${own} Mpps.\n`);

process.stdout.write('\nFlows each counted, against the generator\'s flows by that tool\'s definition:\n\n');
table(['contender', 'flows', 'expected', '', 'a flow is'], rows.map((r) => [
  r.id, r.flows === null ? '-' : n(r.flows), n(r.expectedFlows),
  r.flows === null ? (r.flowsWhyMissing ?? 'not counted') : r.flows === r.expectedFlows ? 'equal' : `DIFFERENT (${r.flows - r.expectedFlows > 0 ? '+' : ''}${n(r.flows - r.expectedFlows)})`
    + (r.tableFull ? `: the table filled, ${n(r.tableFull.flowsEvicted)} flows evicted, ${n(r.tableFull.packetsDropped)} packets refused` : ''),
  r.flowDefinition,
]));
process.stdout.write(`\n  The generator wrote ${n(legit)} two-way flows and ${n(attack)} lone attack SYNs (each its own 5-tuple). dplab and argus count a\n`
  + '  flow once for both directions; nfpcapd writes NetFlow v9/IPFIX-style records, one per direction, so its count of the\n'
  + `  same traffic is 2 x ${n(legit)} + ${n(attack)}. tshark's conv,tcp lists TCP conversations only. Timeouts differ too (nfpcapd ends a\n`
  + '  record after 60 s idle or 300 s active; conntrack follows TCP state and nf_conntrack\'s timeouts), which would split\n'
  + '  long or idle flows differently; this capture (20 packets a flow) has none.\n');
if (rows.some((r) => r.tableFull)) {
  process.stdout.write('  A full table (the profile\'s capacity: conntrack-only 256Ki, ebpf 512Ki) evicts non-assured flows and refuses new ones\n'
    + '  when none can go: a refused SYN is no flow, a flow evicted and seen again is a second one. The peers\' tables are\n'
    + '  bounded too (nfpcapd -B: 524,288 nodes by default), by rules of their own.\n');
}
const mismatch = rows.filter((r) => r.flows !== null && r.flows !== r.expectedFlows);
if (mismatch.length) process.stdout.write(`\n  Counts that differ from the generator's: ${mismatch.map((r) => r.id).join(', ')}: read the definitions above before comparing speeds.\n`);

process.stdout.write(`\nLoad average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}. Medians over the rounds; the machine is shared and noisy, so read the ratios.\n`);
if (args.json) {
  mkdirSync(dirname(resolve(args.json)), { recursive: true });
  writeFileSync(args.json, JSON.stringify({
    bench: 'flowtrack', date: new Date().toISOString(), file, generator: GEN, capture: summary, rounds: ROUNDS, tsharkRounds: TSHARK_ROUNDS,
    cpus: cpus().length, loadAverageEnd: loadavg(), contenders: rows, skipped,
  }, null, 2) + '\n');
}
// A dplab whose flows differ from the generator's, its table never full, is a failed check (a
// peer's differing count is reported, not fatal).
const bad = mismatch.filter((r) => r.id.startsWith('dplab ') && !r.tableFull);
if (bad.length) {
  process.stderr.write(`bench/flowtrack.js: ${bad.map((r) => `${r.id} counted ${r.flows} flows, the generator wrote ${r.expectedFlows}`).join('; ')}\n`);
  process.exit(1);
}
