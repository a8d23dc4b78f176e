/**
 * Synthetic traffic: a deterministic stream of Ethernet frames, written as a classic pcap
 * (microsecond timestamps, little-endian), in bounded memory.
 *
 * The same options (seed included) always give the same bytes. Traffic is a mix of:
 * - TCP flows that look like real connections: SYN, SYN-ACK, ACK, data both ways with correct
 *   seq/ack, then FIN/ACK, FIN/ACK, ACK (or, for a share of them, an RST), so a conntrack stage
 *   sees proper state transitions;
 * - UDP flows: datagrams alternating client -> server and back;
 * - attack packets: lone SYNs from 192.0.2.0/24 (IPv4) or 2001:db8:bad::/48 (IPv6), for a
 *   blocklist to drop;
 * - scan probes: a SYN from 100.64.0.0/24 (IPv4) or fd00:64::/64 (IPv6) to a well-known port of a
 *   server, answered 1-4 microseconds later by the server's RST/ACK (a closed port), as a SYN scan
 *   records. Many such two-packet flows start and end inside one batch.
 * Many flows are active at once (`concurrency`), and their packets interleave. Every IPv4 header
 * and TCP/UDP checksum is correct. Every flow, and every attack SYN, has its own 5-tuple.
 *
 * Addresses: clients 10.0.0.0/8 and fd00:10::/64, servers 172.16.0.0/24 and fd00:172:16::/64.
 * A flow shorter than 6 packets (4 with an RST) is its script cut short: 1 packet is a lone SYN.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { LinkType } from '../capture/linktype.js';
import { FILE_HEADER as PCAP_HEADER, RECORD_HEADER, writePcapHeader } from '../capture/pcap.js';
import { MAX_PACKET } from '../capture/source.js';
import { commas } from '../packet/format.js';

export interface SynthOptions {
  /** PRNG seed: same seed and options, same bytes. */
  seed?: number;
  /** Legitimate flows. Give either `flows` or `packets`. */
  flows?: number;
  /** Total packets, attack packets included (the last flow is cut short to make it exact). */
  packets?: number;
  packetsPerFlow?: number;
  /** Shares in [0, 1]: of flows for ipv6/vlan/udp/rst, of all packets for attack. */
  ipv6Share?: number;
  vlanShare?: number;
  udpShare?: number;
  /** Share of TCP flows that end with an RST instead of the FIN handshake. */
  rstShare?: number;
  attackShare?: number;
  /** Share of all packets that are scan probes (SYN + immediate RST/ACK pairs). */
  scanShare?: number;
  /** TCP/UDP payload bytes of each data packet. */
  payloadSize?: number;
  /** Timestamp of the first packet, in seconds since the epoch. */
  startTime?: number;
  /** Mean packets per second of the synthetic timeline (sets the gaps between timestamps). */
  rate?: number;
  /** Flows active at once. */
  concurrency?: number;
  /** Distinct client hosts. */
  clients?: number;
  /** Distinct servers. */
  servers?: number;
}

export interface SynthSummary {
  packets: number;
  /** Bytes of the pcap, headers included. */
  bytes: number;
  tcpFlows: number;
  udpFlows: number;
  rstFlows: number;
  tcpPackets: number;
  udpPackets: number;
  attackPackets: number;
  /** Scan probes (each a SYN and its RST/ACK: two packets). */
  scanProbes: number;
  ipv6Packets: number;
  vlanPackets: number;
  /** First and last timestamp, in microseconds since the epoch. */
  firstMicros: number;
  lastMicros: number;
}

export const SYNTH_DEFAULTS = {
  seed: 1,
  packetsPerFlow: 10,
  ipv6Share: 0.2,
  vlanShare: 0.1,
  udpShare: 0.2,
  rstShare: 0.1,
  attackShare: 0.05,
  scanShare: 0,
  payloadSize: 64,
  startTime: 1_700_000_000,
  rate: 100_000,
  concurrency: 1000,
  clients: 1024,
  servers: 16,
} as const;

/** Largest payload that keeps every frame within a 1500-byte MTU (IPv6 + TCP headers). */
export const MAX_PAYLOAD = 1440;
/** Output is written in blocks of this size. */
export const BLOCK_SIZE = 4 << 20;

/** Server ports; tshark dissects none of them in a way random-looking text would upset. */
const TCP_PORTS = [80, 8080, 8000] as const;
const UDP_PORTS = [7777, 40000] as const;
/** Client ports are 32768 + (flow / clients) mod EPHEMERAL_PORTS, as Linux's default range. */
const EPHEMERAL_PORTS = 28232;
/** Attack sources: 254 hosts, each using ports 1024 + k mod ATTACK_PORTS. */
const ATTACK_HOSTS = 254;
const ATTACK_PORTS = 64000;
const VLAN_IDS = [100, 101, 102, 103] as const;
/** Ports a scan probes: the usual suspects, blocked and allowed ones (telnet 23 is in the shipped rules). */
const SCAN_PORTS = [21, 22, 23, 25, 53, 80, 110, 135, 139, 143, 443, 445, 993, 1433, 1900, 3306, 3389, 5900, 8080, 8443] as const;

const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const MSS = 1460;

const ETH_HEADER = 14;
const VLAN_TAG = 4;
const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
const TCP_HEADER = 20;
/** A SYN and a SYN-ACK carry one option: MSS. */
const TCP_SYN_OPTIONS = 4;
const UDP_HEADER = 8;
const MAX_RECORD = RECORD_HEADER + ETH_HEADER + VLAN_TAG + IPV6_HEADER + TCP_HEADER + TCP_SYN_OPTIONS + MAX_PAYLOAD;

const CLIENT_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01] as const;
const SERVER_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02] as const;
/** Payload bytes: readable text, so a dissector guessing at it finds nothing to complain about. */
const PAYLOAD_TEXT = 'dplab synthetic payload; ';

/** mulberry32: a small, fast, seeded 32-bit PRNG (good enough for traffic, not for secrets). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed | 0;
  }
  /** A uint32. */
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) | 0;
    let t = Math.imul(this.s ^ (this.s >>> 15), 1 | this.s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** A float in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }
}

/** One side of a flow: address (4 words, IPv4 in word 0), port, next sequence number, IP id. */
interface Endpoint {
  addr: readonly number[];
  port: number;
  seq: number;
  ipId: number;
}

interface Flow {
  tcp: boolean;
  v6: boolean;
  /** 802.1Q VLAN id, 0 when untagged. */
  vlan: number;
  client: Endpoint;
  server: Endpoint;
  /** Packets this flow sends in all, and so far. */
  length: number;
  sent: number;
  /** TCP: ends with an RST (sent by the server when rstByServer) instead of FINs. */
  rst: boolean;
  rstByServer: boolean;
}

/** What one packet carries, filled in by the flow's script. */
interface Segment {
  fromClient: boolean;
  flags: number;
  seq: number;
  ack: number;
  payload: number;
}

type Resolved = Required<Omit<SynthOptions, 'flows' | 'packets'>> & { flows: number; attack: number; scan: number; legit: number };

function checkShare(name: string, v: number): void {
  if (!(v >= 0 && v <= 1)) throw new RangeError(`${name} must be a share between 0 and 1, got ${v}`);
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be a whole number from ${commas(min)} to ${commas(max)}, got ${v}`);
  }
}

/** Fill in defaults, check ranges, and work out how many flows and attack packets to make. */
export function resolveSynthOptions(o: SynthOptions): Resolved {
  const r = { ...SYNTH_DEFAULTS, ...o };
  if (o.flows !== undefined && o.packets !== undefined) throw new RangeError('give either flows or packets, not both');
  checkInt('seed', r.seed, -(2 ** 31), 2 ** 32 - 1);
  checkInt('packets per flow', r.packetsPerFlow, 1, 1_000_000);
  checkShare('IPv6 share', r.ipv6Share);
  checkShare('VLAN share', r.vlanShare);
  checkShare('UDP share', r.udpShare);
  checkShare('RST share', r.rstShare);
  checkShare('attack share', r.attackShare);
  checkShare('scan share', r.scanShare);
  if (r.attackShare + r.scanShare >= 1) throw new RangeError('attack and scan shares must add up to less than 1: some packets must be legitimate');
  checkInt('payload size', r.payloadSize, 1, MAX_PAYLOAD);
  if (!(r.startTime >= 0 && r.startTime < 2 ** 32)) throw new RangeError(`start time must be seconds since 1970 that fit a pcap (below 2^32), got ${r.startTime}`);
  if (!(r.rate > 0)) throw new RangeError(`rate must be above 0 packets per second, got ${r.rate}`);
  checkInt('concurrency', r.concurrency, 1, 1_000_000);
  checkInt('clients', r.clients, 1, 0xfffffe);
  checkInt('servers', r.servers, 1, 254);
  let flows: number; let legit: number; let attack: number; let scan: number;
  if (o.packets !== undefined) {
    checkInt('packets', o.packets, 1, 2 ** 40);
    attack = Math.round(o.packets * r.attackShare);
    scan = Math.floor((o.packets * r.scanShare) / 2);
    legit = o.packets - attack - 2 * scan;
    if (legit < 1) throw new RangeError(`${o.packets} packets leave none for legitimate flows after the attack and scan shares`);
    flows = Math.ceil(legit / r.packetsPerFlow);
  } else {
    flows = o.flows ?? 1000;
    checkInt('flows', flows, 1, 2 ** 40);
    legit = flows * r.packetsPerFlow;
    const all = legit / (1 - r.attackShare - r.scanShare);
    attack = Math.round(all * r.attackShare);
    scan = Math.round((all * r.scanShare) / 2);
  }
  // Every 5-tuple is distinct (conntrack and tshark would merge or flag reused ones).
  if (flows > r.clients * EPHEMERAL_PORTS) {
    throw new RangeError(`${flows} flows from ${r.clients} clients would reuse client ports; raise clients to at least ${Math.ceil(flows / EPHEMERAL_PORTS)}`);
  }
  if (attack > ATTACK_HOSTS * ATTACK_PORTS) throw new RangeError(`at most ${ATTACK_HOSTS * ATTACK_PORTS} attack packets have distinct 5-tuples; lower the attack share`);
  if (scan > ATTACK_HOSTS * ATTACK_PORTS) throw new RangeError(`at most ${ATTACK_HOSTS * ATTACK_PORTS} scan probes have distinct 5-tuples; lower the scan share`);
  return { ...r, flows, legit, attack, scan };
}

/**
 * Generate the traffic, handing the pcap out in blocks of up to 4 MiB: `sink(block, length)`.
 * The block is reused after sink returns.
 */
export function generateSynth(options: SynthOptions, sink: (block: Uint8Array, length: number) => void): SynthSummary {
  const o = resolveSynthOptions(options);
  const g = new Generator(o, sink);
  g.run();
  return g.summary;
}

/** Write the traffic to `path` as a pcap. */
export function writeSynthPcap(path: string, options: SynthOptions): SynthSummary {
  const fd = openSync(path, 'w');
  try {
    return generateSynth(options, (block, length) => {
      let done = 0;
      while (done < length) done += writeSync(fd, block, done, length - done);
    });
  } finally {
    closeSync(fd);
  }
}

class Generator {
  readonly summary: SynthSummary = {
    packets: 0, bytes: 0, tcpFlows: 0, udpFlows: 0, rstFlows: 0, tcpPackets: 0, udpPackets: 0,
    attackPackets: 0, scanProbes: 0, ipv6Packets: 0, vlanPackets: 0, firstMicros: 0, lastMicros: 0,
  };
  private readonly rng: Rng;
  private readonly buf = new Uint8Array(BLOCK_SIZE);
  private readonly dv = new DataView(this.buf.buffer);
  private at = 0;
  private readonly payload: Uint8Array;
  /** Current timestamp in microseconds, and the mean gap between packets. */
  private micros: number;
  private readonly gap: number;
  private readonly seg: Segment = { fromClient: true, flags: 0, seq: 0, ack: 0, payload: 0 };

  constructor(private readonly o: Resolved, private readonly sink: (block: Uint8Array, length: number) => void) {
    this.rng = new Rng(o.seed);
    this.payload = new Uint8Array(o.payloadSize);
    for (let k = 0; k < o.payloadSize; k++) this.payload[k] = PAYLOAD_TEXT.charCodeAt(k % PAYLOAD_TEXT.length);
    this.micros = Math.round(o.startTime * 1e6);
    this.gap = 1e6 / o.rate;
  }

  run(): void {
    const o = this.o;
    const dv = this.dv;
    writePcapHeader(dv, 0, false, MAX_PACKET, LinkType.ETHERNET);
    this.at = PCAP_HEADER;
    this.summary.bytes = PCAP_HEADER;

    const active: Flow[] = [];
    let started = 0;
    let legitLeft = o.legit;
    let attackLeft = o.attack;
    let scanLeft = o.scan;
    while (active.length < o.concurrency && started < o.flows) active.push(this.newFlow(started++));
    while (legitLeft + attackLeft + scanLeft > 0) {
      // Attack packets and scan probes are spread evenly at random: exact totals, and well mixed.
      const pick = this.rng.int(legitLeft + attackLeft + scanLeft);
      if (pick < attackLeft) {
        this.attackSyn(o.attack - attackLeft);
        attackLeft--;
        continue;
      }
      if (pick < attackLeft + scanLeft) {
        this.scanProbe(o.scan - scanLeft);
        scanLeft--;
        continue;
      }
      const slot = this.rng.int(active.length);
      const f = active[slot]!;
      this.flowPacket(f);
      legitLeft--;
      if (f.sent === f.length) {
        if (started < o.flows) active[slot] = this.newFlow(started++);
        else { active[slot] = active[active.length - 1]!; active.pop(); }
      }
    }
    this.flush();
  }

  private newFlow(index: number): Flow {
    const o = this.o;
    const rng = this.rng;
    const length = index === o.flows - 1 ? o.legit - index * o.packetsPerFlow : o.packetsPerFlow;
    const tcp = !rng.chance(o.udpShare);
    const v6 = rng.chance(o.ipv6Share);
    const vlan = rng.chance(o.vlanShare) ? VLAN_IDS[rng.int(VLAN_IDS.length)]! : 0;
    const host = 1 + (index % o.clients);
    const server = 1 + rng.int(o.servers);
    const cport = 32768 + (Math.floor(index / o.clients) % EPHEMERAL_PORTS);
    const sport = tcp ? TCP_PORTS[rng.int(TCP_PORTS.length)]! : UDP_PORTS[rng.int(UDP_PORTS.length)]!;
    const rst = tcp && rng.chance(o.rstShare);
    if (tcp) this.summary.tcpFlows++; else this.summary.udpFlows++;
    if (rst) this.summary.rstFlows++;
    return {
      tcp, v6, vlan, length, sent: 0, rst, rstByServer: rst && rng.chance(0.5),
      client: { addr: v6 ? [0xfd000010, 0, 0, host] : [0x0a000000 + host, 0, 0, 0], port: cport, seq: rng.u32(), ipId: rng.int(65536) },
      server: { addr: v6 ? [0xfd000172, 0x00160000, 0, server] : [0xac100000 + server, 0, 0, 0], port: sport, seq: rng.u32(), ipId: rng.int(65536) },
    };
  }

  /**
   * The TCP script, packet `k` of `f.length`: SYN, SYN-ACK, ACK, data alternating client and
   * server, then FIN/ACK, FIN/ACK, ACK (or one RST/ACK). seq/ack follow the bytes really sent.
   */
  private tcpStep(f: Flow, k: number, s: Segment): void {
    const c = f.client; const sv = f.server;
    const teardown = f.rst ? 1 : 3;
    const data = Math.max(0, f.length - 3 - teardown);
    s.payload = 0;
    if (k === 0) { s.fromClient = true; s.flags = TCP_SYN; s.seq = c.seq; s.ack = 0; c.seq = (c.seq + 1) >>> 0; return; }
    if (k === 1) { s.fromClient = false; s.flags = TCP_SYN | TCP_ACK; s.seq = sv.seq; s.ack = c.seq; sv.seq = (sv.seq + 1) >>> 0; return; }
    if (k === 2) { s.fromClient = true; s.flags = TCP_ACK; s.seq = c.seq; s.ack = sv.seq; return; }
    const d = k - 3;
    let from: Endpoint; let to: Endpoint;
    if (d < data) {
      s.fromClient = (d & 1) === 0;
      s.flags = TCP_PSH | TCP_ACK;
      s.payload = this.o.payloadSize;
    } else if (f.rst) {
      s.fromClient = !f.rstByServer;
      s.flags = TCP_RST | TCP_ACK;
    } else {
      const t = d - data;
      s.fromClient = t !== 1;
      s.flags = t === 2 ? TCP_ACK : TCP_FIN | TCP_ACK;
    }
    if (s.fromClient) { from = c; to = sv; } else { from = sv; to = c; }
    s.seq = from.seq;
    s.ack = to.seq;
    from.seq = (from.seq + s.payload + ((s.flags & TCP_FIN) !== 0 ? 1 : 0)) >>> 0;
  }

  private flowPacket(f: Flow): void {
    const s = this.seg;
    if (f.tcp) {
      this.tcpStep(f, f.sent, s);
    } else {
      s.fromClient = (f.sent & 1) === 0;
      s.payload = this.o.payloadSize;
    }
    f.sent++;
    const from = s.fromClient ? f.client : f.server;
    const to = s.fromClient ? f.server : f.client;
    from.ipId = (from.ipId + 1) & 0xffff;
    this.packet(f.tcp, f.v6, f.vlan, s.fromClient, from, to, s.flags, s.seq, s.ack, s.payload);
  }

  /** Attack packet k: a lone SYN from its own source address and port to a random server. */
  private attackSyn(k: number): void {
    const rng = this.rng;
    const v6 = rng.chance(this.o.ipv6Share);
    const vlan = rng.chance(this.o.vlanShare) ? VLAN_IDS[rng.int(VLAN_IDS.length)]! : 0;
    const host = 1 + (k % ATTACK_HOSTS);
    const server = 1 + rng.int(this.o.servers);
    const from: Endpoint = { addr: v6 ? [0x20010db8, 0x0bad0000, 0, host] : [0xc0000200 + host, 0, 0, 0], port: 1024 + (Math.floor(k / ATTACK_HOSTS) % ATTACK_PORTS), seq: rng.u32(), ipId: rng.int(65536) };
    const to: Endpoint = { addr: v6 ? [0xfd000172, 0x00160000, 0, server] : [0xac100000 + server, 0, 0, 0], port: 80, seq: 0, ipId: 0 };
    this.summary.attackPackets++;
    this.packet(true, v6, vlan, true, from, to, TCP_SYN, from.seq, 0, 0);
  }

  /**
   * Scan probe k: a SYN from its own source address and port to a well-known port of a server,
   * and the server's RST/ACK 1-4 microseconds later (the port is closed). Conntrack ends such a
   * flow at the RST ("reset before reply"), so its entry is freed within the batch it began in.
   */
  private scanProbe(k: number): void {
    const rng = this.rng;
    const v6 = rng.chance(this.o.ipv6Share);
    const host = 1 + (k % ATTACK_HOSTS);
    const server = 1 + rng.int(this.o.servers);
    const port = SCAN_PORTS[rng.int(SCAN_PORTS.length)]!;
    const scanner: Endpoint = { addr: v6 ? [0xfd000064, 0, 0, host] : [0x64400000 + host, 0, 0, 0], port: 1024 + (Math.floor(k / ATTACK_HOSTS) % ATTACK_PORTS), seq: rng.u32(), ipId: rng.int(65536) };
    const target: Endpoint = { addr: v6 ? [0xfd000172, 0x00160000, 0, server] : [0xac100000 + server, 0, 0, 0], port, seq: 0, ipId: rng.int(65536) };
    this.summary.scanProbes++;
    this.packet(true, v6, 0, true, scanner, target, TCP_SYN, scanner.seq, 0, 0);
    this.packet(true, v6, 0, false, target, scanner, TCP_RST | TCP_ACK, 0, (scanner.seq + 1) >>> 0, 0, 1 + rng.int(4));
  }

  /** Write one frame: record header, Ethernet (+ 802.1Q), IPv4 or IPv6, TCP or UDP, payload. */
  private packet(tcp: boolean, v6: boolean, vlan: number, fromClient: boolean, from: Endpoint, to: Endpoint,
    flags: number, seq: number, ack: number, payload: number, gapMicros = -1): void {
    if (this.at + MAX_RECORD > this.buf.length) this.flush();
    const b = this.buf; const dv = this.dv;
    const rec = this.at;
    const syn = tcp && (flags & TCP_SYN) !== 0;
    const l4Header = tcp ? TCP_HEADER + (syn ? TCP_SYN_OPTIONS : 0) : UDP_HEADER;
    const l4Len = l4Header + payload;
    const l3Len = (v6 ? IPV6_HEADER : IPV4_HEADER) + l4Len;
    const frameLen = ETH_HEADER + (vlan ? VLAN_TAG : 0) + l3Len;

    // An answer within microseconds (a scan's RST) gets its own gap; others the timeline's.
    this.micros += gapMicros >= 0 ? gapMicros : Math.round(this.rng.float() * 2 * this.gap);
    const sec = Math.floor(this.micros / 1e6);
    dv.setUint32(rec, sec, true);
    dv.setUint32(rec + 4, this.micros - sec * 1e6, true);
    dv.setUint32(rec + 8, frameLen, true);
    dv.setUint32(rec + 12, frameLen, true);
    if (this.summary.packets === 0) this.summary.firstMicros = this.micros;

    let p = rec + RECORD_HEADER;
    const dstMac = fromClient ? SERVER_MAC : CLIENT_MAC;
    const srcMac = fromClient ? CLIENT_MAC : SERVER_MAC;
    for (let k = 0; k < 6; k++) { b[p + k] = dstMac[k]!; b[p + 6 + k] = srcMac[k]!; }
    p += 12;
    if (vlan) { dv.setUint16(p, 0x8100); dv.setUint16(p + 2, vlan); p += 4; }
    dv.setUint16(p, v6 ? 0x86dd : 0x0800);
    p += 2;

    const proto = tcp ? 6 : 17;
    // The pseudo-header sum (RFC 793 / RFC 8200 8.1), to which the L4 bytes are added.
    let pseudo = proto + l4Len;
    if (v6) {
      dv.setUint32(p, 0x60000000);
      dv.setUint16(p + 4, l4Len);
      b[p + 6] = proto;
      b[p + 7] = 64;
      for (let k = 0; k < 4; k++) {
        dv.setUint32(p + 8 + 4 * k, from.addr[k]!);
        dv.setUint32(p + 24 + 4 * k, to.addr[k]!);
      }
      pseudo += sum16(b, p + 8, p + 40);
      p += IPV6_HEADER;
    } else {
      b[p] = 0x45; b[p + 1] = 0;
      dv.setUint16(p + 2, l3Len);
      dv.setUint16(p + 4, from.ipId);
      dv.setUint16(p + 6, 0x4000); // don't fragment
      b[p + 8] = 64; b[p + 9] = proto;
      dv.setUint16(p + 10, 0);
      dv.setUint32(p + 12, from.addr[0]!);
      dv.setUint32(p + 16, to.addr[0]!);
      dv.setUint16(p + 10, finish(sum16(b, p, p + IPV4_HEADER)));
      pseudo += sum16(b, p + 12, p + 20);
      p += IPV4_HEADER;
    }

    const l4 = p;
    dv.setUint16(p, from.port);
    dv.setUint16(p + 2, to.port);
    if (tcp) {
      dv.setUint32(p + 4, seq);
      dv.setUint32(p + 8, ack);
      b[p + 12] = (l4Header >> 2) << 4;
      b[p + 13] = flags;
      dv.setUint16(p + 14, fromClient ? 64240 : 65160);
      dv.setUint32(p + 16, 0); // checksum, urgent pointer
      if (syn) dv.setUint32(p + 20, (2 << 24) | (4 << 16) | MSS);
    } else {
      dv.setUint16(p + 4, l4Len);
      dv.setUint16(p + 6, 0);
    }
    p += l4Header;
    b.set(this.payload.subarray(0, payload), p);
    p += payload;
    let sum = finish(pseudo + sum16(b, l4, p));
    if (!tcp && sum === 0) sum = 0xffff; // a computed 0 is sent as all ones in UDP (0 means none)
    dv.setUint16(l4 + (tcp ? 16 : 6), sum);

    this.at = p;
    const s = this.summary;
    s.packets++;
    s.bytes += RECORD_HEADER + frameLen;
    if (tcp) s.tcpPackets++; else s.udpPackets++;
    if (v6) s.ipv6Packets++;
    if (vlan) s.vlanPackets++;
    s.lastMicros = this.micros;
  }

  private flush(): void {
    if (this.at === 0) return;
    this.sink(this.buf, this.at);
    this.at = 0;
  }
}

/** One's-complement sum of the 16-bit big-endian words of b[from, to), not yet folded. */
function sum16(b: Uint8Array, from: number, to: number): number {
  let s = 0;
  let k = from;
  for (; k + 1 < to; k += 2) s += (b[k]! << 8) | b[k + 1]!;
  if (k < to) s += b[k]! << 8;
  return s;
}

/** Fold a sum to 16 bits and complement it: the Internet checksum (RFC 1071). */
function finish(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 65536);
  return ~s & 0xffff;
}
