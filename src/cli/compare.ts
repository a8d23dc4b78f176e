/** dplab compare: several profiles over the same packets, side by side, with a reading of the figures. */
import { OutputFile } from '../capture/outfile.js';
import { runCompare, type CompareResult, type ProfileResult } from '../pipeline/compare.js';
import { loadProfile } from '../pipeline/profile.js';
import { buildStages } from '../pipeline/registry.js';
import '../stages/index.js';
import { parseCommandLine } from './args.js';
import { Exit, UsageError, wholeNumber } from './errors.js';
import { renderHtml } from './html.js';
import { formatRate, table } from './output.js';
import { commas } from '../packet/format.js';

export const COMPARE_DEFAULT = ['iptables', 'ebpf', 'hns', 'mixed'];

export const COMPARE_HELP = `dplab compare FILE [options]

Run several profiles over the same packets in one read (decoded once; each profile sees the packets
as if alone, rewrites included) and set them side by side: dataplane ns/packet and the ratio to the
first profile, per-stage costs, verdicts, flows, NAT work, the share of one core the capture's own
packet rate would need, and the latency batching adds. Then the flows whose verdicts differ between
the profiles (which one drops what another forwards, and why), and a reading of the figures in
plain words, every number taken from this run.

Options:
  --profiles A,B,...   profiles to compare, the first the baseline (default ${COMPARE_DEFAULT.join(',')}:
                       kube-proxy on iptables; Calico eBPF with connect-time balancing; Windows HNS
                       (VFP's unified flows); and the article's mixed case, connect-time balancing
                       with kube-proxy's rules left in place). Names of shipped profiles (dplab profiles) or profile files.
  --batch N            packets per batch (default 256); the latency figures follow it
  --flush-us N         the latency model closes a batch N microseconds after its first packet
                       even when it is not full, as a poll-mode dataplane would (default 50)
  --differences N      flows with differing verdicts to list (default 20; all are counted)
  --repeat N           run the comparison N times; each profile's figures are those of its median
                       run, the first (a cold JIT) left out when N > 2 (default: 7 for captures
                       under 100,000 packets, else 1). Verdicts are the same in every run
  --json FILE          the whole comparison as JSON (- for standard output)
  --html FILE          a self-contained page: the table, per-stage cost bars, verdict differences,
                       the reading (charts drawn by uPlot, inlined: nothing is fetched when opened)

Dataplane ns/packet is the sum of the stages a dataplane runs per packet, decode included, over the
packets read. Rows marked emulation (ctlb's re-addressing, which a kernel does once per connect())
are shown but left out of it. Latency = the wait for the batch to fill, on the capture's own clock,
plus the batch's processing time at the profile's ns/packet (p50 and p99 over all packets); a
batch closes when full or --flush-us after its first packet.

Examples:
  dplab compare captures/nat/kube-proxy-client.pcap
  dplab compare web.pcap --profiles iptables,ipset,ebpf --json cmp.json
`;

export function compareCommand(argv: string[]): number {
  const args = parseCommandLine('compare', argv, COMPARE_HELP, {
    profiles: { type: 'string' },
    batch: { type: 'string' },
    differences: { type: 'string' },
    'flush-us': { type: 'string' },
    repeat: { type: 'string' },
    html: { type: 'string' },
    json: { type: 'string' },
  });
  if (!args) return Exit.OK;
  const { values, positionals } = args;
  if (positionals.length !== 1) throw new UsageError('compare needs exactly one capture file', 'compare');
  const profiles = (values.profiles ?? COMPARE_DEFAULT.join(',')).split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (profiles.length < 1) throw new UsageError('--profiles needs at least one profile', 'compare');
  for (const p of profiles) buildStages(loadProfile(p)); // every profile checked before reading
  const batchSize = wholeNumber(values.batch, '--batch', 'compare', 1, 65536, 256);
  const shown = wholeNumber(values.differences, '--differences', 'compare', 0, 1_000_000, 20);
  const flushUs = wholeNumber(values['flush-us'], '--flush-us', 'compare', 1, 10_000_000, 50);
  if (values.json === '-' && values.html === '-') throw new UsageError('--json and --html cannot both go to standard output (-): give one of them a file', 'compare');
  // Opened (and so checked) before any packet is read: a bad path is one line, not a lost run.
  const jsonOut = values.json !== undefined ? new OutputFile('--json', values.json) : null;
  const htmlOut = values.html !== undefined ? new OutputFile('--html', values.html) : null;
  const runs = [runCompare({ file: positionals[0]!, profiles, batchSize, flushUs })];
  const repeat = values.repeat !== undefined ? wholeNumber(values.repeat, '--repeat', 'compare', 1, 1000, 1) : runs[0]!.packets < 100_000 ? 7 : 1;
  while (runs.length < repeat && runs[0]!.complete) runs.push(runCompare({ file: positionals[0]!, profiles, batchSize, flushUs }));
  const r = medianRun(runs);
  if (jsonOut) { jsonOut.text(JSON.stringify(r, null, 2) + '\n'); jsonOut.close(); }
  if (htmlOut) { htmlOut.text(renderHtml({ compare: r, reading: reading(r) })); htmlOut.close(); }
  const out = jsonOut?.stdout || htmlOut?.stdout ? process.stderr : process.stdout;
  out.write(renderCompare(r, shown));
  return r.complete ? Exit.OK : Exit.DAMAGED;
}

/**
 * One result from several runs of the same comparison: each profile's figures are those of the run
 * in which its dataplane ns/packet was the median (so its stages, cores and latency stay those of
 * one run); the first run, on a cold JIT, is left out when there are more than two. One pause (a
 * GC, a page fault, another process) in the last run decided a figure before: on the demo capture
 * iptables read 594 to 31,098 ns/packet over 12 single runs.
 */
export function medianRun(runs: CompareResult[]): CompareResult {
  const warm = runs.length > 2 ? runs.slice(1) : runs;
  const last = runs[runs.length - 1]!;
  const mid = <T>(xs: T[], by: (x: T) => number): T => [...xs].sort((a, b) => by(a) - by(b))[(xs.length - 1) >> 1]!;
  return {
    ...last,
    results: last.results.map((_, j) => mid(warm.map((w) => w.results[j]!), (p) => p.dataplaneNsPerPacket)),
    sharingNsPerPacket: mid(warm, (w) => w.sharingNsPerPacket).sharingNsPerPacket,
    repeats: runs.length,
  };
}

const n = commas;
const f1 = (x: number): string => x.toFixed(1);
/** A duration given in ns, in the unit that reads best. */
const dur = (ns: number): string => (ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e4 ? `${(ns / 1e3).toFixed(1)} us` : `${ns.toFixed(1)} ns`);

export function renderCompare(r: CompareResult, shown = 20): string {
  let s = `${r.file}: ${n(r.packets)} packets, ${r.captureSeconds.toFixed(3)} s of traffic`
    + `${r.captureRate > 0 ? ` (${formatRate(r.captureRate)} on the capture's clock)` : ''}; batches of ${r.batchSize}, `
    + `closed after ${n(r.flushUs)} us (a packet's batch held ${f1(r.meanBatch)} packets on average)\n`;
  if (!r.complete) s += `  INCOMPLETE: ${r.error}\n`;
  if (r.packets > 0 && r.packets < 100_000) {
    s += `  (a small capture: ${r.repeats && r.repeats > 1 ? `run ${r.repeats} times, each profile's median run reported${r.repeats > 2 ? ' (the first, on a cold JIT, left out)' : ''}; ` : ''}`
      + 'still noisy at this size: compare ratios, and prefer larger captures)\n';
  }
  s += '\n';
  const base = r.results[0]!;
  s += table(['profile', 'dataplane ns/pkt', 'vs first', 'forwarded', 'dropped', 'flows', 'NAT translated', 'connects', 'cores at capture rate', 'latency p50 / p99 us'],
    r.results.map((p) => [p.profile, f1(p.dataplaneNsPerPacket), `${(p.dataplaneNsPerPacket / Math.max(1e-9, base.dataplaneNsPerPacket)).toFixed(2)}x`,
      p.verdicts.forwarded, p.verdicts.dropped, p.flows, p.natTranslated, p.connects, p.coresAtCaptureRate.toFixed(4),
      `${f1(p.latencyUs.p50)} / ${f1(p.latencyUs.p99)}`]));
  s += '\n\nPer stage, ns/packet (the packets each stage was given):\n';
  for (const p of r.results) {
    s += `  ${p.profile.padEnd(12)} ${p.stages.map((st) => `${st.name} ${f1(st.nsPerPacket)}${st.emulation ? ' (emulation)' : ''}`).join(', ')}\n`;
  }
  s += '\nDrops by stage and reason:\n';
  for (const p of r.results) {
    const d = Object.entries(p.verdicts.dropsByReason).sort((a, b) => b[1] - a[1]);
    s += `  ${p.profile.padEnd(12)} ${d.length ? d.map(([k, v]) => `${k} ${n(v)}`).join(', ') : 'none'}`
      + `${p.verdicts.malformed ? `; malformed ${n(p.verdicts.malformed)}` : ''}\n`;
  }
  s += `\nVerdict differences: ${n(r.differences.flows)} flow${r.differences.flows === 1 ? '' : 's'} (${n(r.differences.packets)} packets) `
    + 'forwarded by one profile and dropped by another\n';
  if (r.differences.listed.length > 0 && shown > 0) {
    s += table(['flow', 'packets', ...r.results.map((p) => p.profile)],
      r.differences.listed.slice(0, shown).map((d) => [d.flow, d.packets, ...d.verdicts])).split('\n').map((l) => `  ${l}`).join('\n') + '\n';
    if (r.differences.listed.length > shown) s += `  ... and ${n(r.differences.listed.length - shown)} more (--differences N, or --json)\n`;
  }
  s += `\nReading:\n${reading(r).map((l) => `  - ${l}`).join('\n')}\n`;
  return s;
}

/** Plain-words claims, each computed from this run's figures; none when the figures do not support it. */
export function reading(r: CompareResult): string[] {
  const out: string[] = [];
  const rs = r.results;
  if (rs.length >= 2) {
    const sorted = [...rs].sort((a, b) => a.dataplaneNsPerPacket - b.dataplaneNsPerPacket);
    const lo = sorted[0]!;
    const hi = sorted[sorted.length - 1]!;
    out.push(`${lo.profile}'s dataplane cost ${(lo.dataplaneNsPerPacket / hi.dataplaneNsPerPacket).toFixed(2)}x ${hi.profile}'s per packet here `
      + `(${f1(lo.dataplaneNsPerPacket)} vs ${f1(hi.dataplaneNsPerPacket)} ns).`);
    const top = (p: ProfileResult) => [...p.stages].filter((s) => !s.emulation).sort((a, b) => b.ns - a.ns)[0];
    for (const p of [lo, hi]) {
      const t = top(p);
      const total = p.stages.filter((x) => !x.emulation).reduce((a, x) => a + x.ns, 0);
      if (t && total > 0) out.push(`In ${p.profile}, ${t.name} takes ${((100 * t.ns) / total).toFixed(0)}% of the dataplane time.`);
    }
  }
  const dnat = rs.find((p) => p.natTranslated > 0);
  const ctlb = rs.find((p) => p.connects > 0);
  if (dnat) {
    const row = dnat.stages.find((s) => s.name === 'dnat' || dnat.stageReports[s.name]?.packetsTranslated !== undefined);
    const per = row && dnat.natTranslated > 0 ? row.ns / dnat.natTranslated : 0;
    const ppf = dnat.natBindings > 0 ? dnat.natTranslated / dnat.natBindings : 0;
    if (per > 0 && ppf > 0) {
      out.push(`Per-packet DNAT in ${dnat.profile} cost ${f1(per)} ns per translated packet; its flows averaged ${f1(ppf)} packets, `
        + `so ${dur(per * ppf)} of rewriting per flow. At 5 packets per flow that would be ${dur(per * 5)}, at 5,000 ${dur(per * 5000)}.`);
    }
    if (ctlb && ctlb !== dnat) {
      out.push(`${ctlb.profile} balanced at connect time: ${n(ctlb.connects)} backend choices, once per connect(), and no translation on the wire `
        + `(its re-addressing of this capture, ${f1(ctlb.emulationNsPerPacket)} ns/packet, is emulation, not dataplane cost).`);
    }
  }
  const mixed = rs.find((p) => p.connects > 0 && p.stageReports.dnat !== undefined && p.natTranslated === 0);
  if (mixed) {
    const row = mixed.stages.find((s) => s.name === 'dnat');
    if (row) out.push(`In ${mixed.profile}, kube-proxy's rules left in place translate nothing behind connect-time balancing but still cost `
      + `${f1(row.nsPerPacket)} ns per packet they see.`);
  }
  const early = rs.map((p) => ({ p, xdp: Object.entries(p.verdicts.dropsByReason).filter(([k]) => k.startsWith('xdp/')).reduce((a, [, v]) => a + v, 0) }))
    .filter((x) => x.xdp > 0);
  for (const { p, xdp } of early) {
    const other = rs.find((q) => q !== p && q.flows > p.flows);
    if (other) out.push(`${p.profile} dropped ${n(xdp)} packets at xdp before any flow state existed; ${other.profile} built ${n(other.flows - p.flows)} more conntrack entries.`);
  }
  if (r.differences.flows > 0) out.push(`${n(r.differences.flows)} flows get a different verdict depending on the dataplane: see the list above.`);
  else if (rs.length >= 2) out.push('Every packet got the same verdict (forwarded or dropped) in every profile.');
  for (const p of rs) {
    if (p.coresAtCaptureRate > 0.5) out.push(`${p.profile} would need ${p.coresAtCaptureRate.toFixed(2)} cores to keep up with this capture's own rate.`);
  }
  return out;
}
