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
 * Nodes live in typed arrays, so a lookup touches no objects and allocates nothing:
 *   - data[4n..4n+3]: the prefix's address words (host bits clear), len[n]: its length;
 *   - value[n]: the value stored, -1 for an intermediate node;
 *   - child[2n + bit]: the node under n for that bit, 0 for none (node 0 is never used).
 * Addresses are read in the batch's form: four u32 words in network order, IPv4 in word 0.
 *
 * Besides the longest match, `matches` lists every prefix holding an address (shortest first):
 * the policy trie needs all of them to keep iptables' first-match order.
 */
import type { Prefix } from '../packet/cidr.js';

const NONE = -1;

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
  private data: Int32Array;
  private len: Uint8Array;
  private value: Int32Array;
  private child: Int32Array;
  private used = 1;
  private root4 = 0;
  private root6 = 0;
  private count = 0;

  constructor(initialNodes = 64) {
    const n = Math.max(2, initialNodes);
    this.data = new Int32Array(4 * n);
    this.len = new Uint8Array(n);
    this.value = new Int32Array(n);
    this.child = new Int32Array(2 * n);
  }

  /** Prefixes stored. */
  get size(): number {
    return this.count;
  }

  /** Trie nodes in use, intermediate ones included. */
  get nodes(): number {
    return this.used - 1;
  }

  /** Memory the trie's arrays take, in bytes. */
  get bytes(): number {
    return this.data.byteLength + this.len.byteLength + this.value.byteLength + this.child.byteLength;
  }

  /**
   * Store `value` (>= 0) for a prefix; returns the value it replaced, or -1. A prefix of family 0
   * ("any") has no place in one trie: callers set it in both families. (lpm_trie.c's update.)
   */
  set(p: Prefix, value: number): number {
    if (p.family === 0) throw new RangeError('an "any" prefix must be set once per family');
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`LPM values are integers >= 0, got ${value}`);
    const w = maskedWords(p);
    const max = p.family === 4 ? 32 : 128;
    let parent = 0;
    let parentBit = 0;
    let node = p.family === 4 ? this.root4 : this.root6;
    let matchlen = 0;
    while (node !== 0) {
      matchlen = this.commonLength(node, w, p.len);
      const nl = this.len[node]!;
      if (nl !== matchlen || nl === p.len || nl === max) break;
      parent = node;
      parentBit = bitOf(w, 0, nl);
      node = this.child[(node << 1) | parentBit]!;
    }
    if (node !== 0 && this.len[node] === matchlen && matchlen === p.len) {
      const old = this.value[node]!;
      if (old === NONE) this.count++;
      this.value[node] = value;
      return old;
    }
    const fresh = this.node(w, p.len, value);
    this.count++;
    if (node === 0) {
      this.link(p.family, parent, parentBit, fresh);
    } else if (matchlen === p.len) {
      // The new prefix holds the node's: it goes above it.
      this.child[(fresh << 1) | bitOf(this.data, node << 2, matchlen)] = node;
      this.link(p.family, parent, parentBit, fresh);
    } else {
      // The two part after `matchlen` bits: an intermediate node there holds both.
      const im = this.node(w, matchlen, NONE);
      const newBit = bitOf(w, 0, matchlen);
      this.child[(im << 1) | newBit] = fresh;
      this.child[(im << 1) | (newBit ^ 1)] = node;
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
      const nl = this.len[node]!;
      if (this.commonLength(node, w, p.len) < nl || nl > p.len) return NONE;
      if (nl === p.len) return this.value[node]!;
      node = this.child[(node << 1) | bitOf(w, 0, nl)]!;
    }
    return NONE;
  }

  /**
   * The value of the longest prefix holding the address at addr[off..off+3] of `family` (4 or 6),
   * or -1 when no prefix holds it (or the family is neither). (lpm_trie.c's lookup.)
   */
  lookup(family: number, addr: Uint32Array, off: number): number {
    const data = this.data;
    const len = this.len;
    const value = this.value;
    const child = this.child;
    let best = NONE;
    if (family === 4) {
      const a0 = addr[off]! | 0;
      let n = this.root4;
      while (n !== 0) {
        const l = len[n]!;
        if (((a0 ^ data[n << 2]!) & MASK[l << 2]!) !== 0) break;
        const v = value[n]!;
        if (v !== NONE) best = v;
        if (l === 32) break;
        n = child[(n << 1) | ((a0 >>> (31 - l)) & 1)]!;
      }
    } else if (family === 6) {
      let n = this.root6;
      while (n !== 0) {
        const l = len[n]!;
        const q = n << 2;
        const m = l << 2;
        if (((addr[off]! ^ data[q]!) & MASK[m]!) !== 0 || ((addr[off + 1]! ^ data[q + 1]!) & MASK[m + 1]!) !== 0
          || ((addr[off + 2]! ^ data[q + 2]!) & MASK[m + 2]!) !== 0 || ((addr[off + 3]! ^ data[q + 3]!) & MASK[m + 3]!) !== 0) break;
        const v = value[n]!;
        if (v !== NONE) best = v;
        if (l === 128) break;
        n = child[(n << 1) | ((addr[off + (l >>> 5)]! >>> (31 - (l & 31))) & 1)]!;
      }
    }
    return best;
  }

  /**
   * Every value whose prefix holds the address, shortest prefix first, written to `out` (which
   * needs room for 129); returns how many. Allocates nothing.
   */
  matches(family: number, addr: Uint32Array, off: number, out: Int32Array): number {
    const data = this.data;
    const len = this.len;
    const value = this.value;
    const child = this.child;
    let found = 0;
    if (family === 4) {
      const a0 = addr[off]! | 0;
      let n = this.root4;
      while (n !== 0) {
        const l = len[n]!;
        if (((a0 ^ data[n << 2]!) & MASK[l << 2]!) !== 0) break;
        const v = value[n]!;
        if (v !== NONE) out[found++] = v;
        if (l === 32) break;
        n = child[(n << 1) | ((a0 >>> (31 - l)) & 1)]!;
      }
    } else if (family === 6) {
      let n = this.root6;
      while (n !== 0) {
        const l = len[n]!;
        const q = n << 2;
        const m = l << 2;
        if (((addr[off]! ^ data[q]!) & MASK[m]!) !== 0 || ((addr[off + 1]! ^ data[q + 1]!) & MASK[m + 1]!) !== 0
          || ((addr[off + 2]! ^ data[q + 2]!) & MASK[m + 2]!) !== 0 || ((addr[off + 3]! ^ data[q + 3]!) & MASK[m + 3]!) !== 0) break;
        const v = value[n]!;
        if (v !== NONE) out[found++] = v;
        if (l === 128) break;
        n = child[(n << 1) | ((addr[off + (l >>> 5)]! >>> (31 - (l & 31))) & 1)]!;
      }
    }
    return found;
  }

  /** How many leading bits node n's prefix and the words `w` share, at most min(len[n], wlen). */
  private commonLength(n: number, w: readonly number[], wlen: number): number {
    const limit = Math.min(this.len[n]!, wlen);
    let lcp = 128;
    for (let k = 0; k < 4; k++) {
      const x = (this.data[(n << 2) + k]! ^ w[k]!) | 0;
      if (x !== 0) { lcp = 32 * k + Math.clz32(x); break; }
    }
    return Math.min(lcp, limit);
  }

  private link(family: 4 | 6, parent: number, bit: number, n: number): void {
    if (parent !== 0) this.child[(parent << 1) | bit] = n;
    else if (family === 4) this.root4 = n;
    else this.root6 = n;
  }

  private node(w: readonly number[], len: number, value: number): number {
    if (this.used === this.len.length) this.grow();
    const n = this.used++;
    for (let k = 0; k < 4; k++) this.data[(n << 2) + k] = w[k]! & MASK[4 * len + k]!;
    this.len[n] = len;
    this.value[n] = value;
    this.child[n << 1] = 0;
    this.child[(n << 1) | 1] = 0;
    return n;
  }

  private grow(): void {
    const n = this.len.length * 2;
    const data = new Int32Array(4 * n); data.set(this.data); this.data = data;
    const len = new Uint8Array(n); len.set(this.len); this.len = len;
    const value = new Int32Array(n); value.set(this.value); this.value = value;
    const child = new Int32Array(2 * n); child.set(this.child); this.child = child;
  }
}

/** The prefix's words as int32 with host bits clear (a Prefix from parsePrefix has them clear already). */
function maskedWords(p: Prefix): number[] {
  return [0, 1, 2, 3].map((k) => p.words[k]! & MASK[4 * p.len + k]!);
}
