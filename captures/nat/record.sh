#!/usr/bin/env bash
# Record kube-proxy style DNAT with the Linux kernel as the oracle.
#
#   client ns (10.77.1.2, .3 / fd00:77:1::2, ::3)
#     cli-r --- r-cli   router ns (iptables/ip6tables nat: KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-*)
#                        r-be --- be-r   backends ns (10.88.2.2-.4 / fd00:88:2::2-::4)
#
# tcpdump runs in the router namespace on r-cli (client side: client <-> VIP) and on r-be
# (backend side: client <-> backend). Writes, next to this script:
#   kube-proxy-client.pcap, kube-proxy-backend.pcap   the two captures (Ethernet, nanosecond pcap)
#   services.txt                                      the services, in dplab's service format
#   iptables-save.txt, ip6tables-save.txt             the nat rules as programmed
#   conntrack.txt                                     the router's conntrack table after the traffic
#   checks.txt                                        the counts the tshark checks below found
# and replaces its own two rows (nat/kube-proxy-*.pcap) in ../INDEX.tsv.
#
# Run as root: bash captures/nat/record.sh
# Needs: iproute2, iptables (nft or legacy), ethtool, tcpdump, tshark, capinfos, curl, python3;
# conntrack (conntrack-tools) is optional. Idempotent: it removes what an earlier run left and its
# trap removes the namespaces (and the processes it started) on exit, also on failure.
# Traffic stays inside the three namespaces. Nothing is written in place until the checks pass.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
INDEX="$HERE/../INDEX.tsv"
NS_C=dplab-nat-client
NS_R=dplab-nat-router
NS_B=dplab-nat-backends
PY=$(python3 -c 'import sys; print(sys.executable)')   # the interpreter itself, not a pyenv shim
CURL=$(command -v curl)
TAG=record.sh
NAMESPACES=("$NS_C" "$NS_R" "$NS_B")
LEFT_AS=captures/nat
. "$HERE/../lib/netns.sh"
. "$HERE/../lib/cluster.sh"

netns_start /tmp/dplab-nat.XXXXXX "apt-get install -y iproute2 iptables ethtool tcpdump tshark curl python3" \
  ip nsenter iptables-restore ip6tables-restore iptables-save ip6tables-save ethtool tcpdump tshark capinfos curl python3

cluster_up captures/nat/record.sh

# --- Backends: one process serving HTTP on :8080, UDP echo on :7007, DNS-shaped answers on :5353.
# Nothing listens on :9999, so the backend kernel answers port unreachable.
cat >"$WORK/backend.py" <<'PYEOF'
import socket, socketserver, struct, sys, threading
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'
    def do_GET(self):
        host, port = self.server.server_address[:2]
        body = f'hello from backend {host} port {port}\n'.encode()
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass

def fam(host): return socket.AF_INET6 if ':' in host else socket.AF_INET

def http(host, port):
    class S(HTTPServer):
        address_family = fam(host)
        def server_bind(self):  # HTTPServer's own looks the name up (getfqdn): no DNS here
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = host, port
    s = S((host, port), Handler)
    return s.serve_forever

def udp(host, port, answer):
    s = socket.socket(fam(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    def loop():
        while True:
            data, peer = s.recvfrom(2048)
            r = answer(data, host)
            if r is not None: s.sendto(r, peer)
    return loop

def echo(data, host): return data

def dns(q, host):
    # A DNS answer: the question back, and one A/AAAA record holding this backend's address.
    if len(q) < 12: return None
    qid, flags, qd = struct.unpack('!HHH', q[:6])
    i = 12
    while i < len(q) and q[i] != 0: i += 1 + q[i]
    qend = i + 5
    if qd != 1 or qend > len(q): return None
    qtype = struct.unpack('!H', q[i + 1:i + 3])[0]
    f = fam(host)
    want = socket.AF_INET if qtype == 1 else socket.AF_INET6 if qtype == 28 else None
    ans = b''
    if want == f:
        rdata = socket.inet_pton(f, host)
        ans = struct.pack('!HHHIH', 0xc00c, qtype, 1, 30, len(rdata)) + rdata
    return struct.pack('!HHHHHH', qid, 0x8180 | (flags & 0x0100), 1, 1 if ans else 0, 0, 0) + q[12:qend] + ans

loops = []
for spec in sys.argv[2:]:
    kind, hp = spec.split('=')
    host, port = hp.rsplit(':', 1)
    host, port = host.strip('[]'), int(port)
    loops.append(http(host, port) if kind == 'http' else udp(host, port, echo if kind == 'echo' else dns))
for l in loops: threading.Thread(target=l, daemon=True).start()
open(sys.argv[1], 'w').write('ready\n')
threading.Event().wait()
PYEOF
specs=()
for a in "${BACKENDS4[@]}"; do specs+=("http=$a:8080"); done
for a in "${BACKENDS6[@]}"; do specs+=("http=[$a]:8080"); done
for a in 10.88.2.2 10.88.2.3 "[fd00:88:2::2]" "[fd00:88:2::3]"; do specs+=("echo=$a:7007" "dns=$a:5353"); done
nsenter --net=/run/netns/"$NS_B" "$PY" "$WORK/backend.py" "$WORK/backend.ready" "${specs[@]}" 2>"$WORK/backend.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/backend.ready" ] && break; sleep 0.1; done
[ -s "$WORK/backend.ready" ] || { echo "record.sh: backend server did not start: $(cat "$WORK/backend.log")" >&2; exit 1; }

# --- UDP client: one socket per call, bound to the given client address.
cat >"$WORK/client.py" <<'PYEOF'
import socket, struct, sys
kind, src, dst, port, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
f = socket.AF_INET6 if ':' in dst else socket.AF_INET
s = socket.socket(f, socket.SOCK_DGRAM)
s.bind((src, 0))
s.settimeout(2)
sport = s.getsockname()[1]
for n in range(count):
    if kind == 'echo':
        msg = f'echo {n} from {src}:{sport}'.encode()
        s.sendto(msg, (dst, port))            # unconnected socket: sendto/recvfrom
        data, peer = s.recvfrom(2048)
        assert data == msg and peer[0] == dst and peer[1] == port, (data, peer)
        print(f'echo {src}:{sport} -> {dst}:{port}: reply from {peer[0]}:{peer[1]}')
    elif kind == 'dns':
        qtype = 28 if f == socket.AF_INET6 else 1
        qname = b''.join(bytes([len(p)]) + p for p in b'web.dplab.test'.split(b'.')) + b'\0'
        q = struct.pack('!HHHHHH', 0x4400 + n, 0x0100, 1, 0, 0, 0) + qname + struct.pack('!HH', qtype, 1)
        s.sendto(q, (dst, port))
        data, peer = s.recvfrom(2048)
        assert data[:2] == q[:2] and peer[0] == dst, (data, peer)
        alen = 16 if qtype == 28 else 4
        print(f'dns {src}:{sport} -> {dst}:{port}: answer {socket.inet_ntop(f, data[-alen:])}')
    else:
        # Connected socket: the kernel reports the ICMP error to it only if the quoted header,
        # as the router rewrote it, names this socket (client -> VIP).
        s.connect((dst, port))
        s.send(f'anyone there? {n}'.encode())
        try:
            s.recv(2048)
            raise SystemExit(f'closed {dst}:{port}: got an answer')
        except ConnectionRefusedError:
            print(f'closed {src}:{sport} -> {dst}:{port}: connection refused (ICMP error reached the socket)')
PYEOF

# --- Capture ---
start_capture() { netns_capture "$NS_R" "$@"; } # iface file
sleep 3   # let the links settle (the MLD reports of address setup are over) before capturing
start_capture r-cli "$WORK/kube-proxy-client.pcap"
TD_CLI=${PIDS[-1]}
start_capture r-be "$WORK/kube-proxy-backend.pcap"
TD_BE=${PIDS[-1]}
sleep 0.5

: >"$WORK/traffic.txt"
run_traffic() { # vip-http vip-echo vip-dns vip-closed url-host clients...
  local vhttp=$1 vecho=$2 vdns=$3 vclosed=$4 uhost=$5; shift 5
  local c i
  # HTTP: six connections (three per client address), so the random rules pick several backends.
  for i in 1 2 3; do
    for c in "$@"; do
      echo "curl $c -> $uhost: $(inc "$CURL" -sS -g --max-time 5 --interface "$c" "http://$uhost/")" >>"$WORK/traffic.txt"
      sleep 0.05
    done
  done
  # UDP echo: one socket sending three datagrams (one flow, one backend), then more sockets.
  inc "$PY" "$WORK/client.py" echo "$1" "$vecho" 7 3 >>"$WORK/traffic.txt"
  inc "$PY" "$WORK/client.py" echo "$1" "$vecho" 7 1 >>"$WORK/traffic.txt"
  inc "$PY" "$WORK/client.py" echo "$2" "$vecho" 7 1 >>"$WORK/traffic.txt"
  inc "$PY" "$WORK/client.py" echo "$2" "$vecho" 7 1 >>"$WORK/traffic.txt"
  # DNS-shaped queries to :53 (backends answer on :5353).
  inc "$PY" "$WORK/client.py" dns "$1" "$vdns" 53 1 >>"$WORK/traffic.txt"
  inc "$PY" "$WORK/client.py" dns "$1" "$vdns" 53 1 >>"$WORK/traffic.txt"
  inc "$PY" "$WORK/client.py" dns "$2" "$vdns" 53 2 >>"$WORK/traffic.txt"
  # The closed port: two datagrams on one socket, one on another; each draws a port unreachable.
  inc "$PY" "$WORK/client.py" closed "$1" "$vclosed" 9999 2 >>"$WORK/traffic.txt"
  inc "$PY" "$WORK/client.py" closed "$2" "$vclosed" 9999 1 >>"$WORK/traffic.txt"
}
run_traffic 10.96.0.10 10.96.0.7 10.96.0.53 10.96.0.99 10.96.0.10 "${CLIENTS4[@]}"
run_traffic fd00:96::10 fd00:96::7 fd00:96::53 fd00:96::99 "[fd00:96::10]" "${CLIENTS6[@]}"

sleep 1   # last FIN/ACKs
netns_capture_stop "$TD_CLI" "$TD_BE"
if command -v conntrack >/dev/null; then
  { inr conntrack -L -f ipv4 2>/dev/null; inr conntrack -L -f ipv6 2>/dev/null; } | sort >"$WORK/conntrack.txt" || true
fi

# --- Checks, with tshark validating every IP/TCP/UDP/ICMP checksum ---
"$PY" - "$WORK" <<'PYEOF'
import ipaddress, subprocess, sys
from decimal import Decimal
work = sys.argv[1]
C4, B4, V4 = (ipaddress.ip_network(n) for n in ('10.77.1.0/24', '10.88.2.0/24', '10.96.0.0/16'))
C6, B6, V6 = (ipaddress.ip_network(n) for n in ('fd00:77:1::/64', 'fd00:88:2::/64', 'fd00:96::/64'))
FIELDS = ['frame.protocols', 'ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'tcp.flags.syn', 'tcp.flags.ack', 'tcp.dstport',
          'udp.srcport', 'udp.dstport', 'icmp.type', 'icmp.code', 'icmpv6.type', 'icmpv6.code',
          'ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', 'icmp.checksum.status', 'icmpv6.checksum.status']
def rows(f):
    out = subprocess.run(['tshark', '-r', f, '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE',
                          '-o', 'ip.check_checksum:TRUE', '-T', 'fields', '-E', 'aggregator=,', '-E', 'occurrence=a']
                         + [x for e in FIELDS for x in ('-e', e)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        yield dict(zip(FIELDS, [c.split(',') if c else [] for c in line.split('\t')]))
def net(a):
    a = ipaddress.ip_address(a)
    for n, name in ((C4, 'client'), (B4, 'backend'), (V4, 'vip'), (C6, 'client'), (B6, 'backend'), (V6, 'vip')):
        if a in n: return name
    return 'other:' + str(a)
problems, report = [], []
for side, file, far in (('client', 'kube-proxy-client.pcap', 'vip'), ('backend', 'kube-proxy-backend.pcap', 'backend')):
    path = f'{work}/{file}'
    n = 0; dirs = {}; bad_ck = 0; icmp_err = {}; syn_to = {4: set(), 6: set()}; fams = {4: 0, 6: 0}
    for r in rows(path):
        n += 1
        fam = 4 if r['ip.src'] else 6 if r['ipv6.src'] else 0
        if not fam:
            problems.append(f'{side}: packet {n} is not IP ({r["frame.protocols"]})'); continue
        fams[fam] += 1
        src = r['ip.src' if fam == 4 else 'ipv6.src']; dst = r['ip.dst' if fam == 4 else 'ipv6.dst']
        d = f'{net(src[0])}->{net(dst[0])}'
        dirs[d] = dirs.get(d, 0) + 1
        if d not in (f'client->{far}', f'{far}->client'):
            problems.append(f'{side}: packet {n} goes {d} ({src[0]} -> {dst[0]})')
        for k in ('ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', 'icmp.checksum.status', 'icmpv6.checksum.status'):
            for v in r[k]:
                if v != '1':
                    bad_ck += 1; problems.append(f'{side}: packet {n} {k}={v} (1 = good)')
        if r['tcp.flags.syn'] == ['1'] and r['tcp.flags.ack'] == ['0']:
            syn_to[fam].add(dst[0])
        t, c = (r['icmp.type'], r['icmp.code']) if fam == 4 else (r['icmpv6.type'], r['icmpv6.code'])
        if t:
            want = ('3', '3') if fam == 4 else ('1', '4')
            if (t[0], c[0]) != want or len(src) < 2:
                problems.append(f'{side}: packet {n} unexpected ICMP type {t} code {c}'); continue
            # outer src -> dst, quoted src -> dst:port
            key = f'IPv{fam} {src[0]} -> {dst[0]} quoting {src[1]} -> {dst[1]}:{r["udp.dstport"][0]}'
            icmp_err[key] = icmp_err.get(key, 0) + 1
            if net(dst[1]) != far or net(src[1]) != 'client' or net(src[0]) != far:
                problems.append(f'{side}: packet {n} ICMP error quotes {src[1]} -> {dst[1]} from {src[0]}')
    report.append(f'{file}: {n} packets (IPv4 {fams[4]}, IPv6 {fams[6]}); checksum problems: {bad_ck}')
    for d in sorted(dirs): report.append(f'  {d}: {dirs[d]}')
    for fam in (4, 6):
        report.append(f'  TCP SYNs (first packet of each HTTP connection), IPv{fam}, to: {" ".join(sorted(syn_to[fam]))}')
    for k in sorted(icmp_err): report.append(f'  port unreachable: {k} x{icmp_err[k]}')
    for d in (f'client->{far}', f'{far}->client'):
        if not dirs.get(d): problems.append(f'{side}: no {d} packets')
    if not any(k.startswith('IPv4') for k in icmp_err): problems.append(f'{side}: no ICMP port unreachable')
    if not any(k.startswith('IPv6') for k in icmp_err): problems.append(f'{side}: no ICMPv6 port unreachable')
    if side == 'backend':
        for fam in (4, 6):
            if len(syn_to[fam]) < 2:
                problems.append(f'backend: IPv{fam} HTTP connections all went to {syn_to[fam]} (random choice; run again)')
# Every packet crosses the router once: it must be in both captures, and a merge by timestamp must
# put the ingress copy (client side for client->service, backend side for replies) first. A packet
# is named by what DNAT leaves alone: the client's address and port, the direction, IPv4 ID,
# TCP seq/ack/flags, payload, ICMP type and the quoted packet's client port.
PAIR = ['frame.time_epoch', 'ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'ip.id', 'tcp.srcport', 'tcp.dstport', 'udp.srcport',
        'udp.dstport', 'tcp.seq_raw', 'tcp.ack_raw', 'tcp.flags', 'tcp.payload', 'udp.payload', 'icmp.type', 'icmpv6.type']
def keys(f):
    out = subprocess.run(['tshark', '-r', f, '-T', 'fields', '-E', 'aggregator=,', '-E', 'occurrence=f'] + [x for e in PAIR for x in ('-e', e)],
                         capture_output=True, text=True, check=True).stdout
    got = {}
    for line in out.splitlines():
        r = dict(zip(PAIR, line.split('\t')))
        src, dst = (r['ip.src'], r['ip.dst']) if r['ip.src'] else (r['ipv6.src'], r['ipv6.dst'])
        up = net(src) == 'client'
        sport, dport = (r['tcp.srcport'], r['tcp.dstport']) if r['tcp.srcport'] else (r['udp.srcport'], r['udp.dstport'])
        k = (up, src if up else dst, sport if up else dport, r['ip.id'], r['tcp.seq_raw'], r['tcp.ack_raw'], r['tcp.flags'],
             r['tcp.payload'], r['udp.payload'], r['icmp.type'], r['icmpv6.type'])
        if k in got: problems.append(f'{f}: two packets named {k}')
        got[k] = r['frame.time_epoch']
    return got
kc, kb = keys(f'{work}/kube-proxy-client.pcap'), keys(f'{work}/kube-proxy-backend.pcap')
if set(kc) != set(kb):
    problems.append(f'{len(set(kc) ^ set(kb))} packets are in one capture only')
late = 0
for k in set(kc) & set(kb):
    first, second = (kc[k], kb[k]) if k[0] else (kb[k], kc[k])
    if Decimal(first) >= Decimal(second): late += 1
if late: problems.append(f'{late} packets have their egress copy timestamped no later than their ingress copy')
report.append(f'paired across the two captures: {len(set(kc) & set(kb))} packets; egress copy later than ingress copy in all of them'
              if not late else f'paired: {len(set(kc) & set(kb))}; out of order: {late}')
open(f'{work}/checks.txt', 'w').write('\n'.join(report) + '\n')
print('\n'.join(report))
if problems:
    print('\n'.join(['PROBLEMS:'] + problems[:40]), file=sys.stderr); sys.exit(1)
PYEOF

# --- Install the results next to this script, and this script's two rows in INDEX.tsv ---
for f in kube-proxy-client.pcap kube-proxy-backend.pcap services.txt iptables-save.txt ip6tables-save.txt checks.txt traffic.txt; do
  cp "$WORK/$f" "$HERE/$f"
done
[ -f "$WORK/conntrack.txt" ] && cp "$WORK/conntrack.txt" "$HERE/conntrack.txt"
index_replace "$INDEX" "$HERE" nat kube-proxy-client.pcap kube-proxy-backend.pcap
echo "record.sh: wrote $HERE/{kube-proxy-client,kube-proxy-backend}.pcap and their INDEX.tsv rows"
