# ebpf: connect-time load balancing (Calico CTLB: the backend chosen at connect(), no NAT on the wire); XDP drops blocklisted prefixes at the driver; conntrack decides once per flow; policy is an LPM trie (an eBPF LPM map)
pipeline: ctlb -> xdp -> conntrack -> policy

[ctlb]
# Calico's connect-time load balancer: the socket is addressed to the backend at connect()
services: rules/services.txt

[xdp]
block-file: rules/blocklist.txt

[conntrack]
capacity: 512Ki          # Calico's BPF conntrack map holds 512k entries
when-full: evict

[policy]
evaluator: trie
default: accept
rules: rules/policy.rules
