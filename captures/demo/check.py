"""Checks the demo capture with tshark (every IP/TCP/UDP/ICMP checksum validated) and writes what
it found, the counts captures/demo/README.md quotes, to the file given second.

Usage: check.py CAPTURE REPORT     exit 1, listing the problems, if the capture is not as intended.
"""
import ipaddress, subprocess, sys
from collections import Counter

path, report_path = sys.argv[1], sys.argv[2]
NETS = [(ipaddress.ip_network(n), name) for n, name in (
    ('10.77.1.0/24', 'client'), ('fd00:77:1::/64', 'client'), ('10.88.2.0/24', 'backend'), ('fd00:88:2::/64', 'backend'),
    ('10.96.0.0/16', 'vip'), ('fd00:96::/64', 'vip'), ('203.0.113.0/24', 'scanner'), ('2001:db8:bad::/48', 'scanner'))]
# The drops of profiles/rules/policy.rules, which the router enforces too (so these flows have no replies).
DENIED = {('tcp', p) for p in (23, 135, 139, 445)} | {('udp', p) for p in (1900, 137, 138)}
FIELDS = ['frame.protocols', 'ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'tcp.srcport', 'tcp.dstport', 'tcp.flags.syn',
          'tcp.flags.ack', 'udp.srcport', 'udp.dstport', 'icmp.type', 'icmpv6.type', 'http.request.method', 'http.request.uri',
          'http.host', 'http.response.code', 'dns.flags.response', 'dns.qry.name', 'dns.qry.type', 'dns.a', 'dns.aaaa', 'dns.flags.rcode',
          'ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', 'icmp.checksum.status', 'icmpv6.checksum.status']
out = subprocess.run(['tshark', '-n', '-r', path, '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE',
                      '-o', 'ip.check_checksum:TRUE', '-d', 'udp.port==5353,dns', '-T', 'fields', '-E', 'aggregator=,',
                      '-E', 'occurrence=a'] + [x for f in FIELDS for x in ('-e', f)],
                     capture_output=True, text=True, check=True).stdout


def where(a):
    a = ipaddress.ip_address(a)
    return next((name for n, name in NETS if a in n), 'other')


problems, fams, dirs, scan_ports, denied, http, dns, icmp = [], Counter(), Counter(), Counter(), Counter(), [], [], Counter()
n = 0
for line in out.splitlines():
    n += 1
    r = dict(zip(FIELDS, [c.split(',') if c else [] for c in line.split('\t')]))
    fam = 4 if r['ip.src'] else 6 if r['ipv6.src'] else 0
    if not fam:
        problems.append(f'packet {n} is not IP ({r["frame.protocols"]})'); continue
    fams[fam] += 1
    src, dst = (r['ip.src'], r['ip.dst']) if fam == 4 else (r['ipv6.src'], r['ipv6.dst'])
    d = f'{where(src[0])}->{where(dst[0])}'
    dirs[d] += 1
    for k in FIELDS:
        if k.endswith('checksum.status'):
            for v in r[k]:
                if v != '1': problems.append(f'packet {n}: {k}={v} (1 = good)')
    proto = 'tcp' if r['tcp.dstport'] else 'udp' if r['udp.dstport'] else ''
    dport = int((r['tcp.dstport'] or r['udp.dstport'] or ['0'])[0])
    sport = int((r['tcp.srcport'] or r['udp.srcport'] or ['0'])[0])
    if d.startswith('scanner->'):
        if proto != 'tcp' or r['tcp.flags.syn'] != ['1'] or r['tcp.flags.ack'] != ['0']:
            problems.append(f'packet {n}: from the scanner but not a TCP SYN')
        scan_ports[(fam, dst[0], dport)] += 1
    elif d.endswith('->scanner'):
        problems.append(f'packet {n}: to the scanner (the router drops its probes, so nothing answers)')
    if (proto, dport) in DENIED:
        denied[(proto, dport, d, fam)] += 1
    if (proto, sport) in DENIED:
        problems.append(f'packet {n}: an answer from policy-denied {proto} port {sport}')
    if r['http.request.method']:
        http.append(f'IPv{fam} {src[0]} -> {dst[0]}:{dport} {r["http.request.method"][0]} {r["http.request.uri"][0]} Host: {(r["http.host"] or ["-"])[0]}')
    if r['dns.qry.name'] and not r['icmp.type'] and not r['icmpv6.type']:
        if r['dns.flags.response'] == ['1']:
            dns.append(f'IPv{fam} answer {src[0]}:{sport} -> {dst[0]}: {r["dns.qry.name"][0]} rcode {r["dns.flags.rcode"][0]} {" ".join(r["dns.a"] + r["dns.aaaa"])}')
        else:
            dns.append(f'IPv{fam} query {src[0]} -> {dst[0]}:{dport}: {r["dns.qry.name"][0]} type {r["dns.qry.type"][0]}')
    t = (r['icmp.type'] or r['icmpv6.type'])
    if t:
        icmp[f'IPv{fam} {d} type {t[0]}'] += 1
        if t[0] in ('133', '134', '135', '136', '143'):
            problems.append(f'packet {n}: neighbour discovery or MLD (type {t[0]}): only the traffic made belongs here')

rep = [f'{path.rsplit("/", 1)[-1]}: {n} packets (IPv4 {fams[4]}, IPv6 {fams[6]}), all at the router\'s ingress; checksum problems: {sum("checksum" in p for p in problems)}']
rep += [f'  {k}: {v}' for k, v in sorted(dirs.items())]
rep.append(f'scanner: {sum(scan_ports.values())} TCP SYNs, one per port, to {len({(f, a) for f, a, _ in scan_ports})} addresses; no answers')
for f, a in sorted({(f, a) for f, a, _ in scan_ports}):
    rep.append(f'  IPv{f} {a}: ports {",".join(str(p) for ff, aa, p in sorted(scan_ports) if (ff, aa) == (f, a))}')
rep.append(f'policy-denied ports (profiles/rules/policy.rules; the router drops them too): {sum(denied.values())} packets, no answers')
rep += [f'  IPv{f} {p}/{port} {d}: {c}' for (p, port, d, f), c in sorted(denied.items())]
rep.append(f'HTTP requests: {len(http)}')
rep += [f'  {h}' for h in http]
rep.append(f'DNS messages: {len(dns)}')
rep += [f'  {x}' for x in dns]
rep += [f'ICMP: {k}: {v}' for k, v in sorted(icmp.items())]
for want, what in ((scan_ports, 'scanner SYNs'), (denied, 'policy-denied flows'), (http, 'HTTP requests'), (dns, 'DNS messages')):
    if not want: problems.append(f'no {what}')
if sorted(set(fams)) != [4, 6]: problems.append('not both IPv4 and IPv6')
if any(d.startswith('vip->') for d in dirs): problems.append('a packet from a VIP: at ingress, replies still come from the backend')
open(report_path, 'w').write('\n'.join(rep) + '\n')
print('\n'.join(rep))
if problems:
    print('\n'.join(['PROBLEMS:'] + problems[:40]), file=sys.stderr)
    sys.exit(1)
