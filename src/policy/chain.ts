/**
 * The chain evaluator: every entry in order until one matches, as iptables walks a chain. Its cost
 * grows with the number of rules a packet passes before its match. It is also the reference the
 * set and trie evaluators are tested against, so it stays this plain.
 */
import type { Batch } from '../packet/batch.js';
import type { Evaluator } from './evaluator.js';
import type { RuleTable } from './rules.js';
import * as rulesModule from './rules.js';
// The per-packet code reads imports as this module's own consts: V8 reads an imported binding
// through its module cell at every use (src/conntrack/layout.ts).
const { restMatches } = rulesModule;

export class ChainEvaluator implements Evaluator {
  readonly kind = 'chain';

  constructor(private readonly t: RuleTable) {}

  match(b: Batch, i: number): number {
    const fam = b.family[i];
    if (fam !== 4 && fam !== 6) return -1;
    const t = this.t;
    // The destination words are read once per packet; each entry then costs a masked compare
    // (as ip_packet_match() does per iptables rule) before the other fields are looked at.
    const w = i << 2;
    const d0 = b.dst[w]! | 0;
    const d1 = b.dst[w + 1]! | 0;
    const d2 = b.dst[w + 2]! | 0;
    const d3 = b.dst[w + 3]! | 0;
    const dst = t.dst;
    const mask = t.dstMask;
    for (let k = 0; k < t.count; k++) {
      const r = k << 2;
      if ((d0 & mask[r]!) === dst[r] && (d1 & mask[r + 1]!) === dst[r + 1] && (d2 & mask[r + 2]!) === dst[r + 2]
        && (d3 & mask[r + 3]!) === dst[r + 3] && restMatches(t, k, b, i)) return k;
    }
    return -1;
  }

  stats(): Record<string, number> {
    return { entries: this.t.count };
  }
}
