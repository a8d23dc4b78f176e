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
import * as hashModule from '../packet/hash.js';
import type { Evaluator } from './evaluator.js';
import type { RuleTable } from './rules.js';
import * as rulesModule from './rules.js';
// The per-packet code reads imports as this module's own consts: V8 reads an imported binding
// through its module cell at every use (src/conntrack/layout.ts).
const { restMatches } = rulesModule;
const { fmix } = hashModule;

const NO_MATCH = 0x7fffffff;
const K1 = 0x9e3779b1 | 0;
const K2 = 0x85ebca77 | 0;

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

/** Words per slot, and where each field sits in a slot (one cache line holds two slots). */
const SLOT = 8;
const KEY = 1;
const START = 5;
const COUNT = 6;

/** One family's prefixes: lengths present, their masks, and an open-addressing table of keys. */
class PrefixHash {
  /** Distinct prefix lengths, shortest first, and their masks (4 int32 words each). */
  readonly lens: Int32Array;
  readonly masks: Int32Array;
  readonly slotMask: number;
  /**
   * Slot s at SLOT * s: [prefix length (-1 = empty), key words 0..3, first candidate, candidates,
   * unused]: a probe reads one cache line.
   */
  readonly slots: Int32Array;
  /** Entry indexes, grouped by key, ascending within a group. */
  readonly cand: Int32Array;
  /** Distinct destination prefixes. */
  readonly keys: number;

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
    this.slots = new Int32Array(SLOT * slots);
    for (let s = 0; s < slots; s++) this.slots[SLOT * s] = -1;
    this.cand = new Int32Array(t.count);
    let at = 0;
    for (const g of groups.values()) {
      const [k0, k1, k2, k3] = g.w as [number, number, number, number];
      let s = (family === 4 ? hash4(k0, g.len) : hash6(k0, k1, k2, k3, g.len)) & this.slotMask;
      while (this.slots[SLOT * s] !== -1) s = (s + 1) & this.slotMask;
      this.slots[SLOT * s] = g.len;
      this.slots.set(g.w, SLOT * s + KEY);
      this.slots[SLOT * s + START] = at;
      this.slots[SLOT * s + COUNT] = g.entries.length;
      for (const k of g.entries) this.cand[at++] = k;
    }
    this.keys = groups.size;
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
    const { lens, masks, slots, slotMask } = h;
    const wrap = slots.length - 1;
    const d = b.dst[i << 2]! | 0;
    let best = NO_MATCH;
    for (let j = 0; j < lens.length; j++) {
      const len = lens[j]!;
      const k0 = d & masks[j << 2]!;
      let q = (hash4(k0, len) & slotMask) * SLOT;
      for (let l = slots[q]!; l >= 0; l = slots[q]!) {
        if (l === len && slots[q + KEY] === k0) { best = this.scan(h, q, best, b, i); break; }
        q = (q + SLOT) & wrap;
      }
    }
    return best;
  }

  private match6(b: Batch, i: number): number {
    const h = this.v6;
    const { lens, masks, slots, slotMask } = h;
    const wrap = slots.length - 1;
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
      let q = (hash6(k0, k1, k2, k3, len) & slotMask) * SLOT;
      for (let l = slots[q]!; l >= 0; l = slots[q]!) {
        if (l === len && slots[q + KEY] === k0 && slots[q + KEY + 1] === k1 && slots[q + KEY + 2] === k2 && slots[q + KEY + 3] === k3) {
          best = this.scan(h, q, best, b, i);
          break;
        }
        q = (q + SLOT) & wrap;
      }
    }
    return best;
  }

  /** The lowest of `best` and the first of the candidates of the slot at q that matches packet i. */
  private scan(h: PrefixHash, q: number, best: number, b: Batch, i: number): number {
    const cand = h.cand;
    const first = h.slots[q + START]!;
    const end = first + h.slots[q + COUNT]!;
    for (let c = first; c < end; c++) {
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
