#!/usr/bin/env bash
# Record the demo capture: what a Kubernetes node's dataplane is given, real traffic made in
# network namespaces. A router namespace does kube-proxy's DNAT (the cluster of
# captures/lib/cluster.sh, the services of profiles/rules/services.txt; backends chosen round robin,
# each client's source port chosen so that dplab's hash picks the same backend: pick-port.mjs) and
# enforces the shipped rules' drops: the blocklist (profiles/rules/blocklist.txt) in the raw table,
# before conntrack, and the drops of profiles/rules/policy.rules in the filter table. tcpdump
# records every packet arriving at the router (-Q in) on its three interfaces; the three are merged
# by time into node-ingress.pcap. Topology, traffic and why: README.md beside this script.
#
#   client ns (10.77.1.2, .3 / fd00:77:1::2, ::3)   cli-r --- r-cli \
#   scanner ns (203.0.113.66 / 2001:db8:bad::66)    scan-r --- r-scan  router ns  r-be --- be-r   backends ns
#                                                                                        (10.88.2.2-.4 / fd00:88:2::2-::4)
# Traffic (both families): web.dplab.test looked up through the DNS service (dnsmasq on the
# backends), pages fetched with curl over the web service, keep-alive included; HTTP requests that
# profiles/rules/l7.rules denies; a datagram to the closed service (ICMP port unreachable back);
# connections to ports policy.rules drops (telnet, SMB, SSDP, NetBIOS); an nmap SYN scan from the
# blocklisted scanner. Writes, next to this script: node-ingress.pcap, iptables-save.txt and
# ip6tables-save.txt (the router's raw, nat and filter tables), traffic.txt (what the clients got),
# checks.txt (check.py's counts), and replaces its row (demo/node-ingress.pcap) in ../INDEX.tsv.
#
# Run as root: bash captures/demo/record.sh
# Needs: iproute2, iptables, ethtool, tcpdump, tshark (capinfos, mergecap), curl, python3, nmap,
# dnsmasq (Debian: dnsmasq-base), nsenter (util-linux), and dplab's dist/ (npm ci). Idempotent:
# its trap removes the namespaces and the processes it started, also on failure. Nothing is
# written in place until the checks pass.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RULES=$(cd "$HERE/../../profiles/rules" && pwd)
INDEX="$HERE/../INDEX.tsv"
NS_C=dplab-demo-client
NS_R=dplab-demo-router
NS_B=dplab-demo-backends
NS_S=dplab-demo-scanner
PY=$(python3 -c 'import sys; print(sys.executable)')   # the interpreter itself, not a pyenv shim
CURL=$(command -v curl)
TAG=demo/record.sh
NAMESPACES=("$NS_C" "$NS_R" "$NS_B" "$NS_S")
LEFT_AS=captures/demo
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/cluster.sh"

netns_start /tmp/dplab-demo.XXXXXX "apt-get install -y iproute2 iptables ethtool tcpdump tshark curl python3 nmap dnsmasq-base" \
  ip nsenter node iptables-restore ip6tables-restore iptables-save ip6tables-save ethtool tcpdump tshark capinfos mergecap curl python3 nmap dnsmasq

[ -f "$HERE/../../dist/nat/services.js" ] || { echo "$TAG: dplab's dist/ is not built: npm ci" >&2; exit 1; }

cluster_up captures/demo/record.sh nth
# The services programmed must be those the shipped profiles balance.
grep -v '^#' "$WORK/services.txt" | while read -r line; do
  grep -qxF "$line" "$RULES/services.txt" || { echo "$TAG: '$line' is not in profiles/rules/services.txt" >&2; exit 1; }
done

# --- The scanner: its own namespace and link to the router, in blocklisted prefixes ---
SCAN4=203.0.113.66
SCAN6=2001:db8:bad::66
MAC_SCAN_R=02:00:cb:00:71:42   # scanner's interface (scan-r)
MAC_R_SCAN=02:00:cb:00:71:01   # router, scanner side (r-scan)
ins() { ip netns exec "$NS_S" "$@"; }
netns_add "$NS_S"
ip link add scan-r netns "$NS_S" address $MAC_SCAN_R type veth peer r-scan netns "$NS_R" address $MAC_R_SCAN
netns_offloads_off "$NS_S scan-r" "$NS_R r-scan"
ins ip addr add $SCAN4/24 dev scan-r
ins ip -6 addr add $SCAN6/64 dev scan-r nodad
inr ip addr add 203.0.113.1/24 dev r-scan
inr ip -6 addr add 2001:db8:bad::1/64 dev r-scan nodad
ins ip link set scan-r up; inr ip link set r-scan up
ins ip route add default via 203.0.113.1
ins ip -6 route add default via 2001:db8:bad::1
ins ip neigh replace 203.0.113.1 lladdr $MAC_R_SCAN dev scan-r nud permanent
ins ip -6 neigh replace 2001:db8:bad::1 lladdr $MAC_R_SCAN dev scan-r nud permanent
inr ip neigh replace $SCAN4 lladdr $MAC_SCAN_R dev r-scan nud permanent
inr ip -6 neigh replace $SCAN6 lladdr $MAC_SCAN_R dev r-scan nud permanent

# --- The router enforces the shipped rules' drops, so dropped flows get no answers, as on a node
# that runs them: the blocklist in raw PREROUTING (before conntrack, where XDP would drop), the
# policy's drop lines in FORWARD (after DNAT: on the backend's port, as dplab's policy stage).
sed 's/#.*//' "$RULES/blocklist.txt" | awk NF | while read -r p; do
  t=iptables; [[ $p == *:* ]] && t=ip6tables
  inr $t -t raw -A PREROUTING -s "$p" -j DROP
  inr $t -t raw -A PREROUTING -d "$p" -j DROP
done
sed 's/#.*//' "$RULES/policy.rules" | awk '$1 == "drop"' | while read -r action proto kw ports rest; do
  [[ $proto =~ ^(tcp|udp)$ && $kw == port && -z $rest ]] || { echo "$TAG: policy.rules: '$action $proto $kw $ports $rest' is not 'drop tcp|udp port P,...': teach this script" >&2; exit 1; }
  for t in iptables ip6tables; do inr $t -A FORWARD -p "$proto" -m multiport --dports "${ports//-/:}" -j DROP; done
done
inr iptables-save | grep -v '^#' >"$WORK/iptables-save.txt"
inr ip6tables-save | grep -v '^#' >"$WORK/ip6tables-save.txt"

# --- Backends: HTTP/1.1 on :8080 (backend.py), the cluster's DNS on :5353 (dnsmasq, the dns service's
# backends .2 and .3). Nothing listens on :9999, so the backend kernel answers port unreachable.
specs=()
for a in "${BACKENDS4[@]}"; do specs+=("$a:8080"); done
for a in "${BACKENDS6[@]}"; do specs+=("[$a]:8080"); done
nsenter --net=/run/netns/"$NS_B" "$PY" "$HERE/backend.py" "$WORK/backend.ready" "${specs[@]}" 2>"$WORK/backend.log" &
PIDS+=($!)
nsenter --net=/run/netns/"$NS_B" dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll --pid-file= --user=root \
  --port=5353 --bind-interfaces --listen-address=10.88.2.2,10.88.2.3,fd00:88:2::2,fd00:88:2::3 \
  --local=/dplab.test/ --host-record=web.dplab.test,10.96.0.10,fd00:96::10 --log-queries --log-facility="$WORK/dnsmasq.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/backend.ready" ] && break; sleep 0.1; done
[ -s "$WORK/backend.ready" ] || { echo "$TAG: backend server did not start: $(cat "$WORK/backend.log")" >&2; exit 1; }

# --- Capture: every packet arriving at the router, on each of its interfaces ---
sleep 3   # let the links settle (the MLD reports of address setup are over) before capturing
TD=()
for i in r-cli r-be r-scan; do netns_capture "$NS_R" "$i" "$WORK/in-$i.pcap" -Q in; TD+=("${PIDS[-1]}"); done
sleep 0.5

: >"$WORK/traffic.txt"
say() { echo "$*" >>"$WORK/traffic.txt"; }
# Each connection to a service comes from a source port on which dplab's hash picks the backend the
# router's round robin will (pick-port.mjs says why); PORT is the one found.
declare -A TURN=()
NEXT_PORT=40000
port_for() { # proto client vip vport
  local key="$1 $3:$4"
  PORT=$(node "$HERE/pick-port.mjs" "$1" "$2" "$3" "$4" "${TURN[$key]:-0}" "$NEXT_PORT")
  TURN[$key]=$(( ${TURN[$key]:-0} + 1 ))
  NEXT_PORT=$(( PORT + 1 ))
}
lookup() { # client dns-vip name types...  (sets ADDR: the first address of the answer)
  local c=$1 dns=$2 out; shift 2
  port_for udp "$c" "$dns" 53
  out=$(inc "$PY" "$HERE/client.py" dns "$c" "$dns" 53 "$PORT" "$@")
  say "$out"; ADDR=${out##* }
}
web() { # family client vip what [--name] curl-args...  (--name: web.dplab.test, looked up first)
  local fam=$1 c=$2 vip=$3 what=$4 host=$3 dns=10.96.0.53 types=A; shift 4
  [ "$fam" = 6 ] && { dns=fd00:96::53; types="A AAAA"; host="[$vip]"; }
  local resolve=()
  if [ "$1" = --name ]; then
    shift; lookup "$c" "$dns" web.dplab.test $types
    [ "$fam" = 6 ] && ADDR="[$ADDR]"
    resolve=(--resolve "web.dplab.test:80:$ADDR"); host=web.dplab.test
  fi
  port_for tcp "$c" "$vip" 80
  local urls=() a prev=""
  # A word starting with / is a path on the service, unless it is the value of the option before it.
  for a in "$@"; do
    if [[ $a == /* && ! $prev =~ ^-[oXHdw]$ ]]; then urls+=("http://$host$a"); else urls+=("$a"); fi
    prev=$a
  done
  local out   # (assigned on its own line, so a failed curl stops the script)
  out=$(inc "$CURL" -sS -g -$fam --max-time 5 --interface "$c" --local-port "$PORT" "${resolve[@]}" "${urls[@]}" | tr '\n' '|')
  say "curl -$fam $c:$PORT $what: $out"
  sleep 0.05
}
run_clients() { # family vip-http vip-closed backend2 backend3 backend4 clients...
  local fam=$1 vip=$2 closed=$3 b2=$4 b3=$5 b4=$6 c1=$7 c2=$8 dns=10.96.0.53
  [ "$fam" = 6 ] && dns=fd00:96::53
  # Allowed: by name (a DNS query first), three requests on one keep-alive connection, by address.
  web "$fam" "$c1" "$vip" "GET by name" --name /
  web "$fam" "$c2" "$vip" "GET by name" --name /docs/
  web "$fam" "$c1" "$vip" "keep-alive x3" --name / /about /status
  web "$fam" "$c2" "$vip" "GET" /
  web "$fam" "$c1" "$vip" "GET" /images/logo.png
  web "$fam" "$c2" "$vip" "POST" -d 'q=dplab' /search
  web "$fam" "$c1" "$vip" "96 KiB download" --name -o /dev/null -w '%{size_download} bytes from %{remote_ip}:%{remote_port}' /download/dplab.tar
  # Denied by profiles/rules/l7.rules: prefix /admin; method TRACE; OPTIONS to the API port (8080,
  # the backends' port behind the service); a Host under *.doubleclick.net; and an /admin request
  # between two allowed ones on one keep-alive connection.
  web "$fam" "$c1" "$vip" "denied: prefix /admin" --name /admin/users
  web "$fam" "$c2" "$vip" "denied: TRACE" -X TRACE /
  web "$fam" "$c1" "$vip" "denied: OPTIONS to :8080" -X OPTIONS /api/items
  web "$fam" "$c2" "$vip" "denied: Host ads.doubleclick.net" -H 'Host: ads.doubleclick.net' /banner.js
  web "$fam" "$c1" "$vip" "keep-alive, /admin in the middle" / /admin/config /about
  # A name the zone does not hold: NXDOMAIN.
  lookup "$c2" "$dns" shop.dplab.test A
  # The closed service: a port unreachable back.
  say "$(inc "$PY" "$HERE/client.py" closed "$c1" "$closed" 9999)"
  # Dropped by policy.rules (and by the router): telnet, SMB/NetBIOS, SSDP, straight to pods.
  say "$(inc "$PY" "$HERE/client.py" tcp "$c1" "$b3" 23)"
  say "$(inc "$PY" "$HERE/client.py" tcp "$c2" "$b4" 445)"
  say "$(inc "$PY" "$HERE/client.py" tcp "$c1" "$b2" 139)"
  say "$(inc "$PY" "$HERE/client.py" udp "$c2" "$b4" 1900)"
  say "$(inc "$PY" "$HERE/client.py" udp "$c1" "$b3" 137)"
}
scan() { # nmap args...  A SYN scan, no host discovery, no retries (the router answers nothing).
  say "nmap $*: $(ins nmap -sS -Pn -n --max-retries 0 -T4 -e scan-r -p 21,22,23,25,53,80,443,445,3306,6443,8080 "$@" 2>&1 | grep -E 'report|filtered|done' | tr '\n' '|')"
}
run_clients 4 10.96.0.10 10.96.0.99 10.88.2.2 10.88.2.3 10.88.2.4 "${CLIENTS4[@]}"
scan 10.96.0.10 10.88.2.2
scan -6 fd00:96::10 fd00:88:2::2
run_clients 6 fd00:96::10 fd00:96::99 fd00:88:2::2 fd00:88:2::3 fd00:88:2::4 "${CLIENTS6[@]}"

sleep 1   # last FIN/ACKs
netns_capture_stop "${TD[@]}"
mergecap -F nsecpcap -w "$WORK/node-ingress.pcap" "$WORK"/in-r-cli.pcap "$WORK"/in-r-be.pcap "$WORK"/in-r-scan.pcap

"$PY" "$HERE/check.py" "$WORK/node-ingress.pcap" "$WORK/checks.txt"
# Every reply must come from the backend dplab bound its connection to (the kernel's round robin
# and pick-port.mjs agree): then conntrack finds every packet's flow, and drops none as invalid.
node "$HERE/../../bin/dplab.js" replay "$WORK/node-ingress.pcap" --profile iptables --json "$WORK/replay.json" >/dev/null 2>&1
node -e 'const r = require(process.argv[1]).verdicts.dropsByReason; for (const k of Object.keys(r)) if (k.startsWith("conntrack/")) { console.error(`demo/record.sh: dplab dropped ${r[k]} packets as ${k}: a reply from a backend dplab did not pick?`); process.exit(1); }' "$WORK/replay.json"

for f in node-ingress.pcap iptables-save.txt ip6tables-save.txt checks.txt traffic.txt; do cp "$WORK/$f" "$HERE/$f"; done
index_replace "$INDEX" "$HERE" demo node-ingress.pcap
echo "$TAG: wrote $HERE/node-ingress.pcap and its INDEX.tsv row"
