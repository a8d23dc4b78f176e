#!/usr/bin/env node
// Regenerates test/golden/stages/{xdp,policy}.json: what tshark counts for the packets the xdp and
// policy stages should drop, on shipped captures. These are the independent expected values for
// test/xdp.test.ts and test/policy-stage.test.ts, so those tests need no tshark.
//
// Rules, so the numbers mean the same on both sides:
//  - Only the outermost IP header counts (field#1: tshark's first layer of that protocol), as the
//    decoder reads it: `ip.src == X` alone would also match the header an ICMP error quotes.
//  - IP reassembly is off (-o ip.defragment:FALSE -o ipv6.defragment:FALSE): a fragment after the
//    first then shows no TCP/UDP header, just as the decoder gives it no ports.
//  - `!icmp && !icmpv6` keeps the TCP/UDP header an ICMP error quotes from counting as the packet's.
//  - xdp looks up the source first: a packet is "blocked-src" when its source is blocked, else
//    "blocked-dst" when its destination is. The filters spell out the longest-prefix outcome of
//    each case's block/allow lists by hand.
//  - policy is first match: rule k's hits are the packets matching rule k and no rule before it.
//
// Usage: node scripts/make-stage-golden.mjs   (needs tshark; run from the repository root)
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const outDir = join(root, 'test/golden/stages');

function frames(file, filter, fields = ['frame.number']) {
  let out;
  try {
    out = execFileSync('tshark', ['-n', '-r', join(root, 'captures', file),
      '-o', 'ip.defragment:FALSE', '-o', 'ipv6.defragment:FALSE', '-Y', filter, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28 });
  } catch (e) {
    throw new Error(`tshark failed on ${file} with filter ${filter}:\n${e.stderr}`);
  }
  return out.split('\n').filter((l) => l.trim() !== '').map((l) => l.split('\t'));
}

function count(file, filter) {
  return frames(file, filter).length;
}

const tsharkVersion = execFileSync('tshark', ['--version'], { encoding: 'utf8' }).split('\n')[0];

// Each xdp case: the [xdp] section's lines, and tshark filters for "source blocked" (S) and
// "destination blocked" (D). Expected: blocked-src = S, blocked-dst = !S && D.
const v4in = (f, p) => `ip.${f}#1 == ${p}`;
const v6in = (f, p) => `ipv6.${f}#1 == ${p}`;
const xdpCases = [
  {
    name: 'a /24 on Ethernet and VLAN traffic',
    file: 'large/ppp_many-protocols.pcap',
    config: ['block: 212.199.202.0/24'],
    blocked: (f) => v4in(f, '212.199.202.0/24'),
  },
  {
    name: 'an allowed hole in a /16, a host blocked again inside the hole, and a second /16',
    file: 'large/ppp_many-protocols.pcap',
    config: ['block: 212.199.0.0/16, 173.194.0.0/16', 'allow: 212.199.202.0/24', 'block: 212.199.202.53'],
    blocked: (f) => `(${v4in(f, '212.199.0.0/16')} && !(${v4in(f, '212.199.202.0/24')} && !(${v4in(f, '212.199.202.53')}))) || ${v4in(f, '173.194.0.0/16')}`,
  },
  {
    name: 'an IPv6 /48 (ICMPv6 errors quote other addresses)',
    file: 'ipv6/arkime_v6.pcap',
    config: ['block: 3ffe:501:410::/48'],
    blocked: (f) => v6in(f, '3ffe:501:410::/48'),
  },
  {
    name: 'IPv4 and IPv6 prefixes together, pcapng with two link types',
    file: 'pcapng/ppp_pcapng-example.pcapng',
    config: ['block: 130.217.250.128/28, 2404:6800::/32'],
    blocked: (f) => `${v4in(f, '130.217.250.128/28')} || ${v6in(f, '2404:6800::/32')}`,
  },
  {
    name: 'PPPoE and L2TP (the outer header decides)',
    file: 'tcp_http/dpkt_nb6-http.pcap',
    config: ['block: 95.136.242.0/24'],
    blocked: (f) => v4in(f, '95.136.242.0/24'),
  },
  {
    name: 'MPLS and VLAN',
    file: 'vlan/zeek_mixed-vlan-mpls.pcap',
    config: ['block: 10.0.0.0/8', 'allow: 10.1.2.0/24'],
    blocked: (f) => `${v4in(f, '10.0.0.0/8')} && !(${v4in(f, '10.1.2.0/24')})`,
  },
  {
    name: 'IPv4 fragments (every fragment carries the addresses)',
    file: 'ipv4_frag/ppp_ip4_fragments.pcap',
    config: ['block: 10.118.213.211'],
    blocked: (f) => v4in(f, '10.118.213.211'),
  },
  {
    name: 'everything IP blocked; ARP passes (SLL2, IPv4 and IPv6)',
    file: 'linktype/zeek_linux_dlt_sll2.pcap',
    config: ['block: any'],
    blocked: () => '(ip || ipv6)',
  },
  {
    name: 'Linux cooked capture',
    file: 'linktype/ppp_sll.pcap',
    config: ['block: 212.199.202.64/26'],
    blocked: (f) => v4in(f, '212.199.202.64/26'),
  },
];

const xdp = xdpCases.map((c) => {
  const S = c.blocked('src');
  const D = c.blocked('dst');
  const src = count(c.file, S);
  const dst = count(c.file, `!(${S}) && (${D})`);
  return { name: c.name, file: c.file, config: c.config, filters: { 'blocked-src': S, 'blocked-dst': `!(${S}) && (${D})` }, expected: { 'blocked-src': src, 'blocked-dst': dst } };
});

// Each policy case: the rules (evaluated per packet, no conntrack) and, per rule, a tshark filter
// for the packets it matches on its own. Expected hits: rule k = R_k && !(R_1 || ... || R_k-1).
const tcpTo = (ports) => `((${ports.map((p) => `tcp.dstport#1 == ${p}`).join(' || ')}) && !icmp && !icmpv6)`;
const policyCases = [
  {
    name: 'web, DNS and ICMP rules on mixed IPv4 traffic',
    file: 'large/ppp_many-protocols.pcap',
    default: 'accept',
    rules: [
      ['accept tcp from 10.0.0.1 to 212.199.202.0/24 port 80', `${v4in('src', '10.0.0.1')} && ${v4in('dst', '212.199.202.0/24')} && ${tcpTo([80])}`],
      ['drop tcp port 80,8080', tcpTo([80, 8080])],
      ['drop udp to 10.0.0.138 port 53', `${v4in('dst', '10.0.0.138')} && udp.dstport#1 == 53 && !icmp`],
      ['drop icmp', 'ip.proto#1 == 1'],
    ],
  },
  {
    name: 'IPv6 rules with ICMPv6 errors and link-local sources',
    file: 'ipv6/arkime_v6.pcap',
    default: 'accept',
    rules: [
      ['accept tcp to 3ffe:501:410::/48 port 22', `${v6in('dst', '3ffe:501:410::/48')} && ${tcpTo([22])}`],
      ['drop tcp sport 22', '(tcp.srcport#1 == 22 && !icmpv6)'],
      ['drop udp from fe80::/10', `(udp && !icmpv6 && ${v6in('src', 'fe80::/10')})`],
      ['drop icmpv6 from 3ffe:507::/32 to 3ffe:501::/32', `icmpv6 && ${v6in('src', '3ffe:507::/32')} && ${v6in('dst', '3ffe:501::/32')}`],
    ],
  },
  {
    name: 'a drop-by-default allow list',
    file: 'tcp_http/zeek_http_bro.org.pcap',
    default: 'drop',
    rules: [
      ['accept tcp from 10.0.2.0/24 to 192.150.187.0/24 port 80', `${v4in('src', '10.0.2.0/24')} && ${v4in('dst', '192.150.187.0/24')} && ${tcpTo([80])}`],
      ['accept tcp from 192.150.187.43 sport 80 port 55079-55081', `${v4in('src', '192.150.187.43')} && tcp.srcport#1 == 80 && tcp.dstport#1 >= 55079 && tcp.dstport#1 <= 55081 && !icmp`],
    ],
  },
];

const policy = policyCases.map((c) => {
  const hits = {};
  let before = [];
  c.rules.forEach(([, filter], k) => {
    const f = before.length ? `(${filter}) && !(${before.join(' || ')})` : filter;
    hits[`rule ${k + 1}`] = count(c.file, f);
    before = [...before, `(${filter})`];
  });
  hits.default = count(c.file, `(ip || ipv6) && !(${before.join(' || ')})`);
  let dropped = 0;
  c.rules.forEach(([text], k) => { if (text.startsWith('drop')) dropped += hits[`rule ${k + 1}`]; });
  if (c.default === 'drop') dropped += hits.default;
  return { name: c.name, file: c.file, default: c.default, rules: c.rules.map(([t]) => t), filters: c.rules.map(([, f]) => f), expected: { hits, dropped } };
});

// Once per flow versus once per packet, on a capture of TCP flows only. With conntrack in front,
// a flow's first packet decides for all its packets (tshark's tcp.stream is the flow); without,
// each packet is judged alone, so the server's replies fall to the default.
const perFlowCase = (() => {
  const file = 'tcp_http/zeek_http_bro.org.pcap';
  const rule = 'accept tcp to 192.150.187.0/24 port 80';
  const filter = `${v4in('dst', '192.150.187.0/24')} && ${tcpTo([80])}`;
  const all = frames(file, 'frame', ['frame.number', 'tcp.stream']);
  const matching = new Set(frames(file, filter).map(([n]) => n));
  const firstOf = new Map();
  for (const [n, stream] of all) if (stream !== '' && !firstOf.has(stream)) firstOf.set(stream, n);
  const dropPerFlow = all.filter(([, stream]) => stream === '' || !matching.has(firstOf.get(stream))).length;
  return {
    name: 'one decision per TCP stream versus one per packet', file, default: 'drop', rules: [rule], filter,
    expected: { packets: all.length, tcpStreams: firstOf.size, nonTcp: all.filter(([, st]) => st === '').length, droppedPerPacket: all.length - matching.size, droppedPerFlow: dropPerFlow },
  };
})();

mkdirSync(outDir, { recursive: true });
const note = `made by scripts/make-stage-golden.mjs with ${tsharkVersion}`;
writeFileSync(join(outDir, 'xdp.json'), `${JSON.stringify({ note, cases: xdp }, null, 2)}\n`);
writeFileSync(join(outDir, 'policy.json'), `${JSON.stringify({ note, cases: policy, perFlow: perFlowCase }, null, 2)}\n`);
for (const c of xdp) console.log(`xdp    ${c.file}: ${JSON.stringify(c.expected)}`);
for (const c of policy) console.log(`policy ${c.file}: ${JSON.stringify(c.expected)}`);
console.log(`policy per flow ${perFlowCase.file}: ${JSON.stringify(perFlowCase.expected)}`);
