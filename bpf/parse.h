/*
 * What every dplab model program shares: the packet's clock from its XDP metadata, and a parse of
 * Ethernet -> IPv4 / IPv6 (extension headers walked) -> ports, into the fields dplab's decoder
 * gives its stages (addresses as four host-order words, IPv4 in the first).
 *
 * The calibrate command hands each packet over as Ethernet + the IP datagram as dplab decoded it
 * (VLAN tags, MPLS, PPPoE and other link layers already taken off, as a NIC that strips tags would),
 * so the programs parse one link layer. Malformed packets (dplab's decoder drops them) are never
 * sent.
 */
#ifndef DPLAB_PARSE_H
#define DPLAB_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define FRAG_NONE 0
#define FRAG_FIRST 1
#define FRAG_LATER 2

struct pkt {
	__u64 now;      /* the capture's time of the packet, ns */
	__u32 src[4];   /* host-order words; IPv4 in src[0] */
	__u32 dst[4];
	__u8 family;    /* 4, 6, or 0 (not IP) */
	__u8 proto;     /* after IPv6 extension headers */
	__u8 frag;
	__u8 has_ports; /* sport/dport were read */
	__u16 sport;
	__u16 dport;
	__u32 l4;       /* offset of the L4 header from the frame's start */
	__u32 ipid;     /* IPv4 identification or IPv6 fragment identification */
};

static __always_inline int is_generic_ext(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 60 || nh == 135 || nh == 139 || nh == 140 || nh == 253 || nh == 254;
}

/* Fill p from the frame at data..end (the packet's time is the caller's to set). */
static __always_inline void parse(void *data, void *end, struct pkt *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end) return;
	__u16 type = bpf_ntohs(eth->h_proto);
	void *l3 = eth + 1;
	void *l4;
	if (type == ETH_P_IP) {
		__u8 *ip = l3;
		if ((void *)(ip + 20) > end) return;
		p->family = 4;
		p->src[0] = bpf_ntohl(*(__u32 *)(ip + 12));
		p->dst[0] = bpf_ntohl(*(__u32 *)(ip + 16));
		p->proto = ip[9];
		p->ipid = bpf_ntohs(*(__u16 *)(ip + 4));
		__u16 fo = bpf_ntohs(*(__u16 *)(ip + 6));
		if (fo & 0x1fff) p->frag = FRAG_LATER;
		else if (fo & 0x2000) p->frag = FRAG_FIRST;
		l4 = ip + ((ip[0] & 15) << 2);
	} else if (type == ETH_P_IPV6) {
		__u8 *ip = l3;
		if ((void *)(ip + 40) > end) return;
		p->family = 6;
#pragma unroll
		for (int k = 0; k < 4; k++) {
			p->src[k] = bpf_ntohl(*(__u32 *)(ip + 8 + 4 * k));
			p->dst[k] = bpf_ntohl(*(__u32 *)(ip + 24 + 4 * k));
		}
		__u8 nh = ip[6];
		__u8 *h = ip + 40;
		/* dplab's decoder walks up to 32 extension headers; real packets carry a few */
		for (int k = 0; k < 6; k++) {
			if ((void *)(h + 8) > end) break;
			__u32 len;
			if (is_generic_ext(nh)) len = ((__u32)h[1] + 1) << 3;
			else if (nh == 51) len = ((__u32)h[1] + 2) << 2;
			else if (nh == 44) {
				__u16 fo = ((__u16)h[2] << 8 | h[3]) >> 3;
				p->ipid = bpf_ntohl(*(__u32 *)(h + 4));
				if (fo) p->frag = FRAG_LATER;
				else if (h[3] & 1) p->frag = FRAG_FIRST;
				len = 8;
			} else break;
			nh = h[0];
			h += len;
		}
		p->proto = nh;
		l4 = h;
	} else {
		return;
	}
	p->l4 = (__u32)((long)l4 - (long)data);
	if (p->frag != FRAG_LATER && (p->proto == 6 || p->proto == 17 || p->proto == 132 || p->proto == 136)) {
		__u8 *q = l4;
		if ((void *)(q + 4) <= end) {
			p->sport = (__u16)q[0] << 8 | q[1];
			p->dport = (__u16)q[2] << 8 | q[3];
			p->has_ports = 1;
		}
	}
}

/*
 * Every model is one function, `int MODEL(struct pkt *, void *data, void *end)` returning 0 to
 * pass, 1 to drop (other codes: model-specific passes, returned by the tc build as 100 + code),
 * built twice: as an
 * XDP program (the hook the xdp stage models; its time from 8 bytes of XDP metadata) and as a tc
 * program (the packet's time in skb->tstamp). The tc build is the one calibrate runs packet by
 * packet: BPF_PROG_TEST_RUN of an XDP program swaps the kernel's XDP dispatcher in and out on
 * every call (bpf_dispatcher_change_prog, which waits for an RCU grace period: milliseconds per
 * packet here), a tc program's test run does not. The kernel's duration covers the program alone.
 */
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

#define DPLAB_PROGRAMS(MODEL)                                                   \
	SEC("xdp")                                                              \
	int MODEL##_xdp(struct xdp_md *ctx)                                     \
	{                                                                       \
		void *data = (void *)(long)ctx->data;                           \
		void *meta = (void *)(long)ctx->data_meta;                      \
		struct pkt p;                                                   \
		parse(data, (void *)(long)ctx->data_end, &p);                   \
		if (meta + 8 <= data) p.now = *(__u64 *)meta;                   \
		return MODEL(&p, data, (void *)(long)ctx->data_end) == 1 ? XDP_DROP : XDP_PASS;                         \
	}                                                                       \
	SEC("tc")                                                               \
	int MODEL##_tc(struct __sk_buff *skb)                                   \
	{                                                                       \
		void *data = (void *)(long)skb->data;                           \
		void *end = (void *)(long)skb->data_end;                        \
		struct pkt p;                                                   \
		parse(data, end, &p);                                           \
		p.now = skb->tstamp;                                            \
		int r = MODEL(&p, data, end);                                   \
		return r == 0 ? TC_ACT_OK : r == 1 ? TC_ACT_SHOT : 100 + r;     \
	}                                                                       \
	char LICENSE[] SEC("license") = "GPL";

#endif
