#!/usr/bin/env node
/**
 * Writes test/fixtures/ipv6-address-forms.pcap: one raw-IPv6 packet (LINKTYPE_IPV6, no payload,
 * next header 59) per address form whose text is easy to get wrong: zero runs of every length and
 * place, two equal runs, a single zero group, and the embedded-IPv4 forms (::a.b.c.d,
 * ::ffff:a.b.c.d) next to look-alikes that are not embedded (64:ff9b::/96, ::ffff:0:a.b.c.d).
 * Each address is both the source and the destination. make-golden.mjs then records how tshark
 * prints them, and the decode test holds dplab's text to that.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const OUT = join(dirname(new URL(import.meta.url).pathname), '..', 'test', 'fixtures', 'ipv6-address-forms.pcap');
const ADDRESSES = [
  '0:0:0:0:0:0:0:0', '0:0:0:0:0:0:0:1', '0:0:0:0:0:0:0:2', '0:0:0:0:0:0:0:ffff', '1:0:0:0:0:0:0:0',
  '0:0:0:0:0:ffff:102:304', '0:0:0:0:0:ffff:0:0', '0:0:0:0:0:ffff:0:1', '0:0:0:0:0:0:102:304', '0:0:0:0:0:0:1:0',
  '0:0:0:0:0:0:1:1', '0:0:0:0:0:0:ffff:1', '0:0:0:0:ffff:0:102:304', '64:ff9b:0:0:0:0:102:304', '0:0:0:0:0:1:0:0',
  '1:0:0:1:0:0:0:1', '1:0:0:2:0:0:3:4', '2001:db8:0:0:1:0:0:1', '2001:db8:0:1:0:0:0:1', 'fe80:0:0:0:0:0:0:1',
  '1:2:3:4:5:6:7:0', '1:0:2:3:4:5:6:7', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff', 'ff02:0:0:0:0:1:ff00:1',
];

const parts = [];
const head = Buffer.alloc(24);
head.writeUInt32LE(0xa1b2c3d4, 0);
head.writeUInt16LE(2, 4);
head.writeUInt16LE(4, 6);
head.writeUInt32LE(65535, 16);
head.writeUInt32LE(229, 20); // LINKTYPE_IPV6
parts.push(head);
ADDRESSES.forEach((text, k) => {
  const addr = Buffer.alloc(16);
  text.split(':').forEach((g, j) => addr.writeUInt16BE(parseInt(g, 16), 2 * j));
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip[6] = 59; // no next header
  ip[7] = 64;
  addr.copy(ip, 8);
  addr.copy(ip, 24);
  const rec = Buffer.alloc(16);
  rec.writeUInt32LE(1700000000 + k, 0);
  rec.writeUInt32LE(40, 8);
  rec.writeUInt32LE(40, 12);
  parts.push(rec, ip);
});
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, Buffer.concat(parts));
