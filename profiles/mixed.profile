# mixed: the article's in-between case: connect-time balancing (Calico CTLB) switched on while kube-proxy's iptables rules stay in place; everything else as iptables
pipeline: ctlb -> conntrack -> dnat -> policy

[ctlb]
services: rules/services.txt

[conntrack]
capacity: 256Ki
when-full: evict

[dnat]
# kube-proxy's rules, still programmed: behind ctlb the wire carries backend addresses, so they match nothing
services: rules/services.txt

[policy]
evaluator: chain
default: accept
rule: drop from 192.0.2.0/24
rule: drop to 192.0.2.0/24
rule: drop from 198.51.100.0/24
rule: drop to 198.51.100.0/24
rule: drop from 203.0.113.0/24
rule: drop to 203.0.113.0/24
rule: drop from 2001:db8:bad::/48
rule: drop to 2001:db8:bad::/48
rules: rules/policy.rules
