/*
 * A model of dplab's dnat stage behind its conntrack stage (src/stages/dnat.ts, src/nat/bind.ts),
 * as kube-proxy's iptables DNAT works in the kernel: the binding lives in the conntrack entry.
 * One program, conntrack.bpf.c's tracking (with reply tuples: DPLAB_NAT) and then the NAT:
 *
 *  - a flow's first packet to a service VIP:port/proto (the `services` hash) picks a backend with
 *    dplab's hash (src/nat/services.ts pick(): the symmetric flow hash of the packet's tuple,
 *    src/packet/hash.ts, remixed with the seed, multiply-shift over the backends), so the kernel
 *    picks what dplab picks; the reply tuple the backend answers with (backend -> client) goes
 *    into `aliases`, so conntrack finds the flow by it; the binding goes in the flow entry;
 *  - a service without endpoints drops every packet of the flow (kube-proxy's REJECT), and so does
 *    a reply tuple another flow holds already (the kernel finds no unique tuple);
 *  - every packet of a bound flow is rewritten: the destination to the backend on the way in, the
 *    source back to the VIP on replies; checksums updated incrementally (RFC 1624) as dplab's
 *    wire.ts setEndpoint does, word for word, so the bytes are the same; a later fragment gets
 *    the address only; an ICMP error about the flow gets its quoted packet translated too
 *    (setQuotedEndpoint, nf_nat_icmp_reply_translation), outer address after;
 *  - untracked and INVALID packets are not translated.
 * Client-IP affinity is not modelled (calibrate refuses a service with it).
 *
 * Return codes as conntrack.bpf.c's (0 pass, 1 drop, 2 pass and a flow was created, 3 not modelled);
 * the packet leaves rewritten (the test run's data_out).
 */
#define DPLAB_NAT
#define DPLAB_NO_PROGRAMS
#include "conntrack.bpf.c"
#undef DPLAB_NO_PROGRAMS
#include "nat.h"

#define B_REJECT 1
#define B_CLASH 2
#define B_FIRST 3

/* wire.ts csumUpdate16 / csumUpdate32 */
static __always_inline __u16 csum16(__u16 hc, __u16 m, __u16 m2)
{
	__u32 s = (__u32)(~hc & 0xffff) + (__u32)(~m & 0xffff) + m2;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s & 0xffff;
}

static __always_inline __u16 csum32(__u16 hc, __u32 m, __u32 m2)
{
	return csum16(csum16(hc, m >> 16, m2 >> 16), m & 0xffff, m2 & 0xffff);
}

/* A change of a covered field from m to m2, where it changes (an unchanged one leaves the sum alone). */
static __always_inline __u16 csum16_if(__u16 hc, __u16 m, __u16 m2) { return m == m2 ? hc : csum16(hc, m, m2); }
static __always_inline __u16 csum32_if(__u16 hc, __u32 m, __u32 m2)
{
	return csum16_if(csum16_if(hc, m >> 16, m2 >> 16), m & 0xffff, m2 & 0xffff);
}

static __always_inline __u16 get16(__u8 *p) { return (__u16)p[0] << 8 | p[1]; }
static __always_inline void put16(__u8 *p, __u16 v) { p[0] = v >> 8; p[1] = v; }
static __always_inline __u32 get32(__u8 *p) { return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3]; }
static __always_inline void put32(__u8 *p, __u32 v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }

#define OFF(x) ((x) & 0xfff) /* offsets into a frame (at most 3,000 bytes): keeps the verifier's bounds */

/* Where the IP datagram ends (the frame may carry Ethernet padding after it). */
static __always_inline __u32 ip_end(struct pkt *p, __u8 *data, void *end)
{
	__u8 *ip = data + 14;
	if (p->family == 4) {
		if ((void *)(ip + 4) > end) return 0;
		return 14 + get16(ip + 2);
	}
	if ((void *)(ip + 6) > end) return 0;
	return 14 + 40 + get16(ip + 4);
}

/*
 * wire.ts setEndpoint (and, for an ICMP error's outer header, setIpv4Address / setIpv6Address,
 * which come to the same: ICMP has no port, ICMPv4 no pseudo-header): one end's address (and port, unless a later fragment) to a/port; the IPv4
 * header checksum and the L4 checksum (TCP, UDP; ICMPv6's pseudo-header) follow, a word at a time,
 * words that do not change left alone; IPv4 UDP without a checksum keeps none.
 */
static __always_inline void set_endpoint(struct pkt *p, __u8 *data, void *end, int dst, __u32 *a, __u16 port)
{
	__u8 *ip = data + 14;
	__u32 l4 = OFF(p->l4);
	__u32 sum = 0, pt = 0; /* offsets of the L4 checksum and the port; 0: none */
	__u32 len = (__u32)((long)end - (long)data);
	if (p->frag != FRAG_LATER) {
		if (p->proto == 6) { sum = l4 + 16; pt = l4 + (dst ? 2 : 0); }
		else if (p->proto == 17 || p->proto == 136) { sum = l4 + 6; pt = l4 + (dst ? 2 : 0); }
		else if (p->proto == 58 && p->family == 6) sum = l4 + 2;
		if (sum + 2 > len) sum = 0;
		if (pt + 2 > len) pt = 0;
	}
	int udp4 = p->family == 4 && p->proto == 17;
	__u16 hc = 0;
	__u8 *sp = data + OFF(sum);
	if (sum) {
		if ((void *)(sp + 2) > end) return;
		hc = get16(sp);
	}
	int use = sum && !(udp4 && hc == 0);
	if (p->family == 4) {
		if ((void *)(ip + 20) > end) return;
		__u8 *at = ip + (dst ? 16 : 12);
		__u32 old = get32(at);
		if (old != a[0]) {
			put32(at, a[0]);
			put16(ip + 10, csum32(get16(ip + 10), old, a[0]));
			if (use) hc = csum32(hc, old, a[0]);
		}
	} else {
		if ((void *)(ip + 40) > end) return;
		__u8 *at = ip + (dst ? 24 : 8);
#pragma unroll
		for (int k = 0; k < 4; k++) {
			__u32 old = get32(at + 4 * k);
			if (old == a[k]) continue;
			put32(at + 4 * k, a[k]);
			if (use) hc = csum32(hc, old, a[k]);
		}
	}
	if (pt) {
		__u8 *pp = data + OFF(pt);
		if ((void *)(pp + 2) > end) return;
		__u16 old = get16(pp);
		if (old != port) {
			put16(pp, port);
			if (use) hc = csum16(hc, old, port);
		}
	}
	if (use) {
		sp = data + OFF(sum);
		if ((void *)(sp + 2) > end) return;
		put16(sp, udp4 && hc == 0 ? 0xffff : hc);
	}
}

/*
 * wire.ts quotedL4Checksum: the offset of the quoted TCP/UDP checksum (its L4 header at l4, the
 * quote ending at stop), when quoted and in use; else 0.
 */
static __always_inline __u32 quoted_sum(__u8 *data, void *end, __u32 l4, __u32 stop, __u8 proto)
{
	__u8 *x = data + OFF(l4);
	if (proto == 6) return l4 + 20 <= stop ? l4 + 16 : 0;
	if (proto == 17 || proto == 136) {
		if (l4 + 8 > stop || (void *)(x + 8) > end) return 0;
		return get16(x + 6) == 0 && proto == 17 ? 0 : l4 + 6;
	}
	return 0;
}

/*
 * A 16-bit checksum field of the quote at offset `at` changes with m -> m2 (32 bits or 16); UDP
 * never gets 0. The ICMP checksum *ic, which covers the quote, follows the field's change.
 */
static __always_inline void fold_into(__u8 *data, void *end, __u32 at, __u8 proto, __u32 m, __u32 m2, int wide, __u16 *ic)
{
	__u8 *s = data + OFF(at);
	if ((void *)(s + 2) > end) return;
	__u16 old = get16(s);
	__u16 hc = wide ? csum32(old, m, m2) : csum16(old, m, m2);
	if (proto == 17 && hc == 0) hc = 0xffff;
	put16(s, hc);
	*ic = csum16_if(*ic, old, hc);
}

/*
 * wire.ts setQuotedEndpoint: in an ICMP error, one end of the quoted packet to a/port. dplab
 * updates the ICMP checksum once from the sums of the whole quote before and after; here each
 * changed field updates it (a loop over the quote costs the verifier too much): the same value
 * in ones' complement, written the same except when it comes out as 0x0000 against 0xffff.
 */
static __always_inline void set_quoted(struct pkt *p, __u8 *data, void *end, int dst, __u32 *a, __u16 port)
{
	__u32 icmp = OFF(p->l4), q = icmp + 8;
	__u32 stop = ip_end(p, data, end);
	__u32 len = (__u32)((long)end - (long)data);
	if (stop > len) stop = len;
	if (q + 1 > stop || icmp + 4 > stop) return;
	__u8 *ich = data + icmp;
	if ((void *)(ich + 4) > end) return;
	__u16 ic = get16(ich + 2);
	__u8 *qp = data + OFF(q);
	__u32 l4 = 0;
	__u8 proto = 0;
	if ((void *)(qp + 20) > end) return;
	if ((qp[0] >> 4) == 4 && q + 20 <= stop) {
		__u32 ihl = (qp[0] & 15) << 2;
		__u8 *at = qp + (dst ? 16 : 12);
		__u32 old = get32(at);
		put32(at, a[0]);
		ic = csum32_if(ic, old, a[0]);
		__u16 oc = get16(qp + 10), nc = csum32(oc, old, a[0]);
		put16(qp + 10, nc);
		ic = csum16_if(ic, oc, nc);
		proto = qp[9];
		if ((get16(qp + 6) & 0x1fff) == 0 && ihl >= 20) l4 = q + ihl;
		if (l4 && old != a[0]) {
			__u32 sum = quoted_sum(data, end, l4, stop, proto);
			if (sum) fold_into(data, end, sum, proto, old, a[0], 1, &ic);
		}
	} else if ((qp[0] >> 4) == 6 && q + 40 <= stop) {
		if ((void *)(qp + 40) > end) return;
		__u8 *at = qp + (dst ? 24 : 8);
		proto = qp[6];
		l4 = q + 40;
#pragma unroll
		for (int k = 0; k < 4; k++) {
			__u32 old = get32(at + 4 * k);
			put32(at + 4 * k, a[k]);
			ic = csum32_if(ic, old, a[k]);
			if (old != a[k]) {
				__u32 sum = quoted_sum(data, end, l4, stop, proto);
				if (sum) fold_into(data, end, sum, proto, old, a[k], 1, &ic);
			}
		}
	} else return;
	if (l4 && (proto == 6 || proto == 17 || proto == 136) && l4 + 4 <= stop) {
		__u8 *at = data + OFF(l4 + (dst ? 2 : 0));
		if ((void *)(at + 2) > end) return;
		__u16 old = get16(at);
		put16(at, port);
		ic = csum16_if(ic, old, port);
		__u32 sum = quoted_sum(data, end, l4, stop, proto);
		if (sum) fold_into(data, end, sum, proto, old, port, 0, &ic);
	}
	ich = data + icmp;
	if ((void *)(ich + 4) > end) return;
	put16(ich + 2, ic);
}

/* src/nat/bind.ts bind(): packet p created flow v (key k); the binding code. */
static __always_inline __u32 bind(struct pkt *p, struct ct_val *v)
{
	if (p->proto != 6 && p->proto != 17) return 0;
	struct svc_key sk = { .port = p->dport, .family = p->family, .proto = p->proto };
	__builtin_memcpy(sk.addr, p->dst, 16);
	struct svc_val *s = bpf_map_lookup_elem(&services, &sk);
	if (!s) return 0;
	if (s->count == 0) return B_REJECT;
	__u32 k;
	struct backend *be = choose(p, s, &k);
	if (!be) return 0;
	/* the reply tuple: backend:port -> client:sport; taken by another flow, either way round: a clash */
	struct ct_key rk;
	int be_is_a;
	make_key(&rk, p->family, p->proto, be->be, p->src, be->be_port, p->sport, &be_is_a);
	if (bpf_map_lookup_elem(&flows, &rk)) return B_CLASH;
	struct alias_val *old = bpf_map_lookup_elem(&aliases, &rk);
	if (old) {
		struct ct_key ok = old->flow;
		struct ct_val *ov = bpf_map_lookup_elem(&flows, &ok);
		if (ov && ov->first == old->first && ov->binding >= B_FIRST) return B_CLASH;
	}
	struct alias_val a = { .first = v->first, .be_is_a = be_is_a };
	int from_a;
	make_key(&a.flow, p->family, p->proto, p->src, p->dst, p->sport, p->dport, &from_a);
	bpf_map_update_elem(&aliases, &rk, &a, BPF_ANY);
	return B_FIRST + k;
}

static __always_inline int dnat_stage(struct pkt *p, void *data, void *end)
{
	struct ct_out o = {};
	int r = conntrack_track(p, data, end, &o);
	if (r == DROP || r == NOT_MODELLED) return r;
	if (r == CREATED && o.v) {
		o.v->binding = bind(p, o.v);
		o.binding = o.v->binding;
	}
	if (p->family == 0 || o.info == CT_UNTRACKED || o.info == CT_INVALID || o.binding == 0) return r;
	if (o.binding < B_FIRST) return DROP;
	__u32 k = o.binding - B_FIRST;
	struct backend *be = bpf_map_lookup_elem(&backends, &k);
	if (!be) return r;
	if (o.info == CT_RELATED) {
		if (o.dir == 1) {
			set_quoted(p, data, end, 1, be->vip, be->vip_port);
			set_endpoint(p, data, end, 0, be->vip, 0); /* an ICMP header has no port: the address alone */
		} else {
			set_quoted(p, data, end, 0, be->be, be->be_port);
			set_endpoint(p, data, end, 1, be->be, 0);
		}
		return r;
	}
	if (o.dir == 0) set_endpoint(p, data, end, 1, be->be, be->be_port);
	else set_endpoint(p, data, end, 0, be->vip, be->vip_port);
	return r;
}

DPLAB_PROGRAMS(dnat_stage)
