/**
 * A longest-prefix-match table over IPv4 and IPv6 addresses, like an eBPF BPF_MAP_TYPE_LPM_TRIE:
 * prefix -> value, and a lookup that returns the value of the longest prefix holding an address.
 *
 * It is the kernel's structure (kernel/bpf/lpm_trie.c): a path-compressed binary trie. Each node
 * holds a whole prefix; a lookup checks the address against the node's prefix, and if it holds,
 * moves to the child picked by the address's next bit after the prefix. Nodes exist only where
 * prefixes are or where two of them part ("intermediate" nodes without a value), so a lookup
 * visits about log2(prefixes) nodes instead of one per bit (32 for IPv4, 128 for IPv6).
 *
 * Nodes live in one Int32Array, eight words each, so a lookup touches no objects, allocates
 * nothing, and finds all of a node in one cache line (separate arrays per field cost a cache miss
 * per field per level on a large trie):
 *   node n at 8n: [address words 0..3 (host bits clear), prefix length, value (-1 for an
 *   intermediate node), child for bit 0, child for bit 1] (0 = no child; node 0 is never used).
 * Addresses are read in the batch's form: four u32 words in network order, IPv4 in word 0.
 *
 * In front of the trie sits a direct table on an address's first 16 bits, as routers put one in
 * front of theirs (DPDK's rte_lpm, DIR-24-8; Gupta, Lin and McKeown 1998), one per family:
 * entry a16 is the answer for every address that starts with a16 when no prefix longer than 16
 * bits lies there (the value of the longest prefix of at most 16 bits holding it, or -1), and
 * WALK when one does, so only those addresses walk the trie. On a block list or a routing table
 * most addresses fall where no long prefix lies: a lookup is then one read. The tables are made
 * on the first walk after a change (set() marks them out of date; until then every lookup
 * walks), 256 KB a family with prefixes; a family without any shares one table of -1.
 *
 * Besides the longest match, `matches` lists every prefix holding an address (shortest first):
 * the policy trie needs all of them to keep iptables' first-match order.
 */
import type { Prefix } from '../packet/cidr.js';

const NONE = -1;
/** A direct-table entry that sends the lookup to the trie: a prefix longer than 16 bits lies there. */
const WALK = -2;
/** Direct-table entries: one per value of an address's first 16 bits. */
const DIR = 1 << 16;

/** Shared direct tables (made at the first Lpm): every entry WALK (out of date), every entry -1 (no prefix). */
let allWalk: Int32Array | null = null;
let allNone: Int32Array | null = null;
/** Words per node, and where each field sits in a node. */
const NODE = 8;
const LEN = 4;
const VALUE = 5;
const CHILD = 6;

/** MASK[4 * len + k]: word k of the mask of a prefix of length len (0..128), as an int32. */
const MASK = new Int32Array(129 * 4);
for (let len = 0; len <= 128; len++) {
  for (let k = 0; k < 4; k++) {
    const bits = Math.min(32, Math.max(0, len - 32 * k));
    MASK[4 * len + k] = bits === 0 ? 0 : (0xffffffff << (32 - bits)) | 0;
  }
}

function bitOf(w: ArrayLike<number>, off: number, b: number): number {
  return (w[off + (b >>> 5)]! >>> (31 - (b & 31))) & 1;
}

export class Lpm {
  private t: Int32Array;
  private used = 1;
  private root4 = 0;
  private root6 = 0;
  private count = 0;
  /** The direct tables lookup() reads: allWalk until the first walk after a change makes them. */
  private dir4: Int32Array;
  private dir6: Int32Array;
  /** This table's own direct tables once made (reused when a change makes them again). */
  private own4: Int32Array | null = null;
  private own6: Int32Array | null = null;
  private stale = true;

  constructor(initialNodes = 64) {
    this.t = new Int32Array(NODE * Math.max(2, initialNodes));
    allWalk ??= new Int32Array(DIR).fill(WALK);
    allNone ??= new Int32Array(DIR).fill(NONE);
    this.dir4 = allWalk;
    this.dir6 = allWalk;
  }

  /** Prefixes stored. */
  get size(): number {
    return this.count;
  }

  /** Trie nodes in use, intermediate ones included. */
  get nodes(): number {
    return this.used - 1;
  }

  /** Memory the trie takes, in bytes. */
  get bytes(): number {
    return this.used * NODE * 4;
  }

  /**
   * Store `value` (>= 0) for a prefix; returns the value it replaced, or -1. A prefix of family 0
   * ("any") has no place in one trie: callers set it in both families. (lpm_trie.c's update.)
   */
  set(p: Prefix, value: number): number {
    if (p.family === 0) throw new RangeError('an "any" prefix must be set once per family');
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`LPM values are integers >= 0, got ${value}`);
    this.stale = true;
    this.dir4 = allWalk!;
    this.dir6 = allWalk!;
    const w = maskedWords(p);
    const max = p.family === 4 ? 32 : 128;
    let parent = 0;
    let parentBit = 0;
    let node = p.family === 4 ? this.root4 : this.root6;
    let matchlen = 0;
    while (node !== 0) {
      matchlen = this.commonLength(node, w, p.len);
      const nl = this.t[node * NODE + LEN]!;
      if (nl !== matchlen || nl === p.len || nl === max) break;
      parent = node;
      parentBit = bitOf(w, 0, nl);
      node = this.t[node * NODE + CHILD + parentBit]!;
    }
    if (node !== 0 && this.t[node * NODE + LEN] === matchlen && matchlen === p.len) {
      const old = this.t[node * NODE + VALUE]!;
      if (old === NONE) this.count++;
      this.t[node * NODE + VALUE] = value;
      return old;
    }
    const fresh = this.node(w, p.len, value);
    this.count++;
    if (node === 0) {
      this.link(p.family, parent, parentBit, fresh);
    } else if (matchlen === p.len) {
      // The new prefix holds the node's: it goes above it.
      this.t[fresh * NODE + CHILD + bitOf(this.t, node * NODE, matchlen)] = node;
      this.link(p.family, parent, parentBit, fresh);
    } else {
      // The two part after `matchlen` bits: an intermediate node there holds both.
      const im = this.node(w, matchlen, NONE);
      const newBit = bitOf(w, 0, matchlen);
      this.t[im * NODE + CHILD + newBit] = fresh;
      this.t[im * NODE + CHILD + (newBit ^ 1)] = node;
      this.link(p.family, parent, parentBit, im);
    }
    return NONE;
  }

  /** The value stored for exactly this prefix, or -1. */
  get(p: Prefix): number {
    if (p.family === 0) return NONE;
    const w = maskedWords(p);
    let node = p.family === 4 ? this.root4 : this.root6;
    while (node !== 0) {
      const nl = this.t[node * NODE + LEN]!;
      if (this.commonLength(node, w, p.len) < nl || nl > p.len) return NONE;
      if (nl === p.len) return this.t[node * NODE + VALUE]!;
      node = this.t[node * NODE + CHILD + bitOf(w, 0, nl)]!;
    }
    return NONE;
  }

  /**
   * The value of the longest prefix holding the address at addr[off..off+3] of `family` (4 or 6),
   * or -1 when no prefix holds it (or the family is neither). One read of the direct table; the
   * trie only where a prefix longer than 16 bits lies. Small, so V8 inlines it into a stage's loop.
   */
  lookup(family: number, addr: Uint32Array, off: number): number {
    let d: number;
    if (family === 4) d = this.dir4[addr[off]! >>> 16]!;
    else if (family === 6) d = this.dir6[addr[off]! >>> 16]!;
    else return NONE;
    return d !== WALK ? d : this.walk(family, addr, off);
  }

  /** lookup() through the trie alone (lpm_trie.c's lookup); first makes the direct tables if a change left them out of date. */
  walk(family: number, addr: Uint32Array, off: number): number {
    if (this.stale) this.direct();
    const t = this.t;
    let best = NONE;
    if (family === 4) {
      const a0 = addr[off]! | 0;
      let q = this.root4 * NODE;
      while (q !== 0) {
        const l = t[q + LEN]!;
        if (((a0 ^ t[q]!) & MASK[l << 2]!) !== 0) break;
        const v = t[q + VALUE]!;
        if (v !== NONE) best = v;
        if (l === 32) break;
        q = t[q + CHILD + ((a0 >>> (31 - l)) & 1)]! * NODE;
      }
    } else if (family === 6) {
      let q = this.root6 * NODE;
      while (q !== 0) {
        const l = t[q + LEN]!;
        const m = l << 2;
        if (((addr[off]! ^ t[q]!) & MASK[m]!) !== 0 || ((addr[off + 1]! ^ t[q + 1]!) & MASK[m + 1]!) !== 0
          || ((addr[off + 2]! ^ t[q + 2]!) & MASK[m + 2]!) !== 0 || ((addr[off + 3]! ^ t[q + 3]!) & MASK[m + 3]!) !== 0) break;
        const v = t[q + VALUE]!;
        if (v !== NONE) best = v;
        if (l === 128) break;
        q = t[q + CHILD + ((addr[off + (l >>> 5)]! >>> (31 - (l & 31))) & 1)]! * NODE;
      }
    }
    return best;
  }

  /**
   * Every value whose prefix holds the address, shortest prefix first, written to `out` (which
   * needs room for 129); returns how many. Allocates nothing.
   */
  matches(family: number, addr: Uint32Array, off: number, out: Int32Array): number {
    const t = this.t;
    let found = 0;
    if (family === 4) {
      const a0 = addr[off]! | 0;
      let q = this.root4 * NODE;
      while (q !== 0) {
        const l = t[q + LEN]!;
        if (((a0 ^ t[q]!) & MASK[l << 2]!) !== 0) break;
        const v = t[q + VALUE]!;
        if (v !== NONE) out[found++] = v;
        if (l === 32) break;
        q = t[q + CHILD + ((a0 >>> (31 - l)) & 1)]! * NODE;
      }
    } else if (family === 6) {
      let q = this.root6 * NODE;
      while (q !== 0) {
        const l = t[q + LEN]!;
        const m = l << 2;
        if (((addr[off]! ^ t[q]!) & MASK[m]!) !== 0 || ((addr[off + 1]! ^ t[q + 1]!) & MASK[m + 1]!) !== 0
          || ((addr[off + 2]! ^ t[q + 2]!) & MASK[m + 2]!) !== 0 || ((addr[off + 3]! ^ t[q + 3]!) & MASK[m + 3]!) !== 0) break;
        const v = t[q + VALUE]!;
        if (v !== NONE) out[found++] = v;
        if (l === 128) break;
        q = t[q + CHILD + ((addr[off + (l >>> 5)]! >>> (31 - (l & 31))) & 1)]! * NODE;
      }
    }
    return found;
  }

  /**
   * Make the direct tables from the trie: in preorder, a node of at most 16 bits with a value
   * writes it over its range of entries (its descendants, visited after it, write over their
   * parts), and a node longer than 16 bits marks its entry WALK. A prefix holding another is its
   * ancestor in the trie, so nothing visited later covers a WALK entry.
   */
  private direct(): void {
    this.stale = false;
    if (this.root4 === 0) this.dir4 = allNone!;
    else this.dir4 = this.fill(this.own4 ??= new Int32Array(DIR), this.root4);
    if (this.root6 === 0) this.dir6 = allNone!;
    else this.dir6 = this.fill(this.own6 ??= new Int32Array(DIR), this.root6);
  }

  private fill(dir: Int32Array, root: number): Int32Array {
    dir.fill(NONE);
    const stack = [root];
    while (stack.length > 0) {
      const q = stack.pop()! * NODE;
      const l = this.t[q + LEN]!;
      const a16 = this.t[q]! >>> 16;
      if (l > 16) { dir[a16] = WALK; continue; }
      const v = this.t[q + VALUE]!;
      if (v !== NONE) dir.fill(v, a16, a16 + (1 << (16 - l)));
      // Children pushed so that both come off the stack after this node (either order will do:
      // their ranges are disjoint).
      for (let c = 0; c < 2; c++) if (this.t[q + CHILD + c] !== 0) stack.push(this.t[q + CHILD + c]!);
    }
    return dir;
  }

  /** How many leading bits node n's prefix and the words `w` share, at most min(its length, wlen). */
  private commonLength(n: number, w: readonly number[], wlen: number): number {
    const q = n * NODE;
    const limit = Math.min(this.t[q + LEN]!, wlen);
    let lcp = 128;
    for (let k = 0; k < 4; k++) {
      const x = (this.t[q + k]! ^ w[k]!) | 0;
      if (x !== 0) { lcp = 32 * k + Math.clz32(x); break; }
    }
    return Math.min(lcp, limit);
  }

  private link(family: 4 | 6, parent: number, bit: number, n: number): void {
    if (parent !== 0) this.t[parent * NODE + CHILD + bit] = n;
    else if (family === 4) this.root4 = n;
    else this.root6 = n;
  }

  private node(w: readonly number[], len: number, value: number): number {
    if ((this.used + 1) * NODE > this.t.length) {
      const t = new Int32Array(this.t.length * 2);
      t.set(this.t);
      this.t = t;
    }
    const n = this.used++;
    const q = n * NODE;
    for (let k = 0; k < 4; k++) this.t[q + k] = w[k]! & MASK[4 * len + k]!;
    this.t[q + LEN] = len;
    this.t[q + VALUE] = value;
    this.t[q + CHILD] = 0;
    this.t[q + CHILD + 1] = 0;
    return n;
  }
}

/** The prefix's words as int32 with host bits clear (a Prefix from parsePrefix has them clear already). */
function maskedWords(p: Prefix): number[] {
  return [0, 1, 2, 3].map((k) => p.words[k]! & MASK[4 * p.len + k]!);
}
