#!/usr/bin/env node
/**
 * Regenerates test/golden/: tshark's independent, per-packet view of every clean capture (every
 * file in captures/INDEX.tsv outside fuzz/ and malformed/), and of the synthetic fixtures named
 * in FIXTURE_FILES, as one TSV per capture:
 *
 *   captures/<path>        -> test/golden/<path>.tsv
 *   test/fixtures/<name>   -> test/golden/fixtures/<name>.tsv
 *
 * It also writes test/golden/damaged.tsv, a row per capture in fuzz/ and malformed/: the file type
 * Wireshark recognised (capinfos -t; empty when capinfos cannot tell), and libpcap's reading of the
 * file (tcpdump --count: packets, and the error it stopped with, if any). The bad-input test needs
 * the second opinion where Wireshark's heuristics take a file for a patched-libpcap variant.
 *
 * Run it from anywhere: `node scripts/make-golden.mjs` (needs tshark 4.x, capinfos, tcpdump 4.99). The output depends only
 * on the captures and tshark's version, so re-running it rewrites identical files (the committed
 * files were made with TShark 4.0.17, Debian 12).
 *
 * How tshark is run
 *   -n                                    no name resolution
 *   -o ip.defragment:FALSE                per wire packet: no IPv4 reassembly
 *   -o ipv6.defragment:FALSE              no IPv6 reassembly (the preference's name in tshark 4.0;
 *                                         "ipv6.reassemble" is not one)
 *   -o tcp.desegment_tcp_streams:FALSE    no TCP reassembly
 *   -o sctp.reassembly:FALSE              no SCTP reassembly
 *   -o tcp.analyze_sequence_numbers:FALSE no sequence analysis (speed; it adds only warnings)
 *   -E occurrence=a                       every occurrence of a field (tunnels and ICMP errors add
 *                                         inner layers); the rules below pick the outer one
 * No tunnel heuristics need disabling: frame.protocols lists layers in the order tshark dissected
 * them, so the outer IP header is always the first ip/ipv6 layer whatever tshark finds inside it.
 * Where tshark can only guess what an MPLS label carries, scripts/lib/decode-as.mjs tells it.
 *
 * Which records are packets
 *   - tshark counts pcapng Custom Blocks (frame.cb_pen is set) as frames. They are not packets:
 *     they are dropped, and the frames after them renumbered 1, 2, 3, ... in file order, as dplab
 *     (and capinfos) number packets.
 *   - In a pcapng file, any other record without an interface id stops the script: a new kind of
 *     record to decide on.
 *
 * Columns (empty = not applicable)
 *   num      packet number after dropping custom blocks
 *   time     frame.time_epoch as tshark prints it (9 decimals). pcapng Simple Packet Blocks carry
 *            no timestamp: tshark prints nothing and the column stays empty.
 *   len      frame.len          caplen   frame.cap_len
 *   link     the first layer of frame.protocols: eth, sll, null, raw, ip, ipv6, nflog, netlink, ...
 *   family   4 or 6 for the outermost IP header (the first ip or ipv6 layer), empty when none
 *   src dst  that header's addresses (first occurrence of that layer's ip.src/ipv6.src, counted
 *            by layer: the k-th ip layer owns the k-th ip.src value)
 *   proto    IPv4: ip.proto. IPv6: the upper-layer protocol after the extension headers that
 *            follow the outer ipv6 layer in frame.protocols (ipv6.hopopts, ipv6.routing,
 *            ipv6.dstopts, ipv6.fraghdr, ah), i.e. the next-header field of the last of them
 *   sport dport  ports of the layer right after the outer IP header and its extension headers when
 *            proto is 6/17/132 and that layer is tcp/udp/sctp (a later fragment has none)
 *   vlan     id of the first vlan / ieee8021ad layer before the outer IP header (anywhere for a
 *            packet without IP)
 *   frag     none | first | later, from the outer header: IPv4 ip.frag_offset and ip.flags.mf;
 *            IPv6 the outer chain's ipv6.fraghdr.offset and ipv6.fraghdr.more
 *   in_*     ICMP / ICMPv6 errors: when the layer after the outer IP is icmp/icmpv6 and the one
 *            after that is ip/ipv6 (the quoted packet): its protocol (same rule as proto),
 *            addresses, and ports (tcp/udp/sctp after it; for a quoted ICMP echo, timestamp,
 *            information or address-mask message, its identifier as both ports, as dplab keeps it)
 *   problems what tshark found wrong, each as "<layer>: <message>", joined with " / ": expert infos
 *            of severity Error and the [Malformed Packet] / [Packet size limited during capture]
 *            markers, with the path of layers they occurred in (from -T pdml; see problemsOf)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { decodeAs } from './lib/decode-as.mjs';

const ROOT = join(dirname(new URL(import.meta.url).pathname), '..');
const CAPTURES = join(ROOT, 'captures');
const GOLDEN = join(ROOT, 'test', 'golden');
const FIXTURES = join(ROOT, 'test', 'fixtures');
/** Synthetic captures in test/fixtures/ that get a golden file too (made by scripts/make-fixtures.mjs). */
const FIXTURE_FILES = ['ipv6-address-forms.pcap', 'pcap-v2.2-lengths.pcap', 'pcap-v2.3-lengths.pcap', 'simple-packet-blocks.pcapng'];

const TSHARK_OPTS = [
  '-n',
  '-o', 'ip.defragment:FALSE',
  '-o', 'ipv6.defragment:FALSE',
  '-o', 'tcp.desegment_tcp_streams:FALSE',
  '-o', 'sctp.reassembly:FALSE',
  '-o', 'tcp.analyze_sequence_numbers:FALSE',
];

const FIELDS = [
  'frame.number', 'frame.time_epoch', 'frame.len', 'frame.cap_len', 'frame.cb_pen', 'frame.interface_id',
  'frame.protocols',
  'ip.src', 'ip.dst', 'ip.proto', 'ip.frag_offset', 'ip.flags.mf',
  'ipv6.src', 'ipv6.dst', 'ipv6.nxt',
  'ipv6.hopopts.nxt', 'ipv6.routing.nxt', 'ipv6.dstopts.nxt', 'ipv6.fraghdr.nxt', 'ah.next_header',
  'ipv6.fraghdr.offset', 'ipv6.fraghdr.more',
  'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport', 'sctp.srcport', 'sctp.dstport',
  'icmp.type', 'icmp.ident', 'icmpv6.type', 'icmpv6.echo.identifier',
  'vlan.id', 'ieee8021ad.id',
  '_ws.expert.severity', '_ws.malformed', '_ws.short',
];

/** IPv6 extension-header layers as frame.protocols names them, and their next-header field. */
const V6_EXT = {
  'ipv6.hopopts': 'ipv6.hopopts.nxt',
  'ipv6.routing': 'ipv6.routing.nxt',
  'ipv6.dstopts': 'ipv6.dstopts.nxt',
  'ipv6.fraghdr': 'ipv6.fraghdr.nxt',
  ah: 'ah.next_header',
};
const L4_PORTS = { 6: 'tcp', 17: 'udp', 132: 'sctp' };
/** ICMP types whose header carries an identifier (icmp.ident), and ICMPv6 echo. */
const ICMP_ID_TYPES = new Set([0, 8, 13, 14, 15, 16, 17, 18]);
const ICMPV6_ID_TYPES = new Set([128, 129]);
const SEVERITY_ERROR = 8388608;

const COLUMNS = ['num', 'time', 'len', 'caplen', 'link', 'family', 'src', 'dst', 'proto', 'sport', 'dport', 'vlan', 'frag',
  'in_family', 'in_proto', 'in_src', 'in_dst', 'in_sport', 'in_dport', 'problems'];

function tshark(args) {
  return execFileSync('tshark', [...TSHARK_OPTS, ...args], {
    encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' },
  });
}

/** One frame's fields: name -> list of occurrences. */
function parseFields(line) {
  const cells = line.split('\t');
  const f = {};
  FIELDS.forEach((name, k) => {
    const v = cells[k] ?? '';
    f[name] = v === '' ? [] : name === 'frame.protocols' ? [v] : v.split(',');
  });
  return f;
}

/**
 * The value `field` has in the layer at index `at` of `layers`: the k-th layer named `name` owns the
 * k-th occurrence. Throws when the counts do not line up, so a surprise cannot pass silently.
 */
function valueOf(f, layers, at, name, field, owns = () => true) {
  let k = 0;
  let total = 0;
  for (let j = 0; j < layers.length; j++) {
    if (layers[j] !== name || !owns(j)) continue;
    if (j < at) k++;
    total++;
  }
  const vals = f[field];
  if (vals.length !== total) {
    throw new Error(`frame ${f['frame.number'][0]}: ${vals.length} values of ${field} for ${total} ${name} layers (${layers.join(':')})`);
  }
  return vals[k];
}

/**
 * The IP header at layers[at] (ip or ipv6): addresses, upper-layer protocol, fragment state, and the
 * index of the layer after its extension headers.
 */
function ipLayer(f, layers, at) {
  const name = layers[at];
  if (name === 'ip') {
    const off = Number(valueOf(f, layers, at, 'ip', 'ip.frag_offset'));
    const mf = valueOf(f, layers, at, 'ip', 'ip.flags.mf');
    return {
      family: 4,
      src: valueOf(f, layers, at, 'ip', 'ip.src'),
      dst: valueOf(f, layers, at, 'ip', 'ip.dst'),
      proto: Number(valueOf(f, layers, at, 'ip', 'ip.proto')),
      frag: off !== 0 ? 'later' : mf === '1' || mf === 'True' ? 'first' : 'none',
      next: at + 1,
    };
  }
  let proto = Number(valueOf(f, layers, at, 'ipv6', 'ipv6.nxt'));
  let frag = 'none';
  let j = at + 1;
  while (j < layers.length && V6_EXT[layers[j]]) {
    proto = Number(valueOf(f, layers, j, layers[j], V6_EXT[layers[j]]));
    if (layers[j] === 'ipv6.fraghdr') {
      const off = Number(valueOf(f, layers, j, 'ipv6.fraghdr', 'ipv6.fraghdr.offset'));
      const more = valueOf(f, layers, j, 'ipv6.fraghdr', 'ipv6.fraghdr.more');
      frag = off !== 0 ? 'later' : more === '1' || more === 'True' ? 'first' : 'none';
    }
    j++;
  }
  return {
    family: 6,
    src: valueOf(f, layers, at, 'ipv6', 'ipv6.src'),
    dst: valueOf(f, layers, at, 'ipv6', 'ipv6.dst'),
    proto, frag, next: j,
  };
}

/** Ports of the tcp/udp/sctp layer at `at`, when it is the one `proto` names. */
function ports(f, layers, at, proto) {
  const l4 = L4_PORTS[proto];
  if (!l4 || layers[at] !== l4) return ['', ''];
  return [valueOf(f, layers, at, l4, `${l4}.srcport`), valueOf(f, layers, at, l4, `${l4}.dstport`)];
}

/** The identifier of the icmp/icmpv6 layer at `at`, or '' when its type has none. */
function icmpIdent(f, layers, at) {
  const v6 = layers[at] === 'icmpv6';
  const name = v6 ? 'icmpv6' : 'icmp';
  const types = v6 ? ICMPV6_ID_TYPES : ICMP_ID_TYPES;
  const typeOf = (j) => Number(valueOf(f, layers, j, name, `${name}.type`));
  if (!types.has(typeOf(at))) return '';
  return valueOf(f, layers, at, name, v6 ? 'icmpv6.echo.identifier' : 'icmp.ident', (j) => types.has(typeOf(j)));
}

function goldenRow(f, num, problems) {
  const layers = f['frame.protocols'][0]?.split(':') ?? [];
  const row = {
    num, time: f['frame.time_epoch'][0] ?? '', len: f['frame.len'][0], caplen: f['frame.cap_len'][0], link: layers[0] ?? '',
    family: '', src: '', dst: '', proto: '', sport: '', dport: '', vlan: '', frag: '',
    in_family: '', in_proto: '', in_src: '', in_dst: '', in_sport: '', in_dport: '', problems,
  };
  const outer = layers.findIndex((l) => l === 'ip' || l === 'ipv6');
  const tagEnd = outer < 0 ? layers.length : outer;
  const tag = layers.slice(0, tagEnd).findIndex((l) => l === 'vlan' || l === 'ieee8021ad');
  if (tag >= 0) row.vlan = valueOf(f, layers, tag, layers[tag], `${layers[tag]}.id`);
  if (outer < 0) return row;

  const ip = ipLayer(f, layers, outer);
  Object.assign(row, { family: ip.family, src: ip.src, dst: ip.dst, proto: ip.proto, frag: ip.frag });
  if (ip.frag === 'later') return row;
  [row.sport, row.dport] = ports(f, layers, ip.next, ip.proto);

  const icmp = layers[ip.next];
  const quoted = ip.next + 1;
  if ((icmp === 'icmp' || icmp === 'icmpv6') && (layers[quoted] === 'ip' || layers[quoted] === 'ipv6')) {
    const inner = ipLayer(f, layers, quoted);
    Object.assign(row, { in_family: inner.family, in_proto: inner.proto, in_src: inner.src, in_dst: inner.dst });
    if (inner.frag !== 'later') {
      const l = layers[inner.next];
      if (l === 'icmp' || l === 'icmpv6') row.in_sport = row.in_dport = icmpIdent(f, layers, inner.next);
      else [row.in_sport, row.in_dport] = ports(f, layers, inner.next, inner.proto);
    }
  }
  return row;
}

/** tshark's protocol short names ("IPv4", "DHCP/BOOTP") -> filter names ("ip", "dhcp"), for the markers. */
let shortNames;
function filterName(short) {
  if (!shortNames) {
    shortNames = new Map();
    for (const line of execFileSync('tshark', ['-G', 'protocols'], { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')) {
      const [, sn, filter] = line.split('\t');
      if (sn && filter && !shortNames.has(sn)) shortNames.set(sn, filter);
    }
  }
  return shortNames.get(short) ?? short;
}

/** Header lengths of the transport layers whose end a snap length can fall exactly on (tcp: tcp.hdr_len). */
const L4_HEADER = { udp: 8, udplite: 8, sctp: 12, icmp: 8, icmpv6: 4 };

/**
 * Error-severity expert infos and malformed / short markers of the given frames, from -T pdml:
 * frame number -> "<layer>: <message>" list. Only frames that have any are asked for.
 *
 * The layer is the path of protocols the item sits in, outermost first, without "frame": "ip" is
 * the outer IPv4 header, "icmp/ip" the packet an ICMP error quotes, "tcp/x11" X11 carried in TCP.
 * The [Malformed Packet: X] and [Packet size limited during capture: X truncated] markers come
 * after the layers, so they are given the path of the last layer of protocol X: the exception that
 * made them stopped dissection there (the last layer when the marker names none).
 *
 * A snap length that ends exactly where a TCP/UDP/SCTP/ICMP header ends leaves that header whole
 * but its payload uncaptured, and tshark puts the marker on the transport layer all the same. Such
 * a marker reads "Packet size limited during capture, after the whole header": the layer's
 * captured bytes (its pdml size) cover the header (tcp.hdr_len for TCP, the fixed size otherwise).
 */
function problemsOf(file, frames, extra) {
  const out = new Map();
  if (frames.length === 0) return out;
  const xml = tshark(['-r', file, ...extra, '-Y', `frame.number in {${frames.join(', ')}}`, '-T', 'pdml']);
  const unescape = (s) => s.replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  for (const packet of xml.split('<packet>').slice(1)) {
    const num = Number(/<field name="num" [^>]*show="(\d+)"/.exec(packet)[1]);
    const list = [];
    const stack = [];
    /** protocol name -> its last layer: path, captured size, header length when known */
    const last = new Map();
    let lastTop = '';
    let message = '';
    for (const line of packet.split('\n')) {
      if (/^\s*<\/proto>/.test(line)) { stack.pop(); continue; }
      const proto = /^\s*<proto name="([^"]+)"((?: [a-z]+="[^"]*")*)\s*(\/?)>/.exec(line);
      if (proto) {
        const [, name, attrs, selfClosing] = proto;
        const attr = (a) => new RegExp(` ${a}="([^"]*)"`).exec(attrs)?.[1] ?? '';
        if ((name === '_ws.malformed' || name === '_ws.short') && stack.length === 0) {
          const marker = /^\[(Malformed Packet|Packet size limited during capture)(?:: (.*?)(?: truncated)?)?\]$/.exec(unescape(attr('showname')));
          const kind = name === '_ws.short' ? 'Packet size limited during capture' : 'Malformed Packet';
          const layer = last.get(marker?.[2] ? filterName(marker[2]) : lastTop);
          const where = layer?.path ?? (marker?.[2] ? filterName(marker[2]) : lastTop);
          const header = layer?.hdrLen ?? L4_HEADER[where];
          const whole = kind !== 'Malformed Packet' && header !== undefined && layer !== undefined && layer.size >= header;
          list.push(`${where}: ${kind}${whole ? ', after the whole header' : ''}`);
        }
        if (selfClosing) continue;
        stack.push(name);
        if (stack.length === 1 && name !== 'frame' && name !== 'geninfo') lastTop = name;
        last.set(name, { path: stack.filter((n) => n !== 'frame').join('/'), size: Number(attr('size')), hdrLen: undefined });
        continue;
      }
      const hdr = /<field name="tcp\.hdr_len" [^>]*show="(\d+)"/.exec(line);
      if (hdr && stack[stack.length - 1] === 'tcp') last.get('tcp').hdrLen = Number(hdr[1]);
      const msg = /<field name="_ws\.expert\.message" [^>]*show="([^"]*)"/.exec(line);
      if (msg) message = unescape(msg[1]);
      const sev = /<field name="_ws\.expert\.severity" [^>]*show="(\d+)"/.exec(line);
      const where = stack.filter((n) => n !== 'frame').join('/');
      if (sev && Number(sev[1]) >= SEVERITY_ERROR && !where.startsWith('_ws.')) list.push(`${where}: ${message}`);
    }
    out.set(num, list.join(' / ').replace(/[\t\n]/g, ' '));
  }
  return out;
}

function golden(file, extra) {
  const text = tshark(['-r', file, ...extra, '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,', '-E', 'quote=n',
    ...FIELDS.flatMap((x) => ['-e', x])]);
  const frames = text.split('\n').filter((l) => l !== '').map(parseFields);
  const troubled = frames
    .filter((f) => f['_ws.malformed'].length > 0 || f['_ws.short'].length > 0 || f['_ws.expert.severity'].some((s) => Number(s) >= SEVERITY_ERROR))
    .map((f) => Number(f['frame.number'][0]));
  const problems = problemsOf(file, troubled, extra);
  const pcapng = readFileSync(file).readUInt32BE(0) === 0x0a0d0d0a;
  const rows = [COLUMNS.join('\t')];
  let num = 0;
  for (const f of frames) {
    if (f['frame.cb_pen'].length > 0) continue; // a pcapng Custom Block, not a packet
    if (pcapng && f['frame.interface_id'].length === 0) {
      throw new Error(`${file}: frame ${f['frame.number'][0]} has no interface and is not a custom block: decide what it is`);
    }
    num++;
    const row = goldenRow(f, num, problems.get(Number(f['frame.number'][0])) ?? '');
    rows.push(COLUMNS.map((c) => String(row[c])).join('\t'));
  }
  return rows.join('\n') + '\n';
}

function indexedCaptures() {
  const lines = readFileSync(join(CAPTURES, 'INDEX.tsv'), 'utf8').trim().split('\n');
  const col = lines[0].split('\t').indexOf('file');
  return lines.slice(1).map((l) => l.split('\t')[col]).sort();
}
const isDamaged = (p) => p.startsWith('fuzz/') || p.startsWith('malformed/');

/** Run a tool that may fail on a damaged file; its output either way. */
function run(tool, args) {
  try {
    const stdout = execFileSync(tool, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    return { ok: true, stdout, stderr: '' };
  } catch (e) {
    return { ok: false, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function damagedRow(rel) {
  const file = join(CAPTURES, rel);
  const type = /^File type:\s*(.*)$/m.exec(run('capinfos', ['-t', file]).stdout)?.[1] ?? '';
  const tcpdump = run('tcpdump', ['--count', '-r', file]);
  const packets = /^(\d+) packets?$/m.exec(tcpdump.stdout)?.[1] ?? '';
  const error = tcpdump.ok ? '' : (/^tcpdump: (.*)$/m.exec(tcpdump.stderr)?.[1] ?? 'failed');
  return [rel, type, packets, error].join('\t');
}

const jobs = [
  ...indexedCaptures().filter((rel) => !isDamaged(rel)).map((rel) => [join(CAPTURES, rel), join(GOLDEN, `${rel}.tsv`), decodeAs(rel)]),
  ...FIXTURE_FILES.map((n) => [join(FIXTURES, n), join(GOLDEN, 'fixtures', `${n}.tsv`), []]),
];
for (const [input, output, extra] of jobs) {
  const tsv = golden(input, extra);
  mkdirSync(dirname(output), { recursive: true });
  writeFileSync(output, tsv);
  process.stdout.write(`${output.slice(ROOT.length + 1)}: ${tsv.split('\n').length - 2} packets\n`);
}
const damaged = indexedCaptures().filter(isDamaged).map(damagedRow);
writeFileSync(join(GOLDEN, 'damaged.tsv'), ['file\twireshark_file_type\tlibpcap_packets\tlibpcap_error', ...damaged].join('\n') + '\n');
process.stdout.write(`test/golden/damaged.tsv: ${damaged.length} captures\n`);
