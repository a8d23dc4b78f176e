/**
 * dplab sweep: profiles across one parameter of generated traffic, how each one's cost grows, and
 * where their order changes (the crossovers). Every point is a `compare` over one generated
 * capture (the same packets for every profile).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutputFile } from '../capture/outfile.js';
import { writeSynthPcap, type SynthOptions } from '../gen/synth.js';
import { runCompare } from '../pipeline/compare.js';
import { isOutOfMemory } from '../pipeline/memory.js';
import { loadProfile } from '../pipeline/profile.js';
import { buildStages } from '../pipeline/registry.js';
import '../stages/index.js';
import { parseCommandLine } from './args.js';
import { Exit, UsageError, wholeNumber } from './errors.js';
import { renderHtml } from './html.js';
import { table } from './output.js';
import { commas } from '../packet/format.js';

const PARAMS = {
  'packets-per-flow': { values: [5, 50, 500, 5000], what: 'packets in each flow' },
  rules: { values: [10, 100, 1000, 10000], what: 'policy rules (none matching: every evaluation walks them all)' },
  attack: { values: [0, 0.1, 0.5, 0.9], what: 'share of packets that are attack SYNs from blocklisted sources' },
  flows: { values: [1000, 10000, 100000], what: 'flows active at once' },
} as const;
type Param = keyof typeof PARAMS;

export const SWEEP_HELP = `dplab sweep PARAM [options]

Run profiles over generated traffic at several values of one parameter and print how each
profile's dataplane ns/packet grows, with the crossovers: the values between which one profile
overtakes another. Each point is one generated capture run through every profile in one read
(as dplab compare), so the profiles see the same packets.

Parameters:
  packets-per-flow   ${PARAMS['packets-per-flow'].what} (default values ${PARAMS['packets-per-flow'].values.join(', ')})
  rules              ${PARAMS.rules.what} (${PARAMS.rules.values.join(', ')}); the
                     profiles are built for it: iptables (chain), ipset (set) and ebpf (trie)
                     policies behind conntrack, and stateless (chain, every packet)
  attack             ${PARAMS.attack.what} (${PARAMS.attack.values.join(', ')})
  flows              ${PARAMS.flows.what} (${PARAMS.flows.values.join(', ')})

Options:
  --profiles A,B,... profiles to sweep (default: iptables,ebpf,hns; for rules: iptables,ipset,ebpf,stateless)
  --values V,...     the parameter's values
  --packets N        packets per generated capture (default 300000)
  --json FILE        the points as JSON
  --html FILE        a self-contained page with the curves (uPlot, inlined)

Examples:
  dplab sweep packets-per-flow
  dplab sweep rules --values 10,100,1000,10000,30000
`;

/** A profile for the rules sweep: `n` rules that match nothing, then the evaluator named. */
function rulesProfile(dir: string, name: string, n: number): string {
  const rules = join(dir, `rules-${n}.rules`);
  const lines: string[] = [];
  // Drops for prefixes the generator never uses (240.0.0.0/4 is reserved), all different.
  for (let k = 0; k < n; k++) lines.push(`drop tcp from 240.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}/32 port ${1 + (k % 60000)}`);
  writeFileSync(rules, lines.join('\n') + '\n');
  const kinds: Record<string, string> = {
    iptables: 'pipeline: conntrack -> policy\n[policy]\nevaluator: chain\n',
    ipset: 'pipeline: conntrack -> policy\n[policy]\nevaluator: set\n',
    ebpf: 'pipeline: conntrack -> policy\n[policy]\nevaluator: trie\n',
    stateless: 'pipeline: policy\n[policy]\nevaluator: chain\n',
  };
  const text = kinds[name];
  if (!text) throw new UsageError(`the rules sweep builds its own profiles: iptables, ipset, ebpf, stateless (not "${name}")`, 'sweep');
  const file = join(dir, `${name}-${n}.profile`);
  writeFileSync(file, `# ${name} with ${n} rules (dplab sweep rules)\n${text}rules: ${rules}\n`);
  return file;
}

export interface SweepPoint { value: number; packets: number; profiles: { profile: string; nsPerPacket: number }[] }

export function sweepCommand(argv: string[]): number {
  const args = parseCommandLine('sweep', argv, SWEEP_HELP, {
    profiles: { type: 'string' }, values: { type: 'string' }, packets: { type: 'string' }, json: { type: 'string' }, html: { type: 'string' },
  });
  if (!args) return Exit.OK;
  const { values, positionals } = args;
  if (positionals.length !== 1 || !(positionals[0]! in PARAMS)) {
    throw new UsageError(`sweep needs one parameter: ${Object.keys(PARAMS).join(', ')}`, 'sweep');
  }
  const param = positionals[0] as Param;
  const points = values.values !== undefined ? values.values.split(',').map((v) => Number(v)) : [...PARAMS[param].values];
  if (points.some((v) => !Number.isFinite(v) || v < 0)) throw new UsageError(`--values wants numbers, got "${values.values}"`, 'sweep');
  const profiles = (values.profiles ?? (param === 'rules' ? 'iptables,ipset,ebpf,stateless' : 'iptables,ebpf,hns')).split(',').map((s) => s.trim());
  const packets = wholeNumber(values.packets, '--packets', 'sweep', 1000, 100_000_000, 300_000);
  if (values.json === '-' && values.html === '-') throw new UsageError('--json and --html cannot both go to standard output (-): give one of them a file', 'sweep');
  // Opened (and so checked) before the first point runs.
  const jsonOut = values.json !== undefined ? new OutputFile('--json', values.json) : null;
  const htmlOut = values.html !== undefined ? new OutputFile('--html', values.html) : null;
  const dir = mkdtempSync(join(tmpdir(), 'dplab-sweep-'));
  const out: SweepPoint[] = [];
  try {
    if (param !== 'rules') for (const p of profiles) buildStages(loadProfile(p));
    for (const v of points) {
      const gen: SynthOptions = { packets, seed: 1, payloadSize: 64 };
      if (param === 'packets-per-flow') { gen.packetsPerFlow = v; gen.concurrency = Math.max(1, Math.min(1000, Math.floor(packets / v / 4))); }
      if (param === 'attack') gen.attackShare = v;
      if (param === 'flows') {
        // v flows at once need at least 2v flows of 10 packets: the capture grows when it must.
        gen.concurrency = v; gen.packetsPerFlow = 10; gen.packets = Math.max(packets, v * 20); gen.clients = Math.max(100, Math.ceil((v * 2) / 20000));
      }
      if (param === 'attack' && v >= 1) throw new UsageError('attack is a share below 1 (e.g. 0.5)', 'sweep');
      const file = join(dir, 'sweep.pcap');
      try {
        writeSynthPcap(file, gen);
      } catch (e) {
        // A bad size is the user's to fix; running out of memory is reported as that (exit 6).
        if (e instanceof RangeError && !isOutOfMemory(e)) throw new UsageError(`${param} ${v}: ${e.message}`, 'sweep');
        throw e;
      }
      const profs = param === 'rules' ? profiles.map((p) => rulesProfile(dir, p, v)) : profiles;
      // The first point runs twice and keeps the second: the JIT is warm for every point.
      if (out.length === 0) runCompare({ file, profiles: profs });
      const r = runCompare({ file, profiles: profs });
      out.push({ value: v, packets: r.packets, profiles: r.results.map((x, k) => ({ profile: profiles[k]!, nsPerPacket: x.dataplaneNsPerPacket })) });
      process.stderr.write(`dplab sweep: ${param} ${v}: ${r.results.map((x, k) => `${profiles[k]} ${x.dataplaneNsPerPacket.toFixed(1)}`).join(', ')} ns/packet\n`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (jsonOut) { jsonOut.text(JSON.stringify({ param, points: out }, null, 2) + '\n'); jsonOut.close(); }
  if (htmlOut) { htmlOut.text(renderHtml({ sweep: { param, profiles, points: out } })); htmlOut.close(); }
  (jsonOut?.stdout || htmlOut?.stdout ? process.stderr : process.stdout).write(renderSweep(param, profiles, out));
  return Exit.OK;
}

export function renderSweep(param: string, profiles: string[], points: SweepPoint[]): string {
  let s = `dataplane ns/packet by ${param} (${commas(points[0]?.packets) ?? 0} generated packets a point)\n`;
  s += table([param, ...profiles], points.map((p) => [String(p.value), ...p.profiles.map((x) => x.nsPerPacket.toFixed(1))]));
  s += '\n\nGrowth from the first value to the last:\n';
  const first = points[0];
  const last = points[points.length - 1];
  if (first && last && points.length > 1) {
    profiles.forEach((name, k) => {
      s += `  ${name}: ${(last.profiles[k]!.nsPerPacket / Math.max(1e-9, first.profiles[k]!.nsPerPacket)).toFixed(2)}x (${first.profiles[k]!.nsPerPacket.toFixed(1)} -> ${last.profiles[k]!.nsPerPacket.toFixed(1)} ns)\n`;
    });
  }
  s += '\nCrossovers:\n';
  let any = false;
  for (let a = 0; a < profiles.length; a++) {
    for (let b = a + 1; b < profiles.length; b++) {
      for (let k = 1; k < points.length; k++) {
        const before = points[k - 1]!.profiles[a]!.nsPerPacket - points[k - 1]!.profiles[b]!.nsPerPacket;
        const after = points[k]!.profiles[a]!.nsPerPacket - points[k]!.profiles[b]!.nsPerPacket;
        if (Math.sign(before) !== Math.sign(after) && before !== 0 && after !== 0) {
          any = true;
          const cheaper = after < 0 ? profiles[a]! : profiles[b]!;
          const other = after < 0 ? profiles[b]! : profiles[a]!;
          s += `  between ${param} ${points[k - 1]!.value} and ${points[k]!.value}: ${cheaper} becomes cheaper than ${other}\n`;
        }
      }
    }
  }
  if (!any) s += '  none: the profiles keep their order over these values\n';
  return s;
}
