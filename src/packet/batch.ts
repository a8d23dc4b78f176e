/**
 * The batch: up to `capacity` packets kept struct-of-arrays, as in VPP's vector of buffers.
 *
 * Packet bytes live in a chunk (one large buffer the capture reader filled from the file); the
 * batch holds the chunk and, per packet, typed-array fields: where the packet starts, what the
 * decoder found, and what the stages decided. Every field array is a view over one `meta` buffer
 * (zeroed in one sweep per batch), and no per-packet object ever exists. Batches stay on the thread
 * that read them: each worker reads the capture itself (see pipeline/parallel.ts).
 *
 * Addresses take four u32 words per packet (index 4*i .. 4*i+3) in network order; an IPv4 address
 * uses word 0 and leaves 1..3 zero, and `family` tells the two apart.
 */

export const DEFAULT_BATCH_SIZE = 256;
/** The largest batch: per-flow tables keep spare entries for what one batch can remove. */
export const MAX_BATCH_SIZE = 65536;

/**
 * Verdicts. Packets whose verdict is PASS are "alive" for the next stage; a stage gives DROP.
 * FOREIGN marks, in a worker, a packet another worker's shard owns: every per-flow stage skips it
 * and the accounting leaves it to its owner. REDIRECTED marks a packet a stage sent straight to its
 * destination past the stages after it (route's bypass, as bpf_redirect_peer): they skip it, the
 * runner still counts it alive, and the stage that set it gives it its verdict back in endBatch.
 */
export const Verdict = { PASS: 0, DROP: 1, FOREIGN: 2, REDIRECTED: 3 } as const;

/** What sits at L3. Values are the ethertypes, so output can name anything else by number. */
export const L3 = { NONE: 0, IPV4: 0x0800, IPV6: 0x86dd, ARP: 0x0806 } as const;

/** Where a packet stands in IP fragmentation. Only a first fragment carries L4 ports. */
export const Frag = { NONE: 0, FIRST: 1, LATER: 2 } as const;

export interface BatchFields {
  // --- from the capture (set by the reader) ---
  /** Offset of the packet's first byte in `bytes`. */
  off: Uint32Array;
  /** Bytes captured (what is in `bytes`). */
  capLen: Uint32Array;
  /** Length on the wire (may exceed capLen when the capture used a snap length). */
  wireLen: Uint32Array;
  /** Timestamp: whole seconds since the epoch (a double holds 2^53 exactly). */
  tsSec: Float64Array;
  /** Timestamp: nanoseconds within the second. */
  tsNsec: Uint32Array;
  /**
   * 1 when the record has no timestamp (a pcapng Simple Packet Block). tsSec/tsNsec then hold the
   * last time the file gave before it (0 when none yet): conntrack timeouts and rate limits run on
   * that, so time never goes backwards for them; output shows no time, as tshark does.
   */
  noTime: Uint8Array;
  /** Link type of the interface the packet came from (LINKTYPE_*). */
  linkType: Uint16Array;
  /** Capture interface index (pcapng); 0 for pcap. */
  iface: Uint16Array;
  /** Packet number in the capture, 1-based (as tshark's frame.number). */
  num: Float64Array;

  // --- from the decoder ---
  /** Decode result: 0 when the packet is well formed, else a `Malformed` reason code. */
  malformed: Uint8Array;
  /** Ethertype of the L3 protocol (L3.IPV4, L3.IPV6, ARP, ...), 0 when there is none. */
  l3Type: Uint16Array;
  /** Outer 802.1Q/802.1ad VLAN id, 0 when untagged. */
  vlan: Uint16Array;
  /** Absolute offsets in `bytes`: L3 header, L4 header, L4 payload, end of the IP datagram. */
  l3: Uint32Array;
  l4: Uint32Array;
  pay: Uint32Array;
  l3End: Uint32Array;
  /** 4 or 6 for IP packets, 0 otherwise. */
  family: Uint8Array;
  /** IP protocol number of the L4 header (after IPv6 extension headers). */
  proto: Uint8Array;
  /** Frag.NONE / FIRST / LATER. */
  frag: Uint8Array;
  /** IPv4 identification or IPv6 fragment identification. */
  ipId: Uint32Array;
  ttl: Uint8Array;
  src: Uint32Array;
  dst: Uint32Array;
  sport: Uint16Array;
  dport: Uint16Array;
  /** TCP: flags (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80). */
  tcpFlags: Uint8Array;
  seq: Uint32Array;
  ack: Uint32Array;
  win: Uint16Array;
  /** ICMP / ICMPv6 type, code and (for queries) identifier. */
  icmpType: Uint8Array;
  icmpCode: Uint8Array;
  icmpId: Uint16Array;
  /** ICMP errors: the quoted packet's protocol, addresses and ports (for conntrack RELATED). */
  inProto: Uint8Array;
  inSrc: Uint32Array;
  inDst: Uint32Array;
  inSport: Uint16Array;
  inDport: Uint16Array;
  /** Direction-independent flow hash (the same for both directions of a 5-tuple). */
  hash: Uint32Array;

  // --- from the stages ---
  verdict: Uint8Array;
  /** Index in the pipeline of the stage that dropped the packet. */
  stage: Uint8Array;
  /** Stage-specific reason code for the drop. */
  reason: Uint16Array;
  /** Conntrack's view of the packet (CtInfo), for the stages after it. */
  ctInfo: Uint8Array;
  /** Conntrack entry of the packet's flow (meaningful where ctInfo says the packet is tracked). */
  flow: Int32Array;
  /** Direction of the packet within its flow: 0 original, 1 reply. */
  dir: Uint8Array;
  /**
   * 1 when a stage made the packet longer (wire.ts insertBytes): its bytes are then in the batch's
   * output area `out`, at outOff, outLen long, and l3/l4/pay/l3End point into `out`.
   */
  grown: Uint8Array;
  outOff: Uint32Array;
  outLen: Uint32Array;
}

type FieldSpec = readonly [keyof BatchFields, 1 | 2 | 4 | 8, number, 'u8' | 'u16' | 'u32' | 'i32' | 'f64'];

/**
 * name, element size, elements per packet, kind. Two groups: what the reader sets, then what the
 * decoder and stages set (zeroed in one sweep per batch). Each group is ordered by element size so
 * every view stays aligned.
 */
const CAPTURE_FIELDS: readonly FieldSpec[] = [
  ['tsSec', 8, 1, 'f64'],
  ['num', 8, 1, 'f64'],
  ['off', 4, 1, 'u32'],
  ['capLen', 4, 1, 'u32'],
  ['wireLen', 4, 1, 'u32'],
  ['tsNsec', 4, 1, 'u32'],
  ['linkType', 2, 1, 'u16'],
  ['iface', 2, 1, 'u16'],
  ['noTime', 1, 1, 'u8'],
];
const DECODE_FIELDS: readonly FieldSpec[] = [
  ['l3', 4, 1, 'u32'],
  ['l4', 4, 1, 'u32'],
  ['pay', 4, 1, 'u32'],
  ['l3End', 4, 1, 'u32'],
  ['ipId', 4, 1, 'u32'],
  ['src', 4, 4, 'u32'],
  ['dst', 4, 4, 'u32'],
  ['seq', 4, 1, 'u32'],
  ['ack', 4, 1, 'u32'],
  ['inSrc', 4, 4, 'u32'],
  ['inDst', 4, 4, 'u32'],
  ['hash', 4, 1, 'u32'],
  ['flow', 4, 1, 'i32'],
  ['outOff', 4, 1, 'u32'],
  ['outLen', 4, 1, 'u32'],
  ['l3Type', 2, 1, 'u16'],
  ['vlan', 2, 1, 'u16'],
  ['sport', 2, 1, 'u16'],
  ['dport', 2, 1, 'u16'],
  ['win', 2, 1, 'u16'],
  ['icmpId', 2, 1, 'u16'],
  ['inSport', 2, 1, 'u16'],
  ['inDport', 2, 1, 'u16'],
  ['reason', 2, 1, 'u16'],
  ['malformed', 1, 1, 'u8'],
  ['family', 1, 1, 'u8'],
  ['proto', 1, 1, 'u8'],
  ['frag', 1, 1, 'u8'],
  ['ttl', 1, 1, 'u8'],
  ['tcpFlags', 1, 1, 'u8'],
  ['icmpType', 1, 1, 'u8'],
  ['icmpCode', 1, 1, 'u8'],
  ['inProto', 1, 1, 'u8'],
  ['verdict', 1, 1, 'u8'],
  ['stage', 1, 1, 'u8'],
  ['ctInfo', 1, 1, 'u8'],
  ['dir', 1, 1, 'u8'],
  ['grown', 1, 1, 'u8'],
];
function groupBytes(group: readonly FieldSpec[], capacity: number): number {
  let n = 0;
  for (const [, size, per] of group) n += size * per * capacity;
  // Keep the next group 8-byte aligned whatever the capacity.
  return (n + 7) & ~7;
}

type Layout = Record<keyof BatchFields, number> & { decodeStart: number; decodeBytes: number };

/** Byte offset in `meta` of every field for a batch of `capacity` packets. */
function layout(capacity: number): Layout {
  const out: Record<string, number> = {};
  let at = 0;
  for (const [name, size, per] of CAPTURE_FIELDS) { out[name] = at; at += size * per * capacity; }
  const decodeStart = groupBytes(CAPTURE_FIELDS, capacity);
  at = decodeStart;
  for (const [name, size, per] of DECODE_FIELDS) { out[name] = at; at += size * per * capacity; }
  out.decodeStart = decodeStart;
  out.decodeBytes = groupBytes(DECODE_FIELDS, capacity);
  return out as Layout;
}

/** Bytes of `meta` one batch of `capacity` packets needs. */
export function metaBytes(capacity: number): number {
  return groupBytes(CAPTURE_FIELDS, capacity) + groupBytes(DECODE_FIELDS, capacity);
}

const EMPTY = new Uint8Array(0);

export class Batch implements BatchFields {
  readonly capacity: number;
  /** Packets in the batch. */
  count = 0;
  /** The chunk holding the packets' bytes. */
  bytes: Uint8Array = EMPTY;
  /** Identifies the chunk to its owner (the reader), so it can be recycled when the batch is done. */
  chunkId = -1;
  /**
   * Buffer behind every field array. A plain ArrayBuffer: it moves to a worker by transfer (no
   * copy), and V8 runs the decoder ~1.6x slower over SharedArrayBuffer-backed arrays (measured).
   */
  readonly meta: SharedArrayBuffer | ArrayBuffer;
  /** Every decoder and stage field, as bytes: zeroed before a batch is decoded. */
  readonly decoded: Uint8Array;

  readonly off: Uint32Array;
  readonly capLen: Uint32Array;
  readonly wireLen: Uint32Array;
  readonly tsSec: Float64Array;
  readonly tsNsec: Uint32Array;
  readonly linkType: Uint16Array;
  readonly iface: Uint16Array;
  readonly noTime: Uint8Array;
  readonly num: Float64Array;
  readonly malformed: Uint8Array;
  readonly l3Type: Uint16Array;
  readonly vlan: Uint16Array;
  readonly l3: Uint32Array;
  readonly l4: Uint32Array;
  readonly pay: Uint32Array;
  readonly l3End: Uint32Array;
  readonly family: Uint8Array;
  readonly proto: Uint8Array;
  readonly frag: Uint8Array;
  readonly ipId: Uint32Array;
  readonly ttl: Uint8Array;
  readonly src: Uint32Array;
  readonly dst: Uint32Array;
  readonly sport: Uint16Array;
  readonly dport: Uint16Array;
  readonly tcpFlags: Uint8Array;
  readonly seq: Uint32Array;
  readonly ack: Uint32Array;
  readonly win: Uint16Array;
  readonly icmpType: Uint8Array;
  readonly icmpCode: Uint8Array;
  readonly icmpId: Uint16Array;
  readonly inProto: Uint8Array;
  readonly inSrc: Uint32Array;
  readonly inDst: Uint32Array;
  readonly inSport: Uint16Array;
  readonly inDport: Uint16Array;
  readonly hash: Uint32Array;
  readonly verdict: Uint8Array;
  readonly stage: Uint8Array;
  readonly reason: Uint16Array;
  readonly ctInfo: Uint8Array;
  readonly flow: Int32Array;
  readonly dir: Uint8Array;
  readonly grown: Uint8Array;
  readonly outOff: Uint32Array;
  readonly outLen: Uint32Array;
  /** Output area for packets a stage made longer (see `grown`); reused batch after batch. */
  out: Uint8Array = EMPTY;
  /** Bytes of `out` in use by this batch's grown packets. */
  outUsed = 0;

  // --- what decodeBatch counted as it went (TrafficSummary.countHeld reads it, once a batch) ---
  /** Bytes on the wire and captured, of every packet. */
  wireBytes = 0;
  capBytes = 0;
  /** Packets with fewer bytes captured than were on the wire. */
  cut = 0;
  /**
   * Of the packets the decoder's fast path took (Ethernet, IPv4 without options or IPv6 without
   * extension headers, not a fragment, whole TCP or UDP: count - slowCount of them), the IPv4
   * ones; the UDP ones of each family (the rest are TCP); those with a VLAN id other than 0.
   */
  fast4 = 0;
  fast4Udp = 0;
  fast6Udp = 0;
  fastTagged = 0;
  /** The other packets (decodePacket's), by index, in order: slow[0 .. slowCount). */
  slowCount = 0;
  /** Not in `meta`: this thread's own, never sent to another. */
  readonly slow: Int32Array;

  /**
   * A new batch, or (with `meta`) a view of a batch another thread made: both sides then see the
   * same field arrays.
   */
  constructor(capacity = DEFAULT_BATCH_SIZE, meta?: SharedArrayBuffer | ArrayBuffer) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_BATCH_SIZE) {
      throw new RangeError(`batch capacity must be an integer in 1..${MAX_BATCH_SIZE}, got ${capacity}`);
    }
    this.capacity = capacity;
    const bytes = metaBytes(capacity);
    this.meta = meta ?? new ArrayBuffer(bytes);
    if (this.meta.byteLength < bytes) throw new RangeError('batch meta buffer too small');
    const at = layout(capacity);
    const m = this.meta;
    const c = capacity;
    this.decoded = new Uint8Array(m, at.decodeStart, at.decodeBytes);
    // Explicit assignments in one fixed order keep Batch a fast-properties object with one shape.
    this.tsSec = new Float64Array(m, at.tsSec, c);
    this.num = new Float64Array(m, at.num, c);
    this.off = new Uint32Array(m, at.off, c);
    this.capLen = new Uint32Array(m, at.capLen, c);
    this.wireLen = new Uint32Array(m, at.wireLen, c);
    this.tsNsec = new Uint32Array(m, at.tsNsec, c);
    this.linkType = new Uint16Array(m, at.linkType, c);
    this.iface = new Uint16Array(m, at.iface, c);
    this.noTime = new Uint8Array(m, at.noTime, c);
    this.l3 = new Uint32Array(m, at.l3, c);
    this.l4 = new Uint32Array(m, at.l4, c);
    this.pay = new Uint32Array(m, at.pay, c);
    this.l3End = new Uint32Array(m, at.l3End, c);
    this.ipId = new Uint32Array(m, at.ipId, c);
    this.src = new Uint32Array(m, at.src, c * 4);
    this.dst = new Uint32Array(m, at.dst, c * 4);
    this.seq = new Uint32Array(m, at.seq, c);
    this.ack = new Uint32Array(m, at.ack, c);
    this.inSrc = new Uint32Array(m, at.inSrc, c * 4);
    this.inDst = new Uint32Array(m, at.inDst, c * 4);
    this.hash = new Uint32Array(m, at.hash, c);
    this.flow = new Int32Array(m, at.flow, c);
    this.outOff = new Uint32Array(m, at.outOff, c);
    this.outLen = new Uint32Array(m, at.outLen, c);
    this.l3Type = new Uint16Array(m, at.l3Type, c);
    this.vlan = new Uint16Array(m, at.vlan, c);
    this.sport = new Uint16Array(m, at.sport, c);
    this.dport = new Uint16Array(m, at.dport, c);
    this.win = new Uint16Array(m, at.win, c);
    this.icmpId = new Uint16Array(m, at.icmpId, c);
    this.inSport = new Uint16Array(m, at.inSport, c);
    this.inDport = new Uint16Array(m, at.inDport, c);
    this.reason = new Uint16Array(m, at.reason, c);
    this.malformed = new Uint8Array(m, at.malformed, c);
    this.family = new Uint8Array(m, at.family, c);
    this.proto = new Uint8Array(m, at.proto, c);
    this.frag = new Uint8Array(m, at.frag, c);
    this.ttl = new Uint8Array(m, at.ttl, c);
    this.tcpFlags = new Uint8Array(m, at.tcpFlags, c);
    this.icmpType = new Uint8Array(m, at.icmpType, c);
    this.icmpCode = new Uint8Array(m, at.icmpCode, c);
    this.inProto = new Uint8Array(m, at.inProto, c);
    this.verdict = new Uint8Array(m, at.verdict, c);
    this.stage = new Uint8Array(m, at.stage, c);
    this.ctInfo = new Uint8Array(m, at.ctInfo, c);
    this.dir = new Uint8Array(m, at.dir, c);
    this.grown = new Uint8Array(m, at.grown, c);
    this.slow = new Int32Array(c);
  }
}
