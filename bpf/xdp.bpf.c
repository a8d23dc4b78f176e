/*
 * A model of dplab's xdp stage (src/stages/xdp.ts): block and allow prefixes in one longest-prefix
 * map per family (the longest prefix holding an address decides: an allow punches a hole in a
 * shorter block), the source looked up first, then the destination; then an optional token bucket
 * per source address in an LRU hash, on the capture's clock. Packets that are not IP pass.
 */
#include "parse.h"

#define BLOCK 1
#define ALLOW 2

struct lpm4_key { __u32 len; __u8 addr[4]; };
struct lpm6_key { __u32 len; __u8 addr[16]; };

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct lpm4_key);
	__type(value, __u8); /* BLOCK or ALLOW */
} prefixes4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct lpm6_key);
	__type(value, __u8);
} prefixes6 SEC(".maps");

/* The rate limit, when the profile has one: tokens in billionths, as dplab counts them. */
struct rate_config {
	__u64 per_ns;   /* billionths of a token each nanosecond adds (the rate in packets per second) */
	__u64 full;     /* burst x 1e9 */
	__u32 on;
	__u32 pad;
};
struct bucket { __u64 last; __u64 tokens; };
struct source { __u32 family; __u32 addr[4]; };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate_config);
} rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct source);
	__type(value, struct bucket);
} buckets SEC(".maps");

#define UNIT 1000000000ULL

/* The kind of the longest listed prefix holding the address, 0 when none does. */
static __always_inline __u8 listed(struct pkt *p, __u32 *a)
{
	__u8 *kind;
	if (p->family == 4) {
		struct lpm4_key k = { .len = 32 };
		*(__u32 *)k.addr = bpf_htonl(a[0]);
		kind = bpf_map_lookup_elem(&prefixes4, &k);
	} else {
		struct lpm6_key k = { .len = 128 };
#pragma unroll
		for (int i = 0; i < 4; i++) ((__u32 *)k.addr)[i] = bpf_htonl(a[i]);
		kind = bpf_map_lookup_elem(&prefixes6, &k);
	}
	return kind ? *kind : 0;
}

/* SourceRateLimiter.take: true when the packet may pass. */
static __always_inline int take(struct pkt *p, struct rate_config *rc)
{
	struct source s = { .family = p->family };
	__builtin_memcpy(s.addr, p->src, 16);
	struct bucket *b = bpf_map_lookup_elem(&buckets, &s);
	if (!b) {
		struct bucket fresh = { .last = p->now, .tokens = rc->full - UNIT };
		bpf_map_update_elem(&buckets, &s, &fresh, BPF_ANY);
		return 1;
	}
	__u64 t = b->tokens;
	if (p->now > b->last) {
		__u64 elapsed = p->now - b->last;
		/* a long idle refills the bucket (and keeps the product inside 64 bits) */
		if (elapsed >= rc->full / rc->per_ns + 1) t = rc->full;
		else {
			t += elapsed * rc->per_ns;
			if (t > rc->full) t = rc->full;
		}
		b->last = p->now;
	}
	if (t >= UNIT) { b->tokens = t - UNIT; return 1; }
	b->tokens = t;
	return 0;
}

static __always_inline int xdp_stage(struct pkt *p, void *data, void *end)
{
	if (p->family == 0) return 0;
	if (listed(p, p->src) == BLOCK) return 1;
	if (listed(p, p->dst) == BLOCK) return 1;
	__u32 zero = 0;
	struct rate_config *rc = bpf_map_lookup_elem(&rate, &zero);
	if (rc && rc->on && !take(p, rc)) return 1;
	return 0;
}

DPLAB_PROGRAMS(xdp_stage)
