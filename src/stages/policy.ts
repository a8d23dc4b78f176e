/**
 * policy: the rule evaluation that conntrack caches. First match wins, as in iptables; the
 * evaluator (chain / set / trie) changes the cost, never the verdict.
 *
 * With a conntrack stage in front, a tracked packet (NEW / ESTABLISHED / RELATED) of a flow with no
 * decision yet runs the rules once, and the decision is stored in the flow entry; every later
 * packet of the flow pays one array read. INVALID and untracked packets, and packets of a flow with
 * no decision that cannot make one for the flow (a reply or an ICMP error seen before the flow's
 * own first packet reached policy), are evaluated on their own. Without conntrack every packet is
 * evaluated. Packets that are not IP are accepted: policy is about IP.
 *
 * Config ([policy] section of a profile):
 *   evaluator: chain            chain (iptables), set (ipset hash:net) or trie (eBPF LPM map)
 *   default: accept             what happens when no rule matches: accept or drop
 *   rule: drop tcp from 198.51.100.0/24 port 23      (repeatable, in order; see policy/rules.ts)
 *   rules: web.rules            a file of rules, one per line, # comments (path relative to the
 *                               profile; repeatable; numbered in order with the rule: lines)
 */
import * as infoModule from '../conntrack/info.js';
import type { FlowTable } from '../conntrack/table.js';
import type { Batch } from '../packet/batch.js';
import * as batchModule from '../packet/batch.js';
import { createEvaluator, EVALUATORS, type Evaluator, type EvaluatorKind } from '../policy/evaluator.js';
import { Action, ACTION_NAMES, describeRule, parseRule, RuleTable, type ActionCode, type Rule } from '../policy/rules.js';
import { readListFile } from '../pipeline/listfile.js';
import { ProfileError, type Section } from '../pipeline/profile.js';
import { registerStage, type StageContext } from '../pipeline/registry.js';
import type { Stage, StageReport } from '../pipeline/stage.js';
// What the per-packet code uses of other modules, as this module's own consts (see
// src/conntrack/tracker.ts): V8 reads an imported binding through its module cell at every use.
const { CtInfo } = infoModule;
const { Verdict } = batchModule;

/** Drop reasons (batch.reason). */
const Reason = { RULE: 0, DEFAULT: 1 } as const;

const NO_FLOWS_U8 = new Uint8Array(0);
const NO_FLOWS_I32 = new Int32Array(0);

/**
 * A decision cached in the flow (policy's own per-flow column): none yet, or the rule's action.
 * process() reads the private copy: V8 reads an exported binding through its module cell at every
 * use, even in its own module (src/conntrack/layout.ts).
 */
const DECISION = { NONE: 0, ACCEPT: Action.ACCEPT, DROP: Action.DROP } as const;
export const Decision = DECISION;

/** What the stage did with a packet of the last batch, for explain(). */
const How = { NOT_SEEN: 0, EVALUATED: 1, EVALUATED_STORED: 2, CACHED: 3, NOT_IP: 4 } as const;

export interface PolicyConfig {
  evaluator: EvaluatorKind;
  defaultAction: ActionCode;
  rules: Rule[];
}

export class PolicyStage implements Stage {
  readonly name: string;
  readonly reasons: readonly string[] = ['rule', 'default'];
  private readonly table: RuleTable;
  private readonly ev: Evaluator;
  private readonly ct: FlowTable | null;
  /** Per flow entry (policy's columns in conntrack's table): the cached Decision, and its rule (-1 default). */
  flowDecision: Uint8Array = NO_FLOWS_U8;
  flowRule: Int32Array = NO_FLOWS_I32;
  private readonly defaultAction: ActionCode;
  /** Per RuleTable entry: the rule's index (as written) and its decision. */
  private readonly entryRule: Int32Array;
  private readonly entryAction: Uint8Array;

  private evaluations = 0;
  private cachedLookups = 0;
  private accepted = 0;
  private dropped = 0;
  private notIp = 0;
  /** Rule-set runs that ended at rule r (index r + 1), or at the default (index 0). */
  private readonly hits: Float64Array;
  /** Per packet of the last batch: How, and the rule index (-1 default). */
  private how = new Uint8Array(0);
  private which = new Int32Array(0);

  constructor(cfg: PolicyConfig, ct: FlowTable | null, name = 'policy') {
    this.name = name;
    this.table = new RuleTable(cfg.rules);
    this.ev = createEvaluator(cfg.evaluator, this.table);
    this.ct = ct;
    if (ct !== null) {
      ct.column(Uint8Array, 1, (a) => { this.flowDecision = a; });
      ct.column(Int32Array, 1, (a) => { this.flowRule = a; });
    }
    this.defaultAction = cfg.defaultAction;
    this.entryRule = this.table.rule;
    this.entryAction = this.table.action;
    this.hits = new Float64Array(cfg.rules.length + 1);
  }

  process(b: Batch, self: number): void {
    if (this.how.length < b.capacity) {
      this.how = new Uint8Array(b.capacity);
      this.which = new Int32Array(b.capacity);
    }
    const n = b.count;
    const how = this.how;
    const which = this.which;
    const ct = this.ct;
    const ctDecision = this.flowDecision;
    const ctRule = this.flowRule;
    const ev = this.ev;
    const entryRule = this.entryRule;
    const entryAction = this.entryAction;
    const hits = this.hits;
    const defaultAction = this.defaultAction;
    let evaluations = 0;
    let cached = 0;
    let dropped = 0;
    let accepted = 0;
    let notIp = 0;
    for (let i = 0; i < n; i++) {
      // NOT_SEEN only where it stays: every path below gives a packet it sees its own answer.
      if (b.verdict[i] !== Verdict.PASS) { how[i] = How.NOT_SEEN; continue; }
      const fam = b.family[i];
      if (fam !== 4 && fam !== 6) {
        how[i] = How.NOT_IP;
        notIp++;
        accepted++;
        continue;
      }
      let decision: number;
      let rule: number;
      const info = b.ctInfo[i];
      const f = b.flow[i]!;
      if (ct !== null && (info === CtInfo.NEW || info === CtInfo.ESTABLISHED || info === CtInfo.RELATED)
        && ctDecision[f] !== DECISION.NONE) {
        decision = ctDecision[f]!;
        rule = ctRule[f]!;
        how[i] = How.CACHED;
        cached++;
      } else {
        const k = ev.match(b, i);
        evaluations++;
        if (k < 0) { rule = -1; decision = defaultAction; } else { rule = entryRule[k]!; decision = entryAction[k]!; }
        hits[rule + 1]++;
        // Only the flow's own packets in its original direction speak for the flow.
        if (ct !== null && (info === CtInfo.NEW || info === CtInfo.ESTABLISHED) && b.dir[i] === 0) {
          ctDecision[f] = decision;
          ctRule[f] = rule;
          how[i] = How.EVALUATED_STORED;
        } else {
          how[i] = How.EVALUATED;
        }
      }
      which[i] = rule;
      if (decision === Action.DROP) {
        b.verdict[i] = Verdict.DROP;
        b.stage[i] = self;
        b.reason[i] = rule < 0 ? Reason.DEFAULT : Reason.RULE;
        dropped++;
      } else {
        accepted++;
      }
    }
    this.evaluations += evaluations;
    this.cachedLookups += cached;
    this.dropped += dropped;
    this.accepted += accepted;
    this.notIp += notIp;
  }

  report(): StageReport {
    const hits: StageReport = {};
    const rules = this.table.rules;
    for (let r = 0; r < rules.length; r++) if (this.hits[r + 1]! > 0) hits[`rule ${rules[r]!.number}`] = this.hits[r + 1]!;
    if (this.hits[0]! > 0) hits.default = this.hits[0]!;
    return {
      evaluations: this.evaluations,
      cachedLookups: this.cachedLookups,
      accepted: this.accepted,
      dropped: this.dropped,
      notIp: this.notIp,
      hits,
    };
  }

  describe(): StageReport {
    return { rules: { written: this.table.rules.length, ...this.ev.stats() } };
  }

  explain(b: Batch, i: number): string {
    const how = i < this.how.length ? this.how[i]! : How.NOT_SEEN;
    const r = this.which[i]!;
    const rule = r >= 0 ? this.table.rules[r]! : null;
    const decision = rule ? ACTION_NAMES[rule.action] : ACTION_NAMES[this.defaultAction];
    switch (how) {
      case How.NOT_IP: return 'not IP: accepted (policy is about IP)';
      case How.CACHED: return `cached decision of flow #${b.flow[i]}: ${decision} (${rule ? `rule ${rule.number}` : 'default'})`;
      case How.EVALUATED:
      case How.EVALUATED_STORED: {
        const what = rule ? `${describeRule(rule)} matched: ${decision}` : `no rule matched: default ${decision}`;
        return how === How.EVALUATED_STORED ? `${what}; stored in flow #${b.flow[i]}` : what;
      }
      default: return 'not evaluated (already dropped)';
    }
  }
}

/** Read and validate the [policy] section; errors name the file and line of the offending rule. */
export function policyConfig(section: Section): PolicyConfig {
  const evaluator = section.choice('evaluator', EVALUATORS, 'chain');
  const defaultAction = section.choice('default', ['accept', 'drop'] as const, 'accept') === 'drop' ? Action.DROP : Action.ACCEPT;
  section.all('rule');
  section.all('rules');
  const rules: Rule[] = [];
  // rule: and rules: interleave; the numbering follows the profile's order.
  for (const e of section.entries) {
    if (e.key === 'rule') {
      try {
        rules.push(parseRule(e.value, rules.length + 1));
      } catch (err) {
        throw section.error(e, (err as Error).message);
      }
    } else if (e.key === 'rules') {
      const file = readListFile(section, e);
      for (const { text, line } of file.lines) {
        try {
          rules.push(parseRule(text, rules.length + 1));
        } catch (err) {
          throw new ProfileError(file.shown, line, `[policy] rule: ${(err as Error).message} (in the rules file of ${e.file}:${e.line})`);
        }
      }
    }
  }
  return { evaluator, defaultAction, rules };
}

registerStage('policy', 'first-match rules (chain / set / trie evaluator); once per flow behind conntrack',
  (section: Section, ctx: StageContext) => new PolicyStage(policyConfig(section), ctx.conntrack, section.name));
