/**
 * The TCP state machine of Linux nf_conntrack (net/netfilter/nf_conntrack_proto_tcp.c): the same
 * states, the same transition table indexed by direction, flag class and state, the same default
 * timeouts. Window tracking is not modelled (as with nf_conntrack_tcp_be_liberal=1): a replay
 * cannot always see every segment, and the question dplab answers is what the per-flow decision
 * costs, not whether a segment is in window.
 */
export const TcpState = {
  NONE: 0,
  SYN_SENT: 1,
  SYN_RECV: 2,
  ESTABLISHED: 3,
  FIN_WAIT: 4,
  CLOSE_WAIT: 5,
  LAST_ACK: 6,
  TIME_WAIT: 7,
  CLOSE: 8,
  SYN_SENT2: 9,
} as const;

export const TCP_STATE_NAMES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'] as const;

/** Transition results beyond the states: the packet is invalid, or ignored (valid, no change). */
export const S_INVALID = 10;
export const S_IGNORE = 11;

/**
 * The flag classes of get_conntrack_index(): RST wins over SYN, SYN over FIN, FIN over ACK.
 * tcpClass() reads the private copy: V8 reads an exported binding through its module cell at every
 * use, even in its own module (layout.ts).
 */
const Class = { SYN: 0, SYNACK: 1, FIN: 2, ACK: 3, RST: 4, NONE: 5 } as const;
export const TcpClass = Class;

const FIN = 0x01; const SYN = 0x02; const RST = 0x04; const PSH = 0x08; const ACK = 0x10; const URG = 0x20;
const ECE = 0x40; const CWR = 0x80;

export function tcpClass(flags: number): number {
  if (flags & RST) return Class.RST;
  if (flags & SYN) return flags & ACK ? Class.SYNACK : Class.SYN;
  if (flags & FIN) return Class.FIN;
  if (flags & ACK) return Class.ACK;
  return Class.NONE;
}

/** tcp_valid_flags[]: the flag combinations conntrack accepts at all (ECE, CWR, PSH ignored). */
const VALID = new Uint8Array(64);
for (const f of [SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG]) VALID[f] = 1;

export function tcpFlagsValid(flags: number): boolean {
  return VALID[flags & ~(ECE | CWR | PSH) & 0x3f] === 1;
}

/**
 * tcpFlagsValid(flags) && tcpClass(flags) === ACK in one test: ACK set, SYN, FIN and RST clear (URG,
 * PSH, ECE and CWR may be set). The segments of an established flow; the tracker's fast path.
 */
export function tcpPlainAck(flags: number): boolean {
  return (flags & (SYN | FIN | RST | ACK)) === ACK;
}

const sSS = 1, sSR = 2, sES = 3, sFW = 4, sCW = 5, sLA = 6, sTW = 7, sCL = 8, sS2 = 9, sIV = S_INVALID, sIG = S_IGNORE;

/**
 * tcp_conntracks[dir][class][state], flattened: index (dir * 6 + class) * 10 + state.
 * Rows follow the kernel's table; columns are the states NONE SYN_SENT SYN_RECV ESTABLISHED FIN_WAIT
 * CLOSE_WAIT LAST_ACK TIME_WAIT CLOSE SYN_SENT2.
 */
const TRANSITIONS = new Uint8Array([
  // ORIGINAL
  /* syn    */ sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2,
  /* synack */ sIV, sIV, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR,
  /* fin    */ sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV,
  /* ack    */ sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV,
  /* rst    */ sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
  /* none   */ sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV,
  // REPLY
  /* syn    */ sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2,
  /* synack */ sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR,
  /* fin    */ sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV,
  /* ack    */ sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG,
  /* rst    */ sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL,
  /* none   */ sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV,
]);

export function tcpNext(dir: number, cls: number, state: number): number {
  return TRANSITIONS[(dir * 6 + cls) * 10 + state]!;
}
