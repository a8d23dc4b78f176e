# hns: Calico's Windows dataplane: HNS programs the Virtual Filtering Platform; a flow's first packet walks the layers (load balancer/NAT, then ACL) and the result is compiled into one unified flow entry; later packets are one flow lookup plus the precomputed header rewrite
pipeline: conntrack -> vfp

[conntrack]
# stands for VFP's unified flow table (UFT)
capacity: 256Ki
when-full: evict

[vfp]
# load-balancer layer: HNS load-balancer policies, the same services as the other profiles
services: rules/services.txt
# ACL layer: the same blocklist and rules as iptables, first match
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
