# iptables: conntrack first; kube-proxy's DNAT in the nat table (per packet, both directions); the blocklist and the policy are one linear chain in the filter table, run once per flow, on the backend address
pipeline: conntrack -> dnat -> policy

[conntrack]
capacity: 256Ki          # nf_conntrack_max on a 16 GB host
when-full: evict

[dnat]
# kube-proxy (iptables mode): KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* DNAT in PREROUTING
services: rules/services.txt

[policy]
evaluator: chain
default: accept
# The blocklist as iptables rules: every blocked packet still gets a conntrack entry first.
rule: drop from 192.0.2.0/24
rule: drop to 192.0.2.0/24
rule: drop from 198.51.100.0/24
rule: drop to 198.51.100.0/24
rule: drop from 203.0.113.0/24
rule: drop to 203.0.113.0/24
rule: drop from 2001:db8:bad::/48
rule: drop to 2001:db8:bad::/48
rules: rules/policy.rules
