/**
 * Connection tracking per packet, modelled on Linux nf_conntrack: find or create the packet's
 * flow, move its state on, and say what the packet is to the flow (CtInfo). Timeouts run on packet
 * timestamps, so a replay is deterministic and as fast as the CPU allows.
 *
 * Differences from the kernel, on purpose:
 *  - no TCP window tracking (as nf_conntrack_tcp_be_liberal=1), no checksum verification;
 *  - fragments are not reassembled: a later fragment follows the flow of its first fragment
 *    (remembered by IP id), and is untracked when that first fragment was not seen;
 *  - counters count wire bytes (frame length, as tshark and a NIC see them); the kernel counts
 *    IP bytes. Packet counts follow nf_conntrack_acct: INVALID and IGNOREd packets are not counted,
 *    nor is a SYN seen again before any reply (a retransmission, or a simultaneous open's).
 */
import type { Batch } from '../packet/batch.js';
import * as batchModule from '../packet/batch.js';
import { FragmentKeys } from '../packet/fragments.js';
import * as decodeModule from '../packet/decode.js';
import * as infoModule from './info.js';
import { FlowTable } from './table.js';
import * as tableModule from './table.js';
import * as tcpModule from './tcp.js';
// The constants and helpers the per-packet code uses, as this module's own consts: V8 folds a
// module's own unexported const bindings into optimised code, but reads an imported binding, or
// any exported one (even in its own module: see layout.ts), through its module cell, checking
// that it is initialised, at every use (through conntrack: 3,075 -> 2,888 instructions a packet
// under callgrind; DESIGN.md "Speed").
const { Frag } = batchModule;
const { isIcmpError, Proto } = decodeModule;
const { CtInfo, CT_OK, CT_REASONS, R_TABLE_FULL } = infoModule;
const { Destroy, REC, RF_CTR, RF_EXPIRES, RF_LAST, RF_SHIFT, R_STATE, Status, SWEEP_SLOTS } = tableModule;
const { S_IGNORE, S_INVALID, TcpClass, TcpState, tcpClass, tcpFlagsValid, tcpNext, tcpPlainAck } = tcpModule;
export { CT_OK, CT_REASONS, R_TABLE_FULL } from './info.js';

/** Timeouts in seconds (nf_conntrack sysctl defaults). */
export interface Timeouts {
  tcp: Float64Array; // per TcpState
  tcpUnacknowledged: number;
  udp: number;
  udpStream: number;
  icmp: number;
  generic: number;
}

export function defaultTimeouts(): Timeouts {
  const tcp = new Float64Array(10);
  tcp[TcpState.SYN_SENT] = 120;
  tcp[TcpState.SYN_RECV] = 60;
  tcp[TcpState.ESTABLISHED] = 432000;
  tcp[TcpState.FIN_WAIT] = 120;
  tcp[TcpState.CLOSE_WAIT] = 60;
  tcp[TcpState.LAST_ACK] = 30;
  tcp[TcpState.TIME_WAIT] = 120;
  tcp[TcpState.CLOSE] = 10;
  tcp[TcpState.SYN_SENT2] = 120;
  return { tcp, tcpUnacknowledged: 300, udp: 30, udpStream: 120, icmp: 30, generic: 600 };
}

export interface ConntrackConfig {
  capacity: number;
  /** When the table is full: evict a non-assured entry (kernel early_drop), else drop the new flow. */
  whenFull: 'evict' | 'drop-new';
  /** Pick up TCP flows mid-stream from an ACK (nf_conntrack_tcp_loose). */
  loose: boolean;
  timeouts: Timeouts;
  /** false: every packet takes track()'s full path (for tests that compare it with the fast path). */
  fastPath?: boolean;
}

// Drop reasons: CT_REASONS (in info.ts, with CT_OK and R_TABLE_FULL) names them by these codes.
const R_TCP_FLAGS = 1;
const R_TCP_STATE = 2;
const R_TCP_START = 3;
const R_ICMP_ORPHAN = 4;
const R_ICMP_REPLY = 5;
const R_ICMP_TYPE = 6;

/** UDP flows become "streams" (longer timeout, assured) when still active this long after starting. */
const UDP_STREAM_AFTER = 2;
/** Entries the early-drop search looks at, as the kernel's NF_CT_EVICTION_RANGE. */
const EVICTION_RANGE = 8;
/** Datagrams in flight whose first fragment conntrack remembers (the sharder's map is as big). */
const FRAG_SLOTS = 1 << 16;
/** flush() reads ahead the records of twice this many slots every this many slots (a power of two). */
const FLUSH_AHEAD = 32;

export class Conntrack {
  readonly table: FlowTable;

  // counters
  readonly created = new Float64Array(256); // by IP protocol
  readonly destroyed = new Float64Array(5); // by Destroy.*
  readonly info = new Float64Array(5); // packets by CtInfo
  readonly invalid = new Float64Array(CT_REASONS.length);
  /** TCP packets the state machine ignored (tracked, not counted). */
  ignored = 0;
  /** Packets track() took through its fast path (not in the report: for tests and benchmarks). */
  fastPackets = 0;
  fragmentsFollowed = 0;
  fragmentsOrphaned = 0;
  /** What FlowTable.readSlots() read for flush(), kept so that its reads are not optimised away (never looked at). */
  flushSum = 0;

  /** Later IP fragments find their flow through the first fragment's (addresses, proto, IP id). */
  private readonly fragments = new FragmentKeys(FRAG_SLOTS);
  /**
   * Per slot of `fragments`: the first fragment's entry + 1 (0: none), its gen and direction.
   * Allocated with the first fragment, as the keys are: most captures have none, and every table
   * (compare builds 28 pipelines) paid ~350 KB of first writes for them, a page fault each 4 KB.
   */
  private fragEntry = new Int32Array(0);
  private fragGen = new Uint32Array(0);
  private fragDir = new Uint8Array(0);
  private sweepAt = 0;
  /** sweep()'s scratch: the entries in the slots it looks at, and how many slots along each is. */
  private readonly sweepEntries = new Int32Array(SWEEP_SLOTS);
  private readonly sweepAhead = new Int32Array(SWEEP_SLOTS);

  private readonly tcpTimeouts: Float64Array;
  private readonly fastPath: boolean;
  /** The time of the packet being tracked (seconds): see trackFull(). The table's, which insert reads. */
  private readonly clock: Float64Array;

  constructor(readonly config: ConntrackConfig) {
    this.table = new FlowTable(config.capacity);
    this.clock = this.table.clock;
    this.tcpTimeouts = config.timeouts.tcp;
    this.fastPath = config.fastPath ?? true;
  }

  /**
   * Track packet i at its own time. Sets b.ctInfo/flow/dir. Returns CT_OK, or the reason code
   * (CT_REASONS) why the packet is INVALID or could not get an entry.
   *
   * First the fast path, as TCP header prediction in Linux's receive path: a TCP segment, not a
   * fragment, whose flags are a plain ACK (tcpPlainAck), of a flow the table holds, ESTABLISHED
   * with its reply seen and not expired. For such a packet tcp() marks it ESTABLISHED, sets ASSURED
   * (already set after the first such packet), counts it and renews the ESTABLISHED timeout; the
   * fast path does exactly that, without tcp()'s calls. Most packets of an established flow take
   * it: ebpf 2,676/2,684 -> 2,483/2,485 instructions a packet (DESIGN.md "Seventh pass"). Anything
   * else, or anything it cannot be sure of, takes the full path; `fastPath: false` in the config
   * sends every packet there (the tests compare the two).
   */
  track(b: Batch, i: number): number {
    const family = b.family[i]!;
    if (this.fastPath && b.proto[i] === Proto.TCP && family !== 0 && b.frag[i] === Frag.NONE && tcpPlainAck(b.tcpFlags[i]!)) {
      const t = this.table;
      const w = i << 2;
      const r = t.find(b.hash[i]! | 0, family, Proto.TCP, b.src, w, b.dst, w, b.sport[i]!, b.dport[i]!);
      if (r >= 0) {
        const e = r >> 1;
        const k = e * REC + R_STATE;
        const st = t.rec[k]!;
        const now = b.tsSec[i]! + b.tsNsec[i]! * 1e-9;
        const f = e << RF_SHIFT;
        const recF = t.recF;
        if ((st & 0xff) === TcpState.ESTABLISHED && (st & (Status.SEEN_REPLY << 8)) !== 0 && recF[f + RF_EXPIRES]! >= now) {
          // mark() and count(), written out: here a call would cost more than the lines it saves.
          const dir = r & 1;
          t.rec[k] = st | (Status.ASSURED << 8);
          b.flow[i] = e;
          b.dir[i] = dir;
          b.ctInfo[i] = CtInfo.ESTABLISHED;
          recF[f + RF_CTR + dir]!++;
          recF[f + RF_CTR + 2 + dir]! += b.wireLen[i]!;
          recF[f + RF_LAST] = now;
          recF[f + RF_EXPIRES] = now + this.tcpTimeouts[TcpState.ESTABLISHED]!;
          this.info[CtInfo.ESTABLISHED]!++;
          this.fastPackets++;
          return CT_OK;
        }
      }
    }
    return this.trackFull(b, i);
  }

  /** track() for every packet: the state machine of each protocol, fragments, ICMP errors. */
  private trackFull(b: Batch, i: number): number {
    // The packet's time, kept where the helpers below read it: a double handed from call to call
    // is boxed (a heap number) at every call V8 does not inline, ~29 bytes of garbage a packet.
    const now = b.tsSec[i]! + b.tsNsec[i]! * 1e-9;
    this.clock[0] = now;
    b.flow[i] = -1;
    const family = b.family[i]!;
    if (family === 0) { this.info[CtInfo.UNTRACKED]!++; return CT_OK; }
    if (b.frag[i] === Frag.LATER) return this.followFragment(b, i);
    const proto = b.proto[i]!;
    let r: number;
    if (proto === Proto.TCP) r = this.tcp(b, i);
    else if (proto === Proto.ICMP || proto === Proto.ICMPV6) r = this.icmp(b, i, proto === Proto.ICMPV6);
    else r = this.other(b, i, proto);
    if (r !== CT_OK) { b.ctInfo[i] = CtInfo.INVALID; this.invalid[r]!++; }
    this.info[b.ctInfo[i]!]!++;
    if (b.frag[i] === Frag.FIRST && r === CT_OK && b.ctInfo[i] !== CtInfo.UNTRACKED) this.rememberFragment(b, i);
    return r;
  }

  /** Look up packet i's own tuple; an expired entry is destroyed and not returned. */
  private lookup(b: Batch, i: number, sp: number, dp: number): number {
    const now = this.clock[0]!;
    const w = i << 2;
    const t = this.table;
    const r = t.find(b.hash[i]! | 0, b.family[i]!, b.proto[i]!, b.src, w, b.dst, w, sp, dp);
    if (r >= 0 && t.recF[((r >> 1) << RF_SHIFT) + RF_EXPIRES]! < now) {
      this.destroy(r >> 1, Destroy.TIMEOUT);
      return -1;
    }
    return r;
  }

  /** A new entry with packet i as its original direction; -1 when the table is full and nothing can go. */
  private create(b: Batch, i: number, sp: number, dp: number): number {
    const now = this.clock[0]!;
    const t = this.table;
    const h = b.hash[i]! | 0; // int32: a uint32 >= 2^31 is boxed when handed on
    if (t.full) {
      if (this.config.whenFull === 'drop-new') return -1;
      const v = t.victim(h, EVICTION_RANGE);
      if (v < 0) return -1;
      this.destroy(v, t.expires(v) < now ? Destroy.TIMEOUT : Destroy.EVICTED);
    }
    const w = i << 2;
    const proto = b.proto[i]!;
    const e = t.insert(h, b.family[i]!, proto, b.src, w, b.dst, w, sp, dp);
    this.created[proto]!++;
    t.created(b, i, e);
    return e;
  }

  private destroy(e: number, why: number): void {
    this.destroyed[why]!++;
    this.table.remove(e, why);
  }

  /** Tie packet i to entry e (direction dir) and say what it is to the flow. */
  private mark(b: Batch, i: number, e: number, dir: number): void {
    const rec = this.table.rec;
    const k = e * REC + R_STATE;
    if (dir === 1) rec[k] = rec[k]! | (Status.SEEN_REPLY << 8);
    b.flow[i] = e;
    b.dir[i] = dir;
    b.ctInfo[i] = dir === 1 || (rec[k]! & (Status.SEEN_REPLY << 8)) !== 0 ? CtInfo.ESTABLISHED : CtInfo.NEW;
  }

  /** Count packet i on entry e (as nf_conntrack_acct: valid packets only). */
  private count(b: Batch, i: number, e: number, dir: number): void {
    const now = this.clock[0]!;
    const recF = this.table.recF;
    const f = e << RF_SHIFT;
    recF[f + RF_CTR + dir]!++;
    recF[f + RF_CTR + 2 + dir]! += b.wireLen[i]!;
    recF[f + RF_LAST] = now;
  }

  /**
   * Let packet i through without counting it or refreshing the entry (the kernel's IGNORE). Its
   * own method: rare, and tcp() stays small enough for V8 to inline the hot helpers into it.
   */
  private ignore(b: Batch, i: number, e: number, dir: number): number {
    const t = this.table;
    this.ignored++;
    t.ignored[(e << 1) | dir]!++;
    t.ignoredBytes[(e << 1) | dir]! += b.wireLen[i]!;
    return CT_OK;
  }

  /** mark() and count(): the usual case. */
  private account(b: Batch, i: number, e: number, dir: number): void {
    this.mark(b, i, e, dir);
    this.count(b, i, e, dir);
  }

  private tcp(b: Batch, i: number): number {
    const now = this.clock[0]!;
    const flags = b.tcpFlags[i]!;
    if (!tcpFlagsValid(flags)) return R_TCP_FLAGS;
    const sp = b.sport[i]!;
    const dp = b.dport[i]!;
    const t = this.table;
    const cls = tcpClass(flags);
    let r = this.lookup(b, i, sp, dp);
    if (r >= 0) {
      const e = r >> 1;
      const dir = r & 1;
      const k = e * REC + R_STATE;
      // The table's arrays, once (they are replaced only when the table grows, at a create).
      const rec = t.rec;
      const old = rec[k]! & 0xff;
      const next = tcpNext(dir, cls, old);
      if (cls === TcpClass.SYN && next === TcpState.SYN_SENT && (old === TcpState.TIME_WAIT || old === TcpState.CLOSE)) {
        // A new connection on the tuple of a closed one (RFC 1122 TIME_WAIT reuse): the old entry
        // goes and the SYN starts a flow of its own.
        this.destroy(e, Destroy.REOPENED);
        r = -1;
      } else {
        if (next === S_INVALID) {
          b.flow[i] = e;
          b.dir[i] = dir;
          return R_TCP_STATE;
        }
        const seenReply = (rec[k]! & (Status.SEEN_REPLY << 8)) !== 0;
        this.mark(b, i, e, dir);
        // Ignored: plausible but unverifiable (a retransmitted SYN/ACK, a SYN to an open flow).
        // The kernel lets it through without counting it or refreshing the entry.
        if (next === S_IGNORE) return this.ignore(b, i, e, dir);
        // ASSURED: a valid ACK in ESTABLISHED after SYN_RECV, or an answer to a picked-up flow.
        let st = (rec[k]! & ~0xff) | next;
        if (seenReply && (old === TcpState.SYN_RECV || old === TcpState.ESTABLISHED) && next === TcpState.ESTABLISHED) st |= Status.ASSURED << 8;
        rec[k] = st;
        if (!seenReply && cls === TcpClass.SYN && old === TcpState.SYN_SENT) {
          // A SYN before any reply: a retransmission, or the other end's SYN of a simultaneous open
          // (now SYN_SENT2). The kernel moves the state on but neither counts the packet nor renews
          // the timeout, so port reuse cannot keep the entry alive ("do not renew timeout on SYN
          // retransmit", nf_conntrack_tcp_packet); it is counted as ignored here.
          return this.ignore(b, i, e, dir);
        }
        this.count(b, i, e, dir);
        if (!seenReply && cls === TcpClass.RST) {
          // "If only reply is a RST, we can consider ourselves not to have an established
          // connection" (nf_conntrack): the entry goes at once, e.g. a SYN answered by RST.
          this.destroy(e, Destroy.RESET);
          return CT_OK;
        }
        t.recF[(e << RF_SHIFT) + RF_EXPIRES] = now + (cls === TcpClass.RST ? this.tcpTimeouts[TcpState.CLOSE]! : this.tcpTimeouts[next]!);
        return CT_OK;
      }
    }
    const start = tcpNext(0, cls, TcpState.NONE);
    if (start === S_INVALID || (start === TcpState.ESTABLISHED && !this.config.loose)) return R_TCP_START;
    const e = this.create(b, i, sp, dp);
    if (e < 0) return R_TABLE_FULL;
    t.rec[e * REC + R_STATE] = (t.rec[e * REC + R_STATE]! & ~0xff) | start;
    this.table.recF[(e << RF_SHIFT) + RF_EXPIRES] = now + this.tcpTimeouts[start]!;
    this.account(b, i, e, 0);
    return CT_OK;
  }

  private other(b: Batch, i: number, proto: number): number {
    const now = this.clock[0]!;
    const sp = b.sport[i]!;
    const dp = b.dport[i]!;
    const t = this.table;
    const r = this.lookup(b, i, sp, dp);
    let e: number;
    let dir: number;
    if (r >= 0) { e = r >> 1; dir = r & 1; } else {
      e = this.create(b, i, sp, dp);
      if (e < 0) return R_TABLE_FULL;
      dir = 0;
    }
    this.account(b, i, e, dir);
    const to = this.config.timeouts;
    if (proto === Proto.UDP || proto === Proto.UDPLITE) {
      const k = e * REC + R_STATE;
      if ((t.rec[k]! & (Status.SEEN_REPLY << 8)) !== 0 && now - t.first(e) > UDP_STREAM_AFTER) {
        t.rec[k] = t.rec[k]! | (Status.ASSURED << 8);
        this.table.recF[(e << RF_SHIFT) + RF_EXPIRES] = now + to.udpStream;
      } else this.table.recF[(e << RF_SHIFT) + RF_EXPIRES] = now + to.udp;
    } else this.table.recF[(e << RF_SHIFT) + RF_EXPIRES] = now + to.generic;
    return CT_OK;
  }

  private icmp(b: Batch, i: number, v6: boolean): number {
    const now = this.clock[0]!;
    const type = b.icmpType[i]!;
    const t = this.table;
    if (isIcmpError(v6, type)) {
      // An error: RELATED to the flow of the packet it quotes.
      const w = i << 2;
      const r = t.find(b.hash[i]! | 0, b.family[i]!, b.inProto[i]!, b.inSrc, w, b.inDst, w, b.inSport[i]!, b.inDport[i]!);
      if (r < 0 || t.expires(r >> 1) < now) return R_ICMP_ORPHAN;
      b.flow[i] = r >> 1;
      b.dir[i] = (r & 1) ^ 1;
      b.ctInfo[i] = CtInfo.RELATED;
      return CT_OK;
    }
    if (v6 && ((type >= 130 && type <= 137) || type === 143)) {
      b.ctInfo[i] = CtInfo.UNTRACKED; // neighbour discovery and MLD: the kernel leaves them untracked
      return CT_OK;
    }
    const request = v6 ? type === 128 || type === 139 : type === 8 || type === 13 || type === 15 || type === 17;
    const reply = v6 ? type === 129 || type === 140 : type === 0 || type === 14 || type === 16 || type === 18;
    if (!request && !reply) return R_ICMP_TYPE;
    // The identifier (for node information, RFC 4620, the Qtype in the same bytes, as Linux keys it).
    const id = b.icmpId[i]!;
    const r = this.lookup(b, i, id, id);
    let e: number;
    let dir: number;
    if (r >= 0) {
      e = r >> 1;
      dir = r & 1;
      // Ping to oneself: the tuple reads the same both ways, so the type tells the direction.
      if (reply && dir === 0 && sameAddresses(b, i)) dir = 1;
    } else {
      if (reply) return R_ICMP_REPLY;
      e = this.create(b, i, id, id);
      if (e < 0) return R_TABLE_FULL;
      dir = 0;
    }
    this.account(b, i, e, dir);
    this.table.recF[(e << RF_SHIFT) + RF_EXPIRES] = now + this.config.timeouts.icmp;
    return CT_OK;
  }

  private rememberFragment(b: Batch, i: number): void {
    const s = this.fragments.remember(b, i);
    if (this.fragEntry.length === 0) {
      this.fragEntry = new Int32Array(FRAG_SLOTS);
      this.fragGen = new Uint32Array(FRAG_SLOTS);
      this.fragDir = new Uint8Array(FRAG_SLOTS);
    }
    this.fragEntry[s] = b.flow[i]! + 1;
    this.fragGen[s] = this.table.gen(b.flow[i]!);
    this.fragDir[s] = b.dir[i]!;
  }

  private followFragment(b: Batch, i: number): number {
    const now = this.clock[0]!;
    const s = this.fragments.find(b, i);
    const e = s < 0 ? -1 : this.fragEntry[s]! - 1;
    // The flow may have ended (and its entry been reused) since its first fragment, or timed out
    // without the sweep having reached it yet (which must not matter: the sweep's pace does not
    // follow packets).
    if (e < 0 || this.fragGen[s] !== this.table.gen(e) || !this.table.inUse(e) || this.table.expires(e) < now) {
      this.fragmentsOrphaned++;
      this.info[CtInfo.UNTRACKED]!++;
      return CT_OK;
    }
    this.fragmentsFollowed++;
    const t = this.table;
    const dir = this.fragDir[s]!;
    const f = (e << RF_SHIFT) + RF_CTR;
    t.recF[f + dir]!++;
    t.recF[f + 2 + dir]! += b.wireLen[i]!;
    b.flow[i] = e;
    b.dir[i] = dir;
    b.ctInfo[i] = dir === 1 || (t.status(e) & Status.SEEN_REPLY) !== 0 ? CtInfo.ESTABLISHED : CtInfo.NEW;
    this.info[b.ctInfo[i]!]!++;
    return CT_OK;
  }

  /**
   * Expire the entries past their timeout among the next `budget` slots, walking the slot array a
   * slice per call (as the kernel's gc worker). By slot, not entry number: slots are laid out the
   * same whatever the batch size, entry numbers are not. Whether the sweep has reached an expired
   * entry changes no verdict (every lookup checks the timeout itself), only when it is logged.
   */
  sweep(now: number, budget: number): void {
    const t = this.table;
    const n = t.slotCount;
    let at = this.sweepAt;
    // Look before removing anything: gather the entries of the next slots, then read their timeouts
    // in a loop whose loads do not wait for one another. The entries are spread over the whole
    // table, so each read is a cache miss: walked slot by slot, a branch on whether each slot was
    // empty (a coin toss at a load of 1/2) kept the CPU from overlapping them (a call of 128 slots
    // timed 3.9 us, now 3.0; conntrack 135.7 -> 127.5 ns a packet, DESIGN.md "Speed").
    const entries = this.sweepEntries;
    const ahead = this.sweepAhead;
    const look = Math.min(budget, entries.length);
    let found = 0;
    for (let k = 0, s = at; k < look; k++) {
      const e = t.slotEntry(s);
      entries[found] = e;
      ahead[found] = k;
      found += (e >>> 31) ^ 1; // kept unless the slot is empty (e = -1)
      if (++s === n) s = 0;
    }
    let first = look;
    for (let j = 0; j < found; j++) {
      if (t.expires(entries[j]!) < now) { first = ahead[j]!; break; }
    }
    // Up to the first expired entry nothing changes but the position; from it on, slot by slot.
    at = (at + first) % n;
    for (let k = first; k < budget; k++) {
      const e = t.slotEntry(at);
      // A removal shifts a later entry back into this slot: look at the slot again.
      if (e >= 0 && t.expires(e) < now) { this.destroy(e, Destroy.TIMEOUT); continue; }
      if (++at === n) at = 0;
    }
    this.sweepAt = at;
  }

  /**
   * End of input at time `now`: every remaining entry is reported, as timed out if it was past its
   * timeout (whether or not the sweep had reached it yet), else as ended with the input. To end
   * listeners (a flow log) in slot order, so the flow log is the same for any batch size; with
   * none, all at once in entry order (FlowTable.removeAll), where only the counts show.
   */
  flush(now: number): void {
    const t = this.table;
    if (!t.watched) {
      // Nobody reads the flows one by one: the same counts, without walking the slots.
      t.release();
      const live = t.count;
      const expired = t.removeAll(now);
      this.destroyed[Destroy.TIMEOUT]! += expired;
      this.destroyed[Destroy.END]! += live - expired;
      return;
    }
    const n = t.slotCount;
    for (let s = 0; s < n; s++) {
      // The records of the slots ahead first, all at once (see FlowTable.readSlots).
      if ((s & (FLUSH_AHEAD - 1)) === 0) this.flushSum = t.readSlots(s, FLUSH_AHEAD * 2);
      // Removing shifts a later entry of the run back into slot s: take slot s until it is empty.
      for (let e = t.slotEntry(s); e >= 0; e = t.slotEntry(s)) this.destroy(e, t.expires(e) < now ? Destroy.TIMEOUT : Destroy.END);
      // No packet is in flight any more: nothing needs to hold the numbers.
      t.release();
    }
  }
}

function sameAddresses(b: Batch, i: number): boolean {
  const w = i << 2;
  return b.src[w] === b.dst[w] && b.src[w + 1] === b.dst[w + 1] && b.src[w + 2] === b.dst[w + 2] && b.src[w + 3] === b.dst[w + 3];
}
