/*
 * A model of dplab's route stage in `mode: full` (src/stages/route.ts, src/route/table.ts): the
 * host FIB's longest-prefix match of the destination over the route table, in LPM-trie maps
 * (one per family, value: the route's number), as a forwarding program does it without
 * bpf_fib_lookup; no route: drop (ENETUNREACH). Then what forwarding does to the packet and
 * dplab's stage does not model: the TTL / hop limit decremented (the IPv4 checksum updated,
 * RFC 1624) and the Ethernet addresses rewritten for the route's next hop (`nexthop` map: the
 * egress device's MAC and the neighbour's). So the kernel figure holds a little more work than
 * dplab's row; the route chosen is what is compared.
 *
 * Returns 1 (drop) for no route, else 10 + the route's number (the tc build returns 100 + that).
 */
#include "parse.h"

#define CHOSE 10

struct lpm4 { __u32 len; __u8 addr[4]; };
struct lpm6 { __u32 len; __u8 addr[16]; };
/* per route: the Ethernet addresses a forwarded frame gets (destination, source) */
struct nexthop { __u8 dst[6], src[6]; __u32 pad; };

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct lpm4);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} routes4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct lpm6);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} routes6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nexthop);
} nexthop SEC(".maps");

static __always_inline int route_stage(struct pkt *p, void *data, void *end)
{
	__u8 *ip = data + 14;
	__u32 *r;
	if (p->family == 4) {
		struct lpm4 k = { .len = 32 };
		if ((void *)(ip + 20) > end) return 0;
		__builtin_memcpy(k.addr, ip + 16, 4);
		r = bpf_map_lookup_elem(&routes4, &k);
	} else if (p->family == 6) {
		struct lpm6 k = { .len = 128 };
		if ((void *)(ip + 40) > end) return 0;
		__builtin_memcpy(k.addr, ip + 24, 16);
		r = bpf_map_lookup_elem(&routes6, &k);
	} else {
		return 0; /* not IP: not routed */
	}
	if (!r) return 1;
	__u32 n = *r;
	/* the forward: TTL / hop limit down by one (never below 1 here: a test run repeats on these bytes) */
	if (p->family == 4) {
		if (ip[8] > 1) {
			__u16 old = (__u16)ip[8] << 8 | ip[9];
			ip[8]--;
			__u32 s = (__u32)(~((__u16)ip[10] << 8 | ip[11]) & 0xffff) + (~old & 0xffff) + ((__u16)ip[8] << 8 | ip[9]);
			s = (s & 0xffff) + (s >> 16);
			s = (s & 0xffff) + (s >> 16);
			ip[10] = ~s >> 8;
			ip[11] = ~s;
		}
	} else if (ip[7] > 1) {
		ip[7]--;
	}
	struct nexthop *h = bpf_map_lookup_elem(&nexthop, &n);
	if (h) {
		__u8 *eth = data;
		__builtin_memcpy(eth, h->dst, 6);
		__builtin_memcpy(eth + 6, h->src, 6);
	}
	return CHOSE + n;
}

DPLAB_PROGRAMS(route_stage)
