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

/**
 * Drop reasons conntrack reports, indexed by the code track() returns. They live here, not in
 * tracker.ts, so that the tracker's per-packet code reads them as module consts (see layout.ts).
 */
export const CT_REASONS = [
  'table-full', 'invalid-tcp-flags', 'invalid-tcp-state', 'invalid-tcp-start',
  'icmp-error-without-flow', 'icmp-reply-without-request', 'invalid-icmp-type',
] as const;
/** track()'s code for a flow that found no room: dropped whatever `invalid:` says. */
export const R_TABLE_FULL = 0;
/** track() returns this for a packet that is fine (tracked or untracked). */
export const CT_OK = -1;
