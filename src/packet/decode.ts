/**
 * Decoding: fills a batch's per-packet fields from the packet bytes, in place, one length check per
 * header. Nothing here allocates or throws: a packet that does not parse gets a `Malformed` reason
 * and keeps whatever fields were read before the damage (so its addresses can still be reported).
 */
import * as linkTypeModule from '../capture/linktype.js';
import type { Batch } from './batch.js';
import * as batchModule from './batch.js';
import * as codesModule from './codes.js';
import * as hashModule from './hash.js';
// What the per-packet code uses of other modules, as this module's own consts (see
// src/conntrack/tracker.ts): V8 reads an imported binding through its module cell at every use.
const { LinkType } = linkTypeModule;
const { Frag, L3, Verdict } = batchModule;
const { flowHash, foldAddress, symHashFolded } = hashModule;
const { hasPorts, isIcmpError, Malformed, Proto } = codesModule;
export { hasPorts, isIcmpError, Malformed, MALFORMED_NAMES, Proto } from './codes.js';

const ET_VLAN = 0x8100;
const ET_QINQ = 0x88a8;
const ET_QINQ_OLD = 0x9100;
const ET_MPLS = 0x8847;
const ET_MPLS_MC = 0x8848;
const ET_PPPOE = 0x8864;

/** Reasons are written through this so one check covers "was it the snap length?". */
function cut(b: Batch, i: number, reason: number): void {
  b.malformed[i] = b.capLen[i]! < b.wireLen[i]! ? Malformed.SNAPLEN : reason;
}

/**
 * Decode packets [0, b.count) of the batch. Every decoder and stage field starts at zero (verdict
 * PASS); a malformed packet is dropped here, before any stage sees it.
 */
export function decodeBatch(b: Batch): void {
  b.decoded.fill(0);
  const n = b.count;
  const x = b.bytes;
  const v = viewOf(x);
  // What the capture summary counts, in locals written to the batch once (Batch.wireBytes ..
  // slow): every packet's lengths; the fast path's packets by family, UDP or TCP, and VLAN; the
  // indices of the others. TrafficSummary.countHeld then looks at those others only: as a pass
  // of its own over every packet's fields it was ~140 instructions a packet (DESIGN.md "Twelfth
  // pass"). UDP (17) is odd and TCP (6) even, so `pr & 1` counts UDP without a branch; the IPv6
  // packets are the fast ones that are not IPv4.
  let n4 = 0; let u4 = 0; let u6 = 0; let tagged = 0; let slow = 0;
  let wireBytes = 0; let capBytes = 0; let cut = 0;
  for (let i = 0; i < n; i++) {
    const cap = b.capLen[i]!;
    const wire = b.wireLen[i]!;
    wireBytes += wire;
    capBytes += cap;
    if (cap < wire) cut++;
    // The common case inline, multi-byte fields read through one DataView: Ethernet with at most
    // one 802.1Q tag, IPv4 without options or IPv6 without extension headers, not a fragment, a
    // whole TCP or UDP header. It writes exactly what decodePacket would; anything else, or
    // anything short, goes to decodePacket. The field arrays are read from the batch at each use
    // (b.off[i]), not from locals: a batch's fields are const with a known map (tsconfig's
    // useDefineForClassFields), so V8 checks nothing about such a load, while a local array is
    // map-checked at every use (ebpf 2,846/2,842 -> 2,781/2,786 instructions a packet).
    fast: {
      const p = b.off[i]!;
      const end = p + cap;
      if (b.linkType[i] !== LinkType.ETHERNET || end - p < 14 + 20) break fast;
      let q = p + 14;
      let et = v.getUint16(p + 12);
      let tag = 0;
      if (et === ET_VLAN) {
        if (end - q < 4 + 20) break fast;
        tag = v.getUint16(q) & 0x0fff;
        et = v.getUint16(q + 2);
        q += 4;
      }
      let l4: number; let ipEnd: number; let pr: number;
      if (et === L3.IPV4) {
        if (x[q] !== 0x45) break fast; // version 4, no options
        const total = v.getUint16(q + 2);
        if (total < 20 || q + total > end) break fast;
        if ((v.getUint16(q + 6) & 0x3fff) !== 0) break fast; // a fragment
        pr = x[q + 9]!;
        l4 = q + 20;
        ipEnd = q + total;
      } else if (et === L3.IPV6) {
        if (end - q < 40 || x[q]! >> 4 !== 6) break fast;
        pr = x[q + 6]!;
        l4 = q + 40;
        ipEnd = l4 + v.getUint16(q + 4);
        if (ipEnd > end) break fast;
      } else break fast;
      const avail = ipEnd - l4;
      let doff = 0;
      let ulen = 0;
      if (pr === Proto.TCP) {
        if (avail < 20) break fast;
        doff = (x[l4 + 12]! >> 4) << 2;
        if (doff < 20 || doff > avail) break fast;
      } else if (pr === Proto.UDP) {
        if (avail < 8) break fast;
        ulen = v.getUint16(l4 + 4);
        if (ulen < 8 || ulen > avail) break fast;
      } else break fast;

      const w = i << 2;
      b.l3[i] = q;
      b.l3Type[i] = et;
      b.vlan[i] = tag;
      b.proto[i] = pr;
      b.l4[i] = l4;
      b.l3End[i] = ipEnd;
      const sp = v.getUint16(l4);
      const dp = v.getUint16(l4 + 2);
      b.sport[i] = sp;
      b.dport[i] = dp;
      if (pr === Proto.TCP) {
        b.seq[i] = v.getUint32(l4 + 4);
        b.ack[i] = v.getUint32(l4 + 8);
        b.tcpFlags[i] = x[l4 + 13]!;
        b.win[i] = v.getUint16(l4 + 14);
        b.pay[i] = l4 + doff;
      } else {
        b.pay[i] = l4 + 8;
        if (ulen < avail) b.l3End[i] = l4 + ulen; // trailing bytes are not UDP payload
      }
      if (et === L3.IPV4) {
        b.family[i] = 4;
        const s = v.getUint32(q + 12);
        const d = v.getUint32(q + 16);
        b.src[w] = s;
        b.dst[w] = d;
        b.ttl[i] = x[q + 8]!;
        b.ipId[i] = v.getUint16(q + 4);
        b.hash[i] = symHashFolded(pr, s | 0, d | 0, sp, dp); // an IPv4 address folds to itself
        n4++; u4 += pr & 1;
      } else {
        b.family[i] = 6;
        const s0 = v.getUint32(q + 8); const s1 = v.getUint32(q + 12); const s2 = v.getUint32(q + 16); const s3 = v.getUint32(q + 20);
        const d0 = v.getUint32(q + 24); const d1 = v.getUint32(q + 28); const d2 = v.getUint32(q + 32); const d3 = v.getUint32(q + 36);
        b.src[w] = s0; b.src[w + 1] = s1; b.src[w + 2] = s2; b.src[w + 3] = s3;
        b.dst[w] = d0; b.dst[w + 1] = d1; b.dst[w + 2] = d2; b.dst[w + 3] = d3;
        b.ttl[i] = x[q + 7]!;
        b.hash[i] = symHashFolded(pr, foldAddress(s0, s1, s2, s3), foldAddress(d0, d1, d2, d3), sp, dp);
        u6 += pr & 1;
      }
      if (tag !== 0) tagged++;
      continue;
    }
    b.slow[slow++] = i;
    decodePacket(b, i);
    if (b.malformed[i] !== 0) b.verdict[i] = Verdict.DROP;
  }
  b.fast4 = n4; b.fast4Udp = u4; b.fast6Udp = u6; b.fastTagged = tagged;
  b.slowCount = slow;
  b.wireBytes = wireBytes; b.capBytes = capBytes; b.cut = cut;
}

let viewBytes: Uint8Array | null = null;
let view: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));

/** A DataView over a chunk: made once per chunk (the reader reuses a few), never per packet. */
function viewOf(x: Uint8Array): DataView<ArrayBufferLike> {
  if (x !== viewBytes) { viewBytes = x; view = new DataView(x.buffer, x.byteOffset, x.byteLength); }
  return view;
}

export function decodePacket(b: Batch, i: number): void {
  const x = b.bytes;
  const p = b.off[i]!;
  const end = p + b.capLen[i]!;
  let q = p;
  let et = 0;
  if (end === p) { b.malformed[i] = Malformed.EMPTY; return; }
  switch (b.linkType[i]) {
    case LinkType.ETHERNET:
      if (end - q < 14) { cut(b, i, Malformed.LINK_TRUNCATED); return; }
      et = (x[q + 12]! << 8) | x[q + 13]!;
      q += 14;
      break;
    case LinkType.LINUX_SLL:
      if (end - q < 16) { cut(b, i, Malformed.LINK_TRUNCATED); return; }
      et = (x[q + 14]! << 8) | x[q + 15]!;
      q += 16;
      break;
    case LinkType.LINUX_SLL2:
      if (end - q < 20) { cut(b, i, Malformed.LINK_TRUNCATED); return; }
      et = (x[q]! << 8) | x[q + 1]!;
      q += 20;
      break;
    case LinkType.NULL: {
      if (end - q < 4) { cut(b, i, Malformed.LINK_TRUNCATED); return; }
      // The address family is in the byte order of the machine that captured, some systems wrote
      // only 16 bits of it, and a value above 1500 is an Ethertype: read it as Wireshark does
      // (packet-null.c; captures/linktype/ppp_null_loopback.pcap has 0f 00 08 00 for IPv4).
      let fam = (x[q]! | (x[q + 1]! << 8) | (x[q + 2]! << 16) | (x[q + 3]! << 24)) >>> 0;
      if ((fam & 0xffff0000) !== 0) {
        if ((fam & 0xff000000) === 0 && (fam & 0x00ff0000) < 0x00060000) fam >>>= 16;
        else fam = ((x[q]! << 24) | (x[q + 1]! << 16) | (x[q + 2]! << 8) | x[q + 3]!) >>> 0;
      } else if ((fam & 0xff) === 0 && (fam & 0xff00) < 0x0600) fam >>>= 8;
      et = fam > 1500 ? fam & 0xffff : nullFamily(fam);
      q += 4;
      break;
    }
    case LinkType.LOOP:
      if (end - q < 4) { cut(b, i, Malformed.LINK_TRUNCATED); return; }
      et = nullFamily((x[q]! << 24) | (x[q + 1]! << 16) | (x[q + 2]! << 8) | x[q + 3]!);
      q += 4;
      break;
    case LinkType.RAW:
    case LinkType.RAW_OPENBSD:
      et = ipByVersion(x[q]!);
      if (et === 0) { b.malformed[i] = Malformed.IP_VERSION; return; }
      break;
    case LinkType.IPV4:
      et = L3.IPV4;
      break;
    case LinkType.IPV6:
      et = L3.IPV6;
      break;
    default:
      b.malformed[i] = Malformed.UNSUPPORTED_LINK;
      return;
  }

  // Between the link layer and IP: VLAN tags (802.1Q, 802.1ad/QinQ), MPLS labels, PPPoE sessions.
  for (let guard = 0; guard < 16; guard++) {
    if (et === ET_VLAN || et === ET_QINQ || et === ET_QINQ_OLD) {
      if (end - q < 4) { cut(b, i, Malformed.LINK_TRUNCATED); return; }
      if (b.vlan[i] === 0) b.vlan[i] = ((x[q]! & 0x0f) << 8) | x[q + 1]!;
      et = (x[q + 2]! << 8) | x[q + 3]!;
      q += 4;
    } else if (et === ET_MPLS || et === ET_MPLS_MC) {
      let bottom = 0;
      while (bottom === 0) {
        if (end - q < 4) { cut(b, i, Malformed.LINK_TRUNCATED); return; }
        bottom = x[q + 2]! & 1;
        q += 4;
      }
      if (end - q < 1) { cut(b, i, Malformed.LINK_TRUNCATED); return; }
      et = ipByVersion(x[q]!);
      if (et === 0) {
        // First nibble 0: a pseudowire control word (RFC 4385), then an Ethernet frame (Ethernet
        // over MPLS, RFC 4448) whose tags the loop goes on to read. tshark's pwethheuristic also
        // weighs the MAC addresses' OUIs, which dplab has no table of.
        if (x[q]! >> 4 !== 0 || end - q < 4 + 14) { b.l3Type[i] = ET_MPLS; return; }
        et = (x[q + 16]! << 8) | x[q + 17]!;
        q += 4 + 14;
      }
    } else if (et === ET_PPPOE) {
      if (end - q < 8) { cut(b, i, Malformed.LINK_TRUNCATED); return; }
      const ppp = (x[q + 6]! << 8) | x[q + 7]!;
      q += 8;
      if (ppp === 0x0021) et = L3.IPV4;
      else if (ppp === 0x0057) et = L3.IPV6;
      else { b.l3Type[i] = ET_PPPOE; return; }
    } else break;
  }

  b.l3[i] = q;
  if (et <= 1500) return; // 802.3 length field: LLC/SNAP, not IP
  b.l3Type[i] = et;
  if (et === L3.IPV4) decodeIPv4(b, i, x, q, end);
  else if (et === L3.IPV6) decodeIPv6(b, i, x, q, end);
}

function nullFamily(fam: number): number {
  if (fam === 2) return L3.IPV4;
  if (fam === 24 || fam === 28 || fam === 30) return L3.IPV6; // AF_INET6 on NetBSD/OpenBSD, FreeBSD, macOS
  return 0;
}

function ipByVersion(first: number): number {
  const v = first >> 4;
  return v === 4 ? L3.IPV4 : v === 6 ? L3.IPV6 : 0;
}

function decodeIPv4(b: Batch, i: number, x: Uint8Array, q: number, end: number): void {
  if (end - q < 20) { cut(b, i, Malformed.IP_TRUNCATED); return; }
  if (x[q]! >> 4 !== 4) { b.malformed[i] = Malformed.IP_VERSION; return; }
  const ihl = (x[q]! & 0x0f) << 2;
  if (ihl < 20) { b.malformed[i] = Malformed.IPV4_IHL; return; }
  if (end - q < ihl) { cut(b, i, Malformed.IP_TRUNCATED); return; }
  const w = i << 2;
  b.family[i] = 4;
  b.src[w] = (x[q + 12]! << 24) | (x[q + 13]! << 16) | (x[q + 14]! << 8) | x[q + 15]!;
  b.dst[w] = (x[q + 16]! << 24) | (x[q + 17]! << 16) | (x[q + 18]! << 8) | x[q + 19]!;
  const proto = x[q + 9]!;
  b.proto[i] = proto;
  b.ttl[i] = x[q + 8]!;
  b.ipId[i] = (x[q + 4]! << 8) | x[q + 5]!;
  let total = (x[q + 2]! << 8) | x[q + 3]!;
  // A zero total length is what a capture of an outgoing TSO super-segment shows: the NIC fills it
  // in later. Take the captured length, as tshark does.
  if (total === 0) total = end - q;
  if (total < ihl) { b.malformed[i] = Malformed.IPV4_TOTAL_LENGTH; return; }
  let ipEnd = q + total;
  if (ipEnd > end) {
    if (b.capLen[i]! < b.wireLen[i]!) ipEnd = end;
    else { b.malformed[i] = Malformed.IP_LENGTH; return; }
  }
  b.l3End[i] = ipEnd;
  const fragField = (x[q + 6]! << 8) | x[q + 7]!;
  const l4 = q + ihl;
  b.l4[i] = l4;
  b.pay[i] = l4;
  if ((fragField & 0x1fff) !== 0) {
    b.frag[i] = Frag.LATER;
    b.hash[i] = flowHash(b, i, 0, 0);
    return;
  }
  if ((fragField & 0x2000) !== 0) b.frag[i] = Frag.FIRST;
  decodeL4(b, i, x, l4, ipEnd, proto, 4);
}

/** IPv6 extension headers that use the generic (length + 1) * 8 layout. */
function isGenericExt(nh: number): boolean {
  return nh === 0 || nh === 43 || nh === 60 || nh === 135 || nh === 139 || nh === 140 || nh === 253 || nh === 254;
}

function decodeIPv6(b: Batch, i: number, x: Uint8Array, q: number, end: number): void {
  if (end - q < 40) { cut(b, i, Malformed.IP_TRUNCATED); return; }
  if (x[q]! >> 4 !== 6) { b.malformed[i] = Malformed.IP_VERSION; return; }
  const w = i << 2;
  b.family[i] = 6;
  for (let k = 0; k < 4; k++) {
    const s = q + 8 + (k << 2);
    b.src[w + k] = (x[s]! << 24) | (x[s + 1]! << 16) | (x[s + 2]! << 8) | x[s + 3]!;
    const d = s + 16;
    b.dst[w + k] = (x[d]! << 24) | (x[d + 1]! << 16) | (x[d + 2]! << 8) | x[d + 3]!;
  }
  b.ttl[i] = x[q + 7]!;
  const plen = (x[q + 4]! << 8) | x[q + 5]!;
  let nh = x[q + 6]!;
  let ipEnd = q + 40 + plen;
  if (plen === 0 && nh === 0) ipEnd = end; // jumbogram: the real length is in a hop-by-hop option
  if (ipEnd > end) {
    if (b.capLen[i]! < b.wireLen[i]!) ipEnd = end;
    else { b.malformed[i] = Malformed.IP_LENGTH; return; }
  }
  b.l3End[i] = ipEnd;
  let h = q + 40;
  for (let guard = 0; guard < 32; guard++) {
    let len: number;
    if (isGenericExt(nh)) {
      if (ipEnd - h < 8) { cut(b, i, Malformed.IPV6_EXT); return; }
      len = (x[h + 1]! + 1) << 3;
    } else if (nh === Proto.AH) {
      if (ipEnd - h < 8) { cut(b, i, Malformed.IPV6_EXT); return; }
      len = (x[h + 1]! + 2) << 2;
    } else if (nh === 44) {
      if (ipEnd - h < 8) { cut(b, i, Malformed.IPV6_EXT); return; }
      const fo = ((x[h + 2]! << 8) | x[h + 3]!) >> 3;
      b.ipId[i] = (x[h + 4]! << 24) | (x[h + 5]! << 16) | (x[h + 6]! << 8) | x[h + 7]!;
      if (fo !== 0) b.frag[i] = Frag.LATER;
      else if ((x[h + 3]! & 1) !== 0) b.frag[i] = Frag.FIRST;
      len = 8;
    } else break;
    if (ipEnd - h < len) { cut(b, i, Malformed.IPV6_EXT); return; }
    nh = x[h]!;
    h += len;
  }
  b.proto[i] = nh;
  b.l4[i] = h;
  b.pay[i] = h;
  if (b.frag[i] === Frag.LATER) {
    b.hash[i] = flowHash(b, i, 0, 0);
    return;
  }
  decodeL4(b, i, x, h, ipEnd, nh, 6);
}

function decodeL4(b: Batch, i: number, x: Uint8Array, l4: number, ipEnd: number, proto: number, family: number): void {
  const avail = ipEnd - l4;
  const first = b.frag[i] === Frag.FIRST;
  switch (proto) {
    case Proto.TCP: {
      if (avail < 20) {
        // A first fragment may legally split the TCP header; ports still come first.
        if (first && avail >= 4) setPorts(b, i, x, l4);
        else cut(b, i, Malformed.L4_TRUNCATED);
        break;
      }
      setPorts(b, i, x, l4);
      const doff = (x[l4 + 12]! >> 4) << 2;
      b.seq[i] = (x[l4 + 4]! << 24) | (x[l4 + 5]! << 16) | (x[l4 + 6]! << 8) | x[l4 + 7]!;
      b.ack[i] = (x[l4 + 8]! << 24) | (x[l4 + 9]! << 16) | (x[l4 + 10]! << 8) | x[l4 + 11]!;
      b.tcpFlags[i] = x[l4 + 13]!;
      b.win[i] = (x[l4 + 14]! << 8) | x[l4 + 15]!;
      if (doff < 20) { b.malformed[i] = Malformed.TCP_DATA_OFFSET; break; }
      if (doff > avail) {
        if (!first) {
          if (b.capLen[i]! < b.wireLen[i]!) b.malformed[i] = Malformed.SNAPLEN;
          else b.malformed[i] = Malformed.TCP_DATA_OFFSET;
        }
        b.pay[i] = ipEnd;
        break;
      }
      b.pay[i] = l4 + doff;
      break;
    }
    case Proto.UDP:
    case Proto.UDPLITE: {
      if (avail < 8) {
        if (first && avail >= 4) setPorts(b, i, x, l4);
        else cut(b, i, Malformed.L4_TRUNCATED);
        break;
      }
      setPorts(b, i, x, l4);
      b.pay[i] = l4 + 8;
      if (proto === Proto.UDP && !first) {
        const ulen = (x[l4 + 4]! << 8) | x[l4 + 5]!;
        const whole = b.capLen[i]! >= b.wireLen[i]!;
        // ulen 0 is legal only in an IPv6 jumbogram; otherwise it must cover the header and fit.
        if ((ulen < 8 && !(ulen === 0 && family === 6)) || (whole && ulen > avail)) b.malformed[i] = Malformed.UDP_LENGTH;
        else if (ulen >= 8 && ulen < avail) b.l3End[i] = l4 + ulen; // trailing bytes are not UDP payload
      }
      break;
    }
    case Proto.SCTP:
      if (avail < 12) { if (first && avail >= 4) setPorts(b, i, x, l4); else cut(b, i, Malformed.L4_TRUNCATED); break; }
      setPorts(b, i, x, l4);
      b.pay[i] = l4 + 12;
      break;
    case Proto.ICMP:
      if (avail < 8) { if (!first) cut(b, i, Malformed.L4_TRUNCATED); break; }
      decodeIcmp(b, i, x, l4, ipEnd, false);
      break;
    case Proto.ICMPV6:
      if (avail < 4) { if (!first) cut(b, i, Malformed.L4_TRUNCATED); break; }
      decodeIcmp(b, i, x, l4, ipEnd, true);
      break;
    default:
      break;
  }
  b.hash[i] = flowHash(b, i, b.sport[i]!, b.dport[i]!);
}

function setPorts(b: Batch, i: number, x: Uint8Array, l4: number): void {
  b.sport[i] = (x[l4]! << 8) | x[l4 + 1]!;
  b.dport[i] = (x[l4 + 2]! << 8) | x[l4 + 3]!;
}

function decodeIcmp(b: Batch, i: number, x: Uint8Array, l4: number, ipEnd: number, v6: boolean): void {
  const type = x[l4]!;
  b.icmpType[i] = type;
  b.icmpCode[i] = x[l4 + 1]!;
  b.pay[i] = Math.min(l4 + 8, ipEnd);
  // Node information (RFC 4620, 139/140) too: Linux keys it by these bytes (its Qtype), as an echo by its id.
  if (v6 ? type === 128 || type === 129 || type === 139 || type === 140 : type === 0 || type === 8 || type === 13 || type === 14 || type === 15 || type === 16 || type === 17 || type === 18) {
    if (ipEnd - l4 >= 6) b.icmpId[i] = (x[l4 + 4]! << 8) | x[l4 + 5]!;
  } else if (isIcmpError(v6, type)) {
    decodeQuoted(b, i, x, l4 + 8, ipEnd);
  }
}

/**
 * The packet an ICMP error quotes: its IP header and the start of its L4 header (RFC 792 promises
 * 8 bytes, enough for the ports). A short quote is normal, so nothing here marks the packet
 * malformed; whatever is present is recorded.
 */
function decodeQuoted(b: Batch, i: number, x: Uint8Array, q: number, end: number): void {
  if (end - q < 1) return;
  const w = i << 2;
  const v = x[q]! >> 4;
  let l4: number;
  let proto: number;
  if (v === 4) {
    if (end - q < 20) return;
    const ihl = (x[q]! & 0x0f) << 2;
    if (ihl < 20) return;
    b.inSrc[w] = (x[q + 12]! << 24) | (x[q + 13]! << 16) | (x[q + 14]! << 8) | x[q + 15]!;
    b.inDst[w] = (x[q + 16]! << 24) | (x[q + 17]! << 16) | (x[q + 18]! << 8) | x[q + 19]!;
    proto = x[q + 9]!;
    if ((((x[q + 6]! << 8) | x[q + 7]!) & 0x1fff) !== 0) { b.inProto[i] = proto; return; }
    l4 = q + ihl;
  } else if (v === 6) {
    if (end - q < 40) return;
    for (let k = 0; k < 4; k++) {
      const s = q + 8 + (k << 2);
      b.inSrc[w + k] = (x[s]! << 24) | (x[s + 1]! << 16) | (x[s + 2]! << 8) | x[s + 3]!;
      const d = s + 16;
      b.inDst[w + k] = (x[d]! << 24) | (x[d + 1]! << 16) | (x[d + 2]! << 8) | x[d + 3]!;
    }
    proto = x[q + 6]!;
    l4 = q + 40;
    for (let guard = 0; guard < 16 && end - l4 >= 8; guard++) {
      if (isGenericExt(proto)) { const len = (x[l4 + 1]! + 1) << 3; proto = x[l4]!; l4 += len; }
      else if (proto === Proto.AH) { const len = (x[l4 + 1]! + 2) << 2; proto = x[l4]!; l4 += len; }
      else if (proto === 44) {
        if ((((x[l4 + 2]! << 8) | x[l4 + 3]!) >> 3) !== 0) { b.inProto[i] = x[l4]!; return; }
        proto = x[l4]!; l4 += 8;
      } else break;
    }
  } else return;
  b.inProto[i] = proto;
  if (hasPorts(proto)) {
    if (end - l4 >= 4) {
      b.inSport[i] = (x[l4]! << 8) | x[l4 + 1]!;
      b.inDport[i] = (x[l4 + 2]! << 8) | x[l4 + 3]!;
    }
  } else if (proto === Proto.ICMP || proto === Proto.ICMPV6) {
    // A quoted echo request: its identifier plays the part of the ports.
    if (end - l4 >= 6) { const id = (x[l4 + 4]! << 8) | x[l4 + 5]!; b.inSport[i] = id; b.inDport[i] = id; }
  }
}
