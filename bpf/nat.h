/*
 * What the NAT models share (dnat.bpf.c, ctlb.bpf.c): the service table as maps, filled from
 * dplab's (src/nat/services.ts; src/calibrate/maps.ts dnatMaps), and dplab's backend choice.
 */
#ifndef DPLAB_NAT_H
#define DPLAB_NAT_H

struct svc_key { __u32 addr[4]; __u16 port; __u8 family, proto; };
struct svc_val { __u32 first, count; };
/* backend k: its endpoint, and its service's (the reply's new source) */
struct backend { __u32 be[4], vip[4]; __u16 be_port, vip_port; __u32 pad; };
struct nat_config { __u32 seed; /* fmix(seed ^ 0x5bd1e995), as ServiceTable keeps it */ __u32 pad; };

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct svc_key);
	__type(value, struct svc_val);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nat_config);
} nat_config SEC(".maps");

/* src/packet/hash.ts: fmix, endpoint, symHash */
static __always_inline __u32 fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	return h ^ (h >> 16);
}

static __always_inline __u32 rotl(__u32 x, int r) { return (x << r) | (x >> (32 - r)); }

static __always_inline __u32 endpoint_hash(__u32 *a, __u16 port)
{
	__u32 x = a[0] ^ rotl(a[1], 8) ^ rotl(a[2], 16) ^ rotl(a[3], 24);
	return fmix(x ^ ((__u32)port + 1) * 0x9e3779b1);
}

static __always_inline __u32 sym_hash(__u8 proto, __u32 *a, __u32 *b, __u16 pa, __u16 pb)
{
	return fmix(endpoint_hash(a, pa) + endpoint_hash(b, pb) + ((__u32)proto + 1) * 0x85ebca77);
}

/* dplab's choice (src/nat/services.ts pick): the flow hash of the tuple remixed with the seed, multiply-shift. */
static __always_inline struct backend *choose(struct pkt *p, struct svc_val *s, __u32 *k)
{
	__u32 zero = 0;
	struct nat_config *c = bpf_map_lookup_elem(&nat_config, &zero);
	if (!c) return 0;
	__u32 h = sym_hash(p->proto, p->src, p->dst, p->sport, p->dport);
	*k = s->first + (__u32)(((__u64)fmix(h ^ c->seed) * s->count) >> 32);
	return bpf_map_lookup_elem(&backends, k);
}

#endif
