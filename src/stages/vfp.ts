/**
 * vfp: the Windows Virtual Filtering Platform that HNS (Calico's Windows dataplane) programs, as
 * its design paper describes it (Firestone et al., "VFP: A Virtual Switch Platform for Host SDN in
 * the Public Cloud", NSDI 2017): match-action rules in layers; a flow's first packet walks the
 * layers and the result is compiled into one unified flow entry (the UFT) holding the composed
 * action, a header transposition; every later packet of the flow, both directions, is one flow
 * lookup plus that precomputed transposition.
 *
 * Modelled layers, in order for traffic to a service: the load balancer / NAT layer (HNS's
 * load-balancer policy: VIP -> backend, the same service table, choice and seed as dnat), then the
 * ACL layer (allow / block rules, first match, as the policy stage's rules) on the translated
 * packet. The unified flow entry is conntrack's entry (run conntrack before vfp: its lookup stands
 * for the UFT lookup); vfp keeps the compiled action in its own columns: allow with a rewrite
 * (backend k), allow as is, or block. Not modelled: encapsulation layers (VNET/VXLAN), metering,
 * the slow path's actual cost structure in the Windows kernel (what is measured is this model's
 * cost in dplab), per-layer default rules beyond one default action.
 *
 * Its NAT output equals the dnat stage's on the same packets (test/hns.test.ts).
 *
 * Config ([vfp] section): the dnat keys (services, service, seed) and the policy keys (evaluator,
 * default, rule, rules) for the ACL layer.
 */
import { CtInfo } from '../conntrack/info.js';
import type { FlowTable } from '../conntrack/table.js';
import { Frag, Verdict, type Batch } from '../packet/batch.js';
import { End, setEndpoint } from '../packet/wire.js';
import { Binder, Bound } from '../nat/bind.js';
import { createEvaluator, type Evaluator } from '../policy/evaluator.js';
import { Action, describeRule, RuleTable, type Rule } from '../policy/rules.js';
import { endpointToString, readServices, type ServiceTable } from '../nat/services.js';
import type { Section } from '../pipeline/profile.js';
import { registerStage, type StageContext } from '../pipeline/registry.js';
import type { Stage, StageReport } from '../pipeline/stage.js';
import { policyConfig } from './policy.js';

/** The compiled action of a unified flow (vfp's column): not compiled, allow, block. */
const Acl = { NONE: 0, ALLOW: 1, BLOCK: 2 } as const;
/** The NAT part (second column): none, or backend k + 1. */
const NO_NAT = 0;

const Reason = { ACL: 0, NO_ENDPOINTS: 1 } as const;
const How = { NOT_SEEN: 0, COMPILED: 1, FAST: 2, UNTRACKED: 3 } as const;

export class VfpStage implements Stage {
  readonly name: string;
  readonly reasons: readonly string[] = ['acl', 'no-endpoints'];
  readonly rewrites = true;
  readonly services: ServiceTable;
  readonly steering: ServiceTable;
  private readonly ct: FlowTable;
  private acl!: Uint8Array;
  private aclRule!: Int32Array;
  private nat!: Int32Array;
  private readonly rules: Rule[];
  private readonly table: RuleTable;
  private readonly ev: Evaluator;
  private readonly defaultAction: number;
  private readonly binder: Binder;

  private compiled = 0;
  private fast = 0;
  private blocked = 0;
  private rewritten = 0;
  private untracked = 0;
  private noEndpoints = 0;
  private how = new Uint8Array(0);

  constructor(section: Section, ctx: StageContext) {
    this.name = section.name;
    if (ctx.conntrack === null) {
      throw section.error(null, 'vfp needs a conntrack stage before it: its lookup stands for VFP\'s unified flow table (e.g. "pipeline: conntrack -> vfp")');
    }
    this.services = readServices(section);
    this.steering = this.services;
    const cfg = policyConfig(section);
    this.rules = cfg.rules;
    this.table = new RuleTable(cfg.rules);
    this.ev = createEvaluator(cfg.evaluator, this.table);
    this.defaultAction = cfg.defaultAction;
    this.ct = ctx.conntrack;
    this.ct.allowReplyTuples();
    this.ct.column(Uint8Array, 1, (a) => { this.acl = a; });
    this.ct.column(Int32Array, 1, (a) => { this.aclRule = a; });
    this.ct.column(Int32Array, 1, (a) => { this.nat = a; });
    this.binder = new Binder(this.services, this.ct);
    // The load-balancer layer's choice, as the entry is created (the reply tuple must exist before
    // the next packet is looked up; see FlowTable.onCreate).
    this.ct.onCreate((b, i, e) => { this.balance(b, i, e); });
  }

  private balance(b: Batch, i: number, e: number): void {
    const k = this.binder.bind(b, i, e);
    // A clash leaves the flow untranslated here (dnat drops it): VFP would fail the NAT layer.
    this.nat[e] = k >= 0 ? k + 1 : k === Bound.NO_ENDPOINTS ? -1 : NO_NAT;
  }

  process(b: Batch, self: number): void {
    if (this.how.length < b.capacity) this.how = new Uint8Array(b.capacity);
    const how = this.how;
    const n = b.count;
    const { verdict, flow, dir, ctInfo, frag } = b;
    const { acl, nat } = this;
    const { beWords, bePort, vipWords, vipPort } = this.binder;
    for (let i = 0; i < n; i++) {
      how[i] = How.NOT_SEEN;
      if (verdict[i] !== Verdict.PASS) continue;
      const e = flow[i]!;
      if (e < 0 || ctInfo[i] === CtInfo.INVALID || b.family[i] === 0) { how[i] = How.UNTRACKED; this.untracked++; continue; }
      const k = nat[e]! - 1;
      if (k === -2) { this.drop(b, i, self, Reason.NO_ENDPOINTS); this.noEndpoints++; continue; }
      const d = dir[i]!;
      // The transposition: the NAT part of the compiled action.
      if (k >= 0) {
        if (ctInfo[i] === CtInfo.RELATED) this.binder.icmpError(b, i, k, d);
        else if (d === 0) setEndpoint(b, i, End.DST, beWords, k << 2, bePort[k]!);
        else setEndpoint(b, i, End.SRC, vipWords, k << 2, vipPort[k]!);
        this.rewritten++;
      }
      let a = acl[e]!;
      if (a === Acl.NONE) {
        // Compiling the flow: the ACL layer on the translated packet. Only the flow's own packets
        // in the original direction compile it (as policy's cached decision).
        const m = this.ev.match(b, i);
        const action = m < 0 ? this.defaultAction : this.table.action[m]!;
        a = action === Action.DROP ? Acl.BLOCK : Acl.ALLOW;
        if (d === 0 && ctInfo[i] !== CtInfo.RELATED && frag[i] !== Frag.LATER) {
          acl[e] = a;
          this.aclRule[e] = m < 0 ? -1 : this.table.rule[m]!;
          this.compiled++;
        }
        how[i] = How.COMPILED;
      } else {
        this.fast++;
        how[i] = How.FAST;
      }
      if (a === Acl.BLOCK) { this.drop(b, i, self, Reason.ACL); this.blocked++; }
    }
  }

  private drop(b: Batch, i: number, self: number, why: number): void {
    b.verdict[i] = Verdict.DROP;
    b.stage[i] = self;
    b.reason[i] = why;
  }

  describe(): StageReport {
    return { services: this.services.services.length, backends: this.services.backends.length, aclRules: this.rules.length };
  }

  report(): StageReport {
    return {
      flowsCompiled: this.compiled,
      fastPathPackets: this.fast,
      packetsRewritten: this.rewritten,
      blockedByAcl: this.blocked,
      untrackedPassedAsIs: this.untracked,
      rejectedNoEndpoints: this.noEndpoints,
    };
  }

  explain(b: Batch, i: number): string {
    const h = this.how[i]!;
    if (h === How.NOT_SEEN) return '-';
    if (h === How.UNTRACKED) return 'no unified flow (untracked or invalid): passed as is';
    const e = b.flow[i]!;
    const k = this.nat[e]! - 1;
    const nat = k >= 0 ? `rewrite to ${endpointToString(this.services.backends[k]!)}` : 'no rewrite';
    const r = this.aclRule[e]!;
    const rule = r >= 0 ? describeRule(this.table.rules[r]!) : 'default';
    return h === How.COMPILED ? `first packet: layers walked (LB: ${nat}; ACL: ${rule}), action compiled into the unified flow`
      : `unified flow hit: ${nat}, ${this.acl[e] === Acl.BLOCK ? 'block' : 'allow'}`;
  }
}

registerStage('vfp', 'Windows VFP as HNS programs it: layers walked on a flow\'s first packet, compiled into one unified flow action (LB/NAT rewrite + ACL)',
  (section: Section, ctx: StageContext) => new VfpStage(section, ctx));
