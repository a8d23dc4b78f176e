/**
 * Writing a decoded packet, as smoltcp's wire views do: each setter changes the bytes, the batch's
 * decoded fields and every checksum the field is covered by, together, so a stage after a rewrite
 * (policy after DNAT, route) reads what is now on the wire and the packet leaves with valid
 * checksums. Offsets are named; nothing is allocated.
 *
 * Checksums are updated incrementally with RFC 1624's equation 3, HC' = ~(~HC + ~m + m'), which
 * never produces the -0 (0xffff) the older RFC 1141 update could. A packet whose checksum was
 * wrong stays exactly as wrong (the update preserves the difference), as a router's rewrite does.
 * Covered: the IPv4 header checksum; TCP, UDP and ICMPv6 checksums through the pseudo-header (an
 * IPv4 UDP checksum of 0 means "none" and stays 0; a computed 0 is sent as 0xffff, RFC 768).
 * A later fragment has no L4 header: only its IP header changes. A checksum cut off by the snap
 * length cannot be updated and is left alone.
 *
 * A packet that grows (a tag pushed, a header for encapsulation) moves to the batch's output area
 * (insertBytes); every setter, and the capture writer, find its bytes through packetBytes().
 */
import type { Batch } from './batch.js';
import { Frag } from './batch.js';
import { Proto } from './decode.js';
import { flowHash } from './hash.js';

/** Field offsets from the start of each header. */
export const IPV4 = { TTL: 8, PROTOCOL: 9, CHECKSUM: 10, SRC: 12, DST: 16 } as const;
export const IPV6 = { HOP_LIMIT: 7, SRC: 8, DST: 24 } as const;
export const TCP = { SPORT: 0, DPORT: 2, CHECKSUM: 16 } as const;
export const UDP = { SPORT: 0, DPORT: 2, CHECKSUM: 6 } as const;
export const ICMPV6 = { CHECKSUM: 2 } as const;

const PROTO_TCP = Proto.TCP;
const PROTO_UDP = Proto.UDP;
const PROTO_UDPLITE = Proto.UDPLITE;
const PROTO_ICMPV6 = Proto.ICMPV6;

/** Which address or port a setter changes. */
export const End = { SRC: 0, DST: 1 } as const;

/**
 * RFC 1624 eqn. 3 for one 16-bit word: the checksum `hc` after a covered word changed from `m` to
 * `m2`. Kept in 32 bits and folded, so it is exact for any number of chained updates.
 */
export function csumUpdate16(hc: number, m: number, m2: number): number {
  let s = (~hc & 0xffff) + (~m & 0xffff) + m2;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** The same for a 32-bit value changing (two words). */
export function csumUpdate32(hc: number, m: number, m2: number): number {
  return csumUpdate16(csumUpdate16(hc, m >>> 16, m2 >>> 16), m & 0xffff, m2 & 0xffff);
}

function get16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

function put16(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 8;
  b[at + 1] = v & 0xff;
}

/**
 * A big-endian word as int32 (compare it with `x | 0`): a uint32 of 2^31 or more handed between
 * functions V8 does not inline is boxed, a heap number per rewritten packet.
 */
function get32(b: Uint8Array, at: number): number {
  return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!;
}

export function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 0xff;
  b[at + 2] = (v >>> 8) & 0xff;
  b[at + 3] = v & 0xff;
}

/** The buffer holding packet i's bytes: the reader's chunk, or the output area once it grew. */
export function packetBytes(b: Batch, i: number): Uint8Array {
  return b.grown[i] === 1 ? b.out : b.bytes;
}

/** Where packet i starts in packetBytes(b, i), and how many bytes of it there are. */
export function packetStart(b: Batch, i: number): number {
  return b.grown[i] === 1 ? b.outOff[i]! : b.off[i]!;
}

export function packetLength(b: Batch, i: number): number {
  return b.grown[i] === 1 ? b.outLen[i]! : b.capLen[i]!;
}

/** Packet i's length on the wire, with what stages added (wireLen itself stays as read). */
export function packetWireLength(b: Batch, i: number): number {
  return b.grown[i] === 1 ? b.wireLen[i]! + b.outLen[i]! - b.capLen[i]! : b.wireLen[i]!;
}

/**
 * Make packet i `n` bytes longer at `at` bytes from its start (0 = in front), the new bytes zero:
 * the packet moves to the batch's output area and its header offsets (l3, l4, pay, l3End) follow
 * it, each moved by n when it lies at or after `at`. Returns the buffer the packet is now in; the
 * new bytes are at packetStart(b, i) + at. Its length on the wire grows by n too (packetWireLength).
 */
export function insertBytes(b: Batch, i: number, at: number, n: number): Uint8Array {
  const src = packetBytes(b, i);
  const from = packetStart(b, i);
  const len = packetLength(b, i);
  if (!(at >= 0 && at <= len && n >= 0)) throw new RangeError(`insertBytes: offset ${at} is outside packet ${b.num[i]} (${len} bytes)`);
  const need = b.outUsed + len + n;
  if (need > b.out.length) {
    // Grow geometrically: packets already moved keep their offsets.
    const bigger = new Uint8Array(Math.max(need, b.out.length * 2, 1 << 16));
    bigger.set(b.out.subarray(0, b.outUsed));
    b.out = bigger;
  }
  const out = b.out;
  const to = b.outUsed;
  // After a copy within `out` (a second growth) the old bytes are left behind: the area is per batch.
  out.set((src === out ? out.slice(from, from + at) : src.subarray(from, from + at)), to);
  out.fill(0, to + at, to + at + n);
  out.set((src === out ? out.slice(from + at, from + len) : src.subarray(from + at, from + len)), to + at + n);
  // 0 is "no such header" (a packet never starts at a chunk's first byte: a record header precedes it).
  const move = (x: number): number => (x === 0 ? 0 : to + (x - from) + (x - from >= at ? n : 0));
  b.l3[i] = move(b.l3[i]!);
  b.l4[i] = move(b.l4[i]!);
  b.pay[i] = move(b.pay[i]!);
  b.l3End[i] = move(b.l3End[i]!);
  b.grown[i] = 1;
  b.outOff[i] = to;
  b.outLen[i] = len + n;
  b.outUsed = to + len + n;
  return out;
}

/**
 * Where packet i's L4 checksum is (an absolute offset in b.bytes) when it covers the IP addresses
 * (pseudo-header), the packet has its L4 header and the field was captured; else -1.
 */
function pseudoChecksumAt(b: Batch, i: number): number {
  if (b.frag[i] === Frag.LATER) return -1;
  const p = b.proto[i];
  let field: number;
  if (p === PROTO_TCP) field = TCP.CHECKSUM;
  else if (p === PROTO_UDP || p === PROTO_UDPLITE) field = UDP.CHECKSUM;
  else if (p === PROTO_ICMPV6 && b.family[i] === 6) field = ICMPV6.CHECKSUM;
  else return -1;
  const at = b.l4[i]! + field;
  return at + 2 <= packetStart(b, i) + packetLength(b, i) ? at : -1;
}

/** Fold a change of the L4 checksum at `at` (from setters): UDP over IPv4 keeps "no checksum". */
function updateL4(b: Batch, i: number, at: number, m: number, m2: number, wide: boolean): void {
  const bytes = packetBytes(b, i);
  const old = get16(bytes, at);
  const udp4 = b.family[i] === 4 && b.proto[i] === PROTO_UDP;
  if (udp4 && old === 0) return;
  let hc = wide ? csumUpdate32(old, m, m2) : csumUpdate16(old, m, m2);
  if (udp4 && hc === 0) hc = 0xffff;
  put16(bytes, at, hc);
}

/**
 * Set packet i's IPv4 source or destination address (`end`) to `addr` (host-order u32). Updates
 * the header checksum, the L4 pseudo-header checksum, b.src/b.dst and the flow hash.
 */
export function setIpv4Address(b: Batch, i: number, end: number, addr: number): void {
  const bytes = packetBytes(b, i);
  const l3 = b.l3[i]!;
  const at = l3 + (end === End.SRC ? IPV4.SRC : IPV4.DST);
  const old = get32(bytes, at);
  addr |= 0;
  if (old === addr) return;
  put32(bytes, at, addr);
  put16(bytes, l3 + IPV4.CHECKSUM, csumUpdate32(get16(bytes, l3 + IPV4.CHECKSUM), old, addr));
  const l4 = pseudoChecksumAt(b, i);
  if (l4 >= 0) updateL4(b, i, l4, old, addr, true);
  (end === End.SRC ? b.src : b.dst)[i << 2] = addr;
  rehash(b, i);
}

/**
 * Set packet i's IPv6 source or destination address to the four words `A[ao..ao+3]` (host-order
 * u32 each). Updates the L4 pseudo-header checksum, b.src/b.dst and the flow hash (IPv6 has no
 * header checksum).
 */
export function setIpv6Address(b: Batch, i: number, end: number, A: Uint32Array, ao: number): void {
  const bytes = packetBytes(b, i);
  const at = b.l3[i]! + (end === End.SRC ? IPV6.SRC : IPV6.DST);
  const l4 = pseudoChecksumAt(b, i);
  const field = end === End.SRC ? b.src : b.dst;
  for (let k = 0; k < 4; k++) {
    const old = get32(bytes, at + 4 * k);
    const v = A[ao + k]! | 0;
    if (old === v) continue;
    put32(bytes, at + 4 * k, v);
    if (l4 >= 0) updateL4(b, i, l4, old, v, true);
    field[(i << 2) + k] = v;
  }
  rehash(b, i);
}

/** Set packet i's TCP or UDP source or destination port; updates the L4 checksum and the flow hash. */
export function setPort(b: Batch, i: number, end: number, port: number): void {
  const p = b.proto[i];
  if ((p !== PROTO_TCP && p !== PROTO_UDP && p !== PROTO_UDPLITE) || b.frag[i] === Frag.LATER) {
    throw new RangeError(`packet ${b.num[i]} has no TCP or UDP header to set a port in`);
  }
  const bytes = packetBytes(b, i);
  const at = b.l4[i]! + (end === End.SRC ? TCP.SPORT : TCP.DPORT);
  const old = get16(bytes, at);
  if (old === port) return;
  put16(bytes, at, port);
  const sum = b.l4[i]! + (p === PROTO_TCP ? TCP.CHECKSUM : UDP.CHECKSUM);
  if (sum + 2 <= packetStart(b, i) + packetLength(b, i)) updateL4(b, i, sum, old, port, false);
  (end === End.SRC ? b.sport : b.dport)[i] = port;
  rehash(b, i);
}

/**
 * Set one end (address and port) of packet i at once, as NAT does: `A[ao..ao+3]` (IPv4 in word 0)
 * and `port`; the port only when the packet has a TCP/UDP header (not a later fragment). The same
 * bytes and checksums as setIpv4Address/setIpv6Address then setPort, with one L4 checksum update
 * and one rehash (measured: the two calls cost dnat ~2x).
 */
export function setEndpoint(b: Batch, i: number, end: number, A: Uint32Array, ao: number, port: number): void {
  const bytes = packetBytes(b, i);
  const l3 = b.l3[i]!;
  const p = b.proto[i]!;
  const later = b.frag[i] === Frag.LATER;
  const l4 = b.l4[i]!;
  const stop = packetStart(b, i) + packetLength(b, i);
  let sumAt = -1;
  let portAt = -1;
  if (!later) {
    if (p === PROTO_TCP) { sumAt = l4 + TCP.CHECKSUM; portAt = l4 + (end === End.SRC ? TCP.SPORT : TCP.DPORT); }
    else if (p === PROTO_UDP || p === PROTO_UDPLITE) { sumAt = l4 + UDP.CHECKSUM; portAt = l4 + (end === End.SRC ? UDP.SPORT : UDP.DPORT); }
    else if (p === PROTO_ICMPV6 && b.family[i] === 6) sumAt = l4 + ICMPV6.CHECKSUM;
    if (sumAt + 2 > stop) sumAt = -1;
    if (portAt + 2 > stop) portAt = -1;
  }
  // The L4 checksum as a running value, written once; IPv4 UDP without a checksum keeps none.
  const udp4 = b.family[i] === 4 && p === PROTO_UDP;
  let hc = sumAt >= 0 ? get16(bytes, sumAt) : 0;
  const useSum = sumAt >= 0 && !(udp4 && hc === 0);
  const field = end === End.SRC ? b.src : b.dst;
  const w = i << 2;
  if (b.family[i] === 4) {
    const at = l3 + (end === End.SRC ? IPV4.SRC : IPV4.DST);
    const old = get32(bytes, at);
    const addr = A[ao]! | 0;
    if (old !== addr) {
      put32(bytes, at, addr);
      put16(bytes, l3 + IPV4.CHECKSUM, csumUpdate32(get16(bytes, l3 + IPV4.CHECKSUM), old, addr));
      if (useSum) hc = csumUpdate32(hc, old, addr);
      field[w] = addr;
    }
  } else {
    const at = l3 + (end === End.SRC ? IPV6.SRC : IPV6.DST);
    for (let k = 0; k < 4; k++) {
      const old = get32(bytes, at + 4 * k);
      const v = A[ao + k]! | 0;
      if (old === v) continue;
      put32(bytes, at + 4 * k, v);
      if (useSum) hc = csumUpdate32(hc, old, v);
      field[w + k] = v;
    }
  }
  if (portAt >= 0) {
    const old = get16(bytes, portAt);
    if (old !== port) {
      put16(bytes, portAt, port);
      if (useSum) hc = csumUpdate16(hc, old, port);
      (end === End.SRC ? b.sport : b.dport)[i] = port;
    }
  }
  if (useSum) put16(bytes, sumAt, udp4 && hc === 0 ? 0xffff : hc);
  rehash(b, i);
}

/**
 * Set packet i's IPv4 TTL or IPv6 hop limit. The TTL shares a checksummed word with the protocol
 * number, so the IPv4 checksum update uses that word.
 */
export function setTtl(b: Batch, i: number, ttl: number): void {
  const bytes = packetBytes(b, i);
  const l3 = b.l3[i]!;
  if (b.family[i] === 6) {
    bytes[l3 + IPV6.HOP_LIMIT] = ttl;
  } else {
    const old = get16(bytes, l3 + IPV4.TTL);
    const word = (ttl << 8) | bytes[l3 + IPV4.PROTOCOL]!;
    bytes[l3 + IPV4.TTL] = ttl;
    put16(bytes, l3 + IPV4.CHECKSUM, csumUpdate16(get16(bytes, l3 + IPV4.CHECKSUM), old, word));
  }
  b.ttl[i] = ttl;
}

/** The tuple changed: the symmetric hash follows it (stages after a rewrite, and sharding, use it). */
function rehash(b: Batch, i: number): void {
  b.hash[i] = flowHash(b, i, b.sport[i]!, b.dport[i]!);
}

/**
 * The ones'-complement sum of bytes [from, to) of `x` added to `s` (a pseudo-header's sum, say),
 * folded to 16 bits (an odd tail padded with 0). ~result & 0xffff is the checksum of a fresh header.
 */
export function onesSum(x: Uint8Array, from: number, to: number, s = 0): number {
  let k = from;
  for (; k + 1 < to; k += 2) s += (x[k]! << 8) | x[k + 1]!;
  if (k < to) s += x[k]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/**
 * In ICMP error i, set the address and port of one end (`end`) of the packet it quotes to
 * `A[ao..ao+3]` (IPv4 in word 0) and `port`, as the kernel's NAT does to an error about a translated
 * flow (nf_nat_icmp_reply_translation): the quoted IPv4 header's checksum follows, the quoted TCP or
 * UDP checksum too when the quote holds it (a quoted UDP checksum of 0 stays 0), and the ICMP
 * checksum over the changed bytes. The outer header is the caller's (setIpv4Address / setIpv6Address).
 * The quoted L4 header of an IPv6 packet is found only right after its fixed header (no extension
 * headers); otherwise only the address changes. Updates b.inSrc/inDst/inSport/inDport and the hash.
 */
export function setQuotedEndpoint(b: Batch, i: number, end: number, A: Uint32Array, ao: number, port: number): void {
  const bytes = packetBytes(b, i);
  const icmp = b.l4[i]!;
  const q = icmp + 8;
  const stop = Math.min(packetStart(b, i) + packetLength(b, i), b.l3End[i]!);
  if (q + 1 > stop || icmp + 4 > stop) return;
  const before = onesSum(bytes, q, stop);
  const w = i << 2;
  const v = bytes[q]! >> 4;
  let l4 = -1;
  let proto = 0;
  if (v === 4 && q + 20 <= stop) {
    const ihl = (bytes[q]! & 0x0f) << 2;
    const at = q + (end === End.SRC ? IPV4.SRC : IPV4.DST);
    const old = get32(bytes, at);
    const addr = A[ao]! | 0;
    put32(bytes, at, addr);
    put16(bytes, q + IPV4.CHECKSUM, csumUpdate32(get16(bytes, q + IPV4.CHECKSUM), old, addr));
    proto = bytes[q + IPV4.PROTOCOL]!;
    const fragOff = get16(bytes, q + 6) & 0x1fff;
    if (fragOff === 0 && ihl >= 20) l4 = q + ihl;
    if (l4 >= 0) quotedL4Address(bytes, l4, stop, proto, old, addr);
    (end === End.SRC ? b.inSrc : b.inDst)[w] = addr;
  } else if (v === 6 && q + 40 <= stop) {
    const at = q + (end === End.SRC ? IPV6.SRC : IPV6.DST);
    proto = bytes[q + 6]!;
    l4 = q + 40;
    for (let k = 0; k < 4; k++) {
      const old = get32(bytes, at + 4 * k);
      const nv = A[ao + k]! | 0;
      put32(bytes, at + 4 * k, nv);
      quotedL4Address(bytes, l4, stop, proto, old, nv);
      (end === End.SRC ? b.inSrc : b.inDst)[w + k] = nv;
    }
  } else return;
  if (l4 >= 0 && (proto === PROTO_TCP || proto === PROTO_UDP || proto === PROTO_UDPLITE) && l4 + 4 <= stop) {
    const at = l4 + (end === End.SRC ? TCP.SPORT : TCP.DPORT);
    const old = get16(bytes, at);
    put16(bytes, at, port);
    const sum = quotedL4Checksum(bytes, l4, stop, proto);
    if (sum >= 0) {
      let hc = csumUpdate16(get16(bytes, sum), old, port);
      if (proto === PROTO_UDP && hc === 0) hc = 0xffff;
      put16(bytes, sum, hc);
    }
    (end === End.SRC ? b.inSport : b.inDport)[i] = port;
  }
  // The ICMP checksum covers the quote (ICMPv6's its pseudo-header too, which the outer setters keep).
  const after = onesSum(bytes, q, stop);
  put16(bytes, icmp + 2, csumUpdate16(get16(bytes, icmp + 2), before, after));
  b.hash[i] = flowHash(b, i, b.sport[i]!, b.dport[i]!);
}

/**
 * Where a quoted TCP/UDP header's checksum is, when the quote holds it and it is in use: TCP's only
 * when the whole 20-byte header is quoted (as the kernel, which leaves it alone otherwise), UDP's
 * within the first 8 bytes unless it is 0 (none). -1 otherwise.
 */
function quotedL4Checksum(bytes: Uint8Array, l4: number, stop: number, proto: number): number {
  if (proto === PROTO_TCP) return l4 + 20 <= stop ? l4 + TCP.CHECKSUM : -1;
  if (proto === PROTO_UDP || proto === PROTO_UDPLITE) {
    if (l4 + 8 > stop) return -1;
    return get16(bytes, l4 + UDP.CHECKSUM) === 0 && proto === PROTO_UDP ? -1 : l4 + UDP.CHECKSUM;
  }
  return -1;
}

/** A quoted packet's address word changed from m to m2: its L4 pseudo-header checksum follows. */
function quotedL4Address(bytes: Uint8Array, l4: number, stop: number, proto: number, m: number, m2: number): void {
  if (m === m2) return;
  const sum = quotedL4Checksum(bytes, l4, stop, proto);
  if (sum < 0) return;
  let hc = csumUpdate32(get16(bytes, sum), m, m2);
  if (proto === PROTO_UDP && hc === 0) hc = 0xffff;
  put16(bytes, sum, hc);
}
