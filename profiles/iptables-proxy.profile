# iptables-proxy: the iptables profile plus HTTP rules applied by an Envoy-like proxy: each request direction reassembled, each request parsed once; the cost grows with requests
pipeline: conntrack -> dnat -> policy -> l7

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

[l7]
# Envoy's HTTP connection manager: the stream reassembled, a denied request answered 403
mode: proxy
ports: 80,8000,8080
default: allow
rules: rules/l7.rules
header-bytes: 8192
buffer-bytes: 65536
max-requests: 1000
