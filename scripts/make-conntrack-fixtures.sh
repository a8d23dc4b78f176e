#!/usr/bin/env bash
# Builds the conntrack scenario captures in test/fixtures/conntrack/ from shipped real captures,
# with Wireshark's editcap/mergecap (Debian package wireshark-common / tshark).
set -euo pipefail
cd "$(dirname "$0")/.."
out=test/fixtures/conntrack
src=captures/tcp_http/ppp_one_http_stream_fin.pcap   # one HTTP connection, handshake to FIN
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# TIME_WAIT reuse: the same connection (same 4-tuple) again 30 s later, while the first is in
# TIME_WAIT (120 s): the new SYN reopens the tuple (RFC 1122 4.2.2.13).
editcap -t 30 "$src" "$tmp/later.pcap"
mergecap -a -F pcap -w "$out/time-wait-reuse.pcap" "$src" "$tmp/later.pcap"

# Mid-stream pickup: the connection without its handshake (packets 4..15); conntrack must pick
# it up from an ACK (nf_conntrack_tcp_loose=1).
editcap -F pcap -r "$src" "$out/mid-stream.pcap" 4-15

# Mid-stream from a FIN: a flow whose first packet seen is a FIN cannot be picked up (INVALID).
fin=$(tshark -r "$src" -Y 'tcp.flags.fin==1' -T fields -e frame.number 2>/dev/null | head -1)
editcap -F pcap -r "$src" "$out/starts-with-fin.pcap" "$fin-15"


# RST teardowns and unanswered SYNs on plain Ethernet (the shipped RST capture is VLAN+PPPoE,
# which a Linux middlebox without 802.1Q cannot see into): synthetic, from dplab gen.
node bin/dplab.js gen "$out/rst-and-lone-syns.pcap" --flows 40 --packets-per-flow 8 --vlan 0 --udp 0 --rst 50% --attack 10% --seed 7

# TCP simultaneous open (both ends send a SYN): no shipped capture has one; hand-built frames.
node scripts/make-simultaneous-open.mjs "$out/simultaneous-open.pcap"
ls -l "$out"
