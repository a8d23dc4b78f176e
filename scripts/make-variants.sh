#!/usr/bin/env bash
# Writes test/fixtures/variants/: each capture below rewritten by editcap (Wireshark's tool, not
# dplab) as nanosecond pcap (<name>.ns.pcap) and as pcapng (<name>.pcapng). The test
# test/capture-variants.test.ts holds dplab to reading the same packets, bytes and timestamps from
# all three forms. The captures are small and chosen to differ: link types (Ethernet, SLL, SLL2,
# NULL, raw IPv6), VLAN/QinQ/PPPoE, IPv4 and IPv6 fragments, ICMPv6, a big-endian file and a
# nanosecond one. Re-run after changing the list: bash scripts/make-variants.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CAPTURES=(
  dns/tcpdump_dns_udp.pcap
  icmp/ppp_ICMPv6_echos.pcap
  ipv4_frag/zeek_ipv4_fragmented-4.pcap
  ipv6/zeek_ipv6-fragmented-dns.pcap
  linktype/ppp_linktype_ipv6.pcap
  linktype/ppp_null_loopback.pcap
  linktype/ppp_sll2.pcap
  tcp_http/ppp_one_http_stream_rst.pcap
  ts_endian/arkime_bigendian.pcap
  ts_endian/tcpdump_tcp-handshake-nano.pcap
  vlan/tcpdump_802.1ad_QinQ.pcap
)

out=test/fixtures/variants
rm -rf "$out"
mkdir -p "$out"
for c in "${CAPTURES[@]}"; do
  name=$(basename "$c" .pcap)
  editcap -F nsecpcap "captures/$c" "$out/$name.ns.pcap"
  editcap -F pcapng "captures/$c" "$out/$name.pcapng"
done
printf '%s\n' "${CAPTURES[@]}" > "$out/SOURCES"
ls -l "$out"
