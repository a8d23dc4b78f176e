/**
 * conntrack: marks each flow once. The first packet of a flow creates an entry (NEW) and later
 * stages (policy) cache their decision in it; every later packet only pays a lookup and a state
 * update (ESTABLISHED / RELATED / INVALID). Semantics and defaults follow Linux nf_conntrack; see
 * src/conntrack/tracker.ts for what is modelled and what is not.
 *
 * Config ([conntrack] section of a profile):
 *   capacity: 262144            entries (nf_conntrack_max)
 *   when-full: evict            evict a non-assured entry (kernel early_drop), or drop-new
 *   invalid: drop               drop INVALID packets (as -m conntrack --ctstate INVALID -j DROP), or accept
 *   loose: yes                  pick up TCP flows mid-stream from an ACK (nf_conntrack_tcp_loose)
 *   timeout-tcp-established: 5d, timeout-udp: 30s, ... (see TIMEOUT_KEYS)
 */
import type { Batch } from '../packet/batch.js';
import * as batchModule from '../packet/batch.js';
import { CT_INFO_NAMES } from '../conntrack/info.js';
import { Destroy, DESTROY_NAMES, Status, type FlowTable } from '../conntrack/table.js';
import * as tableModule from '../conntrack/table.js';
import { TCP_STATE_NAMES, TcpState } from '../conntrack/tcp.js';
import { Conntrack, CT_REASONS, defaultTimeouts, type Timeouts } from '../conntrack/tracker.js';
import * as trackerModule from '../conntrack/tracker.js';
import { protoName } from '../packet/format.js';
import type { Section } from '../pipeline/profile.js';
import { registerStage, type StageContext } from '../pipeline/registry.js';
import { peakOf, type MergeRules, type ReportSeries } from '../pipeline/merge.js';
import type { Stage, StageReport } from '../pipeline/stage.js';
// What the per-packet code uses of other modules, as this module's own consts (see
// src/conntrack/tracker.ts): V8 reads an imported binding through its module cell at every use.
const { Verdict } = batchModule;
const { SWEEP_EVERY, SWEEP_SLOTS } = tableModule;
const { CT_OK, R_TABLE_FULL } = trackerModule;

const TIMEOUT_KEYS: [key: string, set: (t: Timeouts, v: number) => void][] = [
  ['timeout-tcp-syn-sent', (t, v) => { t.tcp[TcpState.SYN_SENT] = v; }],
  ['timeout-tcp-syn-recv', (t, v) => { t.tcp[TcpState.SYN_RECV] = v; }],
  ['timeout-tcp-established', (t, v) => { t.tcp[TcpState.ESTABLISHED] = v; }],
  ['timeout-tcp-fin-wait', (t, v) => { t.tcp[TcpState.FIN_WAIT] = v; }],
  ['timeout-tcp-close-wait', (t, v) => { t.tcp[TcpState.CLOSE_WAIT] = v; }],
  ['timeout-tcp-last-ack', (t, v) => { t.tcp[TcpState.LAST_ACK] = v; }],
  ['timeout-tcp-time-wait', (t, v) => { t.tcp[TcpState.TIME_WAIT] = v; }],
  ['timeout-tcp-close', (t, v) => { t.tcp[TcpState.CLOSE] = v; }],
  ['timeout-udp', (t, v) => { t.udp = v; }],
  ['timeout-udp-stream', (t, v) => { t.udpStream = v; }],
  ['timeout-icmp', (t, v) => { t.icmp = v; }],
  ['timeout-generic', (t, v) => { t.generic = v; }],
];

export class ConntrackStage implements Stage {
  readonly name: string;
  readonly reasons: readonly string[] = CT_REASONS;
  readonly ct: Conntrack;
  private readonly dropInvalid: boolean;
  private now = 0;
  /** What FlowTable.readAhead() read, kept so that its reads are not optimised away (never looked at). */
  readAheadSum = 0;
  /** Packet number at which the next expiry sweep runs. */
  private nextSweep = SWEEP_EVERY;
  /** Snapshot of the table when the input ended (before the flush). */
  private atEnd: StageReport | null = null;

  /** Entries configured, and the workers they are split over. */
  private readonly capacity: number;
  private readonly shards: number;

  constructor(section: Section, shards = 1) {
    this.name = section.name;
    const timeouts = defaultTimeouts();
    for (const [key, set] of TIMEOUT_KEYS) {
      const e = section.get(key);
      if (e) set(timeouts, section.seconds(key, 0));
    }
    this.capacity = section.integer('capacity', 262144, 1, 1 << 24);
    this.shards = shards;
    this.ct = new Conntrack({
      // With workers the flows are sharded, so each worker's table holds its share: the total
      // stays what the profile says.
      capacity: Math.ceil(this.capacity / shards),
      whenFull: section.choice('when-full', ['evict', 'drop-new'] as const, 'evict'),
      loose: section.boolean('loose', true),
      timeouts,
    });
    this.dropInvalid = section.choice('invalid', ['drop', 'accept'] as const, 'drop') === 'drop';
  }

  process(b: Batch, self: number): void {
    const n = b.count;
    const ct = this.ct;
    const table = ct.table;
    const dropInvalid = this.dropInvalid;
    // The sweep's clock is the capture's: the latest time of any packet so far, whoever owns it
    // and whatever its verdict, so every worker's table ages the same way.
    let clock = this.now;
    let nextSweep = this.nextSweep;
    // The flows' memory first, all at once, then packet by packet (FlowTable.readAhead).
    this.readAheadSum = table.readAhead(b.hash, b.verdict, n);
    for (let i = 0; i < n; i++) {
      const t = b.tsSec[i]! + b.tsNsec[i]! * 1e-9;
      if (t > clock) clock = t;
      // The sweep runs at fixed packet numbers (every SWEEP_EVERY-th), never at batch ends: no
      // batch size changes what it removes and when. (A compare, not num % 256: that is a
      // floating-point remainder on a Float64Array element.)
      if (b.num[i]! >= nextSweep) {
        // Also a sample point of the live-flow count (the report's peak): at the same packet
        // numbers in every worker, so the workers' counts add up to one pipeline's.
        table.sample(clock);
        ct.sweep(clock, SWEEP_SLOTS);
        nextSweep = (Math.floor(b.num[i]! / SWEEP_EVERY) + 1) * SWEEP_EVERY;
      }
      if (b.verdict[i] !== Verdict.PASS) continue;
      const r = ct.track(b, i);
      if (r !== CT_OK && (dropInvalid || r === R_TABLE_FULL)) {
        b.verdict[i] = Verdict.DROP;
        b.stage[i] = self;
        b.reason[i] = r;
      }
    }
    this.now = clock;
    this.nextSweep = nextSweep;
  }

  /** Every stage has seen the batch: entries that ended in it may be reused now. */
  endBatch(): void {
    this.ct.table.release();
  }

  /**
   * Each worker holds its share of the flows: counts add up, but the most flows live at once is
   * the peak of the workers' summed live counts, sampled at the same packet numbers.
   */
  readonly merge: MergeRules = { peakEntries: 'peak' };

  series(): ReportSeries {
    return { peakEntries: this.ct.table.liveSeries() };
  }

  describe(): StageReport {
    return { capacity: this.capacity, ...(this.shards > 1 ? { tables: this.shards, capacityPerTable: this.ct.table.capacity } : {}) };
  }

  watchFlows(listener: (table: FlowTable, entry: number, why: number) => void): void {
    this.ct.table.onEnd(listener);
  }

  finish(): void {
    this.atEnd = this.snapshot();
    // The last sample point: the flows live at the end of input (activeAtEnd's total).
    this.ct.table.sample(this.now);
    this.ct.flush(this.now);
  }

  private snapshot(): StageReport {
    const t = this.ct.table;
    const now = this.now;
    // Counted by number, named once at the end: a name looked up and a property of a growing object
    // set for every live entry made this ~12 ms of a 3M-packet replay's end (135k entries). The
    // names keep the order in which the walk first met them, as the report always showed them.
    const byP = new Float64Array(256);
    const byS = new Float64Array(TCP_STATE_NAMES.length);
    const pOrder: number[] = [];
    const sOrder: number[] = [];
    let active = 0;
    t.forEach((e) => {
      if (t.expires(e) < now) return;
      active++;
      const p = t.proto(e);
      if (byP[p]!++ === 0) pOrder.push(p);
      if (p === 6) {
        const s = t.state(e);
        if (byS[s]!++ === 0) sOrder.push(s);
      }
    });
    const byProto: StageReport = {};
    for (const p of pOrder) byProto[protoName(p)] = byP[p]!;
    const tcp: StageReport = {};
    for (const s of sOrder) tcp[TCP_STATE_NAMES[s]!] = byS[s]!;
    return { total: active, byProtocol: byProto, tcpByState: tcp };
  }

  report(): StageReport {
    const ct = this.ct;
    const created: StageReport = {};
    let total = 0;
    for (let p = 0; p < 256; p++) if (ct.created[p]! > 0) { created[protoName(p)] = ct.created[p]!; total += ct.created[p]!; }
    const destroyed: StageReport = {};
    DESTROY_NAMES.forEach((name, k) => { if (ct.destroyed[k]! > 0 && name !== 'end-of-input') destroyed[name] = ct.destroyed[k]!; });
    const packets: StageReport = {};
    CT_INFO_NAMES.forEach((name, k) => { if (ct.info[k]! > 0) packets[name] = ct.info[k]!; });
    const invalid: StageReport = {};
    CT_REASONS.forEach((name, k) => { if (ct.invalid[k]! > 0) invalid[name] = ct.invalid[k]!; });
    // The table filled: flows were pushed out or packets turned away, so results depend on the
    // capacity setting. Present only then, for the report's warning and for JSON readers.
    const evicted = ct.destroyed[Destroy.EVICTED]!;
    const refused = ct.invalid[R_TABLE_FULL]!;
    const full: StageReport = evicted > 0 || refused > 0 ? { tableFull: { flowsEvicted: evicted, packetsDropped: refused } } : {};
    return {
      ...full,
      flowsCreated: total,
      createdByProtocol: created,
      destroyed,
      activeAtEnd: this.atEnd ?? this.snapshot(),
      peakEntries: peakOf(ct.table.liveSeries()),
      packetsByState: packets,
      invalidByReason: invalid,
      tcpIgnored: ct.ignored,
      fragmentsFollowed: ct.fragmentsFollowed,
      fragmentsWithoutFirst: ct.fragmentsOrphaned,
    };
  }

  explain(b: Batch, i: number): string {
    const info = CT_INFO_NAMES[b.ctInfo[i]!]!;
    const e = b.flow[i]!;
    if (e < 0) return info + (b.verdict[i] !== Verdict.PASS ? ` (${CT_REASONS[b.reason[i]!]})` : '');
    const t = this.ct.table;
    const state = t.proto(e) === 6 ? ` ${TCP_STATE_NAMES[t.state(e)]}` : '';
    const flags = `${(t.status(e) & Status.SEEN_REPLY) ? ' seen-reply' : ''}${(t.status(e) & Status.ASSURED) ? ' assured' : ''}`;
    const dir = b.dir[i] === 0 ? 'original' : 'reply';
    const orig = t.packets(e, 0);
    return `${info} flow #${e}${state}${flags}, ${dir} direction; so far ${orig} packet${orig === 1 ? '' : 's'} in the original direction and ${t.packets(e, 1)} in reply`;
  }
}

registerStage('conntrack', 'track flows (Linux nf_conntrack states and timeouts); later stages decide once per flow',
  (section: Section, ctx: StageContext) => {
    const s = new ConntrackStage(section, ctx.shards);
    ctx.conntrack = s.ct.table;
    return s;
  });

