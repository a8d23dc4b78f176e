/**
 * What a capture holds: packets and bytes by link type, L3 and L4 protocol, malformed packets by
 * reason. The pipeline counts a batch from what decodeBatch tallied as it went, and the packets its
 * fast path left one by one (countHeld); counting goes into typed arrays indexed by the code, so it
 * allocates nothing.
 */
import { LinkType, linkTypeName } from '../capture/linktype.js';
import type { Batch } from './batch.js';
import * as batchModule from './batch.js';
import { MALFORMED_NAMES, Proto } from './decode.js';
import { l3Name, protoName } from './format.js';
// What the per-packet code uses of other modules, as this module's own consts (see
// src/conntrack/tracker.ts): V8 reads an imported binding through its module cell at every use.
const { Frag, L3 } = batchModule;
const ET_IPV4 = L3.IPV4;
const ET_IPV6 = L3.IPV6;
const LT_ETHERNET = LinkType.ETHERNET;
const P_TCP = Proto.TCP;
const P_UDP = Proto.UDP;

export interface SummaryJson {
  packets: number;
  bytes: number;
  capturedBytes: number;
  firstTimestamp: number | null;
  lastTimestamp: number | null;
  captureSeconds: number;
  linkTypes: Record<string, number>;
  l3: Record<string, number>;
  l4: Record<string, number>;
  vlanTagged: number;
  fragments: number;
  snaplenTruncated: number;
  malformed: number;
  malformedByReason: Record<string, number>;
}

/**
 * Counts by a 16-bit code (link type, ethertype), of which a capture has a handful: 256 slots of
 * (code, count), a home slot per code (see add), linear probing for a few slots past it, and a Map
 * for the rest (a damaged capture can hold thousands of ethertypes). 65,536 counters per kind were
 * 1 MB a summary, and the report's scan of them read every page: here a first read of a page
 * faults as a write does (~13 us), 3.7 ms a report, and compare writes one per pipeline.
 */
class CodeCounts {
  private readonly key = new Int32Array(256).fill(-1);
  private readonly count = new Float64Array(256);
  private readonly more = new Map<number, number>();

  /** Count `n` packets of `code`. Its home slot is its two bytes folded, so 0x0800 and 0 (IPv4, non-IP) do not meet. */
  add(code: number, n = 1): void {
    const home = (code ^ (code >>> 8)) & 255;
    if (this.key[home] === code) this.count[home]! += n;
    else this.probe(code, home, n);
  }

  /** A code not counted in its home slot: that slot if free, the next few, then the Map. */
  private probe(code: number, home: number, n: number): void {
    for (let j = 0; j < 8; j++) {
      const k = (home + j) & 255;
      if (this.key[k] === code) { this.count[k]! += n; return; }
      if (this.key[k] === -1) { this.key[k] = code; this.count[k] = n; return; }
    }
    this.more.set(code, (this.more.get(code) ?? 0) + n);
  }

  /** (code, count) pairs, by code. */
  entries(): [number, number][] {
    const out: [number, number][] = [...this.more];
    for (let k = 0; k < 256; k++) if (this.key[k]! >= 0) out.push([this.key[k]!, this.count[k]!]);
    return out.sort((x, y) => x[0] - y[0]);
  }
}

/**
 * The fields of a decoded packet that the summary counts and a stage may rewrite (encrypt's outer
 * header). No stage writes the others it reads: lengths, link type, malformed, VLAN.
 */
type RewritableFields = Pick<Batch, 'l3Type' | 'family' | 'proto' | 'frag'>;

/** A copy of those fields for a batch's packets, as decoded (TrafficSummary.hold). */
class HeldFields implements RewritableFields {
  readonly l3Type: Uint16Array;
  readonly family: Uint8Array;
  readonly proto: Uint8Array;
  readonly frag: Uint8Array;
  constructor(readonly length: number) {
    this.l3Type = new Uint16Array(length);
    this.family = new Uint8Array(length);
    this.proto = new Uint8Array(length);
    this.frag = new Uint8Array(length);
  }
}

/** TrafficSummary.route: a batch not this summary's to count, counted from the tallies, or across ranges. */
const Route = { NONE: 0, TALLIES: 1, SPLIT: 2 } as const;

export class TrafficSummary {
  packets = 0;
  bytes = 0;
  capturedBytes = 0;
  vlanTagged = 0;
  fragments = 0;
  snaplenTruncated = 0;
  malformed = 0;
  firstSec = -1; firstNsec = 0;
  lastSec = -1; lastNsec = 0;
  private readonly byLink = new CodeCounts();
  private readonly byL3 = new CodeCounts();
  /** L4 protocol of IPv4 at [p], of IPv6 at [256 + p]. */
  private readonly byL4 = new Float64Array(512);
  private readonly byReason = new Float64Array(256);
  private held = new HeldFields(0);
  private mask = new Uint8Array(0);

  /**
   * `share`: this is worker `me` of `of`, each of which reads the whole capture. The workers'
   * summaries must add up to the capture's, so each counts the packets numbered in its share of
   * the ranges of `rangePackets` (range k is worker k mod `of`'s), whole batches from the
   * decoder's tallies. (Counting by flow shard instead, as the stages do, took a pass over every
   * packet's fields in every worker.)
   */
  constructor(private readonly share: { me: number; of: number } | null = null, private readonly rangePackets = 1 << 16) {}

  /**
   * Count every packet of the batch from its fields, as they are now (the reference the tallies
   * are tested against). The first and last timestamps are always the batch's, so every worker
   * agrees on the capture's duration; packets without a timestamp (pcapng Simple Packet Blocks)
   * are left out of them.
   */
  add(b: Batch): void {
    this.addLengths(b, null);
    this.classify(b, b, null, b.count, null);
    this.addTimes(b);
  }

  /** The same counts for a batch exactly as decodeBatch left it: hold, then countHeld at once. */
  addDecoded(b: Batch): void {
    this.hold(b);
    this.countHeld(b);
  }

  /**
   * First half of counting a batch exactly as decodeBatch left it, before any stage runs: keep a
   * copy of the fields a stage may rewrite (encrypt makes a packet IPv4/UDP) for the packets that
   * countHeld will look at one by one. The summary describes the capture as read, and a batch a
   * stage failed on is never counted (the run's report stops before it): the runner calls
   * countHeld only once every stage is done with the batch.
   */
  hold(b: Batch): void {
    const how = this.route(b);
    if (how === Route.NONE || (how === Route.TALLIES && b.slowCount === 0)) return;
    const held = this.held.length < b.capacity ? (this.held = new HeldFields(b.capacity)) : this.held;
    const n = b.count;
    held.l3Type.set(b.l3Type.subarray(0, n));
    held.family.set(b.family.subarray(0, n));
    held.proto.set(b.proto.subarray(0, n));
    held.frag.set(b.frag.subarray(0, n));
  }

  /**
   * Second half: count the batch held, from what the decoder counted as it went (Batch.wireBytes
   * .. fast6Udp), so only the packets its fast path did not take (Batch.slow) are looked at one by
   * one. A worker's summary counts its share of the packet-number ranges (see `share`): a batch
   * wholly in another worker's range is not counted, one across two ranges packet by packet.
   */
  countHeld(b: Batch): void {
    const how = this.route(b);
    if (how === Route.NONE) { this.addTimes(b); return; }
    if (how === Route.SPLIT) {
      const mine = this.rangeMask(b);
      this.addLengths(b, mine);
      this.classify(b, this.held, null, b.count, mine);
      this.addTimes(b);
      return;
    }
    this.packets += b.count;
    this.bytes += b.wireBytes;
    this.capturedBytes += b.capBytes;
    this.snaplenTruncated += b.cut;
    const fast = b.count - b.slowCount;
    if (fast > 0) {
      const { byL3, byL4 } = this;
      const fast6 = fast - b.fast4;
      this.byLink.add(LT_ETHERNET, fast);
      if (b.fast4 > 0) byL3.add(ET_IPV4, b.fast4);
      if (fast6 > 0) byL3.add(ET_IPV6, fast6);
      byL4[P_TCP]! += b.fast4 - b.fast4Udp;
      byL4[P_UDP]! += b.fast4Udp;
      byL4[256 + P_TCP]! += fast6 - b.fast6Udp;
      byL4[256 + P_UDP]! += b.fast6Udp;
      this.vlanTagged += b.fastTagged;
    }
    if (b.slowCount > 0) this.classify(b, this.held, b.slow, b.slowCount, null);
    this.addTimes(b);
  }

  /** How countHeld counts this batch: its packet numbers are consecutive, so its ends decide. */
  private route(b: Batch): number {
    const share = this.share;
    if (share === null || b.count === 0) return Route.TALLIES;
    const r0 = Math.floor((b.num[0]! - 1) / this.rangePackets);
    const r1 = Math.floor((b.num[b.count - 1]! - 1) / this.rangePackets);
    if (r0 !== r1) return Route.SPLIT;
    return r0 % share.of === share.me ? Route.TALLIES : Route.NONE;
  }

  /** For a batch across ranges: 1 for the packets in this worker's ranges. */
  private rangeMask(b: Batch): Uint8Array {
    if (this.mask.length < b.capacity) this.mask = new Uint8Array(b.capacity);
    const { mask, rangePackets } = this;
    const { me, of } = this.share!;
    for (let i = 0; i < b.count; i++) mask[i] = Math.floor((b.num[i]! - 1) / rangePackets) % of === me ? 1 : 0;
    return mask;
  }

  /** Packets, bytes on the wire and captured, and packets cut by the snap length. */
  private addLengths(b: Batch, mine: Uint8Array | null): void {
    const n = b.count;
    let counted = n;
    // Sums in locals, added to the fields once a batch: a field of `this` is read and written
    // through the object at every use. (Integers below 2^53: the same sums in any order.)
    let bytes = 0;
    let captured = 0;
    let cut = 0;
    for (let i = 0; i < n; i++) {
      if (mine !== null && mine[i] === 0) { counted--; continue; }
      const wire = b.wireLen[i]!;
      const cap = b.capLen[i]!;
      bytes += wire;
      captured += cap;
      if (cap < wire) cut++;
    }
    this.bytes += bytes;
    this.capturedBytes += captured;
    this.snaplenTruncated += cut;
    this.packets += counted;
  }

  /**
   * Link type, malformed reason, L3 and L4 protocol, VLAN tag and fragment of packets
   * `list[0 .. count)` (of packets 0 .. count when `list` is null), those of `mine` only; the
   * fields a stage may rewrite read from `f` (the batch, or the copy hold made).
   */
  private classify(b: Batch, f: RewritableFields, list: Int32Array | null, count: number, mine: Uint8Array | null): void {
    const { byLink, byL3, byL4, byReason } = this;
    let bad = 0;
    let tagged = 0;
    let fragments = 0;
    // A batch's link type rarely changes and most of its packets are IPv4 or IPv6: those are
    // counted in locals too (a run of one link type; the two ethertypes), the rest as they come.
    let link = -1;
    let linkRun = 0;
    let v4 = 0;
    let v6 = 0;
    for (let k = 0; k < count; k++) {
      const i = list === null ? k : list[k]!;
      if (mine !== null && mine[i] === 0) continue;
      const lt = b.linkType[i]!;
      if (lt === link) linkRun++;
      else {
        if (linkRun > 0) byLink.add(link, linkRun);
        link = lt;
        linkRun = 1;
      }
      const m = b.malformed[i]!;
      if (m !== 0) { bad++; byReason[m]!++; continue; }
      const et = f.l3Type[i]!;
      if (et === ET_IPV4) v4++;
      else if (et === ET_IPV6) v6++;
      else byL3.add(et);
      const fam = f.family[i]!;
      if (fam !== 0) byL4[(fam === 6 ? 256 : 0) + f.proto[i]!]!++;
      if (b.vlan[i] !== 0) tagged++;
      if (f.frag[i] !== Frag.NONE) fragments++;
    }
    if (linkRun > 0) byLink.add(link, linkRun);
    if (v4 > 0) byL3.add(ET_IPV4, v4);
    if (v6 > 0) byL3.add(ET_IPV6, v6);
    this.malformed += bad;
    this.vlanTagged += tagged;
    this.fragments += fragments;
  }

  /** The capture's first and last timestamps, from the batch's first and last packet that has one. */
  private addTimes(b: Batch): void {
    const n = b.count;
    let first = 0;
    while (first < n && b.noTime[first] === 1) first++;
    if (first < n) {
      let last = n - 1;
      while (b.noTime[last] === 1) last--;
      if (this.firstSec < 0) { this.firstSec = b.tsSec[first]!; this.firstNsec = b.tsNsec[first]!; }
      this.lastSec = b.tsSec[last]!; this.lastNsec = b.tsNsec[last]!;
    }
  }

  /** Seconds between the first and last packet, as the file orders them. */
  get captureSeconds(): number {
    if (this.firstSec < 0) return 0;
    return this.lastSec - this.firstSec + (this.lastNsec - this.firstNsec) / 1e9;
  }

  toJSON(): SummaryJson {
    const pick = (a: Float64Array, name: (k: number) => string): Record<string, number> => {
      const out: Record<string, number> = {};
      for (let k = 0; k < a.length; k++) if (a[k]! > 0) out[name(k)] = (out[name(k)] ?? 0) + a[k]!;
      return out;
    };
    const byCode = (c: CodeCounts, name: (k: number) => string): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const [k, v] of c.entries()) out[name(k)] = (out[name(k)] ?? 0) + v;
      return out;
    };
    const l4: Record<string, number> = {};
    for (let p = 0; p < 256; p++) {
      if (this.byL4[p]! > 0) l4[`ipv4/${protoName(p)}`] = this.byL4[p]!;
      if (this.byL4[256 + p]! > 0) l4[`ipv6/${protoName(p)}`] = this.byL4[256 + p]!;
    }
    return {
      packets: this.packets,
      bytes: this.bytes,
      capturedBytes: this.capturedBytes,
      firstTimestamp: this.firstSec < 0 ? null : this.firstSec + this.firstNsec / 1e9,
      lastTimestamp: this.lastSec < 0 ? null : this.lastSec + this.lastNsec / 1e9,
      captureSeconds: this.captureSeconds,
      linkTypes: byCode(this.byLink, (k) => `${k}/${linkTypeName(k)}`),
      l3: byCode(this.byL3, l3Name),
      l4,
      vlanTagged: this.vlanTagged,
      fragments: this.fragments,
      snaplenTruncated: this.snaplenTruncated,
      malformed: this.malformed,
      malformedByReason: pick(this.byReason, (k) => MALFORMED_NAMES[k] ?? `reason-${k}`),
    };
  }
}

/** The summary of a capture from the summaries of its shards (numbers add; times are shared). */
export function addSummaries(a: SummaryJson, b: SummaryJson): SummaryJson {
  const add = (x: Record<string, number>, y: Record<string, number>): Record<string, number> => {
    const out = { ...x };
    for (const [k, v] of Object.entries(y)) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  return {
    ...a,
    packets: a.packets + b.packets,
    bytes: a.bytes + b.bytes,
    capturedBytes: a.capturedBytes + b.capturedBytes,
    linkTypes: add(a.linkTypes, b.linkTypes),
    l3: add(a.l3, b.l3),
    l4: add(a.l4, b.l4),
    vlanTagged: a.vlanTagged + b.vlanTagged,
    fragments: a.fragments + b.fragments,
    snaplenTruncated: a.snaplenTruncated + b.snaplenTruncated,
    malformed: a.malformed + b.malformed,
    malformedByReason: add(a.malformedByReason, b.malformedByReason),
  };
}
