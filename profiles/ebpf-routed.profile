# ebpf-routed: the ebpf profile's host stages, then the path into a pod as Calico's and Cilium's eBPF dataplanes take it: a flow's first packet takes the full path (FIB, veth hop, the pod namespace's own pass); its result is kept with the flow and later packets go straight to the pod's veth (bpf_redirect_peer)
pipeline: ctlb -> xdp -> conntrack -> policy -> route -> pod-ct :: conntrack -> pod-policy :: policy

[ctlb]
services: rules/services.txt

[xdp]
block-file: rules/blocklist.txt

[conntrack]
capacity: 512Ki
when-full: evict

[policy]
evaluator: trie
default: accept
rules: rules/policy.rules

[route]
routes: rules/routes.txt
mode: bypass

[pod-ct]
# the pod namespace's own conntrack. dnat (or ctlb) ran before it on both directions, so it meets
# the replies already translated back, as flows of their own: it counts them and never drops
capacity: 64Ki
invalid: accept

[pod-policy]
evaluator: trie
default: accept
rule: drop from 100.64.0.0/10
rule: drop from fd00:64::/64
rule: drop tcp port 23
