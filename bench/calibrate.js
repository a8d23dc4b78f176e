// dplab calibrate as a benchmark (issue 15): per stage, the kernel's own ns/packet for the eBPF
// model of the stage (BPF_PROG_TEST_RUN, bpf/) beside dplab's ns/packet on the same packets, and
// their ratio, on a generated capture (`dplab gen --packets N`, every server a service VIP with 3
// backends). Two pipelines: the ebpf profile's (ctlb -> xdp -> conntrack -> policy) and the
// iptables profile's (conntrack -> dnat -> policy), with the generated service table, so the
// NAT models see service traffic. Stateful models (conntrack, conntrack+dnat) run each packet
// once per pass; stateless ones 20 times per packet. Figures are medians (dplab over
// --rounds runs, the kernel over --rounds passes); every verdict (and dnat's bytes) must agree.
// Needs root, clang and libbpf-dev, as `dplab calibrate` does; without them: one line, exit 1.
//
//   node bench/calibrate.js [--rounds 3] [--packets 1000000]
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { benchArgs, loadDist, OUT, synthCapture } from './lib/common.js';

const { calibrate } = await loadDist('calibrate/calibrate.js');
const { CalibrateSetupError } = await loadDist('calibrate/kernel.js');
const { synthServices } = await loadDist('cli/gen.js');

const { rounds: ROUNDS, packets: PACKETS } = benchArgs('calibrate.js', 1000000);
/** Kernel runs of each packet for the stateless models (their figure is the kernel's mean). */
const REPEAT = 20;

const services = join(OUT, 'calibrate-services.txt');
writeFileSync(services, synthServices(16, 3));
const ROOT = join(import.meta.dirname, '..');
// The shipped profiles with the generated services in place of rules/services.txt.
const profile = (name) => {
  const text = readFileSync(join(ROOT, 'profiles', `${name}.profile`), 'utf8').replace(/^services: .*$/m, `services: ${services}`)
    .replace(/^(block-file|rules): (rules\/.*)$/gm, (_, k, f) => `${k}: ${join(ROOT, 'profiles', f)}`);
  const f = join(OUT, `calibrate-${name}.profile`);
  writeFileSync(f, text);
  return f;
};

const { file, summary } = synthCapture({ packets: PACKETS, packetsPerFlow: 10, concurrency: 1000, payloadSize: 64, seed: 8 });
process.stdout.write(`capture: ${file} (${summary.packets ?? PACKETS} packets)\n`);

const f1 = (x) => (x === null || x === undefined ? '-' : x.toFixed(1));
let failed = false;
for (const name of ['ebpf', 'iptables']) {
  let r;
  try {
    r = calibrate({ file, profile: profile(name), runs: ROUNDS, passes: ROUNDS, repeat: REPEAT, xdpSample: 0 });
  } catch (e) {
    if (e instanceof CalibrateSetupError) { process.stderr.write(`bench/calibrate.js: ${e.message}\n`); process.exit(1); }
    throw e;
  }
  process.stdout.write(`\nprofile ${name} (${r.pipeline}), kernel ${r.kernel}\n`);
  // model = kernel - floor (the floor: a program that only parses, run the same way: the test
  // run's own cost and the parse, which dplab keeps in its decode row)
  process.stdout.write('stage              packets  kernel ns  floor  model  dplab ns  dplab/kernel  dplab/model  first/later (kernel)\n');
  const x = (v) => (v ? `${v.toFixed(2)}x` : '-');
  for (const s of r.stages) {
    const fl = s.firstNs && s.laterNs ? `${f1(s.firstNs)}/${f1(s.laterNs)} = ${(s.firstNs / s.laterNs).toFixed(2)}x` : '-';
    process.stdout.write(`${s.stage.padEnd(18)} ${String(s.packets).padStart(8)} ${f1(s.kernelNs).padStart(10)} ${f1(s.floorNs).padStart(6)} ${f1(s.modelNs).padStart(6)} ${f1(s.dplabNs).padStart(9)} ${x(s.ratio).padStart(13)} ${x(s.modelRatio).padStart(12)}  ${fl}\n`);
  }
  if (r.mismatches > 0) {
    failed = true;
    process.stdout.write(`${r.mismatches} verdicts, flows or bytes DIFFER (dplab calibrate on the capture lists them)\n`);
  }
}
process.exit(failed ? 1 : 0);
