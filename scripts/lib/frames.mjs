/**
 * Hand-built frames and capture files for the fixture scripts: Ethernet, 802.1Q, MPLS, IPv4/IPv6,
 * TCP/UDP with correct checksums (a kernel drops an IPv4 header with a bad one), written as
 * classic pcap or pcapng. Only what the fixture scripts need.
 */

export function mac(text) {
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}

function ipv4Bytes(text) {
  return Buffer.from(text.split('.').map(Number));
}

function ipv6Bytes(text) {
  const [head, tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, k) => b.writeUInt16BE(parseInt(g, 16), 2 * k));
  return b;
}

/** The ones'-complement sum of `parts` (RFC 1071), folded and inverted. */
function checksum(...parts) {
  let s = 0;
  for (const p of parts) {
    for (let k = 0; k + 1 < p.length; k += 2) s += p.readUInt16BE(k);
    if (p.length & 1) s += p[p.length - 1] << 8;
  }
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

export const TCP_FLAGS = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 };

/** An IP packet carrying TCP (l4 = { tcp: { sport, dport, seq, ack, flags } }) or UDP ({ udp: { sport, dport } }). */
export function ipPacket({ src, dst, ttl = 64, id = 0, payload = Buffer.alloc(0), tcp, udp }) {
  const v6 = src.includes(':');
  const s = v6 ? ipv6Bytes(src) : ipv4Bytes(src);
  const d = v6 ? ipv6Bytes(dst) : ipv4Bytes(dst);
  let l4;
  let proto;
  if (tcp) {
    proto = 6;
    l4 = Buffer.alloc(20);
    l4.writeUInt16BE(tcp.sport, 0);
    l4.writeUInt16BE(tcp.dport, 2);
    l4.writeUInt32BE(tcp.seq >>> 0, 4);
    l4.writeUInt32BE(tcp.ack >>> 0, 8);
    l4[12] = 5 << 4;
    l4[13] = tcp.flags;
    l4.writeUInt16BE(64240, 14);
    l4 = Buffer.concat([l4, payload]);
  } else {
    proto = 17;
    l4 = Buffer.alloc(8);
    l4.writeUInt16BE(udp.sport, 0);
    l4.writeUInt16BE(udp.dport, 2);
    l4.writeUInt16BE(8 + payload.length, 4);
    l4 = Buffer.concat([l4, payload]);
  }
  const pseudo = Buffer.alloc(v6 ? 40 : 12);
  if (v6) {
    s.copy(pseudo, 0); d.copy(pseudo, 16); pseudo.writeUInt32BE(l4.length, 32); pseudo[39] = proto;
  } else {
    s.copy(pseudo, 0); d.copy(pseudo, 4); pseudo[9] = proto; pseudo.writeUInt16BE(l4.length, 10);
  }
  const sum = checksum(pseudo, l4);
  l4.writeUInt16BE(proto === 17 && sum === 0 ? 0xffff : sum, proto === 6 ? 16 : 6);
  if (v6) {
    const h = Buffer.alloc(40);
    h.writeUInt32BE(0x60000000, 0);
    h.writeUInt16BE(l4.length, 4);
    h[6] = proto;
    h[7] = ttl;
    s.copy(h, 8); d.copy(h, 24);
    return Buffer.concat([h, l4]);
  }
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4.length, 2);
  h.writeUInt16BE(id, 4);
  h[6] = 0x40; // DF
  h[8] = ttl;
  h[9] = proto;
  s.copy(h, 12); d.copy(h, 16);
  h.writeUInt16BE(checksum(h), 10);
  return Buffer.concat([h, l4]);
}

/** An Ethernet frame: `tags` are 802.1Q VLAN ids, outermost first. */
export function ethernet(dst, src, type, payload, tags = []) {
  const parts = [mac(dst), mac(src)];
  for (const vid of tags) {
    const t = Buffer.alloc(4);
    t.writeUInt16BE(0x8100, 0);
    t.writeUInt16BE(vid, 2);
    parts.push(t);
  }
  const et = Buffer.alloc(2);
  et.writeUInt16BE(type, 0);
  return Buffer.concat([...parts, et, payload]);
}

/** An MPLS label stack (labels outermost first; the last has bottom-of-stack set) before `payload`. */
export function mpls(labels, payload, ttl = 64) {
  const stack = Buffer.alloc(4 * labels.length);
  labels.forEach((label, k) => stack.writeUInt32BE(((label << 12) | (k === labels.length - 1 ? 0x100 : 0) | ttl) >>> 0, 4 * k));
  return Buffer.concat([stack, payload]);
}

/** A classic pcap (microseconds, little-endian) of records { sec, usec, frame }. */
export function pcapFile(linkType, records) {
  const h = Buffer.alloc(24);
  h.writeUInt32LE(0xa1b2c3d4, 0);
  h.writeUInt16LE(2, 4);
  h.writeUInt16LE(4, 6);
  h.writeUInt32LE(65535, 16);
  h.writeUInt32LE(linkType, 20);
  const parts = [h];
  for (const r of records) {
    const rh = Buffer.alloc(16);
    rh.writeUInt32LE(r.sec, 0);
    rh.writeUInt32LE(r.usec, 4);
    rh.writeUInt32LE(r.frame.length, 8);
    rh.writeUInt32LE(r.frame.length, 12);
    parts.push(rh, r.frame);
  }
  return Buffer.concat(parts);
}

/** A pcapng block of `type` with `body` (padded to 4 bytes), little-endian. */
export function pcapngBlock(type, body) {
  const padded = Buffer.concat([body, Buffer.alloc((4 - (body.length & 3)) & 3)]);
  const len = 12 + padded.length;
  const head = Buffer.alloc(8);
  head.writeUInt32LE(type, 0);
  head.writeUInt32LE(len, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(len, 0);
  return Buffer.concat([head, padded, tail]);
}
