/**
 * The three rule evaluators, which give the same verdicts at different costs:
 *   - chain: a linear scan in rule order, as an iptables chain;
 *   - set:   a hash per destination prefix length, as ipset hash:net;
 *   - trie:  a longest-prefix trie over the destination, as an eBPF LPM map.
 * `match` returns the first matching entry of the RuleTable (its lowest index), or -1; packets that
 * are not IP never match (policy is about IP).
 */
import type { Batch } from '../packet/batch.js';
import { ChainEvaluator } from './chain.js';
import type { RuleTable } from './rules.js';
import { SetEvaluator } from './set.js';
import { TrieEvaluator } from './trie.js';

export interface Evaluator {
  readonly kind: EvaluatorKind;
  /** Index of the first RuleTable entry matching packet i of the batch, or -1. Allocates nothing. */
  match(b: Batch, i: number): number;
  /** Size figures for the report (buckets, nodes, ...). */
  stats(): Record<string, number>;
}

export const EVALUATORS = ['chain', 'set', 'trie'] as const;
export type EvaluatorKind = (typeof EVALUATORS)[number];

export function createEvaluator(kind: EvaluatorKind, t: RuleTable): Evaluator {
  switch (kind) {
    case 'chain': return new ChainEvaluator(t);
    case 'set': return new SetEvaluator(t);
    case 'trie': return new TrieEvaluator(t);
  }
}
