/**
 * Where an IP datagram's first fragment went. A later fragment carries no L4 header, so whoever
 * needs its flow (the sharder, conntrack) remembers something per first fragment under its
 * (source, destination, protocol, IP id) and finds it again from a later one. This map holds the
 * keys; its users keep their values in their own arrays, indexed by the slot it returns.
 * Direct-mapped: a newer datagram overwrites an older one in the same slot.
 */
import type { Batch } from './batch.js';

const WORDS = 10; // src 4, dst 4, IP id, proto << 8 | family

export class FragmentKeys {
  /**
   * Allocated at the first fragment (2.6 MB for 65,536 slots): most captures have none, and every
   * pipeline has two or three of these maps (conntrack, ctlb, the sharder).
   */
  private key = new Uint32Array(0);
  private used = new Uint8Array(0);
  private readonly mask: number;

  constructor(readonly slots: number) {
    if (slots < 2 || (slots & (slots - 1)) !== 0) throw new RangeError('fragment map size must be a power of two');
    this.mask = slots - 1;
  }

  private slot(b: Batch, i: number): number {
    const w = i << 2;
    let h = Math.imul(b.src[w]! ^ b.dst[w]! ^ b.src[w + 3]! ^ b.dst[w + 3]!, 0x9e3779b1 | 0) ^ b.ipId[i]!;
    h = Math.imul(h ^ (h >>> 15), 0x85ebca6b | 0);
    return (h >>> 16) & this.mask;
  }

  /** Record packet i's datagram key; returns the slot for the caller's value. */
  remember(b: Batch, i: number): number {
    if (this.used.length === 0) { this.key = new Uint32Array(this.slots * WORDS); this.used = new Uint8Array(this.slots); }
    const s = this.slot(b, i);
    const k = s * WORDS;
    const w = i << 2;
    const key = this.key;
    for (let j = 0; j < 4; j++) { key[k + j] = b.src[w + j]!; key[k + 4 + j] = b.dst[w + j]!; }
    key[k + 8] = b.ipId[i]!;
    key[k + 9] = (b.proto[i]! << 8) | b.family[i]!;
    this.used[s] = 1;
    return s;
  }

  /** The slot holding packet i's datagram, or -1 when its first fragment was not remembered. */
  find(b: Batch, i: number): number {
    if (this.used.length === 0) return -1;
    const s = this.slot(b, i);
    if (this.used[s] === 0) return -1;
    const k = s * WORDS;
    const w = i << 2;
    const key = this.key;
    if (key[k + 8] !== b.ipId[i] || key[k + 9] !== ((b.proto[i]! << 8) | b.family[i]!)) return -1;
    for (let j = 0; j < 4; j++) if (key[k + j] !== b.src[w + j] || key[k + 4 + j] !== b.dst[w + j]) return -1;
    return s;
  }
}
