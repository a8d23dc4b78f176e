# iptables-routed: the iptables profile's host stages, then the standard path into a pod: a FIB lookup for every packet, the veth hop and the pod namespace's own pass (its own conntrack lookup and filter chain) for every packet
pipeline: conntrack -> dnat -> policy -> route -> pod-ct :: conntrack -> pod-policy :: policy

[conntrack]
capacity: 256Ki
when-full: evict

[dnat]
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

[route]
# the host's main table: thousands of routes, one /32 (/128) per local pod
routes: rules/routes.txt
mode: full

[pod-ct]
# the pod namespace's own conntrack. dnat (or ctlb) ran before it on both directions, so it meets
# the replies already translated back, as flows of their own: it counts them and never drops
capacity: 64Ki
invalid: accept

[pod-policy]
# the pod's own filter chain (a NetworkPolicy): no scanners, no telnet
evaluator: chain
default: accept
rule: drop from 100.64.0.0/10
rule: drop from fd00:64::/64
rule: drop tcp port 23
