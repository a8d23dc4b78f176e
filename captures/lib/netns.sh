# Shared machinery of the recording scripts (captures/nat/record.sh, captures/demo/record.sh):
# network namespaces that are removed on exit, veth pairs with offloads off, kube-proxy's nat
# rules made from one service table, tcpdump in a namespace, and a capture's INDEX.tsv row.
# Sourced, not run. The sourcing script sets, before calling anything here:
#   TAG         its name in messages ("record.sh")
#   NAMESPACES  the namespaces it uses (removed on exit, and first if an earlier run left them)
#   LEFT_AS     what stays untouched on failure ("captures/nat")
#   PY          the Python interpreter
# and keeps PIDS (background processes to stop on exit) and WORK (a scratch folder, removed).

WORK=""
PIDS=()
# The script's own extra cleanup (a function name), run first; optional.
EXTRA_CLEANUP=""

netns_del_all() {
  local ns p
  for ns in "${NAMESPACES[@]}"; do
    if ip netns list | grep -qx "$ns\( .*\)\?"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
      ip netns del "$ns"
    fi
  done
}

netns_cleanup() {
  local rc=$?
  set +e
  [ -n "$EXTRA_CLEANUP" ] && "$EXTRA_CLEANUP"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  netns_del_all
  [ -n "$WORK" ] && rm -rf "$WORK"
  [ $rc -ne 0 ] && echo "$TAG: FAILED (exit $rc); $LEFT_AS left as it was" >&2
  exit $rc
}

# Root, the tools, the exit trap, leftovers of an earlier run that was killed before its trap ran,
# and a fresh $WORK (mktemp template, e.g. /tmp/dplab-nat.XXXXXX).
netns_start() { # work-template install-hint tools...
  local template=$1 hint=$2 t; shift 2
  [ "$(id -u)" = 0 ] || { echo "$TAG: run as root" >&2; exit 1; }
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$TAG: $t is missing ($hint)" >&2; exit 1; }
  done
  trap netns_cleanup EXIT
  trap 'exit 130' INT TERM
  netns_del_all
  WORK=$(mktemp -d "$template")
}

netns_add() { # ns...
  local ns
  for ns in "$@"; do
    ip netns add "$ns"
    # No DAD, router solicitations or router advertisements: the captures hold only the traffic made.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
      net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.default.router_solicitations=0 \
      net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
    ip netns exec "$ns" ip link set lo up
  done
}

netns_offloads_off() { # "ns iface"...
  local pair f
  for pair in "$@"; do
    set -- $pair
    # Offloads off, so the checksums in the capture are the ones on the wire.
    ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
    for f in tx-checksumming rx-checksumming tcp-segmentation-offload generic-segmentation-offload generic-receive-offload; do
      ip netns exec "$1" ethtool -k "$2" | grep -q "^$f: off" || { echo "$TAG: $f still on on $2" >&2; exit 1; }
    done
  done
}

# services.txt and the kube-proxy rules (rules4.txt, rules6.txt) in $WORK, from the table in
# $SERVICES: name (kube-proxy's "namespace/service:port", which names the chains) | proto |
# VIP:PORT | backends.
# kube-proxy's chain names: KUBE-SVC- + base32(sha256(servicePortName + protocol))[:16],
# KUBE-SEP- + base32(sha256(servicePortName + protocol + endpoint))[:16]. The backend is chosen as
# kube-proxy does (random: -m statistic --mode random, probability 1/(n-i)), or, with "nth", round
# robin: --mode nth --every n-i --packet 0 on backend i's rule, so a service's connection k (from 0)
# goes to its backend k mod n (each rule takes the first of every n-i connections it sees).
kube_proxy_rules() { # writer (named in services.txt's header) [random|nth]
  SERVICES="$SERVICES" "$PY" - "$WORK" "$1" "${2:-random}" <<'PYEOF'
import base64, hashlib, os, sys
work, writer, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def h(s): return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:16]
def split(hp):
    host, port = hp.rsplit(':', 1)
    return host.strip('[]'), port
svc_lines = ['# dplab services: PROTO VIP:PORT -> BACKEND:PORT ...',
             f'# Written by {writer}; exactly what it programmed into iptables/ip6tables',
             '# (kube-proxy chains; the name before each line is the service port the chains hash).']
rules = {4: [], 6: []}
chains = {4: [], 6: []}
for line in os.environ['SERVICES'].strip().split('\n'):
    name, proto, vip, *backends = line.split()
    fam = 6 if vip.startswith('[') else 4
    vhost, vport = split(vip)
    svc = 'KUBE-SVC-' + h(name + proto)
    svc_lines.append(f'# {name} {svc}')
    svc_lines.append(f'{proto} {vip} -> {" ".join(backends)}')
    plen = 128 if fam == 6 else 32
    chains[fam].append(svc)
    rules[fam].append(f'-A KUBE-SERVICES -d {vhost}/{plen} -p {proto} -m comment --comment "{name} cluster IP" -m {proto} --dport {vport} -j {svc}')
    n = len(backends)
    for i, be in enumerate(backends):
        sep = 'KUBE-SEP-' + h(name + proto + be)
        chains[fam].append(sep)
        if mode == 'nth':
            stat = f' -m statistic --mode nth --every {n - i} --packet 0' if i < n - 1 else ''
        else:
            stat = f' -m statistic --mode random --probability {1.0 / (n - i):0.10f}' if i < n - 1 else ''
        rules[fam].append(f'-A {svc} -m comment --comment "{name} -> {be}"{stat} -j {sep}')
    for be in backends:
        sep = 'KUBE-SEP-' + h(name + proto + be)
        bhost, bport = split(be)
        rules[fam].append(f'-A {sep} -p {proto} -m comment --comment "{name}" -m {proto} -j DNAT --to-destination {be}')
open(f'{work}/services.txt', 'w').write('\n'.join(svc_lines) + '\n')
for fam in (4, 6):
    out = ['*nat', ':KUBE-SERVICES - [0:0]'] + [f':{c} - [0:0]' for c in chains[fam]]
    out.append('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
    out += rules[fam] + ['COMMIT']
    open(f'{work}/rules{fam}.txt', 'w').write('\n'.join(out) + '\n')
PYEOF
}

# tcpdump in a namespace, writing a nanosecond Ethernet pcap; returns once it listens. Its pid is
# ${PIDS[-1]}. Extra arguments go to tcpdump (e.g. -Q in).
netns_capture() { # ns iface file [tcpdump args...]
  local ns=$1 iface=$2 file=$3; shift 3
  nsenter --net=/run/netns/"$ns" tcpdump -i "$iface" -w "$file" -U -s 0 -Z root --time-stamp-precision=nano -y EN10MB "$@" 2>"$file.log" &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q 'listening on' "$file.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "$TAG: tcpdump on $iface did not start: $(cat "$file.log")" >&2; exit 1
}

# Stop tcpdumps started by netns_capture: SIGTERM makes tcpdump flush and close the file; wait for
# it to exit, and forget its pid.
netns_capture_stop() { # pid...
  local keep=() p q stop
  kill -TERM "$@"
  wait "$@" || true
  for p in "${PIDS[@]}"; do
    stop=0; for q in "$@"; do [ "$p" = "$q" ] && stop=1; done
    [ $stop = 1 ] || keep+=("$p")
  done
  PIDS=("${keep[@]}")
}

# A capture's row in captures/INDEX.tsv (the columns of the others; licence MIT, the project's own).
index_row() { # dir folder file
  local f=$1/$3 size fmt lt pk protos convs
  size=$(stat -c %s "$f")
  pk=$(capinfos -M -c -T -r "$f" | cut -f2)
  case $(od -An -tx1 -N4 "$f" | tr -d ' ') in
    4d3cb2a1) fmt="pcap nsec LE" ;; d4c3b2a1) fmt="pcap usec LE" ;; *) echo "$TAG: $3: unexpected pcap magic" >&2; exit 1 ;;
  esac
  lt=$(od -An -tu4 -j20 -N4 "$f" | tr -d ' ')
  [ "$lt" = 1 ] || { echo "$TAG: $3: link type $lt, not Ethernet" >&2; exit 1; }
  lt=1/EN10MB
  protos=$(tshark -r "$f" -T fields -e frame.protocols 2>/dev/null | tr ':' '\n' | grep -vx 'frame\|ethertype' | awk '!s[$0]++' | paste -sd, -)
  convs=$(tshark -r "$f" -q -z conv,tcp 2>/dev/null | grep -c '<->' || true)
  printf '%s/%s\trecorded:captures/%s/record.sh\t%s\t%s\t%s\t%s\t%s\t%s\tMIT\n' "$2" "$3" "$2" "$size" "$fmt" "$lt" "$pk" "$protos" "$convs"
}

# Replace the rows of one folder's recorded files in captures/INDEX.tsv. $WORK/INDEX.tsv is the scratch copy.
index_replace() { # index-path dir folder files...
  local index=$1 dir=$2 folder=$3 f; shift 3
  {
    awk -F'\t' -v folder="$folder" -v files="$*" 'BEGIN { n = split(files, a, " "); for (i = 1; i <= n; i++) skip[folder "/" a[i]] = 1 } !($1 in skip)' "$index"
    for f in "$@"; do index_row "$dir" "$folder" "$f"; done
  } >"$WORK/INDEX.tsv"
  cat "$WORK/INDEX.tsv" >"$index"
}
