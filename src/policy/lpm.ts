/**
 * A longest-prefix-match table over IPv4 and IPv6 addresses, like an eBPF BPF_MAP_TYPE_LPM_TRIE:
 * prefix -> value, and a lookup that returns the value of the longest prefix holding an address.
 *
 * It is a binary trie (one bit per level, as the kernel's LPM trie before path compression) kept in
 * two typed arrays, so a lookup touches no objects and allocates nothing:
 *   - child[2n + bit]: the node under node n for that bit, 0 when there is none (node 0 is the IPv4
 *     root and node 1 the IPv6 root, so 0 is never anyone's child);
 *   - value[n]: the value of the prefix ending at node n, or -1.
 * Addresses are read in the batch's form: four u32 words in network order, IPv4 in word 0.
 *
 * Besides the longest match, `matches` lists every prefix on an address's path (shortest first):
 * the policy trie needs all of them to keep iptables' first-match order.
 */
import type { Prefix } from '../packet/cidr.js';

const NONE = -1;

export class Lpm {
  private child: Int32Array;
  private value: Int32Array;
  private used = 2;
  private count = 0;

  constructor(initialNodes = 64) {
    const n = Math.max(2, initialNodes);
    this.child = new Int32Array(2 * n);
    this.value = new Int32Array(n).fill(NONE);
  }

  /** Prefixes stored. */
  get size(): number {
    return this.count;
  }

  /** Trie nodes in use (both roots included). */
  get nodes(): number {
    return this.used;
  }

  /** Memory the trie's arrays take, in bytes. */
  get bytes(): number {
    return this.child.byteLength + this.value.byteLength;
  }

  /**
   * Store `value` (>= 0) for a prefix; returns the value it replaced, or -1. A prefix of family 0
   * ("any") has no place in one trie: callers set it in both families.
   */
  set(p: Prefix, value: number): number {
    if (p.family === 0) throw new RangeError('an "any" prefix must be set once per family');
    if (!Number.isInteger(value) || value < 0) throw new RangeError(`LPM values are integers >= 0, got ${value}`);
    let n = p.family === 4 ? 0 : 1;
    for (let d = 0; d < p.len; d++) {
      const bit = (p.words[d >>> 5]! >>> (31 - (d & 31))) & 1;
      let next = this.child[(n << 1) | bit]!;
      if (next === 0) {
        next = this.grow();
        this.child[(n << 1) | bit] = next;
      }
      n = next;
    }
    const old = this.value[n]!;
    if (old === NONE) this.count++;
    this.value[n] = value;
    return old;
  }

  /** The value stored for exactly this prefix, or -1. */
  get(p: Prefix): number {
    if (p.family === 0) return NONE;
    let n = p.family === 4 ? 0 : 1;
    for (let d = 0; d < p.len; d++) {
      n = this.child[(n << 1) | ((p.words[d >>> 5]! >>> (31 - (d & 31))) & 1)]!;
      if (n === 0) return NONE;
    }
    return this.value[n]!;
  }

  /**
   * The value of the longest prefix holding the address at addr[off..off+3] of `family` (4 or 6),
   * or -1 when no prefix holds it (or the family is neither).
   */
  lookup(family: number, addr: Uint32Array, off: number): number {
    let n: number;
    let bits: number;
    if (family === 4) { n = 0; bits = 32; } else if (family === 6) { n = 1; bits = 128; } else return NONE;
    const child = this.child;
    const value = this.value;
    let best = value[n]!;
    let w = 0;
    for (let d = 0; d < bits; d++) {
      if ((d & 31) === 0) w = addr[off + (d >>> 5)]! | 0;
      n = child[(n << 1) | ((w >>> (31 - (d & 31))) & 1)]!;
      if (n === 0) break;
      const v = value[n]!;
      if (v !== NONE) best = v;
    }
    return best;
  }

  /**
   * Every value on the address's path, shortest prefix first, written to `out` (which needs room
   * for 129); returns how many. Allocates nothing.
   */
  matches(family: number, addr: Uint32Array, off: number, out: Int32Array): number {
    let n: number;
    let bits: number;
    if (family === 4) { n = 0; bits = 32; } else if (family === 6) { n = 1; bits = 128; } else return 0;
    const child = this.child;
    const value = this.value;
    let found = 0;
    let v = value[n]!;
    if (v !== NONE) out[found++] = v;
    let w = 0;
    for (let d = 0; d < bits; d++) {
      if ((d & 31) === 0) w = addr[off + (d >>> 5)]! | 0;
      n = child[(n << 1) | ((w >>> (31 - (d & 31))) & 1)]!;
      if (n === 0) break;
      v = value[n]!;
      if (v !== NONE) out[found++] = v;
    }
    return found;
  }

  private grow(): number {
    if (this.used === this.value.length) {
      const child = new Int32Array(this.child.length * 2);
      child.set(this.child);
      this.child = child;
      const value = new Int32Array(this.value.length * 2).fill(NONE);
      value.set(this.value);
      this.value = value;
    }
    return this.used++;
  }
}
