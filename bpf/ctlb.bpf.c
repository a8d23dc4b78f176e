/*
 * A model of what Calico's connect-time load balancer (and Cilium's socket LB) does once per
 * connect (dplab's ctlb stage, src/stages/ctlb.ts: its `connects`): look the destination up in
 * the service map, choose a backend (dplab's hash: src/nat/services.ts pick, as dnat.bpf.c), write
 * the backend into the socket's address, and remember backend -> service for the socket's
 * replies (Calico's reverse map, which its recvmsg hook reads for unconnected UDP).
 *
 * The real hook is a BPF_PROG_TYPE_CGROUP_SOCK_ADDR program (cgroup/connect4, connect6) and runs
 * in connect(); BPF_PROG_TEST_RUN does not run that program type on this kernel (ENOTSUPP), so
 * this is a tc program given the connecting packet (a client's SYN, a UDP socket's first
 * datagram), doing the same map work; the socket address it writes is a per-CPU map value (a
 * sockaddr has no checksum to update). What is not measured: the socket
 * layer around the hook, and the sendmsg/recvmsg hooks unconnected UDP sockets pay per datagram.
 * Packets after the connect cost the dataplane nothing: they are not given to the model.
 *
 * Returns 1 (drop) for a service without endpoints (dplab drops: kube-proxy's REJECT), else
 * 10 + the backend chosen (the tc build returns 100 + that), which calibrate compares with dplab's.
 */
#include "parse.h"
#include "nat.h"

#define CHOSE 10

/* The socket (client and backend endpoints) -> the service address it was connected to. */
struct rev_key { __u32 client[4], be[4]; __u16 cport, bport; __u8 family, proto; __u16 pad; };
struct rev_val { __u32 vip[4]; __u16 vport; __u16 pad; };

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct rev_key);
	__type(value, struct rev_val);
} reverse SEC(".maps");

/* The address connect() goes on with (rev_val's layout: an address and a port). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rev_val);
} sockaddr SEC(".maps");

static __always_inline int ctlb_stage(struct pkt *p, void *data, void *end)
{
	if ((p->proto != 6 && p->proto != 17) || !p->has_ports) return 0;
	/* the socket's packet (client -> VIP), or a service's answer seen first (VIP -> client) */
	struct svc_key sk = { .port = p->dport, .family = p->family, .proto = p->proto };
	__builtin_memcpy(sk.addr, p->dst, 16);
	int dir = 0;
	struct svc_val *s = bpf_map_lookup_elem(&services, &sk);
	if (!s) {
		__builtin_memcpy(sk.addr, p->src, 16);
		sk.port = p->sport;
		s = bpf_map_lookup_elem(&services, &sk);
		if (!s) return 0;
		dir = 1;
	}
	if (s->count == 0) return 1;
	__u32 k;
	struct backend *be = choose(p, s, &k);
	if (!be) return 0;
	struct rev_key rk = { .cport = dir ? p->dport : p->sport, .bport = be->be_port, .family = p->family, .proto = p->proto };
	__builtin_memcpy(rk.client, dir ? p->dst : p->src, 16);
	__builtin_memcpy(rk.be, be->be, 16);
	struct rev_val rv = { .vport = be->vip_port };
	__builtin_memcpy(rv.vip, be->vip, 16);
	bpf_map_update_elem(&reverse, &rk, &rv, BPF_ANY);
	/*
	 * The socket's destination becomes the backend: the real hook writes ctx->user_ip4 / user_ip6
	 * and user_port; here a per-CPU sockaddr (not the packet: a test run repeats on the same bytes).
	 */
	__u32 zero = 0;
	struct rev_val *sa = bpf_map_lookup_elem(&sockaddr, &zero);
	if (sa) {
		__builtin_memcpy(sa->vip, be->be, 16);
		sa->vport = be->be_port;
	}
	return CHOSE + k;
}

DPLAB_PROGRAMS(ctlb_stage)
