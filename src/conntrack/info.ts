/**
 * What conntrack tells the stages after it about a packet (batch.ctInfo), as iptables' --ctstate.
 */
export const CtInfo = {
  /** Not looked at by conntrack (no conntrack stage, or not IP, or ICMPv6 neighbour discovery). */
  UNTRACKED: 0,
  /** Original direction of a flow that has seen no reply yet (first packet, SYN retransmits, one-way UDP). */
  NEW: 1,
  /** A flow that has seen traffic both ways, or a reply. */
  ESTABLISHED: 2,
  /** An ICMP error about a tracked flow. */
  RELATED: 3,
  /** Not a valid packet for its flow's state (or no flow could be created for it). */
  INVALID: 4,
} as const;

export const CT_INFO_NAMES = ['untracked', 'new', 'established', 'related', 'invalid'] as const;
