/*
 * A model of dplab's conntrack stage (src/conntrack/tracker.ts, tcp.ts), in the manner of Calico's
 * BPF conntrack: one LRU hash entry per flow, keyed by the flow's two endpoints in a fixed order
 * (so both directions find it), holding the state nf_conntrack keeps: the TCP state from the
 * kernel's transition table, seen-reply, assured, per-direction packets, the expiry time on the
 * capture's clock. Returns drop for what dplab calls INVALID (when `invalid: drop`).
 *
 * Modelled: TCP (flag validity, the state table, TIME_WAIT/CLOSE reuse by a new SYN, a flow reset
 * before any reply ends at once, a SYN retransmitted before any reply neither counted nor renewing
 * the timeout, ignored packets, loose pick-up), UDP (stream after 2 s with a reply), other
 * protocols, ICMP/ICMPv6 queries (identifier as ports, replies without a request INVALID, ND/MLD
 * untracked), ICMP errors quoting an IPv4 packet or an IPv6 one without extension headers
 * (RELATED to the quoted flow, else INVALID), later fragments (counted on the flow of their first
 * fragment, found by addresses, protocol and IP id; never dropped). Not modelled: a full table (dplab evicts a
 * non-assured entry nearby, the LRU hash its least recently used one); ICMPv6 errors quoting
 * extension headers (returned as "not modelled").
 *
 * Return codes: 0 pass (an existing flow, or untracked), 1 drop, 2 pass and a flow was created,
 * 3 not modelled (passed, not compared).
 */
#include "parse.h"

#define PASS 0
#define DROP 1
#define CREATED 2
#define NOT_MODELLED 3

/* TCP states (tcp.ts), and the transition table's two extra results */
#define S_NONE 0
#define S_SYN_SENT 1
#define S_SYN_RECV 2
#define S_ESTABLISHED 3
#define S_TIME_WAIT 7
#define S_CLOSE 8
#define S_INVALID 10
#define S_IGNORE 11

#define C_SYN 0
#define C_RST 4

struct ct_key {
	__u32 a[4], b[4]; /* the two endpoints, lower first */
	__u16 pa, pb;
	__u8 family, proto;
	__u16 pad;
};

struct ct_val {
	__u64 expires;    /* ns, capture clock */
	__u64 first;      /* when the flow began */
	__u64 packets[2]; /* original, reply */
	__u8 state;
	__u8 seen_reply;
	__u8 assured;
	__u8 orig_is_a;   /* the flow's first packet came from endpoint a */
	__u8 decision;    /* the policy decision cached in the flow (ctpolicy.bpf.c): 0 none, 1 accept, 2 drop */
	__u8 pad1;
	__u16 pad2;
	__u32 binding;    /* the NAT binding kept in the flow (dnat.bpf.c): 0 none, else its code */
	__u32 pad3;
};

/* What conntrack tells the stage after it (dplab's ctInfo, flow and direction). */
#define CT_UNTRACKED 0
#define CT_NEW 1
#define CT_ESTABLISHED 2
#define CT_RELATED 3
#define CT_INVALID 4
struct ct_out {
	struct ct_val *v; /* the flow's entry, or 0 (none, or it ended with this packet) */
	__u8 info;
	__u8 dir;
	__u8 decision;    /* the entry's cached decision when the packet was tracked */
	__u32 binding;    /* the entry's NAT binding when the packet was tracked */
};

/* dplab's mark(): tie the packet to the entry and say what it is to the flow. */
static __always_inline void mark(struct ct_out *o, struct ct_val *v, __u32 dir)
{
	o->v = v;
	o->dir = dir;
	o->info = dir == 1 || v->seen_reply ? CT_ESTABLISHED : CT_NEW;
	o->decision = v->decision;
	o->binding = v->binding;
}

/* A packet of the flow in direction dir: a reply is seen, the packet marked and counted. */
static __always_inline void count(struct ct_out *o, struct ct_val *v, __u32 dir)
{
	if (dir == 1) v->seen_reply = 1;
	mark(o, v, dir);
	v->packets[dir]++;
}

struct ct_config {
	__u64 tcp[10];    /* timeout per TCP state, ns */
	__u64 udp, udp_stream, icmp, generic;
	__u32 loose;
	__u32 drop_invalid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 524288);
	__type(key, struct ct_key);
	__type(value, struct ct_val);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_config);
} ct_config SEC(".maps");

/* A first fragment's datagram -> its flow and direction, for the later fragments. */
struct frag_key { __u32 src[4], dst[4]; __u32 id; __u8 family, proto; __u16 pad; };
struct frag_val { struct ct_key flow; __u32 dir; };

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct frag_key);
	__type(value, struct frag_val);
} fragments SEC(".maps");

/* nf_conntrack's tcp_conntracks[dir][class][state] (tcp.ts TCP_TRANSITIONS) */
#define sSS 1
#define sSR 2
#define sES 3
#define sFW 4
#define sCW 5
#define sLA 6
#define sTW 7
#define sCL 8
#define sS2 9
#define sIV 10
#define sIG 11
static const __u8 transitions[120] = {
	/* ORIGINAL: syn, synack, fin, ack, rst, none */
	sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2,
	sIV, sIV, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR,
	sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV,
	sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV,
	sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
	sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV,
	/* REPLY */
	sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2,
	sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR,
	sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV,
	sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG,
	sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
	sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV,
};

static __always_inline __u8 next_state(__u32 dir, __u32 cls, __u32 state)
{
	__u32 i = (dir * 6 + cls) * 10 + state;
	if (i >= 120) return sIV;
	return transitions[i];
}

/* get_conntrack_index(): RST over SYN over FIN over ACK */
static __always_inline __u32 tcp_class(__u8 f)
{
	if (f & 0x04) return C_RST;
	if (f & 0x02) return f & 0x10 ? 1 : C_SYN;
	if (f & 0x01) return 2;
	if (f & 0x10) return 3;
	return 5;
}

/* tcp_valid_flags[] with ECE, CWR, PSH ignored */
static __always_inline int tcp_flags_valid(__u8 f)
{
	__u8 x = f & ~(0x40 | 0x80 | 0x08) & 0x3f;
	return x == 0x02 || x == (0x02 | 0x20) || x == (0x02 | 0x10) || x == 0x04 || x == (0x04 | 0x10) ||
	       x == (0x01 | 0x10) || x == (0x01 | 0x10 | 0x20) || x == 0x10 || x == (0x10 | 0x20);
}

/* The key for (src, sport) <-> (dst, dport); *from_a: the packet comes from endpoint a. */
static __always_inline void make_key(struct ct_key *k, __u8 family, __u8 proto, __u32 *src, __u32 *dst,
				     __u16 sp, __u16 dp, int *from_a)
{
	int lower = 0; /* src endpoint < dst endpoint */
	int decided = 0;
	for (int i = 0; i < 4; i++) {
		if (!decided && src[i] != dst[i]) { lower = src[i] < dst[i]; decided = 1; }
	}
	if (!decided) lower = sp <= dp;
	__builtin_memset(k, 0, sizeof(*k));
	k->family = family;
	k->proto = proto;
	if (lower) {
		__builtin_memcpy(k->a, src, 16); __builtin_memcpy(k->b, dst, 16); k->pa = sp; k->pb = dp;
	} else {
		__builtin_memcpy(k->a, dst, 16); __builtin_memcpy(k->b, src, 16); k->pa = dp; k->pb = sp;
	}
	*from_a = lower;
}

/* now + timeout, saturating (a capture's clock can be absurd: the ns count is clamped to 64 bits). */
static __always_inline __u64 after(__u64 now, __u64 timeout)
{
	__u64 e = now + timeout;
	return e < now ? ~0ULL : e;
}

#ifdef DPLAB_NAT
/*
 * A translated flow's reply tuple (after DNAT: backend -> client), which is not the mirror of its
 * original one: the flow is found by it too, as the kernel hashes both tuples of a conntrack (and
 * dplab's FlowTable.setReply). Value: the flow's own key, which end of the reply key the backend
 * is, and the flow's start (an alias whose flow is gone, or was replaced, is ignored).
 */
struct alias_val { struct ct_key flow; __u64 first; __u32 be_is_a; __u32 pad; };

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 524288);
	__type(key, struct ct_key);
	__type(value, struct alias_val);
} aliases SEC(".maps");
#endif

/*
 * The entry for key k, by its own tuple or (NAT) by a reply tuple: then *k becomes the flow's own
 * key and *from_a says the packet's end as the flow's key orders them (dir = from_a != orig_is_a).
 */
static __always_inline struct ct_val *find(struct ct_key *k, int *from_a)
{
	struct ct_val *v = bpf_map_lookup_elem(&flows, k);
#ifdef DPLAB_NAT
	if (v) return v;
	struct alias_val *a = bpf_map_lookup_elem(&aliases, k);
	if (!a) return 0;
	struct ct_key own = a->flow;
	v = bpf_map_lookup_elem(&flows, &own);
	if (!v || v->first != a->first || v->binding < 3) return 0;
	/* from the backend: a reply (dir 1); the other way round: the original direction */
	*from_a = (*from_a == (int)a->be_is_a) ? !v->orig_is_a : v->orig_is_a;
	*k = own;
#endif
	return v;
}

/* An unexpired entry for the key (an expired one is deleted, as dplab's lookup destroys it). */
static __always_inline struct ct_val *lookup(struct ct_key *k, __u64 now, int *from_a)
{
	struct ct_val *v = find(k, from_a);
	if (v && v->expires < now) {
		bpf_map_delete_elem(&flows, k);
		return 0;
	}
	return v;
}

static __always_inline struct ct_val *create(struct ct_key *k, __u64 now, int from_a)
{
	struct ct_val fresh = { .first = now, .orig_is_a = from_a };
	if (bpf_map_update_elem(&flows, k, &fresh, BPF_ANY)) return 0;
	return bpf_map_lookup_elem(&flows, k);
}

static __always_inline int invalid(struct ct_config *c, struct ct_out *o)
{
	o->info = CT_INVALID;
	o->v = 0;
	return c->drop_invalid ? DROP : PASS;
}

static __always_inline int track_tcp(struct pkt *p, struct ct_config *c, void *data, void *end, struct ct_out *o)
{
	__u8 *th = data + (p->l4 & 0xfff);
	__u8 flags = 0;
	if ((void *)(th + 14) <= end) flags = th[13];
	if (!tcp_flags_valid(flags)) return invalid(c, o);
	__u32 cls = tcp_class(flags);
	struct ct_key k;
	int from_a;
	make_key(&k, p->family, 6, p->src, p->dst, p->sport, p->dport, &from_a);
	struct ct_val *v = lookup(&k, p->now, &from_a);
	if (v) {
		__u32 dir = from_a == v->orig_is_a ? 0 : 1;
		__u8 old = v->state;
		__u8 next = next_state(dir, cls, old);
		if (cls == C_SYN && next == S_SYN_SENT && (old == S_TIME_WAIT || old == S_CLOSE)) {
			/* a new connection on a closed one's tuple: the old entry goes */
			bpf_map_delete_elem(&flows, &k);
		} else {
			if (next == S_INVALID) return invalid(c, o);
			__u8 seen_reply = v->seen_reply;
			if (dir == 1) v->seen_reply = 1;
			mark(o, v, dir);
			if (next == S_IGNORE) return PASS;
			if (seen_reply && (old == S_SYN_RECV || old == S_ESTABLISHED) && next == S_ESTABLISHED) v->assured = 1;
			v->state = next;
			if (!seen_reply && cls == C_SYN && old == S_SYN_SENT) return PASS; /* a SYN again: not counted */
			v->packets[dir & 1]++;
			if (!seen_reply && cls == C_RST) {
				bpf_map_delete_elem(&flows, &k);
				o->v = 0; /* ended: its decision was copied */
				return PASS;
			}
			__u32 to = cls == C_RST ? S_CLOSE : next;
			v->expires = after(p->now, c->tcp[to < 10 ? to : 0]);
			return PASS;
		}
	}
	__u8 start = next_state(0, cls, S_NONE);
	if (start == S_INVALID || (start == S_ESTABLISHED && !c->loose)) return invalid(c, o);
	v = create(&k, p->now, from_a);
	if (!v) return DROP;
	v->state = start;
	v->expires = after(p->now, c->tcp[start < 10 ? start : 0]);
	v->packets[0] = 1;
	mark(o, v, 0);
	return CREATED;
}

static __always_inline int track_other(struct pkt *p, struct ct_config *c, struct ct_out *o)
{
	struct ct_key k;
	int from_a;
	make_key(&k, p->family, p->proto, p->src, p->dst, p->sport, p->dport, &from_a);
	struct ct_val *v = lookup(&k, p->now, &from_a);
	int r = PASS;
	__u32 dir = 0;
	if (v) dir = from_a == v->orig_is_a ? 0 : 1;
	else {
		v = create(&k, p->now, from_a);
		if (!v) return DROP;
		r = CREATED;
	}
	count(o, v, dir);
	if (p->proto == 17 || p->proto == 136) {
		if (v->seen_reply && p->now - v->first > 2000000000ULL) {
			v->assured = 1;
			v->expires = after(p->now, c->udp_stream);
		} else v->expires = after(p->now, c->udp);
	} else v->expires = after(p->now, c->generic);
	return r;
}

static __always_inline int is_icmp_error(int v6, __u8 type)
{
	return v6 ? type >= 1 && type <= 4 : type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

/* ICMPv6 neighbour discovery and MLD: not tracked */
static __always_inline int is_nd_mld(__u8 type)
{
	return (type >= 130 && type <= 137) || type == 143;
}

/* An ICMP error: RELATED to the flow of the packet it quotes, else INVALID. */
static __always_inline int track_icmp_error(struct pkt *p, struct ct_config *c, __u8 *q, void *end, struct ct_out *o)
{
	__u32 src[4] = {}, dst[4] = {};
	__u8 proto;
	__u8 *l4;
	__u16 sp = 0, dp = 0;
	if ((void *)(q + 1) > end) return invalid(c, o);
	__u8 v = q[0] >> 4;
	if (p->family == 4 && v == 4) {
		if ((void *)(q + 20) > end) return invalid(c, o);
		__u32 ihl = (q[0] & 15) << 2;
		if (ihl < 20) return invalid(c, o);
		src[0] = bpf_ntohl(*(__u32 *)(q + 12));
		dst[0] = bpf_ntohl(*(__u32 *)(q + 16));
		proto = q[9];
		if (bpf_ntohs(*(__u16 *)(q + 6)) & 0x1fff) return NOT_MODELLED;
		l4 = q + ihl;
	} else if (p->family == 6 && v == 6) {
		if ((void *)(q + 40) > end) return invalid(c, o);
		for (int i = 0; i < 4; i++) {
			src[i] = bpf_ntohl(*(__u32 *)(q + 8 + 4 * i));
			dst[i] = bpf_ntohl(*(__u32 *)(q + 24 + 4 * i));
		}
		proto = q[6];
		if (is_generic_ext(proto) || proto == 44 || proto == 51) return NOT_MODELLED;
		l4 = q + 40;
	} else {
		return NOT_MODELLED;
	}
	if (proto == 6 || proto == 17 || proto == 132 || proto == 136) {
		if ((void *)(l4 + 4) <= end) {
			sp = (__u16)l4[0] << 8 | l4[1];
			dp = (__u16)l4[2] << 8 | l4[3];
		}
	} else if (proto == 1 || proto == 58) {
		if ((void *)(l4 + 6) <= end) sp = dp = (__u16)l4[4] << 8 | l4[5];
	}
	struct ct_key k;
	int from_a;
	make_key(&k, p->family, proto, src, dst, sp, dp, &from_a);
	struct ct_val *e = find(&k, &from_a);
	if (!e || e->expires < p->now) return invalid(c, o);
	o->v = e;
	o->dir = (from_a == e->orig_is_a ? 0 : 1) ^ 1;
	o->info = CT_RELATED;
	o->decision = e->decision;
	o->binding = e->binding;
	return PASS;
}

static __always_inline int track_icmp(struct pkt *p, struct ct_config *c, void *data, void *end, struct ct_out *o)
{
	int v6 = p->proto == 58;
	__u8 *ih = data + (p->l4 & 0xfff);
	if ((void *)(ih + 1) > end) return invalid(c, o);
	__u8 type = ih[0];
	if (is_icmp_error(v6, type)) return track_icmp_error(p, c, ih + 8, end, o);
	if (v6 && is_nd_mld(type)) return PASS;
	int request = v6 ? type == 128 || type == 139 : type == 8 || type == 13 || type == 15 || type == 17;
	int reply = v6 ? type == 129 || type == 140 : type == 0 || type == 14 || type == 16 || type == 18;
	if (!request && !reply) return invalid(c, o);
	__u16 id = 0;
	/*
	 * The identifier of echo and timestamp messages; node information (RFC 4620) is keyed by the
	 * same two bytes (its Qtype), as Linux's icmpv6_pkt_to_tuple reads them for every type, and as
	 * the first-fragment path below does.
	 */
	int has_id = v6 ? type == 128 || type == 129 || type == 139 || type == 140
			: type == 0 || type == 8 || (type >= 13 && type <= 18);
	if (has_id && (void *)(ih + 6) <= end) id = (__u16)ih[4] << 8 | ih[5];
	struct ct_key k;
	int from_a;
	make_key(&k, p->family, p->proto, p->src, p->dst, id, id, &from_a);
	struct ct_val *v = lookup(&k, p->now, &from_a);
	int r = PASS;
	__u32 dir = 0;
	if (v) {
		dir = from_a == v->orig_is_a ? 0 : 1;
		/* a ping to oneself reads the same both ways: the type tells the direction */
		if (reply && dir == 0 && p->src[0] == p->dst[0] && p->src[1] == p->dst[1] && p->src[2] == p->dst[2] &&
		    p->src[3] == p->dst[3])
			dir = 1;
	} else {
		if (reply) return invalid(c, o);
		v = create(&k, p->now, from_a);
		if (!v) return DROP;
		r = CREATED;
	}
	count(o, v, dir);
	v->expires = after(p->now, c->icmp);
	return r;
}

static __always_inline void frag_key_of(struct frag_key *fk, struct pkt *p)
{
	__builtin_memset(fk, 0, sizeof(*fk));
	__builtin_memcpy(fk->src, p->src, 16);
	__builtin_memcpy(fk->dst, p->dst, 16);
	fk->id = p->ipid;
	fk->family = p->family;
	fk->proto = p->proto;
}

/* A later fragment: counted on its first fragment's flow when that flow is still there. */
static __always_inline int follow_fragment(struct pkt *p, struct ct_out *o)
{
	struct frag_key fk;
	frag_key_of(&fk, p);
	struct frag_val *f = bpf_map_lookup_elem(&fragments, &fk);
	if (!f) return PASS;
	struct ct_val *v = bpf_map_lookup_elem(&flows, &f->flow);
	if (v && !(v->expires < p->now)) {
		v->packets[f->dir & 1]++;
		mark(o, v, f->dir & 1);
	}
	return PASS;
}

static __always_inline int track(struct pkt *p, struct ct_config *c, void *data, void *end, struct ct_out *o)
{
	if (p->proto == 6) return track_tcp(p, c, data, end, o);
	if (p->proto == 1 || p->proto == 58) return track_icmp(p, c, data, end, o);
	return track_other(p, c, o);
}

/* The stage: track the packet; `o` says what it is to its flow (for ctpolicy.bpf.c). */
static __always_inline int conntrack_track(struct pkt *p, void *data, void *end, struct ct_out *o)
{
	if (p->family == 0) return PASS; /* untracked */
	if (p->frag == FRAG_LATER) return follow_fragment(p, o);
	__u32 zero = 0;
	struct ct_config *c = bpf_map_lookup_elem(&ct_config, &zero);
	if (!c) return PASS;
	int r = track(p, c, data, end, o);
	if (p->frag == FRAG_FIRST && (r == PASS || r == CREATED)) {
		/* remember the datagram's flow (a tracked packet: not ND/MLD, not an ICMP error) */
		struct ct_key k;
		int from_a;
		__u16 sp = p->sport, dp = p->dport;
		if (p->proto == 1 || p->proto == 58) {
			__u8 *ih = data + (p->l4 & 0xfff);
			if ((void *)(ih + 6) > end) return r;
			__u8 type = ih[0];
			if (is_icmp_error(p->proto == 58, type) || (p->proto == 58 && is_nd_mld(type)))
				return r;
			sp = dp = (__u16)ih[4] << 8 | ih[5];
		}
		make_key(&k, p->family, p->proto, p->src, p->dst, sp, dp, &from_a);
		struct ct_val *v = find(&k, &from_a);
		if (!v) return r;
		struct frag_key fk;
		frag_key_of(&fk, p);
		struct frag_val fv = { .flow = k, .dir = from_a == v->orig_is_a ? 0 : 1 };
		bpf_map_update_elem(&fragments, &fk, &fv, BPF_ANY);
	}
	return r;
}

static __always_inline int conntrack_stage(struct pkt *p, void *data, void *end)
{
	struct ct_out o = {};
	return conntrack_track(p, data, end, &o);
}

#ifndef DPLAB_NO_PROGRAMS
DPLAB_PROGRAMS(conntrack_stage)
#endif
