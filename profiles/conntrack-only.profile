# conntrack-only: track every flow, drop nothing but INVALID packets (a baseline for the others)
pipeline: conntrack

[conntrack]
capacity: 262144
