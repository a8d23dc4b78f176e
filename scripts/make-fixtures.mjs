#!/usr/bin/env node
/**
 * Writes the synthetic captures in test/fixtures/ that make-golden.mjs also runs tshark on, for
 * cases the shipped captures do not cover:
 *
 * ipv6-address-forms.pcap
 *   One raw-IPv6 packet (LINKTYPE_IPV6, no payload, next header 59) per address form whose text is
 *   easy to get wrong: zero runs of every length and place, two equal runs, a single zero group,
 *   and the embedded-IPv4 forms (::a.b.c.d, ::ffff:a.b.c.d) next to look-alikes that are not
 *   embedded (64:ff9b::/96, ::ffff:0:a.b.c.d). Each address is both the source and destination.
 * pcap-v2.2-lengths.pcap, pcap-v2.3-lengths.pcap
 *   Files of pcap versions 2.2 and 2.3, whose record headers hold the two lengths the other way
 *   round (2.2) or either way (2.3). Each record is a 42-byte Ethernet/IPv4/UDP head of a longer
 *   frame, so captured and original lengths differ and a mix-up shows.
 * simple-packet-blocks.pcapng
 *   pcapng Simple Packet Blocks, which carry no timestamp, between Enhanced Packet Blocks, which
 *   do: SPB, EPB, SPB, SPB, EPB, SPB (Ethernet/IPv4 UDP and TCP). tshark prints no
 *   frame.time_epoch for an SPB; the first and last timestamps are those of packets 2 and 5.
 *
 * And one capture that goes to captures/ (with its row in captures/INDEX.tsv, counts from capinfos):
 *
 * vlan/dplab_eompls-pw-cw.pcap
 *   Ethernet over MPLS (RFC 4448) with the pseudowire control word (RFC 4385): two labels, a
 *   control word (first nibble 0, sequence number = packet number), then an Ethernet frame,
 *   untagged or with 802.1Q tag 42, carrying IPv4 or IPv6 and TCP or UDP (8 packets). Whether
 *   tshark's default heuristic (pwethheuristic) takes the first bytes for a control word depends on
 *   which MAC address OUIs it knows: with these inner MACs (00:00:5e:00:53:xx, RFC 7042's
 *   documentation range) tshark 4.0 finds the control word, with locally administered ones it does
 *   not. So make-golden.mjs tells it: -d mpls.label==200,pwethcw (the pseudowire's label).
 *
 * Usage: node scripts/make-fixtures.mjs, then node scripts/make-golden.mjs.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ethernet, ipPacket, mpls, pcapFile, pcapngBlock } from './lib/frames.mjs';

const ROOT = join(dirname(new URL(import.meta.url).pathname), '..');
const OUT = join(ROOT, 'test', 'fixtures');

function fileHeader(minor, linkType) {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(minor, 6);
  h.writeUInt32LE(65535, 16);
  h.writeUInt32LE(linkType, 20);
  return h;
}

/** A record header with its length fields in the given order. */
function recordHeader(sec, first, second) {
  const r = Buffer.alloc(16);
  r.writeUInt32LE(sec, 0);
  r.writeUInt32LE(first, 8);
  r.writeUInt32LE(second, 12);
  return r;
}

const ADDRESSES = [
  '0:0:0:0:0:0:0:0', '0:0:0:0:0:0:0:1', '0:0:0:0:0:0:0:2', '0:0:0:0:0:0:0:ffff', '1:0:0:0:0:0:0:0',
  '0:0:0:0:0:ffff:102:304', '0:0:0:0:0:ffff:0:0', '0:0:0:0:0:ffff:0:1', '0:0:0:0:0:0:102:304', '0:0:0:0:0:0:1:0',
  '0:0:0:0:0:0:1:1', '0:0:0:0:0:0:ffff:1', '0:0:0:0:ffff:0:102:304', '64:ff9b:0:0:0:0:102:304', '0:0:0:0:0:1:0:0',
  '1:0:0:1:0:0:0:1', '1:0:0:2:0:0:3:4', '2001:db8:0:0:1:0:0:1', '2001:db8:0:1:0:0:0:1', 'fe80:0:0:0:0:0:0:1',
  '1:2:3:4:5:6:7:0', '1:0:2:3:4:5:6:7', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff', 'ff02:0:0:0:0:1:ff00:1',
];

function addressForms() {
  const parts = [fileHeader(4, 229)]; // LINKTYPE_IPV6
  ADDRESSES.forEach((text, k) => {
    const addr = Buffer.alloc(16);
    text.split(':').forEach((g, j) => addr.writeUInt16BE(parseInt(g, 16), 2 * j));
    const ip = Buffer.alloc(40);
    ip[0] = 0x60;
    ip[6] = 59; // no next header
    ip[7] = 64;
    addr.copy(ip, 8);
    addr.copy(ip, 24);
    parts.push(recordHeader(1700000000 + k, 40, 40), ip);
  });
  return Buffer.concat(parts);
}

/** The first 42 bytes of an Ethernet/IPv4/UDP frame of `wire` bytes from 10.0.0.1:1000+k to 10.0.0.2:53. */
function udpHead(wire, k) {
  const f = Buffer.alloc(42);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(wire - 14, 16);
  f[22] = 64;
  f[23] = 17;
  f.writeUInt32BE(0x0a000001, 26);
  f.writeUInt32BE(0x0a000002, 30);
  f.writeUInt16BE(1000 + k, 34);
  f.writeUInt16BE(53, 36);
  f.writeUInt16BE(wire - 34, 38);
  return f;
}

function versionFile(minor, orders) {
  const parts = [fileHeader(minor, 1)];
  orders.forEach((swapped, k) => {
    const wire = 100 + k;
    parts.push(swapped ? recordHeader(1700000100 + k, wire, 42) : recordHeader(1700000100 + k, 42, wire), udpHead(wire, k));
  });
  return Buffer.concat(parts);
}

function eomplsWithControlWord() {
  const records = [];
  for (const tags of [[], [42]]) {
    for (const v6 of [false, true]) {
      for (const tcp of [true, false]) {
        const k = records.length + 1;
        const ip = ipPacket({
          src: v6 ? '2001:db8:1::1' : '10.1.0.1', dst: v6 ? '2001:db8:1::2' : '10.1.0.2',
          ...(tcp ? { tcp: { sport: 40000 + k, dport: 8080, seq: 1, ack: 0, flags: 0x02 } }
            : { udp: { sport: 50000 + k, dport: 9999 }, payload: Buffer.from('eompls') }),
        });
        const inner = ethernet('00:00:5e:00:53:02', '00:00:5e:00:53:01', v6 ? 0x86dd : 0x0800, ip, tags);
        const cw = Buffer.alloc(4);
        cw.writeUInt16BE(k, 2); // flags, fragment and length 0; sequence number k
        const frame = ethernet('02:00:00:00:00:02', '02:00:00:00:00:01', 0x8847, mpls([100, 200], Buffer.concat([cw, inner])));
        records.push({ sec: 1700000200, usec: k, frame });
      }
    }
  }
  return pcapFile(1, records);
}

function simplePacketBlocks() {
  const shb = Buffer.alloc(16);
  shb.writeUInt32LE(0x1a2b3c4d, 0); // byte-order magic
  shb.writeUInt16LE(1, 4); // version 1.0
  shb.writeBigInt64LE(-1n, 8); // section length unknown
  const idb = Buffer.alloc(8);
  idb.writeUInt16LE(1, 0); // LINKTYPE_ETHERNET; snap length 0 (none), default microseconds
  const blocks = [pcapngBlock(0x0a0d0d0a, shb), pcapngBlock(1, idb)];
  ['spb', 'epb', 'spb', 'spb', 'epb', 'spb'].forEach((kind, k) => {
    const n = k + 1;
    const ip = ipPacket({
      src: '192.0.2.1', dst: '192.0.2.2', id: n,
      ...(n % 2 === 0 ? { tcp: { sport: 41000 + n, dport: 80, seq: n, ack: 0, flags: 0x02 } }
        : { udp: { sport: 42000 + n, dport: 9999 }, payload: Buffer.from('spb') }),
    });
    const frame = ethernet('02:00:00:00:00:02', '02:00:00:00:00:01', 0x0800, ip);
    if (kind === 'spb') {
      const head = Buffer.alloc(4);
      head.writeUInt32LE(frame.length, 0); // original length; the captured length follows from the block's
      blocks.push(pcapngBlock(3, Buffer.concat([head, frame])));
    } else {
      const head = Buffer.alloc(20);
      const t = 1700000300000000n + BigInt(n); // microseconds
      head.writeUInt32LE(0, 0); // interface 0
      head.writeUInt32LE(Number(t >> 32n), 4);
      head.writeUInt32LE(Number(t & 0xffffffffn), 8);
      head.writeUInt32LE(frame.length, 12);
      head.writeUInt32LE(frame.length, 16);
      blocks.push(pcapngBlock(6, Buffer.concat([head, frame])));
    }
  });
  return Buffer.concat(blocks);
}

mkdirSync(OUT, { recursive: true });
writeFileSync(join(OUT, 'ipv6-address-forms.pcap'), addressForms());
// 2.2: always original length first. 2.3: written either way.
writeFileSync(join(OUT, 'pcap-v2.2-lengths.pcap'), versionFile(2, [true, true]));
writeFileSync(join(OUT, 'pcap-v2.3-lengths.pcap'), versionFile(3, [false, true, false]));
writeFileSync(join(OUT, 'simple-packet-blocks.pcapng'), simplePacketBlocks());
writeFileSync(join(ROOT, 'captures', 'vlan', 'dplab_eompls-pw-cw.pcap'), eomplsWithControlWord());
