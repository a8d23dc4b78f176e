/*
 * A model of dplab's policy stage evaluating its rules for a packet (src/policy/rules.ts): the
 * rule set flattened as dplab's RuleTable (one entry per (from, to) pair, in rule order) in an
 * array map, scanned in order with bpf_loop until the first entry that matches; no match is the
 * default action. A linear scan, as an iptables chain (dplab's `chain`; its `set` and `trie`
 * evaluators give the same verdicts). Packets that are not IP are accepted.
 */
#include "parse.h"

#define MAX_RANGES 16
#define ACTION_ACCEPT 1
#define ACTION_DROP 2

struct rule {
	__u32 src[4], src_mask[4], dst[4], dst_mask[4]; /* host-order words, as dplab's */
	__s16 proto;    /* -1: any */
	__u8 family;    /* 0: both */
	__u8 action;
	__u8 sport_n;   /* 0: no condition */
	__u8 dport_n;
	__u16 pad;
	__u16 sport_lo[MAX_RANGES], sport_hi[MAX_RANGES];
	__u16 dport_lo[MAX_RANGES], dport_hi[MAX_RANGES];
};

struct policy_config { __u32 count; __u32 default_action; };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct rule);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct policy_config);
} config SEC(".maps");

struct scan { struct pkt *p; __u32 action; };

static __always_inline int in_ranges(__u16 *lo, __u16 *hi, __u8 n, __u16 port)
{
	for (int j = 0; j < MAX_RANGES; j++) {
		if (j >= n) break;
		if (port >= lo[j] && port <= hi[j]) return 1;
	}
	return 0;
}

static __always_inline int masked_eq(__u32 *a, __u32 *want, __u32 *mask)
{
	return (a[0] & mask[0]) == want[0] && (a[1] & mask[1]) == want[1] && (a[2] & mask[2]) == want[2] &&
	       (a[3] & mask[3]) == want[3];
}

/* restMatches() and the destination compare, for entry k. */
static long match_one(__u32 k, void *arg)
{
	struct scan *s = arg;
	struct pkt *p = s->p;
	struct rule *r = bpf_map_lookup_elem(&rules, &k);
	if (!r) return 1;
	if (r->family && r->family != p->family) return 0;
	if (r->proto >= 0 && r->proto != p->proto) return 0;
	if (!masked_eq(p->src, r->src, r->src_mask) || !masked_eq(p->dst, r->dst, r->dst_mask)) return 0;
	if (r->sport_n || r->dport_n) {
		if (!p->has_ports) return 0; /* no ports: not TCP/UDP/UDP-Lite/SCTP, or a later fragment */
		if (r->sport_n && !in_ranges(r->sport_lo, r->sport_hi, r->sport_n, p->sport)) return 0;
		if (r->dport_n && !in_ranges(r->dport_lo, r->dport_hi, r->dport_n, p->dport)) return 0;
	}
	s->action = r->action;
	return 1; /* first match: stop */
}

static __always_inline int policy_stage(struct pkt *p, void *data, void *end)
{
	if (p->family == 0) return 0;
	__u32 zero = 0;
	struct policy_config *c = bpf_map_lookup_elem(&config, &zero);
	if (!c) return 0;
	struct scan s = { .p = p, .action = c->default_action };
	bpf_loop(c->count, match_one, &s, 0);
	return s.action == ACTION_DROP;
}

#ifndef DPLAB_NO_PROGRAMS
DPLAB_PROGRAMS(policy_stage)
#endif
