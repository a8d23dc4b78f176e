/*
 * conntrack and policy as Calico runs them: the rules are evaluated for a flow's first packet and
 * the decision is kept in the conntrack entry; later packets of the flow (replies and ICMP errors
 * about it included) take the entry's decision. The same rules as dplab's policy stage behind its
 * conntrack stage (src/stages/policy.ts): a packet tracked as NEW, ESTABLISHED or RELATED whose
 * flow has a decision takes it; any other packet is evaluated, and the decision is stored in the
 * flow only by a NEW or ESTABLISHED packet in the original direction.
 *
 * Return codes as conntrack.bpf.c's (0 pass, 1 drop, 2 pass and a flow was created, 3 not modelled).
 */
#define DPLAB_NO_PROGRAMS
#include "conntrack.bpf.c"
#include "policy.bpf.c"
#undef DPLAB_NO_PROGRAMS

#define DECISION_ACCEPT 1
#define DECISION_DROP 2

static __always_inline int ctpolicy_stage(struct pkt *p, void *data, void *end)
{
	struct ct_out o = {};
	int r = conntrack_track(p, data, end, &o);
	if (r == DROP || r == NOT_MODELLED) return r;
	if (p->family == 0) return r; /* policy is about IP */
	__u8 d;
	if ((o.info == CT_NEW || o.info == CT_ESTABLISHED || o.info == CT_RELATED) && o.decision) {
		d = o.decision;
	} else {
		d = policy_stage(p, data, end) ? DECISION_DROP : DECISION_ACCEPT;
		if ((o.info == CT_NEW || o.info == CT_ESTABLISHED) && o.dir == 0 && o.v) o.v->decision = d;
	}
	return d == DECISION_DROP ? DROP : r;
}

DPLAB_PROGRAMS(ctpolicy_stage)
