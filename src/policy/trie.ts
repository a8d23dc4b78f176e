/**
 * The trie evaluator, as an eBPF LPM map over the destination: entries are grouped by their exact
 * destination prefix, each group stored in the LPM trie, and a lookup walks the destination's path
 * collecting every group on it, shortest prefix first.
 *
 * Longest match alone would break iptables' first-match order (a /8 rule written first must beat a
 * /24 rule written later), so every group on the path is checked and the lowest matching entry
 * wins; within a group, candidates are in index order and the scan stops at the first match or at
 * the first entry not below the best so far.
 */
import type { Batch } from '../packet/batch.js';
import type { Evaluator } from './evaluator.js';
import { Lpm } from './lpm.js';
import type { RuleTable } from './rules.js';
import * as rulesModule from './rules.js';
// The per-packet code reads imports as this module's own consts: V8 reads an imported binding
// through its module cell at every use (src/conntrack/layout.ts).
const { restMatches } = rulesModule;

const NO_MATCH = 0x7fffffff;

export class TrieEvaluator implements Evaluator {
  readonly kind = 'trie';
  private readonly lpm = new Lpm();
  /** Group g's entries are cand[start[g] .. start[g] + n[g]), ascending. */
  private readonly start: Int32Array;
  private readonly n: Int32Array;
  private readonly cand: Int32Array;
  /** Groups on the current packet's path (reused: a lookup allocates nothing). */
  private readonly path = new Int32Array(129);

  constructor(private readonly t: RuleTable) {
    const groups: number[][] = [];
    for (let k = 0; k < t.count; k++) {
      const p = t.dstPrefix[k]!;
      const fam = t.family[k]!;
      for (const f of fam === 0 ? [4, 6] as const : [fam as 4 | 6]) {
        // "to any" holds both families: its entries go under each family's root.
        const at = p.family === 0 ? { ...p, family: f } : p;
        let g = this.lpm.get(at);
        if (g < 0) { g = groups.length; groups.push([]); this.lpm.set(at, g); }
        groups[g]!.push(k);
      }
    }
    this.start = new Int32Array(groups.length);
    this.n = new Int32Array(groups.length);
    this.cand = new Int32Array(groups.reduce((a, g) => a + g.length, 0));
    let at = 0;
    groups.forEach((g, j) => {
      this.start[j] = at;
      this.n[j] = g.length;
      for (const k of g) this.cand[at++] = k;
    });
  }

  match(b: Batch, i: number): number {
    const found = this.lpm.matches(b.family[i]!, b.dst, i << 2, this.path);
    const path = this.path;
    const start = this.start;
    const count = this.n;
    const cand = this.cand;
    const t = this.t;
    let best = NO_MATCH;
    for (let j = 0; j < found; j++) {
      const g = path[j]!;
      const end = start[g]! + count[g]!;
      for (let c = start[g]!; c < end; c++) {
        const k = cand[c]!;
        if (k >= best) break;
        if (restMatches(t, k, b, i)) { best = k; break; }
      }
    }
    return best === NO_MATCH ? -1 : best;
  }

  stats(): Record<string, number> {
    return { entries: this.t.count, prefixes: this.lpm.size, trieNodes: this.lpm.nodes };
  }
}
