/**
 * The chain evaluator: every entry in order until one matches, as iptables walks a chain. Its cost
 * grows with the number of rules a packet passes before its match. It is also the reference the
 * set and trie evaluators are tested against, so it stays this plain.
 */
import type { Batch } from '../packet/batch.js';
import type { Evaluator } from './evaluator.js';
import { dstMatches, restMatches, type RuleTable } from './rules.js';

export class ChainEvaluator implements Evaluator {
  readonly kind = 'chain';

  constructor(private readonly t: RuleTable) {}

  match(b: Batch, i: number): number {
    const fam = b.family[i];
    if (fam !== 4 && fam !== 6) return -1;
    const t = this.t;
    for (let k = 0; k < t.count; k++) {
      if (dstMatches(t, k, b, i) && restMatches(t, k, b, i)) return k;
    }
    return -1;
  }

  stats(): Record<string, number> {
    return { entries: this.t.count };
  }
}
