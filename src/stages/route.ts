/**
 * route: the host's forwarding decision for a packet on its way to a pod, and the path after it.
 *
 * `mode: full` is the standard path (kube-proxy / iptables dataplanes): every packet takes a FIB
 * lookup (longest-prefix match over the route table, as the kernel's fib_table_lookup /
 * fib6_lookup), crosses the veth into the pod's namespace and goes through that namespace's own
 * stack: the stages after route in the pipeline model it (e.g. `pod-ct :: conntrack ->
 * pod-policy :: policy`: a second conntrack lookup and filter chain), and every packet runs them.
 *
 * `mode: bypass` is what Calico's and Cilium's eBPF dataplanes do with bpf_redirect_peer /
 * bpf_redirect_neigh: the first packet of a flow (in each direction) takes the full path; its
 * result (route: egress device and next hop; the pod side's verdict) is kept with the flow, in
 * columns of the host conntrack's entry, and later packets go straight there: they skip the FIB
 * and the stages after route (marked REDIRECTED, which those stages pass over), and get the kept
 * verdict back at the end of the batch, with the pod side's stage and reason when it dropped.
 * A flow's later packets in the first packet's own batch are redirected too, and learn the verdict
 * when the batch ends, so what takes which path does not depend on the batch size. Packets without
 * a flow entry (no conntrack before route, untracked) always take the full path.
 *
 * Verdicts and egress are the full path's for every packet as long as the pod side decides per
 * flow (conntrack, then policy cached in it: a flow's first packet speaks for the rest, as with the
 * real redirect, which skips the pod's netfilter for good). Everything after route is the pod side:
 * put route after the host's own stages.
 *
 * Config ([route] section):
 *   routes: FILE     the route table (src/route/table.ts), relative to the profile; repeatable
 *   route: LINE      one route inline (repeatable)
 *   mode: full | bypass
 *
 * Drop reason: `no-route` (no prefix holds the destination: the kernel's ENETUNREACH).
 */
import { CtInfo } from '../conntrack/info.js';
import type { FlowTable } from '../conntrack/table.js';
import { Verdict, type Batch } from '../packet/batch.js';
import { readListFile } from '../pipeline/listfile.js';
import { ProfileError, profileErrors, type Section } from '../pipeline/profile.js';
import { registerStage, type StageContext } from '../pipeline/registry.js';
import type { Stage, StageReport } from '../pipeline/stage.js';
import { RouteError, RouteTable } from '../route/table.js';

const Reason = { NO_ROUTE: 0 } as const;
/** Per flow and direction: nothing known, the first packet's pod pass is in flight, or its outcome. */
const Kept = { NONE: 0, PENDING: 1, PASS: 2, DROP: 3 } as const;
const How = { NOT_SEEN: 0, NOT_IP: 1, FULL: 2, FULL_FIRST: 3, BYPASS: 4, NO_ROUTE: 5 } as const;

export function readRoutes(section: Section): RouteTable {
  const table = new RouteTable();
  const errors: ProfileError[] = [];
  for (const e of section.all('routes')) {
    const f = readListFile(section, e);
    for (const l of f.lines) {
      try { table.add(l.text, f.shown, l.line); } catch (x) {
        if (!(x instanceof RouteError)) throw x;
        errors.push(new ProfileError(f.shown, l.line, `[${section.name}] ${x.reason}`));
      }
    }
  }
  for (const e of section.all('route')) {
    try { table.add(e.value, e.file, e.line); } catch (x) {
      if (!(x instanceof RouteError)) throw x;
      throw section.error(e, x.reason);
    }
  }
  if (errors.length > 0) throw profileErrors(errors, section.file);
  if (table.size === 0) throw section.error(null, 'needs a route table ("routes: FILE" or "route: PREFIX [via GATEWAY] dev DEVICE")');
  return table;
}

export class RouteStage implements Stage {
  readonly name: string;
  readonly reasons: readonly string[] = ['no-route'];
  readonly table: RouteTable;
  readonly mode: 'full' | 'bypass';
  private readonly ct: FlowTable | null;
  /** Per flow entry and direction (2e + dir): Kept, the route, and a drop's stage and reason. */
  private kept: Uint8Array | null = null;
  private keptRoute: Int32Array | null = null;
  private keptStage: Uint8Array | null = null;
  private keptReason: Uint16Array | null = null;

  private readonly perDevice: Float64Array;
  private noRoute = 0;
  private fullPath = 0;
  private bypassed = 0;
  private how = new Uint8Array(0);
  private routeOf = new Int32Array(0);
  /** Each packet's flow slot (2e + dir) as the host conntrack gave it: a pod-side conntrack after route overwrites b.flow. */
  private slotOf = new Int32Array(0);
  /** The host conntrack's view of each packet (flow, direction, ctInfo), given back after the pod side's conntrack. */
  private hostFlow = new Int32Array(0);
  private hostDir = new Uint8Array(0);
  private hostInfo = new Uint8Array(0);
  /** This batch's first packets (full path, flow known) and redirected packets. */
  private firsts = new Int32Array(0);
  private nFirsts = 0;
  private parked = new Int32Array(0);
  private nParked = 0;
  private batch: Batch | null = null;

  constructor(section: Section, ctx: StageContext) {
    this.name = section.name;
    this.table = readRoutes(section);
    this.mode = section.choice('mode', ['full', 'bypass'] as const, 'full');
    this.ct = ctx.conntrack;
    if (this.mode === 'bypass') {
      if (!this.ct) throw section.error(section.get('mode') ?? null, 'bypass keeps each flow\'s result in its conntrack entry: put a conntrack stage before route');
      this.ct.column(Uint8Array, 2, (a) => { this.kept = a; });
      this.ct.column(Int32Array, 2, (a) => { this.keptRoute = a; });
      this.ct.column(Uint8Array, 2, (a) => { this.keptStage = a; });
      this.ct.column(Uint16Array, 2, (a) => { this.keptReason = a; });
    }
    this.perDevice = new Float64Array(this.table.devices.length);
  }

  process(b: Batch, self: number): void {
    if (this.how.length < b.capacity) {
      this.how = new Uint8Array(b.capacity);
      this.routeOf = new Int32Array(b.capacity);
      this.slotOf = new Int32Array(b.capacity);
      this.hostFlow = new Int32Array(b.capacity);
      this.hostDir = new Uint8Array(b.capacity);
      this.hostInfo = new Uint8Array(b.capacity);
      this.firsts = new Int32Array(b.capacity);
      this.parked = new Int32Array(b.capacity);
    }
    this.batch = b;
    this.nFirsts = 0;
    this.nParked = 0;
    const { how, routeOf } = this;
    const n = b.count;
    const { verdict, family, dst, flow, dir, ctInfo } = b;
    const table = this.table;
    const kept = this.kept;
    const keptRoute = this.keptRoute;
    this.hostFlow.set(flow.subarray(0, n));
    this.hostDir.set(dir.subarray(0, n));
    this.hostInfo.set(ctInfo.subarray(0, n));
    for (let i = 0; i < n; i++) {
      how[i] = How.NOT_SEEN;
      if (verdict[i] !== Verdict.PASS) continue;
      const f = family[i]!;
      if (f !== 4 && f !== 6) { how[i] = How.NOT_IP; continue; }
      const e = flow[i]!;
      const slot = 2 * e + dir[i]!;
      this.slotOf[i] = slot;
      // ICMP errors (RELATED) take the full path: their destination is not the flow's.
      const cached = kept !== null && e >= 0 && ctInfo[i] !== CtInfo.RELATED;
      if (cached) {
        const k = kept![slot]!;
        if (k !== Kept.NONE) {
          // The flow's result is known (or being learnt by its first packet): straight there.
          const r = keptRoute![slot]!;
          routeOf[i] = r;
          how[i] = How.BYPASS;
          this.bypassed++;
          if (r < 0) { this.drop(b, i, self); continue; }
          this.perDevice[table.routes[r]!.dev]!++;
          verdict[i] = Verdict.REDIRECTED;
          this.parked[this.nParked++] = i;
          continue;
        }
      }
      const r = table.lookup(f, dst, i << 2);
      this.fullPath++;
      routeOf[i] = r;
      if (cached) {
        kept![slot] = r < 0 ? Kept.DROP : Kept.PENDING;
        keptRoute![slot] = r;
        this.firsts[this.nFirsts++] = i;
        how[i] = How.FULL_FIRST;
      } else how[i] = How.FULL;
      if (r < 0) { this.drop(b, i, self); continue; }
      this.perDevice[table.routes[r]!.dev]!++;
    }
  }

  private drop(b: Batch, i: number, self: number): void {
    b.verdict[i] = Verdict.DROP;
    b.stage[i] = self;
    b.reason[i] = Reason.NO_ROUTE;
    this.noRoute++;
    this.how[i] = How.NO_ROUTE;
  }

  /** Every stage has seen the batch: the first packets' pod-side outcomes are known; give them to the redirected. */
  endBatch(): void {
    const b = this.batch;
    if (b === null) return;
    // After the pipeline a packet's flow is the host's again (a pod-side conntrack set its own):
    // what trace and the host's stages explain it by. The conntrack stages' endBatch do not read it.
    const n = b.count;
    b.flow.set(this.hostFlow.subarray(0, n));
    b.dir.set(this.hostDir.subarray(0, n));
    b.ctInfo.set(this.hostInfo.subarray(0, n));
    if (this.kept === null) return;
    const kept = this.kept;
    const { verdict } = b;
    const slotOf = this.slotOf;
    for (let k = 0; k < this.nFirsts; k++) {
      const i = this.firsts[k]!;
      const slot = slotOf[i]!;
      if (kept[slot] !== Kept.PENDING) continue;
      if (verdict[i] === Verdict.DROP) {
        kept[slot] = Kept.DROP;
        this.keptStage![slot] = b.stage[i]!;
        this.keptReason![slot] = b.reason[i]!;
      } else kept[slot] = Kept.PASS;
    }
    for (let k = 0; k < this.nParked; k++) {
      const i = this.parked[k]!;
      const slot = slotOf[i]!;
      if (kept[slot] === Kept.DROP) {
        verdict[i] = Verdict.DROP;
        b.stage[i] = this.keptStage![slot]!;
        b.reason[i] = this.keptReason![slot]!;
      } else verdict[i] = Verdict.PASS;
    }
    this.nParked = 0;
    this.nFirsts = 0;
  }

  describe(): StageReport {
    return { routes: this.table.size, devices: this.table.devices.length };
  }

  report(): StageReport {
    const dev: StageReport = {};
    this.table.devices.forEach((d, k) => { if (this.perDevice[k]! > 0) dev[d] = this.perDevice[k]!; });
    return {
      fibLookups: this.fullPath, // every full-path packet takes one FIB lookup
      fullPath: this.fullPath,
      bypassed: this.bypassed,
      egressByDevice: dev,
      noRoute: this.noRoute,
    };
  }

  explain(_b: Batch, i: number): string {
    const h = this.how[i]!;
    if (h === How.NOT_SEEN) return '-';
    if (h === How.NOT_IP) return 'not IP: not routed';
    const r = this.routeOf[i]!;
    const hop = r >= 0 ? this.table.describe(r) : 'no route';
    if (h === How.NO_ROUTE) return 'FIB: no route (network unreachable)';
    if (h === How.BYPASS) return `bypass (redirect_peer): straight to ${hop}, kept with the flow; the pod side's verdict kept too, its stages skipped`;
    return `FIB: ${hop} -> veth hop -> the pod namespace's own pass (the stages after ${this.name})${h === How.FULL_FIRST ? '; result kept with the flow' : ''}`;
  }
}

registerStage('route', 'the host FIB (longest-prefix match over a route table) and the path into a pod: full (veth hop, pod namespace\'s own stages) or bypass (redirect_peer)',
  (section: Section, ctx: StageContext) => new RouteStage(section, ctx));
