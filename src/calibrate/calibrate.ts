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
 *
 * dnat: modelled only right behind conntrack, in one program with it (dnat.bpf.c), as the kernel
 * keeps a NAT binding in the conntrack entry; its packets leave rewritten and their bytes are
 * compared with dplab's after the pipeline (what --write writes). The conntrack model alone is
 * then run for its cost only (dnat changes what conntrack finds), and the dnat row's kernel
 * figure is the difference. ctlb: the model sees each connect only (which packets connected, and
 * to which backend, dplab's stage says in explain()), and its chosen backend is compared.
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
import { aliasMaps, conntrackMaps, dnatMaps, policyMaps, routeMaps, xdpMaps } from './maps.js';
import { readRoutes } from '../stages/route.js';
import { endpointToString, readServices } from '../nat/services.js';

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
  /** dnat: packets whose bytes after the model were compared with dplab's (the rest: dropped by either). */
  bytesCompared?: number;
  /** dnat: packets the kernel model changed (its output differs from its input). */
  translated?: number;
  /** dnat: the stage alone: the combined program less the conntrack model, against dplab's dnat row. */
  alone?: { stage: string; kernelNs: number | null; dplabNs: number; ratio: number | null };
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
/** ctlb.bpf.c, route.bpf.c: backend or route k chosen (10 + k, returned by the tc build as 100 + that). */
const TC_CHOSE = 110;
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

/**
 * A second model over the conntrack model's packets, for a stage right behind conntrack that
 * lives in its entries: policy (ctpolicy.bpf.c, the decision cached in the flow) or dnat
 * (dnat.bpf.c, the NAT binding in the flow; its packets leave rewritten). Compared with dplab's
 * verdict at either stage; `after` holds dplab's bytes of those packets as the pipeline left them.
 */
interface Combo {
  at: number;
  name: string;
  type: string;
  object: string;
  maps: string;
  note: string;
  drop: number[];
  reason: string[];
  after: RecordFile | null;
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
  /**
   * ctlb and route: models that return what they chose (a backend, a route), compared with what
   * dplab's stage chose, which its explain() says: `pick` reads the chosen thing's name from it
   * (null: a packet the model is not given, e.g. not a connect), `names` numbers it as the maps
   * do. Per recorded packet whether it is kept; per kept packet dplab's choice (-1: dropped).
   * `perChoice`: dplab's figure is its row's whole time per kept packet (ctlb: per connect).
   */
  choice?: { what: string; pick: (explained: string) => string | null; names: Map<string, number>; keep: number[]; chosen: number[]; perChoice: boolean };
  standaloneNs: number[];
  standalonePackets: number;
  /** conntrack: "first" is the packet that created its flow (the kernel model says which). */
  flowFirst?: boolean;
  /**
   * conntrack with the policy stage right behind it: a second model over the same packets
   * (ctpolicy.bpf.c, the decision cached in the flow), compared with dplab's verdict at either
   * stage. `at`: the policy stage's index in the profile.
   */
  combos: Combo[];
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
    const base = { index, name, type, records: new RecordFile(join(work, `${name}.bin`)), standaloneNs: [], standalonePackets: 0, seen: new Set<string>(), endSec: -1, endNsec: 0, combos: [] };
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
    } else if (type === 'ctlb') {
      const table = readServices(section);
      let maps: string;
      try {
        maps = dnatMaps(table, section.integer('seed', 0, 0, 0xffffffff));
      } catch (e) {
        throw new CalibrateSetupError(`[${name}] ${(e as Error).message}`);
      }
      models.push({
        ...base, object: 'ctlb', program: 'ctlb_stage', maps, stateful: false, standalone: null,
        choice: {
          what: 'backend', keep: [], chosen: [], perChoice: true, names: new Map(table.backends.map((be, k) => [endpointToString(be), k])),
          // "connect(): backend chosen, VIP -> BACKEND; ..."
          pick: (t) => (t.startsWith('connect()') ? t.split(' -> ')[1]!.split(';')[0]! : null),
        },
        note: `the connect hook's work (service map lookup, dplab's hash, the backend written into the socket's address, a reverse entry for replies) on each connecting packet only (SYN, a UDP socket's first datagram), as a tc program: this kernel's BPF_PROG_TEST_RUN does not run cgroup/connect programs (ENOTSUPP). Later packets cost the dataplane nothing; unconnected UDP's sendmsg/recvmsg hooks are not measured. Compared: the backend each connect chose. dplab's figure: its whole ctlb row (the re-addressing of every packet, an emulation) divided by the connects; ${repeat} kernel runs per connect`,
      });
    } else if (type === 'route' && section.choice('mode', ['full', 'bypass'] as const, 'full') === 'full') {
      const table = readRoutes(section);
      models.push({
        ...base, object: 'route', program: 'route_stage', maps: routeMaps(table), stateful: false, standalone: null,
        choice: {
          what: 'route', keep: [], chosen: [], perChoice: false, names: new Map(table.routes.map((_, k) => [table.describe(k), k])),
          // "FIB: 10.0.0.0/8 via 192.168.1.1 dev eth1 -> veth hop -> ..."
          pick: (t) => (t.startsWith('FIB: ') && t.includes(' -> veth hop') ? t.slice(5, t.indexOf(' -> veth hop')) : null),
        },
        note: `the FIB's longest-prefix match over ${table.size} routes in LPM-trie maps (no bpf_fib_lookup), then what forwarding does and dplab's stage does not model: TTL / hop limit down by one (IPv4 checksum updated) and the Ethernet addresses for the next hop (made-up MACs, one per route); compared: the route each packet took (no route: dropped by both); ${repeat} kernel runs per packet. mode: bypass is not modelled`,
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
    ctModel.combos.push({
      at: behind.index, name: `${ctModel.name}+${behind.name}`, type: 'conntrack+policy', object: 'ctpolicy', maps: ctModel.maps + behind.maps, drop: [], reason: [], after: null,
      note: `conntrack and policy in one program, as Calico: the rules run for a flow's first packet and the decision is kept in the flow entry; against dplab's verdict at either stage (its ${behind.name} decides once per flow too), dplab's figure the sum of both rows`,
    });
  }
  const natAt = ctModel ? ctModel.index + 1 : -1;
  if (ctModel && profile.types[natAt] === 'dnat') {
    const section = profile.sections.get(profile.stages[natAt]!)!;
    const name = profile.stages[natAt]!;
    let maps: string;
    try {
      maps = dnatMaps(readServices(section), section.integer('seed', 0, 0, 0xffffffff));
    } catch (e) {
      throw new CalibrateSetupError(`[${name}] ${(e as Error).message}`);
    }
    const ct = new ConntrackStage(profile.sections.get(ctModel.name)!).ct.config;
    ctModel.combos.push({
      at: natAt, name: `${ctModel.name}+${name}`, type: 'conntrack+dnat', object: 'dnat', maps: ctModel.maps + aliasMaps(ct) + maps, drop: [], reason: [],
      after: new RecordFile(join(work, `${name}.after.bin`)),
      note: `conntrack and kube-proxy's DNAT in one program (the binding in the flow entry, the reply tuple found as the kernel's conntrack finds it, the backend chosen by dplab's hash); every packet's verdict and its bytes as it leaves (addresses, ports, checksums) against dplab's; dplab's figure the sum of both rows`,
    });
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
        for (const cb of m.combos) {
          // the stage's index in the tapped pipeline: its model's tap (policy) or its place after the conntrack tap
          const policyAt = taps.find((t) => t.model.index === cb.at)?.at ?? tap.at + 1;
          for (const i of tap.seen) {
            cb.after?.add(b, i);
            const st = b.stage[i]!;
            const drop = b.verdict[i] === Verdict.DROP && (st === tap.at || st === policyAt);
            cb.drop.push(drop ? 1 : 0);
            cb.reason.push(drop ? `${stages[st]!.name}/${stages[st]!.reasons[b.reason[i]!] ?? ''}` : '');
          }
        }
        if (m.standalone) continue; // its verdicts were taken by the tap
        const cn = m.choice;
        if (cn) {
          const st = stages[tap.at]!;
          for (const i of tap.seen) {
            const drop = b.verdict[i] === Verdict.DROP && b.stage[i] === tap.at;
            const picked = drop ? null : cn.pick(st.explain?.(b, i) ?? '');
            cn.keep.push(drop || picked !== null ? 1 : 0);
            if (!drop && picked === null) continue;
            cn.chosen.push(drop ? -1 : cn.names.get(picked!) ?? -2);
            m.records.dplabDrop.push(drop ? 1 : 0);
            m.records.dplabReason.push(drop ? st.reasons[b.reason[i]!] ?? '' : '');
          }
          continue;
        }
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
      for (const m of models) { m.records.close(); for (const cb of m.combos) cb.after?.close(); }
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
      const alone = out.find((x) => x.alone?.stage === name)?.alone;
      out.push({
        stage: name, type, model: alone ? 'bpf/dnat.bpf.c' : null, packets: row?.packets ?? 0, dplabDropped: row?.dropped ?? 0, kernelDropped: null, agree: null,
        kernelNs: alone?.kernelNs ?? null, floorNs: null, dplabNs: dplabPipelineNs, ratio: alone?.ratio ?? null, mismatches: [],
        note: alone ? `modelled with conntrack (its row above, verdicts and bytes compared there); kernel: that program less the conntrack model on the same packets, a difference of two medians` : `no kernel model for a ${type} stage`,
      });
      continue;
    }
    // Behind conntrack, dnat binds flows to reply tuples, which the conntrack model alone does not
    // know: it is run for its cost (the dnat row's figure is the difference), compared in the combined row.
    const boundByNat = !!m.flowFirst && m.combos.some((x) => x.after !== null);
    for (const cb of [null, ...m.combos]) {
      const r = m.records;
      const dplabDrop = cb ? cb.drop : r.dplabDrop;
      const dplabReason = cb ? cb.reason : r.dplabReason;
      const object = cb ? cb.object : m.object;
      const program = cb ? `${cb.object}_stage` : m.program;
      const rewritten = cb?.after ? join(work, 'rewritten.bin') : undefined;
      const rep = m.stateful ? 1 : repeat;
      let k: KernelRun | null = null;
      let floor: KernelRun | null = null;
      let xdpSample: StageCalibration['xdpSample'];
      if (m.choice && !cb && m.choice.keep.length === r.num.length) keepOnly(r, m.choice.keep);
      if (r.count > 0) {
        writeFileSync(mapsFile, cb ? cb.maps : m.maps);
        k = runProgram({ built, object, program: `${program}_tc`, packets: r.path, results, repeat: rep, passes, maps: mapsFile, dump: m.flowFirst && !cb !== boundByNat ? 'flows' : undefined, out: rewritten });
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
        const cn = m.choice;
        if (cn && !kDrop && !dDrop) {
          if (rv - TC_CHOSE !== cn.chosen[i]) {
            mismatches.push({ packet: r.num[i]!, stage: name, packetSummary: '', dplab: `${cn.what} ${cn.chosen[i]}`, kernel: rv >= TC_CHOSE ? `${cn.what} ${rv - TC_CHOSE}` : `returned ${rv}` });
          }
          continue;
        }
        if (!(boundByNat && !cb) && (kDrop !== dDrop || (rv !== TC_SHOT && rv !== TC_OK && rv !== TC_CREATED))) {
          mismatches.push({
            packet: r.num[i]!, stage: cb ? cb.name : name,
            dplab: dDrop ? `drop (${dplabReason[i]})` : 'pass',
            kernel: rv === TC_SHOT ? 'drop' : rv === TC_OK ? 'pass' : `returned ${rv}`,
            packetSummary: '',
          });
        }
      }
      const bytes = cb?.after && rewritten && k ? compareBytes(cb.after.path, rewritten, r.path, r.num, k.retval, cb.name) : null;
      if (bytes) mismatches.push(...bytes.mismatches);
      total += mismatches.length;
      const dplabNs = m.standalone ? median(m.standaloneNs.slice(1).map((ns) => ns / Math.max(1, m.standalonePackets)))
        : cb ? dplabPipelineNs + median(stageNs.get(profile.stages[cb.at]!) ?? [0])
          // ctlb: dplab's whole row (every packet re-addressed) per connect, as the kernel's figure is per connect
          : m.choice?.perChoice && row && r.count > 0 ? dplabPipelineNs * row.packets / r.count : dplabPipelineNs;
      const kernelNs = k ? perPass(k) : null;
      const c: StageCalibration = {
        stage: cb ? cb.name : name, type: cb ? cb.type : type, model: `bpf/${object}.bpf.c`,
        note: cb ? cb.note : m.note,
        packets: r.count,
        dplabDropped, kernelDropped: boundByNat && !cb ? null : kernelDropped, agree: boundByNat && !cb ? null : r.count - notModelled - mismatches.length, notModelled,
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
      if (boundByNat && !cb) c.note += '; not compared: dnat, right behind it, binds flows to reply tuples (compared in the conntrack+dnat row)';
      if (m.flowFirst && k && !cb !== boundByNat) {
        c.flowsAtEnd = compareFlows(endFlows, k.dumped, endClock(m));
        total += c.flowsAtEnd.differ.length;
      }
      if (xdpSample) c.xdpSample = xdpSample;
      if (bytes) { c.bytesCompared = bytes.compared; c.translated = bytes.translated; }
      if (cb?.after) {
        // The NAT alone: the combined program less the conntrack model on the same packets.
        const ctRow = out.find((x) => x.stage === name);
        const kAlone = kernelNs !== null && ctRow?.kernelNs ? kernelNs - ctRow.kernelNs : null;
        const dAlone = median(stageNs.get(profile.stages[cb.at]!) ?? [0]);
        c.alone = { stage: profile.stages[cb.at]!, kernelNs: kAlone, dplabNs: dAlone, ratio: kAlone && kAlone > 0 ? dAlone / kAlone : null };
      }
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

/**
 * The packets as the kernel model left them (its OUT file) against dplab's bytes of the same
 * packets after the stage (both: the model's frame, Ethernet header included), for every packet
 * neither dropped. A difference names the first differing byte of the IP packet.
 */
function compareBytes(dplabFile: string, kernelFile: string, inputFile: string, num: number[], retval: Uint32Array, stage: string): { compared: number; translated: number; mismatches: Mismatch[] } {
  const d = readFileSync(dplabFile);
  const k = readFileSync(kernelFile);
  const input = readFileSync(inputFile);
  const mismatches: Mismatch[] = [];
  let compared = 0;
  let translated = 0;
  let at = 0;
  for (let i = 0; at + 16 <= d.length && at + 16 <= k.length; i++) {
    const n = d.readUInt32LE(at);
    const kn = k.readUInt32LE(at);
    const next = at + 16 + ((n + 7) & ~7);
    if (retval[i] !== TC_SHOT) {
      compared++;
      const a = d.subarray(at + 16, at + 16 + n);
      const b = k.subarray(at + 16, at + 16 + kn);
      if (!b.equals(input.subarray(at + 16, at + 16 + input.readUInt32LE(at)))) translated++;
      if (n !== kn || !a.equals(b)) {
        let j = 0;
        while (j < n && a[j] === b[j]) j++;
        mismatches.push({
          packet: num[i]!, stage, packetSummary: '',
          dplab: n !== kn ? `${n - 14} bytes` : `byte ${j - 14} of the IP packet 0x${a[j]!.toString(16)}`,
          kernel: n !== kn ? `${kn - 14} bytes` : `0x${b[j]!.toString(16)}`,
        });
      }
    }
    if (n !== kn) break; // the files no longer line up
    at = next;
  }
  return { compared, translated, mismatches };
}

/** Keep the records (and their packet numbers) flagged 1 in `keep` (ctlb's model sees connects only). */
function keepOnly(r: RecordFile, keep: number[]): void {
  const all = readFileSync(r.path);
  const parts: Buffer[] = [];
  const num: number[] = [];
  let at = 0;
  for (let i = 0; at + 16 <= all.length; i++) {
    const next = at + 16 + ((all.readUInt32LE(at) + 7) & ~7);
    if (keep[i] === 1) { parts.push(all.subarray(at, next)); num.push(r.num[i]!); }
    at = next;
  }
  writeFileSync(r.path, Buffer.concat(parts));
  r.num.length = 0;
  for (const x of num) r.num.push(x);
  r.count = num.length;
  keep.length = 0;
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
