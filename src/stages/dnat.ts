/**
 * dnat: per-packet destination NAT, as kube-proxy programs it with iptables (nat table,
 * PREROUTING: KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* -> DNAT). The first packet of a flow to a
 * service picks a backend and binds it to the flow's conntrack entry, with the reply tuple the
 * backend will answer with (backend -> client), so conntrack finds the flow by either tuple.
 * From then on every packet of the flow pays a lookup (conntrack's) and a rewrite, both ways:
 * the destination on the way in, the source back to the service address on replies. Checksums
 * are updated incrementally (src/packet/wire.ts). ICMP errors about a translated flow get their
 * quoted packet translated too, as nf_nat_icmp_reply_translation does.
 *
 * Semantics follow the kernel's: the NAT decision is taken once per conntrack entry, by the packet
 * that creates it, as conntrack creates it (FlowTable.onCreate: the reply tuple must be findable
 * before the next packet is looked up, and in a batch conntrack looks up every packet before dnat
 * runs; so the choice's cost shows in conntrack's row, the rewrite in dnat's); untracked and
 * invalid packets are not translated; a service without endpoints rejects its packets
 * (kube-proxy's REJECT). Where dplab differs: the kernel reassembles fragments before NAT
 * and fragments again on the way out; dplab translates each fragment where it is (the address in
 * every fragment, the port and the L4 checksum in the first, whose incremental update stays valid
 * for the whole datagram), so the bytes leave as the kernel's would when it keeps the fragment
 * boundaries (it does for forwarded datagrams that fit the outgoing MTU).
 *
 * Config ([dnat] section):
 *   services: rules/services.txt   service table (see src/nat/services.ts); repeatable
 *   service: tcp 10.96.0.10:80 -> 10.88.2.2:8080 10.88.2.3:8080     inline, repeatable
 *   seed: 0                        the backend hash's seed
 */
import { CtInfo } from '../conntrack/info.js';
import type { FlowTable } from '../conntrack/table.js';
import { Frag, Verdict, type Batch } from '../packet/batch.js';
import { End, setEndpoint } from '../packet/wire.js';
import { Binder, Bound } from '../nat/bind.js';
import { endpointToString, perBackendReport, readServices, type ServiceTable } from '../nat/services.js';
import type { Section } from '../pipeline/profile.js';
import { registerStage, type StageContext } from '../pipeline/registry.js';
import type { Stage, StageReport } from '../pipeline/stage.js';

/**
 * A flow's binding (dnat's per-flow column): none (not a service flow), the service's packets are
 * rejected (no endpoints) or dropped (its reply tuple is taken), or backend k as k + FIRST_BACKEND.
 */
const Binding = { NONE: 0, REJECT: 1, CLASH: 2, FIRST_BACKEND: 3 } as const;

const Reason = { NO_ENDPOINTS: 0, TUPLE_CLASH: 1 } as const;

/** What dnat did to a packet of the last batch, for trace. */
const How = { NOT_SEEN: 0, NOT_SERVICE: 1, FOUND: 2, ICMP: 3, FRAGMENT: 4, UNTRACKED: 5 } as const;

export class DnatStage implements Stage {
  readonly name: string;
  readonly reasons: readonly string[] = ['no-endpoints', 'tuple-clash'];
  readonly rewrites = true;
  readonly services: ServiceTable;
  readonly steering: ServiceTable;
  private readonly ct: FlowTable;
  /** Per flow entry: its Binding, and the number of the packet that created it. */
  binding!: Int32Array;
  private bornAt!: Float64Array;
  private readonly binder: Binder;

  private bindings = 0;
  private readonly perBackend: Float64Array;
  private translatedOriginal = 0;
  private translatedReply = 0;
  private icmpTranslated = 0;
  private fragmentsTranslated = 0;
  private untranslatedUntracked = 0;
  private noEndpoints = 0;
  private clashes = 0;
  private how = new Uint8Array(0);

  constructor(section: Section, ctx: StageContext) {
    this.name = section.name;
    if (ctx.conntrack === null) {
      throw section.error(null, 'dnat needs a conntrack stage before it: a NAT binding lives in the flow\'s conntrack entry, '
        + 'as in the kernel (e.g. "pipeline: conntrack -> dnat -> policy"); for load balancing without conntrack use ctlb');
    }
    this.services = readServices(section);
    this.steering = this.services;
    this.ct = ctx.conntrack;
    this.ct.allowReplyTuples();
    this.ct.column(Int32Array, 1, (a) => { this.binding = a; });
    this.ct.column(Float64Array, 1, (a) => { this.bornAt = a; });
    this.perBackend = new Float64Array(this.services.backends.length);
    this.binder = new Binder(this.services, this.ct);
    // The backend is chosen as conntrack creates the entry (see FlowTable.onCreate), so the reply
    // tuple is in the table before any later packet of the batch is looked up.
    this.ct.onCreate((b, i, e) => { this.bind(b, i, e); });
  }

  process(b: Batch, self: number): void {
    if (this.how.length < b.capacity) this.how = new Uint8Array(b.capacity);
    const how = this.how;
    const n = b.count;
    const { verdict, flow, dir, ctInfo, frag } = b;
    const binding = this.binding;
    const { beWords, bePort, vipWords, vipPort } = this.binder;
    for (let i = 0; i < n; i++) {
      how[i] = How.NOT_SEEN;
      if (verdict[i] !== Verdict.PASS) continue;
      const e = flow[i]!;
      if (e < 0 || ctInfo[i] === CtInfo.INVALID) {
        // Untracked or invalid: the nat table never sees it (the kernel leaves no conntrack on an
        // invalid packet, so NAT has nothing to apply; with "[conntrack] invalid: accept" it passes as is).
        if (b.family[i] !== 0) this.untranslatedUntracked++;
        how[i] = How.UNTRACKED;
        continue;
      }
      const v = binding[e]!;
      if (v < Binding.FIRST_BACKEND) {
        if (v === Binding.NONE) { how[i] = How.NOT_SERVICE; continue; }
        // kube-proxy's REJECT for a service without endpoints, or a reply tuple already taken (the
        // kernel finds no unique tuple for a one-address, one-port DNAT range and drops): every packet.
        verdict[i] = Verdict.DROP;
        b.stage[i] = self;
        b.reason[i] = v === Binding.REJECT ? Reason.NO_ENDPOINTS : Reason.TUPLE_CLASH;
        continue;
      }
      const k = v - Binding.FIRST_BACKEND;
      const d = dir[i]!;
      if (ctInfo[i] === CtInfo.RELATED) {
        this.binder.icmpError(b, i, k, d);
        this.icmpTranslated++;
        how[i] = How.ICMP;
        continue;
      }
      if (d === 0) {
        setEndpoint(b, i, End.DST, beWords, k << 2, bePort[k]!);
        this.translatedOriginal++;
      } else {
        setEndpoint(b, i, End.SRC, vipWords, k << 2, vipPort[k]!);
        this.translatedReply++;
      }
      if (frag[i] === Frag.LATER) { this.fragmentsTranslated++; how[i] = How.FRAGMENT; } else how[i] = How.FOUND;
    }
  }

  /** Packet i created entry e: bind the flow to a backend if it is for a service. */
  private bind(b: Batch, i: number, e: number): void {
    this.bornAt[e] = b.num[i]!;
    const k = this.binder.bind(b, i, e);
    if (k >= 0) {
      this.binding[e] = k + Binding.FIRST_BACKEND;
      this.bindings++;
      this.perBackend[k]!++;
    } else if (k === Bound.NO_ENDPOINTS) {
      this.binding[e] = Binding.REJECT;
      this.noEndpoints++;
    } else if (k === Bound.CLASH) {
      this.binding[e] = Binding.CLASH;
      this.clashes++;
    } else this.binding[e] = Binding.NONE;
  }

  describe(): StageReport {
    return { services: this.services.services.length, backends: this.services.backends.length };
  }

  report(): StageReport {
    const byBackend = perBackendReport(this.services, this.perBackend);
    return {
      bindingsCreated: this.bindings,
      bindingsByBackend: byBackend,
      ...(this.binder.affinityHits > 0 ? { affinityHits: this.binder.affinityHits } : {}),
      packetsTranslated: { original: this.translatedOriginal, reply: this.translatedReply },
      icmpErrorsTranslated: this.icmpTranslated,
      laterFragmentsTranslated: this.fragmentsTranslated,
      untrackedNotTranslated: this.untranslatedUntracked,
      flowsRejectedNoEndpoints: this.noEndpoints,
      tupleClashes: this.clashes,
    };
  }

  explain(b: Batch, i: number): string {
    const h = this.how[i]!;
    if (h === How.NOT_SEEN) return '-';
    if (h === How.UNTRACKED) return 'not translated (no conntrack entry)';
    if (h === How.NOT_SERVICE) return 'not a service flow';
    const v = this.binding[b.flow[i]!]! - Binding.FIRST_BACKEND;
    const be = this.services.backends[v]!;
    const vip = this.services.services[this.services.backendService[v]!]!.vip;
    const map = `${endpointToString(vip)} -> ${endpointToString(be)}`;
    if (h === How.ICMP) return `ICMP error about ${map}: quoted packet and outer ${b.dir[i] === 1 ? 'source' : 'destination'} translated`;
    const way = b.dir[i] === 0 ? `destination ${map}` : `source ${endpointToString(be)} -> ${endpointToString(vip)} (reply)`;
    // The packet that created the entry made the binding (checked here, not on the packet path).
    const created = h === How.FOUND && b.num[i] === this.bornAt[b.flow[i]!];
    return `${way}; binding ${created ? 'created' : 'found'}${h === How.FRAGMENT ? ' (later fragment: address only)' : ''}`;
  }
}

registerStage('dnat', 'per-packet destination NAT to service backends (kube-proxy / iptables); binding kept in the conntrack entry',
  (section: Section, ctx: StageContext) => new DnatStage(section, ctx));
