# ebpf-l7: the ebpf profile plus HTTP rules checked inline, in the dataplane, on every TCP segment (an L7 check in the eBPF/XDP path): the cost grows with packets
pipeline: ctlb -> xdp -> conntrack -> policy -> l7

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

[l7]
# every segment of the request direction inspected as it passes; a small carry per flow
mode: inline
ports: 80,8000,8080
default: allow
rules: rules/l7.rules
