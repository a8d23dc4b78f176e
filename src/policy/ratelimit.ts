/**
 * Per-source rate limits: a token bucket per source address, in a fixed-size table of typed arrays
 * (as an XDP program keeps them in an LRU hash map).
 *
 * Each bucket holds up to `burst` tokens and gains `rate` tokens a second; a packet takes one token
 * or is over the limit. Time is the packets' own timestamps, so a replay decides the same way
 * every time and at any speed. To keep that arithmetic exact, time is counted in nanoseconds from
 * the first packet seen and tokens in billionths: a nanosecond adds `rate` units and a packet
 * costs 1e9, all integers well inside a double's 2^53 (for replays up to ~100 days). A timestamp
 * earlier than a bucket's last one (reordered input) adds nothing.
 *
 * The table is set-associative: a source hashes to a set of 8 slots. When the set is full, the
 * slot seen longest ago is reused: an entry idle for burst/rate seconds has refilled and forgets
 * nothing by going; evicting a busier one hands its source a fresh burst, and is counted
 * (`evictedActive`), so a table too small for the traffic shows in the report.
 */

const WAYS = 8;
const UNIT = 1e9;

export class SourceRateLimiter {
  /** Slots in the table (a multiple of 8, a power of two). */
  readonly capacity: number;
  private readonly setMask: number;
  /** Per slot: family (0 = empty), address (4 words), last time (ns since `base`), tokens (x 1e9). */
  private readonly fam: Uint8Array;
  private readonly key: Int32Array;
  private readonly last: Float64Array;
  private readonly tokens: Float64Array;
  private readonly full: number;
  /** Whole seconds of the first packet seen: time zero. */
  private base = 0;
  private started = false;

  inUse = 0;
  evictions = 0;
  evictedActive = 0;

  /** `rate` tokens a second, `burst` at most; `entries` rounds up to a power of two, at least 8. */
  constructor(readonly rate: number, readonly burst: number, entries: number) {
    if (!(rate > 0) || !(burst >= 1)) throw new RangeError('a rate limit needs rate > 0 and burst >= 1');
    let n = WAYS;
    while (n < entries) n *= 2;
    this.capacity = n;
    this.setMask = n / WAYS - 1;
    this.fam = new Uint8Array(n);
    this.key = new Int32Array(4 * n);
    this.last = new Float64Array(n);
    this.tokens = new Float64Array(n);
    this.full = burst * UNIT;
  }

  /**
   * Take a token for the packet from `family`/`addr[off..off+3]` at time sec + nsec: true when it
   * may pass, false when its source is over the limit.
   */
  take(family: number, addr: Uint32Array, off: number, sec: number, nsec: number): boolean {
    if (!this.started) { this.base = sec; this.started = true; }
    const now = (sec - this.base) * 1e9 + nsec;
    const a0 = addr[off]! | 0;
    const a1 = addr[off + 1]! | 0;
    const a2 = addr[off + 2]! | 0;
    const a3 = addr[off + 3]! | 0;
    let h = Math.imul(family, 0x9e3779b1 | 0) ^ a0;
    h = Math.imul(h, 0x85ebca77 | 0) ^ a1;
    h = Math.imul(h, 0x9e3779b1 | 0) ^ a2;
    h = Math.imul(h, 0x85ebca77 | 0) ^ a3;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b | 0);
    h ^= h >>> 13;
    const first = (h & this.setMask) * WAYS;
    const fam = this.fam;
    const key = this.key;
    const last = this.last;
    const tokens = this.tokens;
    let slot = -1;
    let oldest = first; // the least recently seen slot of the set (when the set is full)
    for (let s = first; s < first + WAYS; s++) {
      const f = fam[s]!;
      if (f === 0) { if (slot < 0) slot = s; continue; }
      const q = s << 2;
      if (f === family && key[q] === a0 && key[q + 1] === a1 && key[q + 2] === a2 && key[q + 3] === a3) {
        let t = tokens[s]!;
        const elapsed = now - last[s]!;
        if (elapsed > 0) {
          t += elapsed * this.rate;
          if (t > this.full) t = this.full;
          last[s] = now;
        }
        if (t >= UNIT) { tokens[s] = t - UNIT; return true; }
        tokens[s] = t;
        return false;
      }
      if (last[s]! < last[oldest]!) oldest = s;
    }
    if (slot < 0) {
      slot = oldest;
      this.evictions++;
      const idle = now - last[slot]!;
      if (tokens[slot]! + (idle > 0 ? idle * this.rate : 0) < this.full) this.evictedActive++;
    } else {
      this.inUse++;
    }
    fam[slot] = family;
    const q = slot << 2;
    key[q] = a0; key[q + 1] = a1; key[q + 2] = a2; key[q + 3] = a3;
    last[slot] = now;
    tokens[slot] = this.full - UNIT;
    return true;
  }
}
