/** dplab calibrate: dplab's stages beside eBPF models of them run by the kernel (src/calibrate/). */
import { OutputFile } from '../capture/outfile.js';
import { calibrate, type CalibrationReport } from '../calibrate/calibrate.js';
import { CalibrateSetupError } from '../calibrate/kernel.js';
import { parseCommandLine } from './args.js';
import { Exit, UsageError, wholeNumber } from './errors.js';
import { table } from './output.js';
import { DEFAULT_PROFILE } from './replay.js';

export const CALIBRATE_HELP = `dplab calibrate FILE [options]

Run the same packets through dplab's stages and through eBPF programs that model them (bpf/ in
the dplab folder), run by the kernel itself with BPF_PROG_TEST_RUN, and set them side by side per
stage: the kernel's own ns/packet, dplab's ns/packet on the same packets, their ratio, and every
packet whose verdict differs between the two (there should be none: each is a bug on one side).

Kernel models: xdp (LPM maps of the block/allow lists; a token bucket per source in an LRU hash
when the profile sets a rate limit), conntrack (an LRU hash of flows with nf_conntrack's TCP state
table, as Calico's), policy (the rules scanned in order for every packet) and, when policy comes
right after conntrack, both in one program with the decision cached in the flow entry (compared
with the pipeline's verdicts); dnat right after conntrack: both in one program (kube-proxy's DNAT,
the binding in the flow entry, the backend chosen by dplab's hash), every packet's verdict and its
bytes as it leaves compared, the dnat row's kernel figure that program less the conntrack model;
ctlb: the connect hook's work (service lookup, backend choice) on each connecting packet, the
backend compared (this kernel does not test-run cgroup/connect programs, so it runs as tc). Other
stages have none yet: their dplab figure is shown alone. Nothing is attached to an interface; the
programs only see the packets given to them.

Needs: root, clang, a C compiler and libbpf's headers (Debian: apt-get install clang libbpf-dev);
the programs and their loader are built on first use into ~/.cache/dplab (or $DPLAB_CACHE_DIR).
Anything missing, or a kernel that refuses a program: one line saying what, exit 1.

Options:
  --profile NAME|FILE   the pipeline (default: ${DEFAULT_PROFILE})
  --json FILE           also write the calibration as JSON (- for standard output)
  --runs N              dplab runs over the capture; its figure is the median (default 5)
  --passes N            kernel passes over the packets, each with fresh maps; median (default 5)
  --repeat N            kernel runs of each packet for a stateless model (default 100); a
                        stateful one (a rate limit) sees each packet once per pass

Exit status: 0 every verdict agrees; 5 some packet's verdict differs (listed); 1 something is
missing or a usage error; 2 the capture is damaged (what was read is calibrated).

Examples:
  sudo dplab calibrate captures/large/zeek_echo-connections.pcap
  sudo dplab calibrate web.pcap --profile stateless --json calibration.json
`;

/** Exit status when a verdict differs. */
export const EXIT_MISMATCH = 5;

export async function calibrateCommand(argv: string[]): Promise<number> {
  const args = parseCommandLine('calibrate', argv, CALIBRATE_HELP, {
    profile: { type: 'string' },
    json: { type: 'string' },
    runs: { type: 'string' },
    passes: { type: 'string' },
    repeat: { type: 'string' },
  });
  if (!args) return Exit.OK;
  const { values, positionals } = args;
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'give one capture file' : `give one capture file, not ${positionals.length}`, 'calibrate');
  if (positionals[0] === '-') throw new UsageError('calibrate reads the capture more than once: give a file, not standard input', 'calibrate');
  const runs = wholeNumber(values.runs, '--runs', 'calibrate', 1, 1000, 5);
  const passes = wholeNumber(values.passes, '--passes', 'calibrate', 1, 1000, 5);
  const repeat = wholeNumber(values.repeat, '--repeat', 'calibrate', 1, 1000000, 100);
  const json = values.json !== undefined ? new OutputFile('--json', values.json) : null;
  let report: CalibrationReport;
  try {
    report = calibrate({ file: positionals[0]!, profile: values.profile ?? DEFAULT_PROFILE, runs, passes, repeat });
  } catch (e) {
    json?.close();
    if (e instanceof CalibrateSetupError) {
      process.stderr.write(`dplab calibrate: ${e.message}\n`);
      return Exit.USAGE;
    }
    throw e;
  }
  const text = renderCalibration(report);
  if (json) {
    json.text(JSON.stringify(report, null, 2) + '\n');
    json.close();
  }
  (json?.stdout ? process.stderr : process.stdout).write(text);
  if (report.mismatches > 0) return EXIT_MISMATCH;
  return report.complete ? Exit.OK : Exit.DAMAGED;
}

const f1 = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : x.toFixed(1));

export function renderCalibration(r: CalibrationReport): string {
  const lines: string[] = [];
  lines.push(`dplab calibrate: ${r.file}, profile ${r.profile} (${r.pipeline})`);
  lines.push(`kernel ${r.kernel}, ${r.clang}; ${r.packets} packets${r.malformed ? ` (${r.malformed} malformed: dropped by the decoder, not sent)` : ''}${r.complete ? '' : ', capture damaged: calibrated up to the damage'}`);
  lines.push(`dplab: median of ${r.method.dplabRuns} runs; kernel: median of ${r.method.kernelPasses} passes of the mean per packet (its own duration)`);
  lines.push('floor: a program that only parses the packet, run the same way; model: kernel minus floor (dplab keeps decoding in its own row)');
  lines.push('');
  const head = ['stage', 'packets', 'kernel ns/pkt', 'floor', 'model', 'dplab ns/pkt', 'dplab/kernel', 'dplab/model', 'verdicts'];
  const x = (v: number | null | undefined): string => (v ? `${v.toFixed(2)}x` : '-');
  const rows = r.stages.map((s) => [
    s.stage, String(s.packets), f1(s.kernelNs), f1(s.floorNs), f1(s.modelNs), f1(s.dplabNs), x(s.ratio), x(s.modelRatio),
    s.model === null ? 'no kernel model' : s.agree === null ? 'not compared (see below)' : s.mismatches.length === 0 ? `all agree (${s.dplabDropped} dropped)` : `${s.mismatches.length} DIFFER`,
  ]);
  lines.push(table(head, rows));
  lines.push('');
  for (const s of r.stages) {
    lines.push(`${s.stage}: ${s.model ? `${s.model}: ` : ''}${s.note}`);
    if (s.firstNs !== undefined) {
      lines.push(`  kernel, first packet of a ${s.type.startsWith('conntrack') ? 'flow' : 'source'} (${s.firstPackets}): ${f1(s.firstNs)} ns; later packets: ${f1(s.laterNs)} ns${s.firstNs && s.laterNs ? ` (${(s.firstNs / s.laterNs).toFixed(2)}x)` : ''}; dplab times whole batches, not single packets`);
    }
    if (s.flowsAtEnd) {
      const f = s.flowsAtEnd;
      lines.push(`  flows live at the end: dplab ${f.dplab}, kernel map ${f.kernel}; ${f.differ.length === 0 ? 'the same flows, states and packets each way' : `${f.differ.length} DIFFER`}`);
      for (const d of f.differ.slice(0, 20)) lines.push(`  DIFFERS: flow ${d}`);
      if (f.differ.length > 20) lines.push(`  ... and ${f.differ.length - 20} more (--json lists them all)`);
    }
    if (s.bytesCompared !== undefined) lines.push(`  bytes of the ${s.bytesCompared} packets both passed, as they leave: ${s.mismatches.some((m) => m.dplab.includes('byte')) ? 'some DIFFER (below)' : 'the same'}`);
    if (s.alone?.kernelNs) lines.push(`  ${s.alone.stage} alone (this program less the conntrack model): kernel ${f1(s.alone.kernelNs)} ns/packet, dplab ${f1(s.alone.dplabNs)}, ${s.alone.ratio ? `${s.alone.ratio.toFixed(2)}x` : '-'}`);
    if (s.notModelled) lines.push(`  ${s.notModelled} packets the model does not decide for (passed, not compared)`);
    if (s.xdpSample) {
      const x = s.xdpSample;
      lines.push(`  at the XDP hook (the same program built for XDP, first ${x.packets} packets): ${f1(x.xdpNs)} ns/packet; its tc build on them ${f1(x.tcNs)}; verdicts ${x.verdictsAgree ? 'agree' : 'DIFFER'}`);
    }
    if (s.dplabPipelineNs !== undefined) lines.push(`  dplab's policy in the pipeline (decided once per flow behind conntrack): ${f1(s.dplabPipelineNs)} ns/packet`);
    const shown = s.mismatches.slice(0, 50);
    for (const m of shown) lines.push(`  DIFFERS: packet ${m.packet} (${m.packetSummary}): dplab ${m.dplab}, kernel ${m.kernel}`);
    if (s.mismatches.length > shown.length) lines.push(`  ... and ${s.mismatches.length - shown.length} more (--json lists them all)`);
  }
  lines.push('');
  lines.push(r.mismatches === 0 ? 'Every verdict agrees.' : `${r.mismatches} packet verdicts or flows differ: each is a bug in dplab or in the kernel model.`);
  return lines.join('\n') + '\n';
}
