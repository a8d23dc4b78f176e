import { openCapture } from '../capture/open.js';
import { Batch } from '../packet/batch.js';
import { decodeBatch, MALFORMED_NAMES } from '../packet/decode.js';
import { ipToString, l3Name, packetTime, protoName } from '../packet/format.js';
import { parseCommandLine } from './args.js';
import { Exit, UsageError, wholeNumber } from './errors.js';
import { LineWriter } from './output.js';
import { reportCaptureProblems } from './problems.js';

export const DECODE_HELP = `dplab decode FILE [--header] [--count N]

Print one tab-separated line per packet, to compare line by line with tshark:

  number  timestamp  protocol  src  sport  dst  dport  length  reason

  number     frame number, from 1 (tshark's frame.number)
  timestamp  seconds.nanoseconds since the epoch (frame.time_epoch); empty when the
             record has none (a pcapng Simple Packet Block), as in tshark
  protocol   tcp, udp, icmp, icmpv6, sctp, ... for IP; arp, lldp, ... otherwise
  src, dst   IPv4 or IPv6 address (of the outer IP header)
  sport/dport  TCP/UDP/SCTP ports; empty for later IP fragments and other protocols
  length     bytes on the wire (frame.len)
  reason     why the packet is malformed; empty when it decoded cleanly

FILE - reads the capture from standard input (as tshark -r -).

Options:
  --header     print a header line first
  --count N    stop after N packets

Examples:
  dplab decode captures/tcp_http/zeek_http_bro.org.pcap | head
  diff <(dplab decode captures/tcp_http/zeek_http_bro.org.pcap | cut -f1,2,4-8) \\
       <(tshark -r captures/tcp_http/zeek_http_bro.org.pcap -T fields -e frame.number -e frame.time_epoch \\
           -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport -e frame.len)
`;

export function decodeCommand(argv: string[]): number {
  const args = parseCommandLine('decode', argv, DECODE_HELP, { header: { type: 'boolean' }, count: { type: 'string' } });
  if (!args) return Exit.OK;
  const { values, positionals } = args;
  if (positionals.length !== 1) throw new UsageError('decode needs exactly one capture file', 'decode');
  const limit = wholeNumber(values.count, '--count', 'decode', 0, Infinity, Infinity);
  const src = openCapture(positionals[0]!);
  const out = new LineWriter();
  if (values.header) out.line('number\ttimestamp\tprotocol\tsrc\tsport\tdst\tdport\tlength\treason');
  const b = new Batch();
  let printed = 0;
  try {
    while (printed < limit && !out.closed && src.fill(b) > 0) {
      decodeBatch(b);
      for (let i = 0; i < b.count && printed < limit; i++, printed++) out.line(packetLine(b, i));
      src.release(b);
    }
    out.flush();
  } finally {
    src.close();
  }
  return reportCaptureProblems(src, printed < limit);
}

export function packetLine(b: Batch, i: number): string {
  const w = i << 2;
  const fam = b.family[i]!;
  const m = b.malformed[i]!;
  let proto: string;
  let src = ''; let dst = ''; let sp = ''; let dp = '';
  if (fam !== 0) {
    proto = protoName(b.proto[i]!);
    src = ipToString(fam, b.src, w);
    dst = ipToString(fam, b.dst, w);
    const p = b.proto[i]!;
    if ((p === 6 || p === 17 || p === 132 || p === 136) && (b.sport[i] !== 0 || b.dport[i] !== 0)) {
      sp = String(b.sport[i]); dp = String(b.dport[i]);
    }
  } else {
    proto = m !== 0 ? '' : l3Name(b.l3Type[i]!);
  }
  return `${b.num[i]}\t${packetTime(b, i)}\t${proto}\t${src}\t${sp}\t${dst}\t${dp}\t${b.wireLen[i]}\t${m !== 0 ? MALFORMED_NAMES[m] : ''}`;
}
