# The cluster both recordings run in (captures/nat/record.sh, captures/demo/record.sh): a client
# namespace and a backends namespace on either side of a router namespace that programs kube-proxy's
# DNAT (iptables mode) for the services below. Sourced after netns.sh, with NS_C, NS_R and NS_B
# (the client, router and backends namespaces) set.
#
#   client ns (10.77.1.2, .3 / fd00:77:1::2, ::3)
#     cli-r --- r-cli   router ns (iptables/ip6tables nat: KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-*)
#                        r-be --- be-r   backends ns (10.88.2.2-.4 / fd00:88:2::2-::4)

# --- The services: one table, from which services.txt and the iptables rules are both made. ---
# name (kube-proxy's "namespace/service:port", which names the chains) | proto | VIP:PORT | backends
SERVICES=$(cat <<'EOF'
dplab/web:http     tcp 10.96.0.10:80    10.88.2.2:8080 10.88.2.3:8080 10.88.2.4:8080
dplab/echo:echo    udp 10.96.0.7:7      10.88.2.2:7007 10.88.2.3:7007
dplab/dns:dns      udp 10.96.0.53:53    10.88.2.2:5353 10.88.2.3:5353
dplab/closed:none  udp 10.96.0.99:9999  10.88.2.4:9999
dplab/web:http     tcp [fd00:96::10]:80    [fd00:88:2::2]:8080 [fd00:88:2::3]:8080 [fd00:88:2::4]:8080
dplab/echo:echo    udp [fd00:96::7]:7      [fd00:88:2::2]:7007 [fd00:88:2::3]:7007
dplab/dns:dns      udp [fd00:96::53]:53    [fd00:88:2::2]:5353 [fd00:88:2::3]:5353
dplab/closed:none  udp [fd00:96::99]:9999  [fd00:88:2::4]:9999
EOF
)
CLIENTS4=(10.77.1.2 10.77.1.3)
CLIENTS6=(fd00:77:1::2 fd00:77:1::3)
BACKENDS4=(10.88.2.2 10.88.2.3 10.88.2.4)
BACKENDS6=(fd00:88:2::2 fd00:88:2::3 fd00:88:2::4)
# Fixed MACs, so the captures are the same shape on every run and neighbours can be static.
MAC_CLI_R=02:00:0a:4d:01:02   # client's interface (cli-r)
MAC_R_CLI=02:00:0a:4d:01:01   # router, client side (r-cli)
MAC_R_BE=02:00:0a:58:02:01    # router, backend side (r-be)
MAC_BE_R=02:00:0a:58:02:02    # backends' interface (be-r)

inc() { ip netns exec "$NS_C" "$@"; }
inr() { ip netns exec "$NS_R" "$@"; }
inb() { ip netns exec "$NS_B" "$@"; }
# Background processes are started with nsenter, which execs the command: $! is the process itself.

# Topology, services.txt, the nat rules programmed and saved (iptables-save.txt,
# ip6tables-save.txt), all in $WORK.
cluster_up() { # writer (named in services.txt) [random|nth] (how the router picks backends)
  # --- Topology ---
  netns_add "$NS_C" "$NS_R" "$NS_B"
  inr sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  # The backend kernel answers every datagram to the closed port, not one per second per peer.
  inb sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0

  ip link add cli-r netns "$NS_C" address $MAC_CLI_R type veth peer r-cli netns "$NS_R" address $MAC_R_CLI
  ip link add r-be netns "$NS_R" address $MAC_R_BE type veth peer be-r netns "$NS_B" address $MAC_BE_R

  netns_offloads_off "$NS_C cli-r" "$NS_R r-cli" "$NS_R r-be" "$NS_B be-r"

  inc ip addr add 10.77.1.2/24 dev cli-r
  inc ip addr add 10.77.1.3/24 dev cli-r
  inc ip -6 addr add fd00:77:1::2/64 dev cli-r nodad
  inc ip -6 addr add fd00:77:1::3/64 dev cli-r nodad
  inr ip addr add 10.77.1.1/24 dev r-cli
  inr ip -6 addr add fd00:77:1::1/64 dev r-cli nodad
  inr ip addr add 10.88.2.1/24 dev r-be
  inr ip -6 addr add fd00:88:2::1/64 dev r-be nodad
  for a in "${BACKENDS4[@]}"; do inb ip addr add "$a"/24 dev be-r; done
  for a in "${BACKENDS6[@]}"; do inb ip -6 addr add "$a"/64 dev be-r nodad; done
  inc ip link set cli-r up; inr ip link set r-cli up; inr ip link set r-be up; inb ip link set be-r up
  # The router is every client's and every backend's gateway (so the VIPs, 10.96.0.0/16 and
  # fd00:96::/64, route to it, and the backends answer through it: no SNAT needed).
  inc ip route add default via 10.77.1.1
  inc ip -6 route add default via fd00:77:1::1
  inb ip route add default via 10.88.2.1
  inb ip -6 route add default via fd00:88:2::1
  # Static neighbours: no ARP or neighbour discovery in the captures.
  inc ip neigh replace 10.77.1.1 lladdr $MAC_R_CLI dev cli-r nud permanent
  inc ip -6 neigh replace fd00:77:1::1 lladdr $MAC_R_CLI dev cli-r nud permanent
  for a in "${CLIENTS4[@]}" "${CLIENTS6[@]}"; do inr ip neigh replace "$a" lladdr $MAC_CLI_R dev r-cli nud permanent; done
  for a in "${BACKENDS4[@]}" "${BACKENDS6[@]}"; do inr ip neigh replace "$a" lladdr $MAC_BE_R dev r-be nud permanent; done
  inb ip neigh replace 10.88.2.1 lladdr $MAC_R_BE dev be-r nud permanent
  inb ip -6 neigh replace fd00:88:2::1 lladdr $MAC_R_BE dev be-r nud permanent

  # --- services.txt and the kube-proxy rules, both from $SERVICES ---
  kube_proxy_rules "$1" "${2:-random}"
  inr iptables-restore --noflush <"$WORK/rules4.txt"
  inr ip6tables-restore --noflush <"$WORK/rules6.txt"
  inr iptables-save -t nat | grep -v '^#' >"$WORK/iptables-save.txt"
  inr ip6tables-save -t nat | grep -v '^#' >"$WORK/ip6tables-save.txt"
}
