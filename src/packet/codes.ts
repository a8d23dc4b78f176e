/**
 * The numbers the decoder writes and the stages read: IP protocol numbers, and why a packet could
 * not be decoded. They live here, not in decode.ts, so that the decoder's per-packet code reads
 * them as module consts (V8 reads a module's exported bindings through a cell at every use, even
 * in that module: src/conntrack/layout.ts); decode.ts re-exports them.
 */

/** Why a packet could not be decoded. 0 = decoded. */
export const Malformed = {
  OK: 0,
  /** Frame shorter than its link-layer header. */
  LINK_TRUNCATED: 1,
  /** Link type dplab does not decode. */
  UNSUPPORTED_LINK: 2,
  /** IP version nibble is not 4/6 (or not what the link layer announced). */
  IP_VERSION: 3,
  /** IPv4 header length below 20 bytes. */
  IPV4_IHL: 4,
  /** IPv4 total length smaller than its header. */
  IPV4_TOTAL_LENGTH: 5,
  /** IP header not wholly in the frame. */
  IP_TRUNCATED: 6,
  /** IP length claims more bytes than the frame carries. */
  IP_LENGTH: 7,
  /** IPv6 extension-header chain runs past the datagram. */
  IPV6_EXT: 8,
  /** L4 header not wholly in the datagram. */
  L4_TRUNCATED: 9,
  /** TCP data offset below 5 words or beyond the datagram. */
  TCP_DATA_OFFSET: 10,
  /** UDP length field below 8 or beyond the datagram. */
  UDP_LENGTH: 11,
  /** Headers cut off by the capture's snap length (the packet was whole on the wire). */
  SNAPLEN: 12,
  /** Record with no bytes. */
  EMPTY: 13,
} as const;

export const MALFORMED_NAMES: readonly string[] = [
  'ok', 'link-header-truncated', 'unsupported-link-type', 'bad-ip-version', 'bad-ipv4-header-length',
  'bad-ipv4-total-length', 'ip-header-truncated', 'ip-length-exceeds-frame', 'bad-ipv6-extension-header',
  'l4-header-truncated', 'bad-tcp-data-offset', 'bad-udp-length', 'headers-cut-by-snaplen', 'empty-record',
];

/** IP protocol numbers (hasPorts reads the private copy, as decode.ts reads this module's consts). */
const PROTO = { ICMP: 1, TCP: 6, UDP: 17, GRE: 47, ESP: 50, AH: 51, ICMPV6: 58, SCTP: 132, UDPLITE: 136 } as const;
export const Proto = PROTO;

/** Protocols whose header starts with a source and a destination port (the decoder reads them). */
export function hasPorts(proto: number): boolean {
  return proto === PROTO.TCP || proto === PROTO.UDP || proto === PROTO.SCTP || proto === PROTO.UDPLITE;
}

/** ICMP errors (they quote the packet they are about): RFC 792 / RFC 4443 types. */
export function isIcmpError(v6: boolean, type: number): boolean {
  return v6 ? type >= 1 && type <= 4 : type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}
