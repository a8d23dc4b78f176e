/**
 * The set evaluator, as ipset hash:net: entries are hashed by their exact destination prefix, one
 * hash table per family, and a lookup probes once per prefix length present (a /8 key, then a /16
 * key, ... as hash:net keeps a list of the CIDR sizes it holds). Each key's candidates, sorted by
 * entry index, are then checked for the other fields.
 *
 * First-match order survives because every probe is made and the lowest matching entry wins: a
 * candidate list is scanned in index order and left at its first match, or at the first entry not
 * below the best so far. "to any" entries sit under the /0 key of each family they match.
 */
import type { Batch } from '../packet/batch.js';
import { wordMask } from '../packet/cidr.js';
import type { Evaluator } from './evaluator.js';
import { restMatches, type RuleTable } from './rules.js';

const NO_MATCH = 0x7fffffff;
const K1 = 0x9e3779b1 | 0;
const K2 = 0x85ebca77 | 0;

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b | 0);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35 | 0);
  return h ^ (h >>> 16);
}

function hash4(k0: number, len: number): number {
  return fmix(Math.imul(len + 1, K1) ^ k0);
}

function hash6(k0: number, k1: number, k2: number, k3: number, len: number): number {
  let h = Math.imul(len + 1, K1) ^ k0;
  h = Math.imul(h, K2) ^ k1;
  h = Math.imul(h, K1) ^ k2;
  h = Math.imul(h, K2) ^ k3;
  return fmix(h);
}

/** One family's prefixes: lengths present, their masks, and an open-addressing table of keys. */
class PrefixHash {
  /** Distinct prefix lengths, shortest first, and their masks (4 int32 words each). */
  readonly lens: Int32Array;
  readonly masks: Int32Array;
  readonly slotMask: number;
  /** Per slot: prefix length (-1 = empty), key words (4), and its candidates [start, start + n). */
  readonly slotLen: Int16Array;
  readonly key: Int32Array;
  readonly start: Int32Array;
  readonly n: Int32Array;
  /** Entry indexes, grouped by key, ascending within a group. */
  readonly cand: Int32Array;

  constructor(t: RuleTable, family: 4 | 6) {
    const groups = new Map<string, { len: number; w: number[]; entries: number[] }>();
    for (let k = 0; k < t.count; k++) {
      const f = t.family[k];
      if (f !== 0 && f !== family) continue;
      const p = t.dstPrefix[k]!;
      const w = p.words.map((x) => x | 0);
      const id = `${p.len}/${w.join(',')}`;
      let g = groups.get(id);
      if (!g) { g = { len: p.len, w, entries: [] }; groups.set(id, g); }
      g.entries.push(k);
    }
    const lens = [...new Set([...groups.values()].map((g) => g.len))].sort((a, b) => a - b);
    this.lens = Int32Array.from(lens);
    this.masks = new Int32Array(4 * lens.length);
    lens.forEach((len, j) => { for (let x = 0; x < 4; x++) this.masks[4 * j + x] = wordMask(len, x) | 0; });
    let slots = 8;
    while (slots < 2 * groups.size) slots *= 2;
    this.slotMask = slots - 1;
    this.slotLen = new Int16Array(slots).fill(-1);
    this.key = new Int32Array(4 * slots);
    this.start = new Int32Array(slots);
    this.n = new Int32Array(slots);
    this.cand = new Int32Array(t.count);
    let at = 0;
    for (const g of groups.values()) {
      const [k0, k1, k2, k3] = g.w as [number, number, number, number];
      let s = (family === 4 ? hash4(k0, g.len) : hash6(k0, k1, k2, k3, g.len)) & this.slotMask;
      while (this.slotLen[s] !== -1) s = (s + 1) & this.slotMask;
      this.slotLen[s] = g.len;
      this.key.set(g.w, 4 * s);
      this.start[s] = at;
      this.n[s] = g.entries.length;
      for (const k of g.entries) this.cand[at++] = k;
    }
  }

  get keys(): number {
    let n = 0;
    for (const l of this.slotLen) if (l >= 0) n++;
    return n;
  }
}

export class SetEvaluator implements Evaluator {
  readonly kind = 'set';
  private readonly v4: PrefixHash;
  private readonly v6: PrefixHash;

  constructor(private readonly t: RuleTable) {
    this.v4 = new PrefixHash(t, 4);
    this.v6 = new PrefixHash(t, 6);
  }

  match(b: Batch, i: number): number {
    const fam = b.family[i];
    const best = fam === 4 ? this.match4(b, i) : fam === 6 ? this.match6(b, i) : NO_MATCH;
    return best === NO_MATCH ? -1 : best;
  }

  private match4(b: Batch, i: number): number {
    const h = this.v4;
    const { lens, masks, slotLen, key, slotMask } = h;
    const d = b.dst[i << 2]! | 0;
    let best = NO_MATCH;
    for (let j = 0; j < lens.length; j++) {
      const len = lens[j]!;
      const k0 = d & masks[j << 2]!;
      let s = hash4(k0, len) & slotMask;
      for (let l = slotLen[s]!; l >= 0; l = slotLen[s]!) {
        if (l === len && key[s << 2] === k0) { best = this.scan(h, s, best, b, i); break; }
        s = (s + 1) & slotMask;
      }
    }
    return best;
  }

  private match6(b: Batch, i: number): number {
    const h = this.v6;
    const { lens, masks, slotLen, key, slotMask } = h;
    const a = b.dst;
    const w = i << 2;
    const d0 = a[w]! | 0;
    const d1 = a[w + 1]! | 0;
    const d2 = a[w + 2]! | 0;
    const d3 = a[w + 3]! | 0;
    let best = NO_MATCH;
    for (let j = 0; j < lens.length; j++) {
      const len = lens[j]!;
      const m = j << 2;
      const k0 = d0 & masks[m]!;
      const k1 = d1 & masks[m + 1]!;
      const k2 = d2 & masks[m + 2]!;
      const k3 = d3 & masks[m + 3]!;
      let s = hash6(k0, k1, k2, k3, len) & slotMask;
      for (let l = slotLen[s]!; l >= 0; l = slotLen[s]!) {
        const q = s << 2;
        if (l === len && key[q] === k0 && key[q + 1] === k1 && key[q + 2] === k2 && key[q + 3] === k3) {
          best = this.scan(h, s, best, b, i);
          break;
        }
        s = (s + 1) & slotMask;
      }
    }
    return best;
  }

  /** The lowest of `best` and the first of slot s's candidates that matches packet i. */
  private scan(h: PrefixHash, s: number, best: number, b: Batch, i: number): number {
    const cand = h.cand;
    const end = h.start[s]! + h.n[s]!;
    for (let c = h.start[s]!; c < end; c++) {
      const k = cand[c]!;
      if (k >= best) break;
      if (restMatches(this.t, k, b, i)) return k;
    }
    return best;
  }

  stats(): Record<string, number> {
    return {
      entries: this.t.count,
      ipv4PrefixLengths: this.v4.lens.length,
      ipv6PrefixLengths: this.v6.lens.length,
      ipv4Keys: this.v4.keys,
      ipv6Keys: this.v6.keys,
    };
  }
}
