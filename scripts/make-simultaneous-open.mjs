#!/usr/bin/env node
/**
 * Writes a capture of TCP simultaneous opens (RFC 793 section 3.4, figure 8): both ends send a SYN
 * before either has seen the other's, then each answers with a SYN/ACK. Three flows:
 *   IPv4 192.0.2.10:40000 <-> 198.51.100.20:40001  the whole connection: SYN, SYN, SYN/ACK,
 *        SYN/ACK, data and its ACK, FIN teardown from both sides
 *   IPv4 192.0.2.11:40002 <-> 198.51.100.21:40003  only crossing SYNs, each sent twice (left in
 *        SYN_SENT2)
 *   IPv6 2001:db8::10:40004 <-> 2001:db8::20:40005  only the two crossing SYNs
 * No real capture shipped here has one. Made for test/conntrack-linux.test.ts, where the kernel's
 * conntrack, not this script, says what the counts are.
 *
 * Usage: node scripts/make-simultaneous-open.mjs OUT.pcap (run by scripts/make-conntrack-fixtures.sh)
 */
import { writeFileSync } from 'node:fs';
import { TCP_FLAGS as F, ethernet, ipPacket, pcapFile } from './lib/frames.mjs';

const out = process.argv[2];
if (!out) throw new Error('usage: make-simultaneous-open.mjs OUT.pcap');

const MAC_A = '02:00:00:00:0a:01';
const MAC_B = '02:00:00:00:0b:01';
const records = [];
let usec = 0;

/** One segment from end `from` ('a' or 'b') of connection `c`. */
function seg(c, from, flags, seq, ack, data = '') {
  const a = from === 'a';
  const packet = ipPacket({
    src: a ? c.a : c.b, dst: a ? c.b : c.a, payload: Buffer.from(data),
    tcp: { sport: a ? c.pa : c.pb, dport: a ? c.pb : c.pa, seq, ack, flags },
  });
  const frame = ethernet(a ? MAC_B : MAC_A, a ? MAC_A : MAC_B, c.a.includes(':') ? 0x86dd : 0x0800, packet);
  records.push({ sec: 1700000000, usec: (usec += 1000), frame });
}

const full = { a: '192.0.2.10', b: '198.51.100.20', pa: 40000, pb: 40001 };
const A = 1000; const B = 5000; // initial sequence numbers
seg(full, 'a', F.SYN, A, 0);
seg(full, 'b', F.SYN, B, 0);
seg(full, 'a', F.SYN | F.ACK, A, B + 1);
seg(full, 'b', F.SYN | F.ACK, B, A + 1);
seg(full, 'a', F.PSH | F.ACK, A + 1, B + 1, 'hello');
seg(full, 'b', F.ACK, B + 1, A + 6);
seg(full, 'a', F.FIN | F.ACK, A + 6, B + 1);
seg(full, 'b', F.FIN | F.ACK, B + 1, A + 7);
seg(full, 'a', F.ACK, A + 7, B + 2);

const twice = { a: '192.0.2.11', b: '198.51.100.21', pa: 40002, pb: 40003 };
seg(twice, 'a', F.SYN, A, 0);
seg(twice, 'a', F.SYN, A, 0);
seg(twice, 'b', F.SYN, B, 0);
seg(twice, 'b', F.SYN, B, 0);

const v6 = { a: '2001:db8::10', b: '2001:db8::20', pa: 40004, pb: 40005 };
seg(v6, 'a', F.SYN, A, 0);
seg(v6, 'b', F.SYN, B, 0);

writeFileSync(out, pcapFile(1, records));
