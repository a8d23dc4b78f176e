# ebpf: XDP drops blocklisted prefixes at the driver; conntrack decides once per flow; policy is an LPM trie (an eBPF LPM map)
pipeline: xdp -> conntrack -> policy

[xdp]
block-file: rules/blocklist.txt

[conntrack]
capacity: 512Ki          # Calico's BPF conntrack map holds 512k entries
when-full: evict

[policy]
evaluator: trie
default: accept
rules: rules/policy.rules
