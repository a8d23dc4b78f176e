/**
 * The packet setters (src/packet/wire.ts) keep bytes, decoded fields and checksums in step.
 *
 * Independent checks: RFC 1624's own worked example; a full RFC 1071 recomputation over random
 * headers (fast-check) written in this file; and tshark, with checksum validation on, reading real
 * captures after a stage rewrote TTL, addresses and ports of every packet: each packet's checksum
 * verdicts (good / bad / unverified, IP and TCP/UDP/ICMPv6) are the same as in the original
 * capture, and tshark sees the new values.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { LinkType } from '../src/capture/linktype.js';
import { Batch } from '../src/packet/batch.js';
import { decodeBatch } from '../src/packet/decode.js';
import { csumUpdate16, End, setEndpoint, setIpv4Address, setIpv6Address, setPort, setTtl } from '../src/packet/wire.js';
import { runCapture } from '../src/pipeline/run.js';
import { CAPTURES, tsharkFields } from './helpers.js';
import { Rewrite } from './stages.js';

/** RFC 1071: the one's-complement sum of 16-bit words, folded and complemented. */
function internetChecksum(bytes: Uint8Array, from: number, to: number, initial = 0): number {
  let s = initial;
  for (let k = from; k < to; k += 2) s += (bytes[k]! << 8) | (k + 1 < to ? bytes[k + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 65536);
  return ~s & 0xffff;
}

describe('RFC 1624 incremental update', () => {
  it('the RFC\'s example: m 0x5555 -> 0x3285 under HC 0xDD2F gives 0x0000, not the -0 of eqn. 2', () => {
    expect(csumUpdate16(0xdd2f, 0x5555, 0x3285)).toBe(0x0000);
  });
});

/** One raw IPv4 or IPv6 packet with a TCP or UDP header and payload, checksums computed here. */
function rawPacket(v6: boolean, tcp: boolean, src: number[], dst: number[], sport: number, dport: number, ttl: number, payload: number[], udpZero: boolean): Uint8Array {
  const l4len = (tcp ? 20 : 8) + payload.length;
  const l3len = v6 ? 40 : 20;
  const p = new Uint8Array(l3len + l4len);
  const dv = new DataView(p.buffer);
  if (v6) {
    dv.setUint32(0, 0x60000000);
    dv.setUint16(4, l4len);
    p[6] = tcp ? 6 : 17;
    p[7] = ttl;
    for (let k = 0; k < 4; k++) { dv.setUint32(8 + 4 * k, src[k]!); dv.setUint32(24 + 4 * k, dst[k]!); }
  } else {
    p[0] = 0x45;
    dv.setUint16(2, l3len + l4len);
    p[8] = ttl;
    p[9] = tcp ? 6 : 17;
    dv.setUint32(12, src[0]!);
    dv.setUint32(16, dst[0]!);
    dv.setUint16(10, internetChecksum(p, 0, 20));
  }
  dv.setUint16(l3len, sport);
  dv.setUint16(l3len + 2, dport);
  if (tcp) p[l3len + 12] = 0x50; else dv.setUint16(l3len + 4, l4len);
  p.set(payload, l3len + (tcp ? 20 : 8));
  const sumAt = l3len + (tcp ? 16 : 6);
  if (!(udpZero && !tcp && !v6)) {
    let c = internetChecksum(p, l3len, p.length, pseudo(p, v6));
    if (!tcp && c === 0) c = 0xffff;
    dv.setUint16(sumAt, c);
  }
  return p;
}

/** The pseudo-header's sum, not folded. */
function pseudo(p: Uint8Array, v6: boolean): number {
  const at = v6 ? 8 : 12;
  const end = v6 ? 40 : 20;
  let s = 0;
  for (let k = at; k < end; k += 2) s += (p[k]! << 8) | p[k + 1]!;
  return s + (v6 ? p[6]! : p[9]!) + (p.length - (v6 ? 40 : 20));
}

function decodedBatch(pkt: Uint8Array): Batch {
  const b = new Batch(1);
  b.bytes = pkt;
  b.count = 1;
  b.off[0] = 0;
  b.capLen[0] = pkt.length;
  b.wireLen[0] = pkt.length;
  b.linkType[0] = LinkType.RAW;
  b.num[0] = 1;
  decodeBatch(b);
  return b;
}

describe('setters give what a full recomputation gives', () => {
  const word = fc.integer({ min: 0, max: 0xffffffff });
  const port = fc.integer({ min: 0, max: 0xffff });
  it('addresses, ports and TTL, IPv4 and IPv6, TCP and UDP (and UDP without checksum)', () => {
    fc.assert(fc.property(
      fc.boolean(), fc.boolean(), fc.boolean(), fc.array(word, { minLength: 8, maxLength: 8 }), fc.array(word, { minLength: 8, maxLength: 8 }),
      port, port, port, fc.integer({ min: 1, max: 255 }), fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 33 }),
      (v6, tcp, udpZero, a, z, sport, dport, newPort, ttl, payload) => {
        const b = decodedBatch(rawPacket(v6, tcp, a.slice(0, 4), a.slice(4), sport, dport, ttl, payload, udpZero));
        expect(b.malformed[0]).toBe(0);
        if (v6) {
          setIpv6Address(b, 0, End.DST, Uint32Array.from(z.slice(0, 4)), 0);
          setIpv6Address(b, 0, End.SRC, Uint32Array.from(z.slice(4)), 0);
        } else {
          setIpv4Address(b, 0, End.DST, z[0]!);
          setIpv4Address(b, 0, End.SRC, z[1]!);
        }
        setPort(b, 0, End.DST, newPort);
        setTtl(b, 0, ttl - 1);
        const fresh = rawPacket(v6, tcp, v6 ? z.slice(4) : [z[1]!], v6 ? z.slice(0, 4) : [z[0]!], sport, newPort, ttl - 1, payload, udpZero);
        expect([...b.bytes]).toEqual([...fresh]);
        // The decoded fields say what the bytes now say.
        const again = decodedBatch(fresh);
        for (const f of ['src', 'dst', 'sport', 'dport', 'ttl', 'hash'] as const) {
          expect([...b[f].subarray(0, f === 'src' || f === 'dst' ? 4 : 1)], f).toEqual([...again[f].subarray(0, f === 'src' || f === 'dst' ? 4 : 1)]);
        }
      },
    ), { numRuns: 400, seed: 1624 });
  });

  it('setEndpoint (address and port at once, as NAT does) gives the same', () => {
    fc.assert(fc.property(
      fc.boolean(), fc.boolean(), fc.boolean(), fc.array(word, { minLength: 8, maxLength: 8 }), fc.array(word, { minLength: 8, maxLength: 8 }),
      port, port, port, port, fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 33 }),
      (v6, tcp, udpZero, a, z, sport, dport, newSport, newDport, payload) => {
        const b = decodedBatch(rawPacket(v6, tcp, a.slice(0, 4), a.slice(4), sport, dport, 64, payload, udpZero));
        const dst = Uint32Array.from(v6 ? z.slice(0, 4) : [z[0]!, 0, 0, 0]);
        const src = Uint32Array.from(v6 ? z.slice(4) : [z[1]!, 0, 0, 0]);
        setEndpoint(b, 0, End.DST, dst, 0, newDport);
        setEndpoint(b, 0, End.SRC, src, 0, newSport);
        const fresh = rawPacket(v6, tcp, v6 ? z.slice(4) : [z[1]!], v6 ? z.slice(0, 4) : [z[0]!], newSport, newDport, 64, payload, udpZero);
        expect([...b.bytes]).toEqual([...fresh]);
        const again = decodedBatch(fresh);
        for (const f of ['src', 'dst', 'sport', 'dport', 'hash'] as const) {
          expect([...b[f].subarray(0, f === 'src' || f === 'dst' ? 4 : 1)], f).toEqual([...again[f].subarray(0, f === 'src' || f === 'dst' ? 4 : 1)]);
        }
      },
    ), { numRuns: 400, seed: 3022 });
  });
});

const FIELDS = ['frame.number', 'ip.checksum.status', 'tcp.checksum.status', 'udp.checksum.status', 'icmpv6.checksum.status'];

const dir = mkdtempSync(join(tmpdir(), 'dplab-wire-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('tshark reads rewritten captures with the checksums they had', () => {
  const files = [
    'large/ppp_many-protocols.pcap', 'ipv6/zeek_ftp_ipv6.pcap', 'ipv6/zeek_ipv6-fragmented-dns.pcap', 'ipv4_frag/ppp_ip4_fragments.pcap',
    'dns/tcpdump_dns_udp.pcap', 'vlan/zeek_http-vlan-0.pcap', 'icmp/zeek_icmp6-ping.pcap', 'tcp_http/ppp_one_http_stream_fin.pcap',
  ];
  for (const f of files) {
    it(f, () => {
      const input = join(CAPTURES, f);
      const out = join(dir, f.replace(/\//g, '_'));
      const stage = new Rewrite('rewrite');
      runCapture({ file: input, profile: 'rewrite', stages: [stage], write: out, timing: false });
      expect(stage.rewritten).toBeGreaterThan(0);
      expect(tsharkFields(out, FIELDS)).toEqual(tsharkFields(input, FIELDS));
      // And the rewrite is there: every IPv4 destination is now in 198.18.0.0/15 with its TTL one lower.
      const before = tsharkFields(input, ['ip.dst', 'ip.ttl']);
      const after = tsharkFields(out, ['ip.dst', 'ip.ttl']);
      after.forEach((row, k) => {
        if (!row[0]) return;
        expect(row[0]!.split(',')[0]).toMatch(/^198\.1[89]\./);
        expect(Number(row[1]!.split(',')[0])).toBe(Math.max(0, Number(before[k]![1]!.split(',')[0]) - 1));
      });
    });
  }
});
