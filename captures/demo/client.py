"""The demo's non-HTTP clients. One line of outcome per call, for traffic.txt.

  client.py tcp SRC DST PORT      connect(); the router drops the SYN (profiles/rules/policy.rules),
                                  so it gives up after 0.5 s, before the kernel retransmits (1 s)
  client.py udp SRC DST PORT      one datagram, no answer awaited (a dropped port: SSDP, NetBIOS)
  client.py closed SRC DST PORT   one datagram on a connected socket to a port nothing listens on:
                                  the ICMP port unreachable reaches the socket as ECONNREFUSED
  client.py dns SRC DST PORT SPORT NAME TYPE...
                                  DNS queries (TYPE A or AAAA) for NAME from one socket bound to
                                  SRC:SPORT, as a stub resolver sends them; prints the answers, the
                                  last word the first address (or NXDOMAIN)
"""
import socket, struct, sys

kind, src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fam = socket.AF_INET6 if ':' in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM if kind == 'tcp' else socket.SOCK_DGRAM)
s.bind((src, int(sys.argv[5]) if kind == 'dns' else 0))
sport = s.getsockname()[1]
where = f'{kind} {src}:{sport} -> {dst}:{port}'
if kind == 'tcp':
    s.settimeout(0.5)
    try:
        s.connect((dst, port))
        raise SystemExit(f'{where}: connected; the router should have dropped it')
    except socket.timeout:
        print(f'{where}: no answer (dropped)')
elif kind == 'dns':
    name, qtypes = sys.argv[6], sys.argv[7:]
    s.settimeout(2)
    qname = b''.join(bytes([len(p)]) + p for p in name.encode().split(b'.')) + b'\0'
    got = []
    for n, t in enumerate(qtypes):
        qtype = {'A': 1, 'AAAA': 28}[t]
        qid = (sport + n) & 0xffff
        s.sendto(struct.pack('!HHHHHH', qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack('!HH', qtype, 1), (dst, port))
        data = s.recv(2048)
        rid, flags, _, an = struct.unpack('!HHHH', data[:8])
        assert rid == qid, (rid, qid)
        if flags & 0xf == 3:
            got.append('NXDOMAIN'); continue
        i = 12 + len(qname) + 4                                   # past the question
        for _ in range(an):                                        # answers: a name pointer, then type, class, ttl, rdata
            atype, _, _, rdlen = struct.unpack('!HHIH', data[i + 2:i + 12])
            if atype in (1, 28): got.append(socket.inet_ntop(socket.AF_INET if atype == 1 else socket.AF_INET6, data[i + 12:i + 12 + rdlen]))
            i += 12 + rdlen
    print(f'dns {src}:{sport} -> {dst}:{port} {name} {",".join(qtypes)}: {" ".join(got)}')
elif kind == 'udp':
    s.sendto(f'probe from {src}:{sport}'.encode(), (dst, port))
    print(f'{where}: sent')
else:
    s.settimeout(2)
    s.connect((dst, port))
    s.send(b'anyone there?')
    try:
        s.recv(2048)
        raise SystemExit(f'{where}: got an answer')
    except ConnectionRefusedError:
        print(f'{where}: connection refused (ICMP error reached the socket)')
