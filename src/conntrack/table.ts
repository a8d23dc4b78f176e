/**
 * The flow table: conntrack entries in typed arrays, indexed by entry number (batch.flow[i]).
 *
 * Lookup is open addressing with linear probing over a power-of-two slot array that holds entry
 * numbers (so entries never move and a number stays valid while the flow lives); deletion shifts
 * the probe run back instead of leaving tombstones. Keys are the original-direction tuple; a packet
 * matches it either as is (original direction) or reversed (reply). Entry numbers come from a
 * free list; `gen` counts reuses so a stale reference can be detected.
 *
 * Measured before choosing (bench/conntrack.js): see the issue note; lru-cache as a flow table ran
 * 0.6-3.0 Mpps on 1M packets/199k flows where a numeric-keyed table ran 6.7-11.4 Mpps.
 */

/** Entry status bits (as the kernel's IPS_* bits that matter here). */
export const Status = { SEEN_REPLY: 1, ASSURED: 2, USED: 4 } as const;

/** Why an entry went away, for flow records and counters. */
export const Destroy = { TIMEOUT: 0, EVICTED: 1, REOPENED: 2, END: 3, RESET: 4 } as const;
export const DESTROY_NAMES = ['timeout', 'evicted', 'reopened', 'end-of-input', 'reset-before-reply'] as const;

export class FlowTable {
  readonly capacity: number;
  /** Entries in use. */
  count = 0;
  /** Most entries in use at once. */
  peak = 0;

  // --- the index ---
  private readonly slots: Int32Array; // entry + 1, 0 = empty
  private readonly mask: number;

  // --- per entry ---
  readonly hash: Uint32Array;
  readonly family: Uint8Array;
  readonly proto: Uint8Array;
  /** Original-direction addresses, 4 words per entry. */
  readonly src: Uint32Array;
  readonly dst: Uint32Array;
  /** Original-direction ports (ICMP: the query identifier in both). */
  readonly sport: Uint16Array;
  readonly dport: Uint16Array;
  /** TCP state (TcpState), 0 for other protocols. */
  readonly state: Uint8Array;
  readonly status: Uint8Array;
  /** Timestamps in seconds (packet time): first and last packet, and when the entry expires. */
  readonly first: Float64Array;
  readonly last: Float64Array;
  readonly expires: Float64Array;
  /** Per direction (2 * entry + dir): packets and bytes on the wire. */
  readonly packets: Float64Array;
  readonly bytes: Float64Array;
  /** Per direction: TCP packets the state machine ignored (let through, not counted, as the kernel). */
  readonly ignored: Float64Array;
  readonly ignoredBytes: Float64Array;
  /** Policy decision cached per flow (Decision.*), made once on the flow's first packet. */
  readonly decision: Uint8Array;
  /** Index of the rule that made the decision, -1 for the default. */
  readonly rule: Int32Array;
  /** Bumped each time the entry is freed. */
  readonly gen: Uint32Array;

  private readonly freeList: Int32Array;
  private freeTop: number;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 24) throw new RangeError(`flow table capacity must be 1..${1 << 24}`);
    this.capacity = capacity;
    let n = 2;
    while (n < capacity * 2) n <<= 1; // load factor <= 1/2 keeps probe runs short
    this.slots = new Int32Array(n);
    this.mask = n - 1;
    this.hash = new Uint32Array(capacity);
    this.family = new Uint8Array(capacity);
    this.proto = new Uint8Array(capacity);
    this.src = new Uint32Array(capacity * 4);
    this.dst = new Uint32Array(capacity * 4);
    this.sport = new Uint16Array(capacity);
    this.dport = new Uint16Array(capacity);
    this.state = new Uint8Array(capacity);
    this.status = new Uint8Array(capacity);
    this.first = new Float64Array(capacity);
    this.last = new Float64Array(capacity);
    this.expires = new Float64Array(capacity);
    this.packets = new Float64Array(capacity * 2);
    this.bytes = new Float64Array(capacity * 2);
    this.ignored = new Float64Array(capacity * 2);
    this.ignoredBytes = new Float64Array(capacity * 2);
    this.decision = new Uint8Array(capacity);
    this.rule = new Int32Array(capacity);
    this.gen = new Uint32Array(capacity);
    this.freeList = new Int32Array(capacity);
    for (let k = 0; k < capacity; k++) this.freeList[k] = capacity - 1 - k;
    this.freeTop = capacity;
  }

  /**
   * Find the entry for a tuple seen in either direction. Returns entry * 2 + direction
   * (0 original, 1 reply), or -1.
   */
  find(h: number, family: number, proto: number, S: Uint32Array, so: number, D: Uint32Array, dof: number, sp: number, dp: number): number {
    const slots = this.slots;
    const mask = this.mask;
    const hash = this.hash;
    const es = this.src;
    const ed = this.dst;
    let s = h & mask;
    for (;;) {
      const v = slots[s]!;
      if (v === 0) return -1;
      const e = v - 1;
      if (hash[e] === h && this.family[e] === family && this.proto[e] === proto) {
        const w = e << 2;
        if (this.sport[e] === sp && this.dport[e] === dp
          && es[w] === S[so] && es[w + 1] === S[so + 1] && es[w + 2] === S[so + 2] && es[w + 3] === S[so + 3]
          && ed[w] === D[dof] && ed[w + 1] === D[dof + 1] && ed[w + 2] === D[dof + 2] && ed[w + 3] === D[dof + 3]) {
          return e << 1;
        }
        if (this.sport[e] === dp && this.dport[e] === sp
          && es[w] === D[dof] && es[w + 1] === D[dof + 1] && es[w + 2] === D[dof + 2] && es[w + 3] === D[dof + 3]
          && ed[w] === S[so] && ed[w + 1] === S[so + 1] && ed[w + 2] === S[so + 2] && ed[w + 3] === S[so + 3]) {
          return (e << 1) | 1;
        }
      }
      s = (s + 1) & mask;
    }
  }

  /** True when no entry number is free. */
  get full(): boolean {
    return this.freeTop === 0;
  }

  /** Add an entry for the tuple as its original direction. The caller checked `full`. */
  insert(h: number, family: number, proto: number, S: Uint32Array, so: number, D: Uint32Array, dof: number, sp: number, dp: number, now: number): number {
    const e = this.freeList[--this.freeTop]!;
    const w = e << 2;
    this.hash[e] = h;
    this.family[e] = family;
    this.proto[e] = proto;
    this.src[w] = S[so]!; this.src[w + 1] = S[so + 1]!; this.src[w + 2] = S[so + 2]!; this.src[w + 3] = S[so + 3]!;
    this.dst[w] = D[dof]!; this.dst[w + 1] = D[dof + 1]!; this.dst[w + 2] = D[dof + 2]!; this.dst[w + 3] = D[dof + 3]!;
    this.sport[e] = sp;
    this.dport[e] = dp;
    this.state[e] = 0;
    this.status[e] = Status.USED;
    this.first[e] = now;
    this.last[e] = now;
    this.expires[e] = now;
    this.packets[e << 1] = 0; this.packets[(e << 1) | 1] = 0;
    this.bytes[e << 1] = 0; this.bytes[(e << 1) | 1] = 0;
    this.ignored[e << 1] = 0; this.ignored[(e << 1) | 1] = 0;
    this.ignoredBytes[e << 1] = 0; this.ignoredBytes[(e << 1) | 1] = 0;
    this.decision[e] = 0;
    this.rule[e] = -1;
    let s = h & this.mask;
    while (this.slots[s] !== 0) s = (s + 1) & this.mask;
    this.slots[s] = e + 1;
    if (++this.count > this.peak) this.peak = this.count;
    return e;
  }

  /** Remove an entry: shift later members of its probe run back so no tombstone is needed. */
  remove(e: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let i = this.hash[e]! & mask;
    while (slots[i] !== e + 1) i = (i + 1) & mask;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const v = slots[j]!;
      if (v === 0) break;
      const home = this.hash[v - 1]! & mask;
      // Move v back into the hole at i unless its home lies cyclically in (i, j].
      const between = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!between) {
        slots[i] = v;
        i = j;
      }
    }
    slots[i] = 0;
    this.status[e] = 0;
    this.gen[e]!++;
    this.freeList[this.freeTop++] = e;
    this.count--;
  }

  /**
   * A victim for a new flow when the table is full, as the kernel's early_drop: among the entries
   * in the probe neighbourhood of `h`, the least recently used one that is not assured (an entry
   * past its timeout counts as not assured). -1 when every candidate is assured.
   */
  victim(h: number, now: number, scan: number): number {
    const slots = this.slots;
    const mask = this.mask;
    let best = -1;
    let bestLast = Infinity;
    let s = h & mask;
    for (let k = 0, seen = 0; k <= mask && seen < scan; k++, s = (s + 1) & mask) {
      const v = slots[s]!;
      if (v === 0) continue;
      seen++;
      const e = v - 1;
      if (this.expires[e]! < now) return e;
      if ((this.status[e]! & Status.ASSURED) === 0 && this.last[e]! < bestLast) { best = e; bestLast = this.last[e]!; }
    }
    return best;
  }

  /** Entries in use, for reports: a callback per entry (not on the packet path). */
  forEach(fn: (e: number) => void): void {
    for (let e = 0; e < this.capacity; e++) if (this.status[e] !== 0) fn(e);
  }
}
