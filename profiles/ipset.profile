# ipset: as iptables, but the rules live in hashed sets (ipset hash:net), one probe per prefix length
pipeline: conntrack -> policy

[conntrack]
capacity: 256Ki
when-full: evict

[policy]
evaluator: set
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
