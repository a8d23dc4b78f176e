/**
 * Sharding: which worker owns a packet. Like NIC RSS it uses the symmetric flow hash, so both
 * directions of a flow (and ICMP errors about it, which hash as the flow they quote) meet the same
 * worker and its conntrack. Its high bits pick the shard; the flow table uses the low bits.
 *
 * A later IP fragment carries no ports, so its own hash is not its flow's. Every worker reads every
 * packet in capture order, so each keeps the same small map from a first fragment's
 * (addresses, protocol, IP id) to its ports and sends later fragments where their flow went:
 * the same decision in every worker, with no coordination.
 */
import { Frag, type Batch } from '../packet/batch.js';
import { symHash } from '../packet/hash.js';

const FRAG_SLOTS = 1 << 16;

export class Sharder {
  private readonly key = new Uint32Array(FRAG_SLOTS * 10);
  private readonly ports = new Int32Array(FRAG_SLOTS).fill(-1);

  constructor(readonly shards: number, readonly me: number) {
    if (!(shards >= 1 && shards <= 256 && me >= 0 && me < shards)) throw new RangeError(`bad shard ${me} of ${shards}`);
  }

  /** Shard of a flow hash: the top 16 bits scaled to [0, shards). */
  static shardOf(h: number, shards: number): number {
    return ((h >>> 16) * shards) >>> 16;
  }

  /** Set mine[i] = 1 for the packets of this batch that this shard owns; returns how many. */
  mark(b: Batch, mine: Uint8Array): number {
    const n = b.count;
    const shards = this.shards;
    const me = this.me;
    const { frag, hash } = b;
    let owned = 0;
    for (let i = 0; i < n; i++) {
      let h = hash[i]!;
      const f = frag[i]!;
      if (f !== Frag.NONE) h = this.fragment(b, i, f, h);
      const m = Sharder.shardOf(h, shards) === me ? 1 : 0;
      mine[i] = m;
      owned += m;
    }
    return owned;
  }

  private slot(b: Batch, i: number): number {
    const w = i << 2;
    let h = Math.imul(b.src[w]! ^ b.dst[w]! ^ b.src[w + 3]! ^ b.dst[w + 3]!, 0x9e3779b1 | 0) ^ b.ipId[i]!;
    h = Math.imul(h ^ (h >>> 15), 0x85ebca6b | 0);
    return (h >>> 16) & (FRAG_SLOTS - 1);
  }

  private fragment(b: Batch, i: number, f: number, h: number): number {
    const s = this.slot(b, i);
    const k = s * 10;
    const w = i << 2;
    const key = this.key;
    const tag = (b.proto[i]! << 8) | b.family[i]!;
    if (f === Frag.FIRST) {
      for (let j = 0; j < 4; j++) { key[k + j] = b.src[w + j]!; key[k + 4 + j] = b.dst[w + j]!; }
      key[k + 8] = b.ipId[i]!;
      key[k + 9] = tag;
      this.ports[s] = (b.sport[i]! << 16) | b.dport[i]!;
      return h;
    }
    const p = this.ports[s]!;
    if (p === -1 || key[k + 8] !== b.ipId[i] || key[k + 9] !== tag) return h;
    for (let j = 0; j < 4; j++) if (key[k + j] !== b.src[w + j] || key[k + 4 + j] !== b.dst[w + j]) return h;
    return symHash(b.proto[i]!, b.src, w, b.dst, w, p >>> 16, p & 0xffff);
  }
}
