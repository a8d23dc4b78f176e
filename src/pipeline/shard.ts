/**
 * Sharding: which worker owns a packet. Like NIC RSS it uses the symmetric flow hash, so both
 * directions of a flow (and ICMP errors about it, which hash as the flow they quote) meet the same
 * worker and its conntrack. Its high bits pick the shard; the flow table uses the low bits.
 *
 * A later IP fragment carries no ports, so its own hash is not its flow's. Every worker reads every
 * packet in capture order, so each keeps the same small map from a first fragment's
 * (addresses, protocol, IP id) to its ports and sends later fragments where their flow went:
 * the same decision in every worker, with no coordination.
 *
 * Address translation breaks the symmetric hash (after DNAT a reply carries backend -> client, not
 * VIP -> client): stages that translate steer the packets of their services (Stage.steering; they
 * shard by the client's address alone, which both directions share).
 */
import type { Batch } from '../packet/batch.js';
import * as batchModule from '../packet/batch.js';
import { FragmentKeys } from '../packet/fragments.js';
import * as hashModule from '../packet/hash.js';
import type { Stage, Steering } from './stage.js';
// What the per-packet code uses of other modules, as this module's own consts (see
// src/conntrack/tracker.ts): V8 reads an imported binding through its module cell at every use.
const { Frag } = batchModule;
const { symHash } = hashModule;

const FRAG_SLOTS = 1 << 16;

export class Sharder {
  private readonly fragments = new FragmentKeys(FRAG_SLOTS);
  private readonly ports = new Int32Array(FRAG_SLOTS);
  /** fragment()'s ports for the packet: its own, or a later fragment's first fragment's. */
  private sp = 0;
  private dp = 0;

  /** Stages that translate addresses steer packets of their flows (Stage.steering). */
  private readonly steering: Steering[];

  constructor(readonly shards: number, readonly me: number, stages: readonly Stage[] = []) {
    this.steering = stages.flatMap((s) => (s.steering ? [s.steering] : []));
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
    const { frag, hash, sport, dport } = b;
    let owned = 0;
    const steering = this.steering;
    const steers = steering.length;
    for (let i = 0; i < n; i++) {
      // As int32: a uint32 of 2^31 or more handed to shardHash would be boxed (a heap number).
      let h = hash[i]! | 0;
      const f = frag[i]!;
      let sp = sport[i]!;
      let dp = dport[i]!;
      if (f !== Frag.NONE) {
        h = this.fragment(b, i, f, h);
        sp = this.sp;
        dp = this.dp;
      }
      for (let k = 0; k < steers; k++) {
        const s = steering[k]!.shardHash(b, i, sp, dp, h);
        if (s !== h) { h = s; break; }
      }
      const m = Sharder.shardOf(h, shards) === me ? 1 : 0;
      mine[i] = m;
      owned += m;
    }
    return owned;
  }

  /** A fragment's shard hash; its ports (its own, or a later fragment's first fragment's) go to this.sp/dp. */
  private fragment(b: Batch, i: number, f: number, h: number): number {
    this.sp = b.sport[i]!;
    this.dp = b.dport[i]!;
    if (f === Frag.FIRST) {
      this.ports[this.fragments.remember(b, i)] = (b.sport[i]! << 16) | b.dport[i]!;
      return h;
    }
    const s = this.fragments.find(b, i);
    if (s < 0) return h;
    const p = this.ports[s]!;
    this.sp = p >>> 16;
    this.dp = p & 0xffff;
    return symHash(b.proto[i]!, b.src, i << 2, b.dst, i << 2, p >>> 16, p & 0xffff) | 0;
  }
}
