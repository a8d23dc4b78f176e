/**
 * compare: several profiles over the same packets in one read (pipeline/fanout.ts: decoded once,
 * each pipeline sees the batch as if alone, rewrites included), with what each cost and decided,
 * the flows whose verdicts differ between profiles, and a latency model of batching.
 *
 * Latency model, on the capture's own clock: batches form as a poll-mode dataplane's do: a batch
 * closes when it holds `batchSize` packets or `flushUs` after its first packet arrived, whichever
 * comes first. A packet waits for its batch to close, then for the batch to be processed (its
 * packets times the profile's dataplane ns/packet; the size taken is the mean batch size a packet
 * sees). p50 and p99 over every packet, from a log-scale histogram (2% buckets). Packets without a
 * timestamp join the batch open when they are read.
 */
import { openCapture } from '../capture/open.js';
import { Batch, Verdict } from '../packet/batch.js';
import { ipToString, protoName } from '../packet/format.js';
import { Fanout, type FanoutObserver } from './fanout.js';
import { loadProfile, pipelineText } from './profile.js';
import { buildStages } from './registry.js';
import { Pipeline, type RunCounts } from './runner.js';
import type { StageReport } from './stage.js';

export interface CompareSpec {
  file: string;
  profiles: string[];
  batchSize?: number;
  /** A batch closes this long after its first packet even if not full (default 50 us). */
  flushUs?: number;
  /** Flows with differing verdicts listed at most (all are counted). */
  maxDifferences?: number;
  onBatch?: (packets: number) => void;
}

export interface CompareStageRow { name: string; packets: number; ns: number; nsPerPacket: number; emulation: boolean }

export interface ProfileResult {
  profile: string;
  pipeline: string;
  verdicts: RunCounts;
  stages: CompareStageRow[];
  /** Time of the stages a dataplane runs (decode included, emulation rows not), per packet in. */
  dataplaneNsPerPacket: number;
  /** Emulation rows (ctlb's re-addressing) per packet in: not dataplane cost. */
  emulationNsPerPacket: number;
  stageReports: Record<string, StageReport>;
  /** Flows conntrack created (0 without conntrack). */
  flows: number;
  /** Packets a per-packet NAT stage translated; backends chosen at connect (ctlb). */
  natTranslated: number;
  natBindings: number;
  connects: number;
  /** Share of one core the capture's own packet rate needs at this cost. */
  coresAtCaptureRate: number;
  latencyUs: { p50: number; p99: number };
}

export interface FlowDifference {
  flow: string;
  packets: number;
  /** Per profile: "forwarded" or the stage/reason of the packets it dropped (the first one seen). */
  verdicts: string[];
}

export interface CompareResult {
  file: string;
  packets: number;
  captureSeconds: number;
  captureRate: number;
  batchSize: number;
  flushUs: number;
  /** The mean size of the batch a packet travels in, under the latency model. */
  meanBatch: number;
  complete: boolean;
  error: string | null;
  results: ProfileResult[];
  differences: { flows: number; packets: number; listed: FlowDifference[] };
  /** Runs made (the CLI repeats small captures); each profile's figures are from its median run (cli/compare.ts medianRun). */
  repeats?: number;
  /** Time spent keeping the pipelines apart (restoring fields and bytes), per packet. */
  sharingNsPerPacket: number;
}

const BUCKETS = 1200;
const GROWTH = Math.log(1.02);
/** Bucket of a wait in ns (bucket 0: under 1 ns). */
function bucket(ns: number): number {
  if (ns < 1) return 0;
  return Math.min(BUCKETS - 1, 1 + Math.floor(Math.log(ns) / GROWTH));
}
function bucketNs(k: number): number {
  return k === 0 ? 0 : Math.exp((k - 0.5) * GROWTH);
}

/** Records verdicts per pipeline and finds the flows they differ on. */
class Differ implements FanoutObserver {
  readonly verdict: Uint8Array[];
  readonly stage: Uint8Array[];
  readonly reason: Uint16Array[];
  private fam = new Uint8Array(0);
  private proto = new Uint8Array(0);
  private src = new Uint32Array(0);
  private dst = new Uint32Array(0);
  private sport = new Uint16Array(0);
  private dport = new Uint16Array(0);
  readonly flows = new Map<string, { packets: number; verdicts: string[] }>();
  overflowFlows = 0;
  packets = 0;
  /** Waits (ns) for the batch to close, as a histogram; the batches formed by the latency model. */
  readonly waits = new Float64Array(BUCKETS);
  waitPackets = 0;
  private lastTs = 0;
  private open: Float64Array;
  private openCount = 0;
  private openStart = 0;
  /** Sum over packets of the size of their batch (for the mean size a packet sees). */
  sizeWeighted = 0;

  constructor(private readonly pipelines: number, private readonly names: string[][], private readonly max: number,
    private readonly batchSize: number, private readonly flush: number) {
    this.open = new Float64Array(batchSize);
    this.verdict = Array.from({ length: pipelines }, () => new Uint8Array(0));
    this.stage = Array.from({ length: pipelines }, () => new Uint8Array(0));
    this.reason = Array.from({ length: pipelines }, () => new Uint16Array(0));
  }

  decoded(b: Batch): void {
    const n = b.count;
    if (this.fam.length < b.capacity) {
      const c = b.capacity;
      this.fam = new Uint8Array(c); this.proto = new Uint8Array(c); this.src = new Uint32Array(c * 4); this.dst = new Uint32Array(c * 4);
      this.sport = new Uint16Array(c); this.dport = new Uint16Array(c);
      for (let k = 0; k < this.pipelines; k++) { this.verdict[k] = new Uint8Array(c); this.stage[k] = new Uint8Array(c); this.reason[k] = new Uint16Array(c); }
    }
    this.fam.set(b.family.subarray(0, n));
    this.proto.set(b.proto.subarray(0, n));
    this.src.set(b.src.subarray(0, n * 4));
    this.dst.set(b.dst.subarray(0, n * 4));
    this.sport.set(b.sport.subarray(0, n));
    this.dport.set(b.dport.subarray(0, n));
    // The latency model's batches, on the capture's clock.
    let last = this.lastTs;
    for (let i = 0; i < n; i++) {
      const t = b.noTime[i] ? last : Math.max(last, b.tsSec[i]! + b.tsNsec[i]! * 1e-9);
      last = t;
      if (this.openCount > 0 && t - this.openStart > this.flush) this.close(this.openStart + this.flush);
      if (this.openCount === 0) this.openStart = t;
      this.open[this.openCount++] = t;
      if (this.openCount === this.batchSize) this.close(t);
    }
    this.lastTs = last;
  }

  /** The open batch closes at time `at`: its packets' waits go to the histogram. */
  close(at: number): void {
    const c = this.openCount;
    for (let k = 0; k < c; k++) this.waits[bucket((at - this.open[k]!) * 1e9)]!++;
    this.waitPackets += c;
    this.sizeWeighted += c * c;
    this.openCount = 0;
  }

  /** End of input: the last batch closes when its flush time comes (or now, if full). */
  end(): void {
    if (this.openCount > 0) this.close(this.openStart + this.flush);
  }

  ran(k: number, b: Batch): void {
    const n = b.count;
    this.verdict[k]!.set(b.verdict.subarray(0, n));
    this.stage[k]!.set(b.stage.subarray(0, n));
    this.reason[k]!.set(b.reason.subarray(0, n));
    if (k === this.pipelines - 1) this.compare(n);
  }

  private compare(n: number): void {
    const V = this.verdict;
    for (let i = 0; i < n; i++) {
      const v0 = V[0]![i] === Verdict.PASS;
      let differs = false;
      for (let k = 1; k < this.pipelines; k++) if ((V[k]![i] === Verdict.PASS) !== v0) { differs = true; break; }
      if (!differs) continue;
      this.packets++;
      const key = this.key(i);
      let d = this.flows.get(key);
      if (!d) {
        if (this.flows.size >= this.max) { this.overflowFlows++; continue; }
        d = { packets: 0, verdicts: Array.from({ length: this.pipelines }, () => '') };
        this.flows.set(key, d);
      }
      d.packets++;
      for (let k = 0; k < this.pipelines; k++) {
        if (d.verdicts[k] !== '' && d.verdicts[k] !== 'forwarded') continue;
        d.verdicts[k] = V[k]![i] === Verdict.PASS ? 'forwarded' : `${this.names[k]![this.stage[k]![i]!] ?? '?'}`
          + `/${this.reasonName(k, i)}`;
      }
    }
  }

  reasonName: (k: number, i: number) => string = () => '';

  /** The flow of packet i as read, both directions alike. */
  private key(i: number): string {
    const f = this.fam[i]!;
    if (f === 0) return 'non-IP';
    const ep = (A: Uint32Array, port: number): string => {
      const t = ipToString(f, A, i * 4);
      return port ? (f === 6 ? `[${t}]:${port}` : `${t}:${port}`) : t;
    };
    const a = ep(this.src, this.sport[i]!);
    const z = ep(this.dst, this.dport[i]!);
    return `${protoName(this.proto[i]!)} ${a < z ? `${a} <-> ${z}` : `${z} <-> ${a}`}`;
  }

  /** The wait (ns) at quantile q. */
  waitAt(q: number): number {
    let seen = 0;
    const want = q * this.waitPackets;
    for (let k = 0; k < BUCKETS; k++) {
      seen += this.waits[k]!;
      if (seen >= want && seen > 0) return bucketNs(k);
    }
    return 0;
  }
}

export function runCompare(spec: CompareSpec): CompareResult {
  const profiles = spec.profiles.map((p) => loadProfile(p));
  const pipelines = profiles.map((p) => new Pipeline(buildStages(p)));
  const names = pipelines.map((p) => p.stages.map((s) => s.name));
  const batchSize = spec.batchSize ?? 256;
  const flushUs = spec.flushUs ?? 50;
  const differ = new Differ(pipelines.length, names, spec.maxDifferences ?? 50_000, batchSize, flushUs * 1e-6);
  differ.reasonName = (k, i) => {
    const st = pipelines[k]!.stages[differ.stage[k]![i]!];
    return st?.reasons[differ.reason[k]![i]!] ?? String(differ.reason[k]![i]);
  };
  const fan = new Fanout(pipelines, true, differ);
  const src = openCapture(spec.file);
  const b = new Batch(batchSize);
  let first = Infinity;
  let last = -Infinity;
  try {
    while (src.fill(b) > 0) {
      for (let i = 0; i < b.count; i++) {
        if (b.noTime[i]) continue;
        const t = b.tsSec[i]! + b.tsNsec[i]! * 1e-9;
        if (t < first) first = t;
        if (t > last) last = t;
      }
      fan.process(b);
      src.release(b);
      spec.onBatch?.(src.packets);
    }
    fan.finish();
    differ.end();
  } finally {
    src.close();
  }
  const packets = src.packets;
  const captureSeconds = last > first ? last - first : 0;
  const captureRate = captureSeconds > 0 ? packets / captureSeconds : 0;
  const meanBatch = differ.waitPackets > 0 ? differ.sizeWeighted / differ.waitPackets : 0;
  const results = pipelines.map((p, k): ProfileResult => {
    const verdicts = p.counts();
    const stages = p.runtime.map((r, s) => ({
      name: r.name, packets: r.packets, ns: r.ns, nsPerPacket: r.packets ? r.ns / r.packets : 0,
      emulation: s > 0 && p.stages[s - 1]!.emulation === true,
    }));
    const inPackets = Math.max(1, verdicts.packets);
    const dp = stages.filter((s) => !s.emulation).reduce((a, s) => a + s.ns, 0) / inPackets;
    const em = stages.filter((s) => s.emulation).reduce((a, s) => a + s.ns, 0) / inPackets;
    const reports = p.reports();
    const num = (x: StageReport | number | undefined): number => (typeof x === 'number' ? x : 0);
    let flows = 0; let nat = 0; let bindings = 0; let connects = 0;
    for (const r of Object.values(reports)) {
      flows += num(r.flowsCreated);
      const t = r.packetsTranslated;
      if (t && typeof t !== 'number') { nat += num(t.original) + num(t.reply); bindings += num(r.bindingsCreated); }
      // vfp (hns) rewrites in its unified flows: counted with the NAT work.
      nat += num(r.packetsRewritten);
      const c = r.connects;
      if (c && typeof c !== 'number') connects += num(c.tcp) + num(c.udp);
    }
    const processUs = (meanBatch * dp) / 1000;
    return {
      profile: profiles[k]!.name,
      pipeline: pipelineText(profiles[k]!),
      verdicts,
      stages,
      dataplaneNsPerPacket: dp,
      emulationNsPerPacket: em,
      stageReports: reports,
      flows, natTranslated: nat, natBindings: bindings, connects,
      coresAtCaptureRate: (captureRate * dp) / 1e9,
      latencyUs: { p50: differ.waitAt(0.5) / 1000 + processUs, p99: differ.waitAt(0.99) / 1000 + processUs },
    };
  });
  const listed = [...differ.flows].sort((a, b2) => b2[1].packets - a[1].packets).slice(0, spec.maxDifferences ?? 50_000)
    .map(([flow, d]) => ({ flow, packets: d.packets, verdicts: d.verdicts }));
  return {
    file: spec.file,
    packets,
    captureSeconds,
    captureRate,
    batchSize,
    flushUs,
    meanBatch,
    complete: src.error === null,
    error: src.error ? src.error.message : null,
    results,
    differences: { flows: differ.flows.size + differ.overflowFlows, packets: differ.packets, listed },
    sharingNsPerPacket: packets ? fan.restoreNs / packets : 0,
  };
}
