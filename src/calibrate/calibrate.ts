/**
 * dplab calibrate: the same packets through dplab's stages and through eBPF programs that model
 * them (bpf/), run by the kernel with BPF_PROG_TEST_RUN; per stage, the kernel's own ns/packet
 * beside dplab's, and every packet whose verdict differs.
 *
 * How:
 *  1. dplab runs the profile over the capture `runs` times (fresh stages each run; its per-stage
 *     ns/packet is the runner's own timing, the median over the runs). On the first run every
 *     packet a stage with a kernel model saw is written for that model: Ethernet + the IP datagram
 *     as decoded, with the packet's time; and dplab's verdict at that stage is kept.
 *  2. Each model runs over exactly the packets its stage saw, in capture order, maps filled from
 *     the profile. A stateless model runs each packet `repeat` times in the kernel (its duration is
 *     the kernel's average over those runs); a stateful one (xdp with a rate limit) once per
 *     packet, so its state evolves as in a live kernel. Every pass loads the program afresh;
 *     the figure is the median over `passes` of the mean over packets.
 *  3. The floor: a program that parses the packet as the models do and passes it, run the same
 *     way over the same packets: what the test run and the parse cost with no stage at all.
 *  Each model is built as a tc and as an XDP program from one source (bpf/parse.h). The runs
 *  above use the tc build: a test run of an XDP program swaps the kernel's XDP dispatcher twice
 *  (an RCU grace period each, milliseconds a packet on this kernel). The XDP build runs on the
 *  first packets, to show it costs what the tc build does and decides the same.
 *
 * policy: the kernel model evaluates the rules for every packet it is given (a linear scan).
 * Behind conntrack dplab's policy decides once per flow and later packets (replies included)
 * take the flow's decision, which a per-packet evaluation does not give; so policy is compared
 * per packet: dplab's policy stage without a flow table (every packet evaluated, the profile's
 * evaluator) on the same packets, timed the same way, next to the kernel's scan. The pipeline's
 * own policy figure (once per flow) is given beside it.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { endianness, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Verdict, type Batch } from '../packet/batch.js';
import { ipToString, protoName } from '../packet/format.js';
import { loadProfile, pipelineText, type Profile } from '../pipeline/profile.js';
import { buildStages } from '../pipeline/registry.js';
import { runCapture, type RunReport } from '../pipeline/run.js';
import type { Stage, StageReport } from '../pipeline/stage.js';
import { TCP_STATE_NAMES } from '../conntrack/tcp.js';
import type { FlowRecord } from '../pipeline/flowlog.js';
import { ConntrackStage } from '../stages/conntrack.js';
import { PolicyStage, policyConfig } from '../stages/policy.js';
import { xdpConfig } from '../stages/xdp.js';
import '../stages/index.js';
import { build, CalibrateSetupError, checkSetup, runProgram, type Built, type KernelRun } from './kernel.js';
import { conntrackMaps, policyMaps, xdpMaps } from './maps.js';

export interface CalibrateOptions {
  file: string;
  profile: string;
  /** dplab runs over the capture (median taken). */
  runs?: number;
  /** Kernel passes over the packets (median taken). */
  passes?: number;
  /** Kernel runs per packet for stateless models. */
  repeat?: number;
  /** Packets the XDP builds run on (0: none; default 32). */
  xdpSample?: number;
  /** Run the floor program (default true; the tests, which look at verdicts, skip it). */
  floor?: boolean;
}

export interface Mismatch {
  /** Packet number in the capture (1-based, as tshark's frame.number). */
  packet: number;
  stage: string;
  dplab: string;
  kernel: string;
  /** "tcp 10.0.0.1:1234 -> 10.0.0.2:80" */
  packetSummary: string;
}

export interface StageCalibration {
  stage: string;
  type: string;
  /** The kernel model (bpf/FILE), or null when the stage has none yet. */
  model: string | null;
  /** What is compared and how it was run. */
  note: string;
  /** Packets the stage saw (and the model was given). */
  packets: number;
  dplabDropped: number;
  kernelDropped: number | null;
  agree: number | null;
  /** Packets the kernel model does not decide for (passed, not compared): conntrack's ICMP errors quoting IPv6 extension headers or a later fragment. */
  notModelled?: number;
  /** Kernel ns/packet (median over passes of the mean over packets), and the floor the same way. */
  kernelNs: number | null;
  floorNs: number | null;
  /** dplab ns/packet on the same packets (median over runs). */
  dplabNs: number | null;
  /** dplab ns / kernel ns. */
  ratio: number | null;
  /**
   * The model's own work: kernel ns minus the floor (the floor is the parse and the test run's
   * loop, which dplab's decode row and runner hold outside the stage's figure), and dplab ns over it.
   */
  modelNs?: number | null;
  modelRatio?: number | null;
  /** Stateful models: the kernel's ns for the first packet of a source (or flow) and for later ones. */
  firstNs?: number | null;
  laterNs?: number | null;
  firstPackets?: number;
  /**
   * The model built for the XDP hook, on the first packets: its ns and the tc build's on the same
   * packets (the per-packet runs use the tc build; see bpf/parse.h), and whether their verdicts agree.
   */
  xdpSample?: { packets: number; xdpNs: number | null; tcNs: number | null; verdictsAgree: boolean };
  /**
   * conntrack: the flows live when the input ended (not past their timeout), in dplab's table and
   * in the kernel's map after the last pass, with every flow whose state or packet counts differ.
   */
  flowsAtEnd?: { dplab: number; kernel: number; differ: string[] };
  /** policy: dplab's pipeline figure (decided once per flow behind conntrack). */
  dplabPipelineNs?: number;
  mismatches: Mismatch[];
}

export interface CalibrationReport {
  file: string;
  profile: string;
  pipeline: string;
  kernel: string;
  clang: string;
  buildDir: string;
  method: { dplabRuns: number; kernelPasses: number; repeatStateless: number };
  packets: number;
  malformed: number;
  complete: boolean;
  stages: StageCalibration[];
  mismatches: number;
}

/**
 * The tc builds' return values (TC_ACT_OK, TC_ACT_SHOT), as the programs in bpf/ return them, and
 * the conntrack model's own passes: a flow was created; not modelled (passed, not compared).
 */
const TC_OK = 0;
const TC_SHOT = 2;
const TC_CREATED = 102;
const TC_NOT_MODELLED = 103;
/** Packets of the sample the XDP builds run on (each test run of an XDP program costs milliseconds). */
const XDP_SAMPLE = 32;

/** The longest frame a model is given (Ethernet header included). */
const MAX_FRAME = 3000;

/** Packet records for one model: the helper's input (bpf/runner.c), buffered. */
class RecordFile {
  private readonly fd: number;
  private chunk = Buffer.alloc(1 << 22);
  private used = 0;
  count = 0;
  /** Whole seconds of the first packet. */
  base = -1;
  readonly num: number[] = [];
  readonly dplabDrop: number[] = [];
  readonly dplabReason: string[] = [];
  /** 1 for the first packet of its key (a source, for the rate limit). */
  readonly first: number[] = [];

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  add(b: Batch, i: number): void {
    const fam = b.family[i]!;
    const off = b.off[i]!;
    const full = off + b.capLen[i]!;
    const l3 = b.l3[i]!;
    const start = fam !== 0 || (b.l3Type[i]! !== 0 && l3 >= off) ? l3 : full;
    // A test run's packet fits in a page (bpf_test_init): longer ones (offloaded segments, jumbo
    // frames) are cut; the models read headers only.
    const end = Math.min(full, start + MAX_FRAME - 14);
    const type = fam === 4 ? 0x0800 : fam === 6 ? 0x86dd : b.l3Type[i]! || 0x88b5;
    const len = 14 + (end - start);
    const rec = 16 + ((len + 7) & ~7);
    if (this.used + rec > this.chunk.length) {
      this.flush();
      if (rec > this.chunk.length) this.chunk = Buffer.alloc(rec);
    }
    const c = this.chunk;
    const at = this.used;
    c.fill(0, at, at + rec);
    c.writeUInt32LE(len, at);
    // Time in ns from 2^30 s before the first packet's second: programs only take differences,
    // and the shift keeps a capture's odd early or huge timestamps inside 64 bits.
    if (this.base < 0) this.base = b.tsSec[i]!;
    c.writeBigUInt64LE(clampNs((BigInt(b.tsSec[i]! - this.base) + (1n << 30n)) * 1000000000n + BigInt(b.tsNsec[i]!)), at + 8);
    c.writeUInt16BE(type, at + 16 + 12);
    c.set(b.bytes.subarray(start, end), at + 16 + 14);
    this.used += rec;
    this.count++;
  }

  flush(): void {
    if (this.used > 0) writeSync(this.fd, this.chunk, 0, this.used);
    this.used = 0;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

interface Model {
  index: number;
  name: string;
  type: string;
  object: string;
  program: string;
  maps: string;
  stateful: boolean;
  note: string;
  records: RecordFile;
  /** policy: the per-packet stage dplab is timed with (no flow table). */
  standalone: PolicyStage | null;
  standaloneNs: number[];
  standalonePackets: number;
  /** conntrack: "first" is the packet that created its flow (the kernel model says which). */
  flowFirst?: boolean;
  /**
   * conntrack with the policy stage right behind it: a second model over the same packets
   * (ctpolicy.bpf.c, the decision cached in the flow), compared with dplab's verdict at either
   * stage. `at`: the policy stage's index in the profile.
   */
  combined?: { at: number; name: string; maps: string; drop: number[]; reason: string[] };
  /** The latest time of any packet in the batches the stage was called with (its clock at the end). */
  endSec: number;
  endNsec: number;
  /** First-packet keys seen (stateful models). */
  seen: Set<string>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function sourceKey(b: Batch, i: number): string {
  const w = i << 2;
  return `${b.family[i]}:${b.src[w]}:${b.src[w + 1]}:${b.src[w + 2]}:${b.src[w + 3]}`;
}

const TAP = 'calibrate-tap:';

/**
 * A pseudo-stage in front of a modelled stage: records the packets the stage is about to get
 * (collection run), and for policy evaluates each of them with dplab's policy stage without a
 * flow table, timed, its verdicts put back afterwards.
 */
class Tap implements Stage {
  readonly name: string;
  readonly reasons: readonly string[] = [];
  /** Index in the tapped pipeline of the stage this tap is in front of. */
  at = 0;
  /** Batch indexes of the packets recorded in the last batch. */
  seen: number[] = [];
  private saved = new Uint8Array(0);
  private savedStage = new Uint8Array(0);
  private savedReason = new Uint16Array(0);

  constructor(readonly model: Model, private readonly collect: boolean, private readonly run: number) {
    this.name = TAP + model.name;
  }

  process(b: Batch): void {
    const m = this.model;
    const n = b.count;
    this.seen = [];
    for (let i = 0; i < n; i++) {
      if (b.verdict[i] === Verdict.PASS) this.seen.push(i);
      const sec = b.tsSec[i]!;
      if (sec > m.endSec || (sec === m.endSec && b.tsNsec[i]! > m.endNsec)) { m.endSec = sec; m.endNsec = b.tsNsec[i]!; }
    }
    if (this.collect) {
      for (const i of this.seen) {
        m.records.add(b, i);
        m.records.num.push(b.num[i]!);
        if (m.stateful && !m.flowFirst) {
          const k = sourceKey(b, i);
          m.records.first.push(m.seen.has(k) ? 0 : 1);
          m.seen.add(k);
        }
      }
    }
    const sa = m.standalone;
    if (!sa) return;
    if (this.saved.length < b.capacity) {
      this.saved = new Uint8Array(b.capacity);
      this.savedStage = new Uint8Array(b.capacity);
      this.savedReason = new Uint16Array(b.capacity);
    }
    this.saved.set(b.verdict.subarray(0, n));
    this.savedStage.set(b.stage.subarray(0, n));
    this.savedReason.set(b.reason.subarray(0, n));
    const t0 = performance.now();
    sa.process(b, this.at);
    const t1 = performance.now();
    while (m.standaloneNs.length <= this.run) m.standaloneNs.push(0);
    m.standaloneNs[this.run] = m.standaloneNs[this.run]! + (t1 - t0) * 1e6;
    if (this.collect) {
      m.standalonePackets += this.seen.length;
      for (const i of this.seen) {
        const drop = b.verdict[i] === Verdict.DROP;
        m.records.dplabDrop.push(drop ? 1 : 0);
        m.records.dplabReason.push(drop ? sa.reasons[b.reason[i]!] ?? '' : '');
      }
    }
    b.verdict.set(this.saved.subarray(0, n));
    b.stage.set(this.savedStage.subarray(0, n));
    b.reason.set(this.savedReason.subarray(0, n));
  }

  report(): StageReport {
    return {};
  }
}

/** Validate the profile and find the tools before reading any packet (errors: one line each). */
export function prepare(opts: CalibrateOptions): { profile: Profile; built: Built; clang: string } {
  const profile = loadProfile(opts.profile);
  buildStages(profile);
  const tc = checkSetup();
  return { profile, built: build(tc), clang: tc.clangVersion };
}

export function calibrate(opts: CalibrateOptions): CalibrationReport {
  const { profile, built, clang } = prepare(opts);
  const runs = opts.runs ?? 5;
  const passes = opts.passes ?? 5;
  const repeat = opts.repeat ?? 100;
  const work = mkdtempSync(join(tmpdir(), 'dplab-calibrate-'));
  try {
    return calibrateIn(work, opts, profile, built, clang, runs, passes, repeat);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function calibrateIn(work: string, opts: CalibrateOptions, profile: Profile, built: Built, clang: string,
  runs: number, passes: number, repeat: number): CalibrationReport {
  const models: Model[] = [];
  profile.stages.forEach((name, index) => {
    const type = profile.types[index]!;
    const section = profile.sections.get(name)!;
    const base = { index, name, type, records: new RecordFile(join(work, `${name}.bin`)), standaloneNs: [], standalonePackets: 0, seen: new Set<string>(), endSec: -1, endNsec: 0 };
    if (type === 'xdp') {
      const cfg = xdpConfig(section);
      if (cfg.rateLimit && !Number.isInteger(cfg.rateLimit.rate)) {
        throw new CalibrateSetupError(`[${name}] rate-limit ${cfg.rateLimit.text}: the kernel model counts whole packets per second; give the rate as N/s`);
      }
      models.push({
        ...base, object: 'xdp', program: 'xdp_stage', maps: xdpMaps(cfg), stateful: cfg.rateLimit !== null, standalone: null,
        note: cfg.rateLimit
          ? `LPM maps of ${cfg.prefixes.length} prefixes, token bucket per source in an LRU hash (${cfg.rateLimit.text}); once per packet, state kept across packets`
          : `LPM maps of ${cfg.prefixes.length} prefixes; stateless: ${repeat} kernel runs per packet`,
      });
    } else if (type === 'conntrack') {
      const ct = new ConntrackStage(section).ct.config;
      const dropInvalid = section.choice('invalid', ['drop', 'accept'] as const, 'drop') === 'drop';
      models.push({
        ...base, object: 'conntrack', program: 'conntrack_stage', maps: conntrackMaps(ct, dropInvalid), stateful: true, standalone: null,
        flowFirst: true,
        note: `flows in an LRU hash of ${ct.capacity} entries, nf_conntrack's TCP state table, timeouts on the capture's clock; once per packet, state kept across packets`,
      });
    } else if (type === 'policy') {
      const cfg = policyConfig(section);
      let maps: string;
      try {
        maps = policyMaps(cfg.rules, cfg.defaultAction);
      } catch (e) {
        throw new CalibrateSetupError(`[${name}] ${(e as Error).message}`);
      }
      models.push({
        ...base, object: 'policy', program: 'policy_stage', maps, stateful: false,
        standalone: new PolicyStage(cfg, null, name),
        note: `rules evaluated for every packet: the kernel scans ${cfg.rules.length} rules in order (bpf_loop over an array map), dplab runs its ${cfg.evaluator} evaluator without a flow table; ${repeat} kernel runs per packet`,
      });
    }
  });

  const ctModel = models.find((m) => m.type === 'conntrack');
  const behind = ctModel ? models.find((m) => m.index === ctModel.index + 1 && m.type === 'policy') : undefined;
  if (ctModel && behind) {
    ctModel.combined = { at: behind.index, name: `${ctModel.name}+${behind.name}`, maps: ctModel.maps + behind.maps, drop: [], reason: [] };
  }

  // 1. dplab: the runs, the packets each model sees, dplab's verdicts. A tap in front of each
  // modelled stage takes the packets as that stage gets them (bytes as earlier stages left them);
  // its own row in the runner's table keeps it out of the stage's figure. Run 0 collects (and
  // warms the JIT up); the figures are the medians of runs 1..runs.
  const stageNs = new Map<string, number[]>();
  /** The flows dplab's conntrack held, unexpired, when the input ended. */
  const endFlows: FlowRecord[] = [];
  let last: RunReport | null = null;
  let packets = 0;
  let malformed = 0;
  for (let run = 0; run <= runs; run++) {
    const built = buildStages(profile);
    const collect = run === 0;
    const stages: Stage[] = [];
    const taps: Tap[] = [];
    built.forEach((st, k) => {
      const m = models.find((x) => x.index === k);
      if (m) {
        const tap = new Tap(m, collect, run);
        taps.push(tap);
        stages.push(tap);
        tap.at = stages.length;
      }
      stages.push(st);
    });
    const onBatch = (b: Batch): void => {
      if (!collect) return;
      for (const tap of taps) {
        const m = tap.model;
        const cb = m.combined;
        if (cb) {
          const policyAt = taps.find((t) => t.model.index === cb.at)!.at;
          for (const i of tap.seen) {
            const st = b.stage[i]!;
            const drop = b.verdict[i] === Verdict.DROP && (st === tap.at || st === policyAt);
            cb.drop.push(drop ? 1 : 0);
            cb.reason.push(drop ? `${stages[st]!.name}/${stages[st]!.reasons[b.reason[i]!] ?? ''}` : '');
          }
        }
        if (m.standalone) continue; // its verdicts were taken by the tap
        for (let j = 0; j < tap.seen.length; j++) {
          const i = tap.seen[j]!;
          const drop = b.verdict[i] === Verdict.DROP && b.stage[i] === tap.at;
          m.records.dplabDrop.push(drop ? 1 : 0);
          m.records.dplabReason.push(drop ? stages[tap.at]!.reasons[b.reason[i]!] ?? '' : '');
        }
      }
    };
    const onFlow = collect ? (f: FlowRecord): void => { if (f.end === 'end-of-input') endFlows.push(f); } : undefined;
    const { report } = runCapture({ file: opts.file, profile: profile.name, stages, timing: true, onBatch, onFlow });
    if (run > 0) {
      for (const row of report.stages) {
        const xs = stageNs.get(row.name) ?? [];
        xs.push(row.nsPerPacket);
        stageNs.set(row.name, xs);
      }
    }
    if (collect) {
      packets = report.verdicts.packets;
      malformed = report.verdicts.malformed;
      for (const m of models) m.records.close();
    }
    last = report;
  }
  if (!last) throw new Error('no run');
  last = { ...last, stages: last.stages.filter((r) => !r.name.startsWith(TAP)) };

  // 2. The kernel: the floor and each model over the same packets.
  const results = join(work, 'results.bin');
  const mapsFile = join(work, 'maps.txt');
  const perPass = (k: KernelRun, pick?: (i: number) => boolean): number | null => {
    const means: number[] = [];
    for (let p = 0; p < k.passes; p++) {
      let sum = 0;
      let n = 0;
      for (let i = 0; i < k.count; i++) {
        if (pick && !pick(i)) continue;
        sum += k.duration[p * k.count + i]!;
        n++;
      }
      if (n > 0) means.push(sum / n);
    }
    return means.length ? median(means) : null;
  };
  const out: StageCalibration[] = [];
  let total = 0;
  for (let s = 0; s < profile.stages.length; s++) {
    const name = profile.stages[s]!;
    const type = profile.types[s]!;
    const dplabPipelineNs = median(stageNs.get(name) ?? [0]);
    const m = models.find((x) => x.index === s);
    const row = last.stages.find((r) => r.name === name);
    if (!m) {
      out.push({
        stage: name, type, model: null, packets: row?.packets ?? 0, dplabDropped: row?.dropped ?? 0, kernelDropped: null, agree: null,
        kernelNs: null, floorNs: null, dplabNs: dplabPipelineNs, ratio: null, mismatches: [],
        note: `no kernel model for a ${type} stage`,
      });
      continue;
    }
    const variants: { combined: boolean }[] = m.combined ? [{ combined: false }, { combined: true }] : [{ combined: false }];
    for (const variant of variants) {
      const cb = variant.combined ? m.combined! : null;
      const r = m.records;
      const dplabDrop = cb ? cb.drop : r.dplabDrop;
      const dplabReason = cb ? cb.reason : r.dplabReason;
      const object = cb ? 'ctpolicy' : m.object;
      const program = cb ? 'ctpolicy_stage' : m.program;
      const rep = m.stateful ? 1 : repeat;
      let k: KernelRun | null = null;
      let floor: KernelRun | null = null;
      let xdpSample: StageCalibration['xdpSample'];
      if (r.count > 0) {
        writeFileSync(mapsFile, cb ? cb.maps : m.maps);
        k = runProgram({ built, object, program: `${program}_tc`, packets: r.path, results, repeat: rep, passes, maps: mapsFile, dump: m.flowFirst && !cb ? 'flows' : undefined });
        if (opts.floor !== false) floor = runProgram({ built, object: 'empty', program: 'empty_tc', packets: r.path, results, repeat: rep, passes });
        if (!m.stateful && (opts.xdpSample ?? XDP_SAMPLE) > 0) {
          // The same model at the XDP hook, on a sample: the hook the stage models, one test run at a time.
          const sample = join(work, 'sample.bin');
          const all = readFileSync(r.path);
          writeFileSync(sample, all.subarray(0, sampleBytes(all, opts.xdpSample ?? XDP_SAMPLE)));
          const x = runProgram({ built, object: m.object, program: `${m.program}_xdp`, packets: sample, results, repeat: rep, passes: 1, maps: mapsFile });
          const t = runProgram({ built, object: m.object, program: `${m.program}_tc`, packets: sample, results, repeat: rep, passes: 1, maps: mapsFile });
          let agree = true;
          for (let i = 0; i < x.count; i++) if ((x.retval[i] === XDP_DROP) !== (t.retval[i] === TC_SHOT)) agree = false;
          xdpSample = { packets: x.count, xdpNs: perPass(x), tcNs: perPass(t), verdictsAgree: agree };
        }
      }
      const mismatches: Mismatch[] = [];
      let kernelDropped = 0;
      let notModelled = 0;
      let dplabDropped = 0;
      const first: number[] = m.flowFirst ? [] : r.first;
      for (let i = 0; i < r.count; i++) {
        const rv = k!.retval[i]!;
        if (m.flowFirst) first.push(rv === TC_CREATED ? 1 : 0);
        if (rv === TC_NOT_MODELLED) { notModelled++; continue; }
        const kDrop = rv === TC_SHOT;
        if (kDrop) kernelDropped++;
        const dDrop = dplabDrop[i] === 1;
        if (dDrop) dplabDropped++;
        if (kDrop !== dDrop || (rv !== TC_SHOT && rv !== TC_OK && rv !== TC_CREATED)) {
          mismatches.push({
            packet: r.num[i]!, stage: cb ? cb.name : name,
            dplab: dDrop ? `drop (${dplabReason[i]})` : 'pass',
            kernel: rv === TC_SHOT ? 'drop' : rv === TC_OK ? 'pass' : `returned ${rv}`,
            packetSummary: '',
          });
        }
      }
      total += mismatches.length;
      const dplabNs = m.standalone ? median(m.standaloneNs.slice(1).map((ns) => ns / Math.max(1, m.standalonePackets)))
        : cb ? dplabPipelineNs + median(stageNs.get(profile.stages[cb.at]!) ?? [0]) : dplabPipelineNs;
      const kernelNs = k ? perPass(k) : null;
      const c: StageCalibration = {
        stage: cb ? cb.name : name, type: cb ? 'conntrack+policy' : type, model: `bpf/${object}.bpf.c`,
        note: cb ? `conntrack and policy in one program, as Calico: the rules run for a flow's first packet and the decision is kept in the flow entry; against dplab's verdict at either stage (its ${profile.stages[cb.at]} decides once per flow too), dplab's figure the sum of both rows` : m.note,
        packets: r.count,
        dplabDropped, kernelDropped, agree: r.count - notModelled - mismatches.length, notModelled,
        kernelNs, floorNs: floor ? perPass(floor) : null, dplabNs,
        ratio: kernelNs && dplabNs ? dplabNs / kernelNs : null, mismatches,
      };
      if (kernelNs !== null && c.floorNs !== null) {
        c.modelNs = kernelNs - c.floorNs;
        c.modelRatio = c.modelNs > 0 && dplabNs ? dplabNs / c.modelNs : null;
      }
      if (m.stateful && k) {
        c.firstNs = perPass(k, (i) => first[i] === 1);
        c.laterNs = perPass(k, (i) => first[i] === 0);
        c.firstPackets = first.reduce((a, x) => a + x, 0);
      }
      if (m.standalone) c.dplabPipelineNs = dplabPipelineNs;
      if (m.flowFirst && k && !cb) {
        c.flowsAtEnd = compareFlows(endFlows, k.dumped, endClock(m));
        total += c.flowsAtEnd.differ.length;
      }
      if (xdpSample) c.xdpSample = xdpSample;
      out.push(c);
    }
  }
  if (total > 0) nameMismatches(opts.file, profile.name, out);
  return {
    file: opts.file, profile: profile.name, pipeline: pipelineText(profile), kernel: release(), clang, buildDir: built.dir,
    method: { dplabRuns: runs, kernelPasses: passes, repeatStateless: repeat },
    packets, malformed, complete: last.complete, stages: out, mismatches: total,
  };
}

/** The stage's clock at the end in the model's time (ns, shifted as RecordFile shifts it). */
function endClock(m: Model): bigint {
  if (m.records.base < 0 || m.endSec < 0) return 0n;
  return clampNs((BigInt(m.endSec - m.records.base) + (1n << 30n)) * 1000000000n + BigInt(m.endNsec));
}

const MAX_NS = (1n << 64n) - 1n;
function clampNs(ns: bigint): bigint {
  return ns < 0n ? 0n : ns > MAX_NS ? MAX_NS : ns;
}

const flowText = (proto: number, family: number, src: ArrayLike<number>, sport: number, dst: ArrayLike<number>, dport: number): string =>
  `${protoName(proto)} ${ipToString(family, src, 0)}:${sport} -> ${ipToString(family, dst, 0)}:${dport}`;

/** dplab's live flows at the end against the kernel map's entries not past their timeout. */
function compareFlows(dplab: FlowRecord[], dumped: [string, string][], now: bigint): { dplab: number; kernel: number; differ: string[] } {
  const kernel = new Map<string, string>();
  for (const [kh, vh] of dumped) {
    const key = Buffer.from(kh, 'hex');
    const val = Buffer.from(vh, 'hex');
    const rd = (b: Buffer, at: number): number => (LE ? b.readUInt32LE(at) : b.readUInt32BE(at));
    const a = [0, 1, 2, 3].map((w) => rd(key, 4 * w));
    const bw = [0, 1, 2, 3].map((w) => rd(key, 16 + 4 * w));
    const u16 = (at: number): number => (LE ? key.readUInt16LE(at) : key.readUInt16BE(at));
    const u64 = (at: number): bigint => (LE ? val.readBigUInt64LE(at) : val.readBigUInt64BE(at));
    if (u64(0) < now) continue; // past its timeout: dplab reports it timed out
    const family = key[36]!;
    const proto = key[37]!;
    const origA = val[35] === 1;
    const text = origA ? flowText(proto, family, a, u16(32), bw, u16(34)) : flowText(proto, family, bw, u16(34), a, u16(32));
    const state = proto === 6 ? TCP_STATE_NAMES[val[32]!] ?? `state ${val[32]}` : val[33] ? 'replied' : 'unreplied';
    kernel.set(text, `${state}${val[34] ? ' assured' : ''}, packets ${u64(16)}/${u64(24)}`);
  }
  const differ: string[] = [];
  const seen = new Set<string>();
  for (const f of dplab) {
    const text = `${protoName(f.proto)} ${f.src}:${f.sport} -> ${f.dst}:${f.dport}`;
    const d = `${f.state}${f.assured ? ' assured' : ''}, packets ${f.packets[0]}/${f.packets[1]}`;
    seen.add(text);
    const k = kernel.get(text);
    if (k === undefined) differ.push(`${text}: dplab ${d}, not in the kernel's map`);
    else if (k !== d) differ.push(`${text}: dplab ${d}, kernel ${k}`);
  }
  for (const [text, k] of kernel) if (!seen.has(text)) differ.push(`${text}: kernel ${k}, not in dplab's table`);
  return { dplab: dplab.length, kernel: kernel.size, differ };
}

/** Bytes of the first `n` records of a packet file. */
function sampleBytes(buf: Buffer, n: number): number {
  let at = 0;
  for (let k = 0; k < n && at + 16 <= buf.length; k++) at += 16 + ((buf.readUInt32LE(at) + 7) & ~7);
  return at;
}

const XDP_DROP = 1;
const LE = endianness() === 'LE';

/** One more read of the capture to say what each differing packet is. */
function nameMismatches(file: string, profile: string, stages: StageCalibration[]): void {
  const want = new Map<number, Mismatch[]>();
  for (const s of stages) for (const m of s.mismatches) want.set(m.packet, [...(want.get(m.packet) ?? []), m]);
  runCapture({
    file, profile, stages: [], timing: false,
    onBatch: (b) => {
      for (let i = 0; i < b.count; i++) {
        const ms = want.get(b.num[i]!);
        if (!ms) continue;
        const fam = b.family[i]!;
        const w = i << 2;
        const ports = b.proto[i] === 6 || b.proto[i] === 17;
        const text = fam === 0 ? 'not IP'
          : `${protoName(b.proto[i]!)} ${ipToString(fam, b.src, w)}${ports ? `:${b.sport[i]}` : ''} -> ${ipToString(fam, b.dst, w)}${ports ? `:${b.dport[i]}` : ''}`;
        for (const m of ms) m.packetSummary = text;
      }
    },
  });
}
