# encrypted: conntrack and policy as the ebpf profile's, then every packet between nodes sealed as WireGuard does (Calico's WireGuard mode): ChaCha20-Poly1305 per packet, into outer IPv4/UDP 51820
pipeline: conntrack -> policy -> encrypt

[conntrack]
capacity: 512Ki
when-full: evict

[policy]
evaluator: trie
default: accept
rules: rules/policy.rules

[encrypt]
# The keys of every node pair and direction come from this secret (src/crypto/wireguard.ts)
secret: dplab-demo-cluster
# gen's clients live on node-a, its servers on node-b
node: node-a 192.168.0.1 10.0.0.0/8, fd00:10::/64
node: node-b 192.168.0.2 172.16.0.0/16, fd00:172:16::/64
